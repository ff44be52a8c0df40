"""The hub's SwarmSpawner: dockerspawner's, made to notice sooner, route right after a move, and survive a worker loss.

Installed into the hub image (roles/jupyterhub/templates/hub.Dockerfile.j2) and named by jupyterhub_config.py;
every setting comes from the jupyterhub role through that config. What it changes in dockerspawner 14:

- Start: upstream checks the service's task 1 s after creating it, then after 2.5 s, 4.75 s, ..., and the hub then
  checks the server's port with its own growing pauses; a server up after 1.1 s was seen about 3 s late. Here both
  checks start at 50 ms and grow by half up to ``poll_max``.
- A server is ready only when the service's name resolves to the running task's own address(es) and nothing else,
  and each answers. Right after a server moved (stopped on one worker, started on another) the swarm's DNS can still
  list the old task's address, which may even answer while that container shuts down; the proxy resolves the name
  on every request and would connect to the dead one (a 503).
- Poll: a task that swarm re-created after a worker was lost goes through new, assigned, ..., ready before it runs.
  Upstream counts only running, starting, pending and preparing as alive and so declared such a server stopped, and
  then never removed its service (an orphan). Here every state up to running is alive, also during swarm's restart
  delay (the new task's desired state is "ready" for 5 s, the old one's "shutdown"), and ``on_worker_loss``
  chooses what happens when swarm replaces the task the hub started: ``keep`` (the server's route, a service name,
  follows the new task; the user reconnects to a new kernel with their files) or ``stop`` (the service is removed
  and the hub marks the server stopped).
- No room: a task swarm cannot place stays pending ("no suitable node (insufficient resources on 2 nodes)"), and
  upstream waited for it until start_timeout, then failed with a bare timeout. Here, after ``no_room_timeout`` the
  spawn fails with swarm's reason in its message (the hub's UI and log show it) and the hub removes the service,
  unless the scaler says workers are on the way (its label on the manager's node): then it waits on, up to
  start_timeout.
- Services carry labels naming their hub user and server (``jhs.component=user-server``), so jhs_reconcile can find
  a service no hub server owns. Their containers carry ``jhs.component=user-server`` too: by it, each node's
  jhs-server-isolation (roles/docker_engine) finds the user servers to close to one another on the overlay.
- Packing: a new server goes to the most allocated worker that still has room for its guarantees (after a reserve
  for the engine and system), pinned with a ``node.id==`` constraint, so workers empty out and the scaler can remove
  them; swarm's own placement spreads. When no worker has room, the service excludes every current worker
  (``node.id!=``), so swarm does not fill one past its reserve: the task waits for the worker the scaler adds (or
  fails after ``no_room_timeout``). The choice uses jhs_scaler's code (worker_nodes, choose_node), the scaler's
  view of room. A server whose pinned worker is lost is unpinned by ``poll``, so swarm can place it again.
- Registry credentials (ECR tokens, rewritten by the manager's refresher) are read again when their file changes,
  and sent with each new service, so the worker pulls the image with them.
- Profiles and homes (settings ``profiles``, ``home_template``, ``home_mode``, ``home_uid``, ``home_gid``): the spawn
  form offers the operator's profiles (none when there are fewer than two), the chosen one sets the image (which
  dockerspawner's ``start`` checks against ``allowed_images``) and the sizes it names, and the user's home is
  created with its owner and mode before the service exists (swarm rejects a missing bind source, and the spawn
  would hang until start_timeout).

  Both run in ``run_pre_spawn_hook``, the method through which JupyterHub's ``User.spawn`` calls the
  ``pre_spawn_hook`` setting: the same moment as the config's former hook (after the hub applied the user's
  options, before ``start``), still outside ``start``'s readiness checks (which the tests drive with Docker
  stubbed, and which must not touch the file system), and ``c.Spawner.pre_spawn_hook`` stays free for an
  operator's own hook, run after these. ``options_form`` and ``options_from_form`` are the defaults of upstream's
  traits (a setting still overrides them), so the config holds values only.
"""
import asyncio
import os
import socket
import time
from pathlib import Path
from pprint import pformat

import dockerspawner
from tornado.httpclient import AsyncHTTPClient
from traitlets import Bool, Dict, Enum, Float, Int, List, TraitError, Unicode, default, validate

import jhs_scaler

# Task states before running: swarm is still placing, pulling or starting the task.
TASK_STARTING = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"})
# While the hub waits for a spawn, "rejected" is waited on too: swarm places the task again.
TASK_WAITING = TASK_STARTING | {"rejected"}
TASK_ALIVE = TASK_STARTING | {"running"}
# The desired states of a service's task that swarm runs or will run (see poll).
TASK_DESIRED_ALIVE = frozenset({"ready", "running"})
# How swarm says, in a pending task's Err, that no node has room (or matches the constraints) for it.
NO_ROOM = "no suitable node"
# Labels on every user service; jhs_reconcile reads the same names.
LABEL_COMPONENT = "jhs.component"
LABEL_USER = "jhs.user"
LABEL_SERVER = "jhs.server"
COMPONENT = "user-server"

_registry_config_seen = {"mtime": None}
# Spawns placed by this hub whose tasks swarm has not assigned yet: service name -> (node id, cpu, mem, when).
_pins = {}
_pack_lock = asyncio.Lock()
PIN_PREFIXES = ("node.id==", "node.id!=")


def task_addresses(task, network_name):
    """The task's own addresses on the named network (empty when it has none there)."""
    out = set()
    for attachment in task.get("NetworksAttachments") or []:
        if (attachment.get("Network") or {}).get("Spec", {}).get("Name") == network_name:
            out.update(a.split("/")[0] for a in attachment.get("Addresses") or [])
    return out


class SwarmSpawner(dockerspawner.SwarmSpawner):
    """dockerspawner's SwarmSpawner with faster start checks, a move-safe readiness check and worker-loss handling."""

    poll_max = Float(1.0, config=True, help="Longest pause, in seconds, between two checks of a starting server.")
    on_worker_loss = Enum(
        ["keep", "stop"], "keep", config=True,
        help="When swarm replaces the server's task (its worker was lost): keep the server, or stop it.")
    no_room_timeout = Float(
        60.0, config=True,
        help="Seconds a spawn waits while swarm finds no node with room for it before it fails naming that cause "
             "(0: wait until start_timeout).")
    registry_config = Unicode(
        config=True, help="Docker config.json with the registry credentials to send with each service.")
    pack = Bool(True, config=True, help="Place each new server on the most allocated worker with room for it.")
    pack_reserve_cpu = Float(0.1, config=True, help="CPU of each worker kept for its engine and system.")
    pack_reserve_memory = Unicode("512M", config=True, help="Memory of each worker kept for its engine and system.")
    task_id = Unicode("", help="ID of the task the hub saw running (persisted in the spawner's state).")
    profiles = List(
        Dict(), config=True,
        help="The spawn form's choices: each {name, display_name, image} and optionally cpu_limit, cpu_guarantee, "
             "mem_limit, mem_guarantee. Fewer than two: no form.")
    home_template = Unicode(
        "", config=True,
        help="The user's home on the shared file system, as a volume source ({username}); created before the "
             "service starts. Empty: no home is created.")
    home_mode = Unicode("0700", config=True, help="Mode of a new home, in octal (plugins/module_utils/jhs_names.py).")
    home_uid = Int(1000, config=True, help="Owner of a new home (the notebook user).")
    home_gid = Int(1000, config=True, help="Group of a new home.")
    pids_limit = Int(
        0, config=True,
        help="Most processes and threads a server may run (the service's Resources.Limits.Pids; 0: no limit).")

    @validate("home_mode")
    def _validate_home_mode(self, proposal):
        try:
            mode = int(proposal["value"], 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o7777:
            raise TraitError(f"home_mode must be an octal mode such as 0700, not {proposal['value']!r}")
        return proposal["value"]

    @default("registry_config")
    def _registry_config_default(self):
        return str(Path(os.environ.get("DOCKER_CONFIG", "/nonexistent")) / "config.json")

    # --- profiles and homes: the spawn form, the chosen profile, the user's home ---------------------------------
    @default("options_form")
    def _profiles_options_form(self):
        """The operator's profiles (image and size) as a choice; empty when there is nothing to choose."""
        if len(self.profiles) < 2:
            return ""
        options = "".join(
            '<option value="{name}"{selected}>{display_name}</option>'.format(
                selected=" selected" if i == 0 else "", **p)
            for i, p in enumerate(self.profiles)
        )
        return ('<label for="profile">Server profile</label><select class="form-control" name="profile">'
                + options + "</select>")

    @default("options_from_form")
    def _profiles_options_from_form(self):
        return self.profile_options_from_form

    def find_profile(self, name):
        return next((p for p in self.profiles if p["name"] == name), None)

    def profile_options_from_form(self, formdata):
        """The chosen profile's name and image as user_options; {} for an unknown one."""
        name = formdata.get("profile", [""])[0]
        profile = self.find_profile(name)
        if profile is None:
            return {}
        # dockerspawner checks the image against allowed_images before it starts anything.
        return {"profile": name, "image": profile["image"]}

    def apply_profile(self):
        """The sizes the chosen profile names; the configured ones stay for those it does not."""
        profile = self.find_profile(self.user_options.get("profile"))
        if profile is None:
            return
        for key in ("cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee"):
            if profile.get(key) not in (None, ""):
                setattr(self, key, profile[key])

    def create_home(self):
        """Create the user's home, with its owner and mode (plugins/module_utils/jhs_names.py), if it is missing."""
        if not self.home_template:
            return
        home = Path(self.format_volume_name(self.home_template, self))
        if not home.is_dir():
            home.mkdir(mode=int(self.home_mode, 8), parents=True, exist_ok=True)
            os.chown(home, self.home_uid, self.home_gid)

    def run_pre_spawn_hook(self):
        self.apply_profile()
        self.create_home()
        return super().run_pre_spawn_hook()

    # --- state: the task the hub started, so a replaced one can be told apart --------------------------------
    def load_state(self, state):
        super().load_state(state)
        self.task_id = state.get("task_id", "")

    def get_state(self):
        state = super().get_state()
        if self.task_id:
            state["task_id"] = self.task_id
        return state

    def clear_state(self):
        super().clear_state()
        self.task_id = ""

    # --- create and start ------------------------------------------------------------------------------------
    def docker(self, method, *args, **kwargs):
        """Upstream's Docker call, with the pids limit added to the service it creates: docker-py's Resources has no
        argument for it (the engine's API has had Limits.Pids since 1.41), so create_object cannot pass it."""
        if method == "create_service" and self.pids_limit > 0:
            resources = kwargs["task_template"].setdefault("Resources", {})
            resources.setdefault("Limits", {})["Pids"] = self.pids_limit
        return super().docker(method, *args, **kwargs)

    async def create_object(self):
        path = Path(self.registry_config)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime is not None and mtime != _registry_config_seen["mtime"]:
            await self.docker("reload_config")
            _registry_config_seen["mtime"] = mtime
        labels = {LABEL_COMPONENT: COMPONENT, LABEL_USER: self.user.name, LABEL_SERVER: self.name or ""}
        self.extra_create_kwargs = {**self.extra_create_kwargs,
                                    "labels": {**self.extra_create_kwargs.get("labels", {}), **labels}}
        self.extra_container_spec = {**self.extra_container_spec,
                                     "labels": {**self.extra_container_spec.get("labels", {}),
                                                LABEL_COMPONENT: COMPONENT}}
        if self.pack:
            async with _pack_lock:
                constraints = await self._packed_constraints()
            self.extra_placement_spec = {**self.extra_placement_spec, "constraints": constraints}
        try:
            return await super().create_object()
        except Exception:
            _pins.pop(self.service_name, None)
            raise

    async def cluster_growing(self):
        """Whether the scaler says workers are on the way (its label on a manager node, refreshed while so)."""
        try:
            managers = await self.docker("nodes", filters={"role": "manager"})
        except Exception:
            return False
        marks = [float((n.get("Spec", {}).get("Labels") or {}).get(jhs_scaler.LABEL_GROWING, 0)) for n in managers]
        return time.time() - max(marks, default=0) < 3 * jhs_scaler.GROWING_REFRESH

    async def _packed_constraints(self):
        """The configured constraints plus this spawn's node: the most allocated worker with room (and a pin that
        counts this spawn there until swarm assigns its task), or, when none has room, every current worker excluded."""
        base = [c for c in (self.extra_placement_spec.get("constraints") or []) if not c.startswith(PIN_PREFIXES)]
        nodes = await self.docker("nodes", filters={"role": "worker"})
        tasks = await self.docker("tasks", filters={"desired-state": "running"})
        services = await self.docker("services", filters={"label": f"{LABEL_COMPONENT}={COMPONENT}"})
        assigned = {t["ServiceID"] for t in tasks if t.get("NodeID")}
        now = time.monotonic()
        for svc in services:
            if svc["ID"] in assigned:
                _pins.pop(svc["Spec"]["Name"], None)
        for name in [n for n, pin in _pins.items() if now - pin[3] > 60]:
            _pins.pop(name)
        reserve = (self.pack_reserve_cpu, jhs_scaler.parse_size(self.pack_reserve_memory))
        _, _, workers = jhs_scaler.worker_nodes(nodes, tasks, {s["ID"] for s in services}, reserve,
                                                pinned=[pin[:3] for pin in _pins.values()])
        need = (float(self.cpu_guarantee or 0), jhs_scaler.parse_size(self.mem_guarantee or 0))
        best = jhs_scaler.choose_node(list(workers.values()), need)
        if best is None:
            self.log.info("Server %s: no worker has room for %.2g CPU and %s; waiting for a new worker", self._log_name,
                          need[0], jhs_scaler.fmt_size(need[1]))
            return base + [f"node.id!={node_id}" for node_id in sorted(workers)]
        _pins[self.service_name] = (best.node_id, need[0], need[1], now)
        return base + [f"node.id=={best.node_id}"]

    async def _unpin_from_a_lost_node(self, live):
        """A server pinned to a worker that is gone cannot be placed again: drop the pin (the task is pending anyway)."""
        if not live or any(t["Status"]["State"] != "pending" for t in live):
            return
        service = await self.get_object()
        spec = service["Spec"]
        constraints = ((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints") or []
        pinned = [c.split("==", 1)[1].strip() for c in constraints if c.replace(" ", "").startswith("node.id==")]
        if not pinned:
            return
        try:
            node = await self.docker("inspect_node", pinned[0])
            if node["Status"].get("State") == "ready" and node["Spec"].get("Availability") == "active":
                return
        except Exception:            # the node was removed from the swarm
            pass
        placement = {**spec["TaskTemplate"]["Placement"],
                     "Constraints": [c for c in constraints if not c.replace(" ", "").startswith(PIN_PREFIXES)]}
        self.log.warning("Server %s: its worker %s is lost; unpinning it so swarm can place it again", self._log_name,
                         pinned[0][:12])
        await self.docker("update_service", service["ID"], service["Version"]["Index"],
                          task_template={**spec["TaskTemplate"], "Placement": placement}, fetch_current_spec=True)

    async def start_object(self):
        pause = 0.05
        loop = asyncio.get_running_loop()
        no_room_since = None
        while True:
            task = await self.get_task()
            if not task:
                raise RuntimeError(f"Service {self.service_name} not found")
            state = task["Status"]["State"].lower()
            if state not in TASK_WAITING:
                break
            err = task["Status"].get("Err") or ""
            if state == "pending" and err.startswith(NO_ROOM):
                no_room_since = no_room_since if no_room_since is not None else loop.time()
                if (self.no_room_timeout and loop.time() - no_room_since >= self.no_room_timeout
                        and await self.cluster_growing()):
                    self.log.info("Server %s: no room yet, and the scaler is adding workers: waiting on",
                                  self._log_name)
                    no_room_since = loop.time()
                if self.no_room_timeout and loop.time() - no_room_since >= self.no_room_timeout:
                    raise RuntimeError(
                        f"No room for this server in the cluster: swarm found {err} for {self.no_room_timeout:g} s. "
                        "Try again later, or ask the operator for more or larger workers.")
            else:
                no_room_since = None
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, self.poll_max)
        if state != "running":
            raise RuntimeError(f"Service {self.service_name} not running: {pformat(task['Status'])}")
        self.task_id = task.get("ID", "")
        self._task_addresses = task_addresses(task, self.network_name)

    async def start(self):
        self._task_addresses = set()
        ip, port = await super().start()
        own = self._task_addresses
        client, pause = AsyncHTTPClient(), 0.05
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.http_timeout
        last = "no check ran"
        while loop.time() < deadline:
            try:
                found = await loop.getaddrinfo(ip, port, type=socket.SOCK_STREAM)
                addresses = {info[4][0] for info in found}
                # the proxy resolves the name on each request: it must lead to this task and nowhere else
                if own and addresses != own:
                    raise LookupError(f"{ip} resolves to {sorted(addresses)}, the task is at {sorted(own)}")
                for address in sorted(addresses):
                    host = f"[{address}]" if ":" in address else address
                    await client.fetch(f"{self.server.proto}://{host}:{port}{self.server.base_url}api",
                                       request_timeout=5, follow_redirects=False, raise_error=False)
                break                      # any HTTP answer from each: the hub's own check passes at once
            except Exception as e:         # refused, not resolvable yet, a stale address, ...: not up yet
                last = f"{type(e).__name__}: {e}"
                await asyncio.sleep(pause)
                pause = min(pause * 1.5, self.poll_max)
        else:
            url = f"{self.server.proto}://{ip}:{port}{self.server.base_url}api"
            raise TimeoutError(f"Server at {url} didn't respond in {self.http_timeout} seconds ({last})")
        return ip, port

    # --- poll: alive while swarm runs or is (re)starting the task ----------------------------------------------
    async def poll(self):
        if await self.get_object() is None:
            self.log.warning("Service %s not found", self.service_name)
            return 0
        tasks = await self.docker("tasks", filters={"service": self.service_name})
        # swarm creates a task that replaces one (a worker lost, a service update) with DesiredState "ready" and moves
        # it to "running" after the restart delay (5 s by default), the old one already "shutdown": alive too
        live = [t for t in tasks if t.get("DesiredState") in TASK_DESIRED_ALIVE and t["Status"]["State"] in TASK_ALIVE]
        replaced = bool(self.task_id) and not any(t.get("ID") == self.task_id for t in live)
        if live and replaced and self.on_worker_loss == "stop":
            self.log.warning("Server %s: swarm replaced its task %s (worker lost?); on_worker_loss=stop removes it",
                             self._log_name, self.task_id[:12])
            await self.remove_object()
            return "task replaced by swarm (worker lost); service removed"
        if live:
            await self._unpin_from_a_lost_node(live)
            if replaced:
                self.log.info("Server %s: swarm replaced task %s with %s (%s); keeping the server", self._log_name,
                              self.task_id[:12], live[0]["ID"][:12], live[0]["Status"]["State"])
                self.task_id = live[0]["ID"]
                self.orm_spawner.state = self.get_state()
                self.db.commit()
            return None
        newest = max(tasks, key=lambda t: t.get("Version", {}).get("Index", 0), default=None)
        return pformat(newest["Status"]) if newest else 0
