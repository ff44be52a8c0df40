"""Keep the swarm and the proxy in step with the hub: remove user services no hub server owns and worker nodes left
Down, and give a restarted proxy its routes.

Runs on the manager as a hub-managed service (jupyterhub_config.py starts it with the hub's API token, scoped to
listing users, reading their servers and syncing the proxy) in the hub's own container, which has the manager's Docker socket. Every
``--every`` seconds it:

- removes each swarm service labelled ``jhs.component=user-server`` (the hub's SwarmSpawner labels every user
  service it creates) whose user (``jhs.user``) the hub knows but whose server (``jhs.server``) is not an active
  server of the hub (running or pending), once the service is older than ``--grace`` seconds. A hub that does not
  answer removes nothing, and neither does a user the hub does not know (its database lost, a restore pending):
  that is logged and left to the operator, since an unknown owner is never taken for no owner.
- removes worker nodes that have been Down for ``--node-grace`` seconds (an instance that was terminated, or left
  the swarm on shutdown), so they stop counting in the swarm and in the workers' view of capacity.
- asks the hub to bring the proxy's routes up to date (JupyterHub's ``POST /hub/api/proxy``, scope ``proxy``).
  configurable-http-proxy keeps its routes in memory: a restarted proxy (a certificate renewal, a crash, an upgrade)
  sends every user to the hub, whose own route check runs only every ``last_activity_interval`` (5 min). With
  ``--proxy-container`` a thread watches that container's starts on the Docker socket and runs this at once, again
  each second until the hub answers (the fresh proxy's API may not listen yet), so no hub restart is needed.

Each action is one log line. Why not Ansible's swarm_manager prune: that runs only when playbooks/workers.yml does;
this runs all the time, and only on the manager. No maintained tool does this for dockerspawner's services.
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import docker

from jhs_spawner import COMPONENT, LABEL_COMPONENT, LABEL_SERVER, LABEL_USER

log = logging.getLogger("jhs-reconcile")


class HubUnavailable(Exception):
    pass


def hub_servers(api_url, token, page=200):
    """The hub's user names, and (user, server name) of every active (running or pending) server it has."""
    users, owned, offset = set(), set(), 0
    while True:
        query = urllib.parse.urlencode({"limit": page, "offset": offset})
        req = urllib.request.Request(f"{api_url.rstrip('/')}/users?{query}", headers={
            "Authorization": f"token {token}", "Accept": "application/jupyterhub-pagination+json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = json.load(resp)
        except Exception as e:
            raise HubUnavailable(f"{type(e).__name__}: {e}") from e
        for user in body["items"]:
            users.add(user["name"])
            owned.update((user["name"], name) for name in (user.get("servers") or {}))
        nxt = (body.get("_pagination") or {}).get("next")
        if not nxt:
            return users, owned
        offset = nxt["offset"]


def sync_routes(api_url, token):
    """The hub adds to the proxy every route it lacks (and removes stale ones); raises HubUnavailable."""
    req = urllib.request.Request(f"{api_url.rstrip('/')}/proxy", method="POST",
                                 headers={"Authorization": f"token {token}"})
    try:
        urllib.request.urlopen(req, timeout=30).close()
    except Exception as e:
        raise HubUnavailable(f"{type(e).__name__}: {e}") from e


def watch_starts(client, container, wake):
    """Set ``wake`` each time the container starts (Docker's events), for ever; a broken stream is opened again."""
    while True:
        try:
            for _ in client.events(filters={"type": "container", "container": container, "event": "start"},
                                   decode=True):
                wake.set()
        except Exception as e:  # the engine restarting, a socket error: listen again
            log.error("watching %s's starts: %s", container, e)
        time.sleep(5)


def sync_routes_after_start(api_url, token, tries=30):
    """After the proxy started: sync until the hub manages it (the proxy's API may take a moment to listen)."""
    for attempt in range(1, tries + 1):
        time.sleep(1)   # the proxy's API listens about a second after its container starts
        try:
            sync_routes(api_url, token)
            log.info("the proxy started: the hub gave it its routes (attempt %d)", attempt)
            return True
        except HubUnavailable as e:
            last = e
    log.error("the proxy started, but the hub could not give it its routes in %d attempts: %s", tries, last)
    return False


def created_at(text):
    """Docker's RFC 3339 time with nanoseconds, as a POSIX time."""
    head, _, frac = text.rstrip("Z").partition(".")
    when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return when + (float("0." + frac[:6]) if frac else 0.0)


def reconcile(client, hub, now, grace, node_grace, down_since):
    """One pass; ``hub`` is hub_servers()'s answer, or None when the hub did not answer. Returns the actions taken
    as (kind, name, reason)."""
    actions = []
    if hub is not None:
        users, owned = hub
        for service in client.services(filters={"label": f"{LABEL_COMPONENT}={COMPONENT}"}):
            labels = service["Spec"].get("Labels") or {}
            key = (labels.get(LABEL_USER), labels.get(LABEL_SERVER, ""))
            age = now - created_at(service["CreatedAt"])
            if key in owned or age < grace:
                continue
            if key[0] not in users:
                log.warning("keeping service %s: its user %r is unknown to the hub (database lost or restored?)",
                            service["Spec"]["Name"], key[0])
                continue
            reason = f"no hub server owns it (user {key[0]!r}, server {key[1]!r}), created {age:.0f}s ago"
            log.warning("removing service %s: %s", service["Spec"]["Name"], reason)
            client.remove_service(service["ID"])
            actions.append(("service", service["Spec"]["Name"], reason))
    seen = set()
    for node in client.nodes():
        if node["Spec"].get("Role") != "worker" or node["Status"].get("State") != "down":
            continue
        seen.add(node["ID"])
        since = down_since.setdefault(node["ID"], now)
        if now - since < node_grace:
            continue
        name = node["Description"].get("Hostname", node["ID"])
        reason = f"Down for {now - since:.0f}s"
        log.warning("removing node %s (%s): %s", name, node["ID"][:12], reason)
        try:
            client.remove_node(node["ID"])
        except docker.errors.APIError as e:
            log.error("could not remove node %s: %s", name, e)
            continue
        actions.append(("node", name, reason))
    for gone in set(down_since) - seen:
        down_since.pop(gone)
    return actions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=60, help="seconds between two passes")
    parser.add_argument("--grace", type=float, default=120, help="minimum age of a service before removal")
    parser.add_argument("--node-grace", type=float, default=300, help="seconds a node stays Down before removal")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--proxy-container", default="",
                        help="the proxy's container: give it its routes as soon as it (re)starts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api_url, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    down_since = {}
    wake = threading.Event()
    if args.proxy_container and not args.once:
        # its own client: docker-py's clients are not shared between threads
        events = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        threading.Thread(target=watch_starts, args=(events, args.proxy_container, wake), daemon=True).start()
    log.info("every %ss: user services without a hub server after %ss, Down workers after %ss, the proxy's routes%s",
             args.every, args.grace, args.node_grace,
             f" (and whenever {args.proxy_container} starts)" if args.proxy_container else "")
    while True:
        if wake.is_set():
            wake.clear()
            sync_routes_after_start(api_url, token)
        else:
            try:
                sync_routes(api_url, token)
            except HubUnavailable as e:
                log.error("hub API unavailable, the proxy's routes not checked this pass: %s", e)
        try:
            hub = hub_servers(api_url, token)
        except HubUnavailable as e:
            log.error("hub API unavailable, no service removed this pass: %s", e)
            hub = None
        try:
            reconcile(client, hub, time.time(), args.grace, args.node_grace, down_since)
        except docker.errors.DockerException as e:
            log.error("Docker API error: %s", e)
        if args.once:
            return
        wake.wait(args.every)


if __name__ == "__main__":
    main()
