"""molecule verify (pytest-testinfra): the hub as an operator would check it on the manager, and a user's server
spawned through it over HTTPS, running on the worker as a swarm service with its home on the shared directory."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

from conftest import MANAGER, WORKER, home_owner, node

testinfra_hosts = [f"ansible://{MANAGER}"]


def container(host, name: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {name}"))[0]


def test_the_hub_and_its_proxy_run_from_the_loaded_images_and_restart_by_themselves(host):
    hub, proxy = container(host, "jupyterhub"), container(host, "jupyterhub-proxy")
    for c in (hub, proxy):
        assert c["State"]["Running"] and c["HostConfig"]["RestartPolicy"]["Name"] == "always", c["Name"]
    assert hub["Config"]["Image"].startswith("jhs/hub:") and proxy["Config"]["Image"].startswith("jhs/proxy:")
    # the proxy runs as its own user with no capability; only the proxy publishes ports
    assert proxy["Config"]["User"] == "65532:65532" and proxy["HostConfig"]["CapDrop"] == ["ALL"]
    assert not hub["HostConfig"]["PortBindings"]


def test_https_and_http_are_published_and_only_https_serves_the_hub(host):
    assert host.socket("tcp://0.0.0.0:443").is_listening
    assert host.socket("tcp://0.0.0.0:80").is_listening
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    address = host.interface("eth0").addresses[0]
    with urllib.request.urlopen(f"https://{address}/hub/health", context=ctx, timeout=10) as resp:
        assert resp.status == 200

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(f"http://{address}/hub/", timeout=10)
        raise AssertionError("plain HTTP served the hub")
    except urllib.error.HTTPError as err:
        assert err.code in (301, 308) and err.headers["Location"].startswith("https://"), err.headers


def test_the_secrets_key_and_config_have_their_owners_and_modes(host):
    """Secrets only root reads (the proxy's token and the key through the proxy's group), the config readable."""
    expected = {
        "/etc/jupyterhub/secrets": ("root", "root", 0o700),
        "/etc/jupyterhub/secrets/cookie-secret": ("root", "root", 0o600),
        "/etc/jupyterhub/secrets/local-password": ("root", "root", 0o600),
        "/etc/jupyterhub/secrets/proxy-token": ("root", 65532, 0o640),
        "/etc/jupyterhub/tls": ("root", 65532, 0o750),
        "/etc/jupyterhub/tls/privkey.pem": ("root", 65532, 0o640),
        "/etc/jupyterhub/tls/fullchain.pem": ("root", "root", 0o644),
        "/etc/jupyterhub/jupyterhub_config.py": ("root", "root", 0o644),
        "/var/lib/jupyterhub/state": ("root", "root", 0o700),
    }
    for path, (user, group, mode) in expected.items():
        f = host.file(path)
        assert f.exists, path
        assert f.user == user and (f.group == group if isinstance(group, str) else f.gid == group), (path, f.user, f.group)
        assert f.mode == mode, (path, oct(f.mode))
    # the secret's value is in its file, and nowhere in the config
    config = host.file("/etc/jupyterhub/jupyterhub_config.py").content_string
    settings = host.ansible.get_variables()
    assert settings["jupyterhub_cookie_secret"] not in config and settings["jupyterhub_local_password"] not in config
    assert host.file("/var/lib/jupyterhub/state/jupyterhub.sqlite").exists


def test_a_users_server_spawned_through_the_hub_runs_on_the_worker_with_its_home(host, hub):
    user = "alice"
    hub.create_user(user)
    try:
        model = hub.start(user, timeout=180)
        assert model["ready"]
        # through the proxy, with the user's token: the server's own API answers
        api = hub.call("GET", f"/user/{user}/api/status")
        assert api.status_code == 200, api.text[:300]
        services = json.loads(host.check_output(
            "docker service ls --filter label=jhs.user=%s --format '{{json .}}'" % user) or "null")
        assert services, "no swarm service for the user"
        nodes = host.check_output(
            "docker service ps %s --filter desired-state=running --format '{{.Node}}'" % services["Name"]).split()
        assert nodes == [WORKER], nodes
        home = node(WORKER).file(f"/mnt/efs/home/{user}")
        assert home.is_directory and (home.uid, home.gid, home.mode) == home_owner()
    finally:
        hub.stop(user)
    assert host.check_output("docker service ls --filter label=jhs.user=%s -q" % user) == ""
