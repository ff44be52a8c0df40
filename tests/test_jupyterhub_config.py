"""jupyterhub role: preflight refuses bad settings, and the rendered jupyterhub_config.py loads in the real hub.

The config is rendered by the role's own tasks (tests/jhs_hub/render.yml) for every authenticator x TLS
mode, then loaded by JupyterHub itself inside the hub image the role builds (from the lab's Debian base):
JupyterHub.initialize() plus a user's SwarmSpawner, with no "Config option ... not recognized" warning.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from jhs_hub.helpers import (HERE, NOTEBOOK_IMAGE_NAME, docker, failures, image_vars, lab_base_image,
                                recap, run_playbook, write_inventory)

AUTHENTICATORS = ["github", "oidc", "local"]
TLS_MODES = ["selfsigned", "provided", "letsencrypt"]
COMBOS = [(a, t) for a in AUTHENTICATORS for t in TLS_MODES]
OTHER_IMAGE = "registry.example.test/science:2024.1"
# What the hub container's name resolves to where the config is loaded (docker run --add-host): its overlay address.
HUB_ADDRESS = "10.9.8.7"


@pytest.fixture(scope="session")
def jh_images(tmp_path_factory):
    """Build the hub and notebook images once per session with the role's tasks; second run must change nothing."""
    work = tmp_path_factory.mktemp("jh-images")
    # The role's entry point images runs its preflight, which wants a whole valid hub: the lab's login and TLS.
    inv = write_inventory(work / "inventory.yml", {"builder": {
        **image_vars(lab_base_image(), work), "lab_mode": True, "jupyterhub_authenticator": "local",
        "jupyterhub_tls_mode": "selfsigned"}})
    first = run_playbook("images.yml", inv, timeout=1500)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    second = run_playbook("images.yml", inv)
    assert second.returncode == 0, second.stdout[-4000:]
    tags = json.loads((work / "build" / "tags.json").read_text())
    tags["second_run"] = recap(second.stdout)["builder"]
    return tags


def test_spawner_notices_a_starting_server_quickly_and_fails_a_silent_one(rendered, jh_images):
    """The config's SwarmSpawner (tests/jhs_hub/spawner_poll.py, Docker calls stubbed): a task running after
    three waiting states is seen well within upstream's first 1 s pause; rejected is waited on and failed stops
    the spawn; a task no node has room for fails the spawn with swarm's reason after no_room_timeout; after upstream's start, an answering port returns at once and a silent one fails in http_timeout;
    registry credentials (ECR tokens the refresher rewrites) reach the Docker client again when their file changes."""
    config = rendered / "local-selfsigned" / "jupyterhub_config.py"
    proc = docker("run", "--rm", "--network", "none", "--add-host", f"jupyterhub:{HUB_ADDRESS}",
                  "-v", f"{config}:/etc/jupyterhub/jupyterhub_config.py:ro",
                  "-v", f"{rendered / 'secrets'}:/etc/jupyterhub/secrets:ro",
                  "-v", f"{HERE / 'spawner_poll.py'}:/opt/spawner_poll.py:ro",
                  "-v", f"{HERE / 'hubapp.py'}:/opt/hubapp.py:ro", "-e", "DOCKER_CONFIG=/tmp/registry-config",
                  jh_images["hub"], "python3", "/opt/spawner_poll.py", "/etc/jupyterhub/jupyterhub_config.py",
                  check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    assert result["class_mro"][:2] == ["jhs_spawner.SwarmSpawner", "dockerspawner.swarmspawner.SwarmSpawner"]
    assert result["running"]["result"] == "ok" and result["running"]["calls"] == 4
    assert result["running"]["seconds"] < 0.6, result      # upstream: 1 + 1.5 + 2.25 = 4.75 s
    assert result["failed"]["result"].startswith("RuntimeError: Service") and result["failed"]["calls"] == 3
    # no room on any node: named in the failure after no_room_timeout (0.5 s here); room found in time, or pending
    # for another reason that lasts longer than it, is waited on
    assert result["no_room"]["result"].startswith("RuntimeError: No room for this server in the cluster: swarm found "
                                                  "no suitable node (insufficient resources on 2 nodes) for 0.5 s"), result
    assert 0.5 <= result["no_room"]["seconds"] < 2, result
    assert result["room_in_time"]["result"] == "ok" and result["other_pending"]["result"] == "ok", result
    # while the scaler adds workers the no-room wait goes on; once it stops, the spawn fails after the timeout
    assert result["no_room_growing"]["result"].startswith("RuntimeError: No room for this server"), result
    assert 1.2 <= result["no_room_growing"]["seconds"] < 3, result
    assert result["other_pending"]["seconds"] > 0.5, result
    assert result["answering"]["result"][0] == "127.0.0.1" and result["answering"]["seconds"] < 1
    # a moved server's name still listing the old task's address (which still answers): ready only once the
    # name lists the task's own address alone
    assert result["stale_address"]["result"][0] == "jhs-moved" and 1 <= result["stale_address"]["seconds"] < 3, result
    assert result["closed"]["result"].startswith("TimeoutError: Server at http://127.0.0.1:")
    assert 2 <= result["closed"]["seconds"] < 10, result
    # a task swarm re-created after a worker loss, first in the restart delay (desired "ready") and then starting:
    # keep leaves the server running and
    # follows the new task (persisted); stop removes the service and reports the server stopped
    keep, stop = result["poll"]["keep"], result["poll"]["stop"]
    assert keep == {"steady": None, "rescheduled": None, "after": None, "removed": [], "task_id": "new",
                    "saved": "new"}, keep
    assert stop["steady"] is None and stop["rescheduled"].startswith("task replaced by swarm"), stop
    assert stop["after"] == 0 and stop["removed"] == ["jupyter-alice"], stop
    assert "'State': 'failed'" in result["poll"]["failed"], result["poll"]
    # packing: the most allocated worker with room; two at once do not both take the last room; no room anywhere
    # excludes every worker; a server pinned to a lost worker is unpinned, one on a Ready worker is not
    pack = result["pack"]
    assert pack["most_allocated"][-1] == "node.id==w1", pack
    assert pack["most_allocated"][:-1] == ["node.role == worker"], pack
    assert pack["two_at_once"] == ["node.id==w1", "node.id==w2"], pack
    assert pack["no_room"][-2:] == ["node.id!=w1", "node.id!=w2"], pack
    assert pack["unpinned"] == ["node.role == worker"] and pack["kept_on_a_ready_worker"] == [], pack
    # registry credentials: read again only when the file changed, and what create_service would send
    assert result["registry"]["no_file"] == {"reloads": 0, "sent": None}
    assert result["registry"]["written"] == {"reloads": 1, "sent": "token-1"}
    assert result["registry"]["refreshed"] == {"reloads": 2, "sent": "token-2"}


def test_notebook_image_starts_without_the_slow_import(jh_images):
    """rfc3987-syntax (jupyterhub_notebook_pip_remove) is gone from the notebook image, and the server's own
    modules (jupyter_server, JupyterLab, jupyterhub-singleuser, whose jsonschema used it when present) import."""
    probe = ("import importlib.util, jsonschema, jupyter_server.serverapp, jupyterlab.labapp, jupyterhub.singleuser\n"
             "print('rfc3987_syntax', importlib.util.find_spec('rfc3987_syntax'))")
    out = subprocess.run(["docker", "run", "--rm", jh_images["notebook"], "python3", "-c", probe],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "rfc3987_syntax None", out.stdout


PROXY = {"http": "http://proxy.corp.example.test:3128", "no_proxy": [".corp.example.test", "10.20.0.0/16"]}


def combo_vars(auth: str, tls: str, cfg: Path, certs: Path) -> dict:
    v = {"cluster_name": "jhtest", "lab_mode": auth == "local" or tls == "selfsigned", "jupyterhub_config_dir": str(cfg),
         "jupyterhub_authenticator": auth, "jupyterhub_tls_mode": tls, "jupyterhub_domain": "hub.example.test",
         "jupyterhub_admin_users": ["ada"], "jupyterhub_allowed_images": [OTHER_IMAGE],
         "jupyterhub_home_template": "/mnt/efs/home/{username}",
         "jupyterhub_profiles": [
             {"name": "small", "display_name": "Small (1 CPU, 1G)", "image": "default", "cpu_limit": 1, "mem_limit": "1G"},
             {"name": "large", "display_name": "Large (2 CPU, 4G)", "image": OTHER_IMAGE, "cpu_limit": 2,
              "cpu_guarantee": 0.5, "mem_limit": "4G", "mem_guarantee": "1G"}]}
    if auth in ("github", "oidc"):
        v.update(jupyterhub_oauth_client_id=f"{auth}-client-id")
    if auth == "github":
        v.update(jupyterhub_github_allowed_organizations=["jhs-org", "jhs-org:admins"],
                 jupyterhub_notebook_capabilities=["CHOWN", "SETUID", "SETGID"], jupyterhub_pids_limit=0,
                 outbound_proxy=PROXY)   # the shared setting, which jupyterhub_outbound_proxy defaults to
    if auth == "oidc":
        v.update(jupyterhub_oidc_authorize_url="https://id.example.test/authorize",
                 jupyterhub_oidc_token_url="https://id.example.test/token",
                 jupyterhub_oidc_userdata_url="https://id.example.test/userinfo")
    if tls == "provided":
        v.update(jupyterhub_tls_cert_file=str(certs / "hub.crt"), jupyterhub_tls_key_file=str(certs / "hub.key"))
    if tls == "letsencrypt":
        v.update(jupyterhub_letsencrypt_email="ops@example.test")
    return v


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Every combination rendered by one run of the role's preflight + config tasks (one host per combination)."""
    work = tmp_path_factory.mktemp("jh-render")
    certs = work / "certs"
    certs.mkdir()
    (certs / "hub.crt").write_text("placeholder: preflight only checks the file is there\n")
    (certs / "hub.key").write_text("placeholder\n")
    hosts = {}
    for auth, tls in COMBOS:
        cfg = work / f"{auth}-{tls}"
        cfg.mkdir()
        hosts[f"{auth}_{tls}"] = combo_vars(auth, tls, cfg, certs)
    proc = run_playbook("render.yml", write_inventory(work / "inventory.yml", hosts))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # Secret files as the role writes them (0600); the config reads them, never contains them.
    secrets = work / "secrets"
    secrets.mkdir(mode=0o700)
    for name, value in {"cookie-secret": "ab" * 32, "proxy-token": "proxy-token-for-tests",
                        "oauth-client-secret": "oauth-secret-for-tests", "metrics-token": "metrics-token-for-tests"}.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    return work


def load_in_hub(hub_image: str, config: Path, secrets: Path, efs: Path, profile: str = "") -> tuple[dict, str]:
    proc = docker("run", "--rm", "--network", "none", "--add-host", f"jupyterhub:{HUB_ADDRESS}",
                  "-v", f"{config}:/etc/jupyterhub/jupyterhub_config.py:ro",
                  "-v", f"{secrets}:/etc/jupyterhub/secrets:ro",
                  "-v", f"{HERE / 'load_config.py'}:/opt/load_config.py:ro",
                  "-v", f"{HERE / 'hubapp.py'}:/opt/hubapp.py:ro",
                  "-v", f"{efs}:/mnt/efs",
                  hub_image, "python3", "/opt/load_config.py", "/etc/jupyterhub/jupyterhub_config.py", profile,
                  check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), proc.stdout + proc.stderr


@pytest.mark.parametrize("auth,tls", COMBOS, ids=[f"{a}-{t}" for a, t in COMBOS])
def test_rendered_config_loads_in_jupyterhub_without_unrecognized_options(auth, tls, rendered, jh_images, tmp_path):
    config = rendered / f"{auth}-{tls}" / "jupyterhub_config.py"
    text = config.read_text()
    assert text.startswith("#\n# Ansible managed")
    assert "oauth-secret-for-tests" not in text and "proxy-token-for-tests" not in text
    efs = tmp_path / "efs"
    efs.mkdir()
    result, log = load_in_hub(jh_images["hub"], config, rendered / "secrets", efs, profile="large")

    assert "not recognized" not in log, log
    assert "Config option" not in log, log
    expected_auth = {"github": "oauthenticator.github.GitHubOAuthenticator",
                     "oidc": "oauthenticator.generic.GenericOAuthenticator",
                     "local": "jupyterhub.auth.DummyAuthenticator"}[auth]
    assert result["authenticator_class"] == expected_auth
    if auth != "local":
        assert result["client_id"] == f"{auth}-client-id"
        assert result["oauth_callback_url"] == "https://hub.example.test/hub/oauth_callback"
        assert result["allow_all"] is False
    if auth == "github":
        assert result["allowed_organizations"] == ["jhs-org", "jhs-org:admins"]
    if auth == "oidc":
        assert result["authorize_url"] == "https://id.example.test/authorize"
    if auth == "local":
        assert result["allow_all"] is True
    assert result["admin_users"] == ["ada"]
    # the config's SwarmSpawner: dockerspawner's, with quicker checks of a starting server
    assert result["spawner_class"].endswith(".SwarmSpawner")
    assert "dockerspawner.swarmspawner.SwarmSpawner" in result["spawner_mro"][1:]
    assert result["network_name"] == "jhs"
    assert result["extra_placement_spec"] == {"constraints": ["node.role == worker"]}
    assert result["extra_endpoint_spec"] == {"mode": "dnsrr"}
    if auth != "github":   # the defaults: every capability dropped, 4096 processes (github's combination changes both)
        assert result["extra_container_spec"] == {"cap_drop": ["ALL"]} and result["pids_limit"] == 4096
    assert result["hub_connect_ip"] == "jupyterhub"
    assert result["bind_url"] == "http://:443"     # TLS ends at the proxy: the hub holds no certificate
    # the API listens on the address the container's name resolves to (its overlay address), not on every interface
    assert result["hub_ip"] == HUB_ADDRESS
    assert result["headers"] == {"X-Content-Type-Options": "nosniff", "Strict-Transport-Security": "max-age=31536000"}
    # TLS ends at the proxy, in a container of its own: the hub neither starts it nor holds the certificate
    assert result["ssl_cert"] == ""
    assert result["proxy_should_start"] is False and result["proxy_api_url"] == "http://jupyterhub-proxy-api:8001"
    assert result["db_url"] == "sqlite:////srv/jupyterhub/state/jupyterhub.sqlite"
    assert result["cleanup_servers"] is False
    assert result["concurrent_spawn_limit"] == 40
    # The "large" profile was picked: its image (checked against allowed_images) and its sizes.
    assert result["image"] == OTHER_IMAGE
    assert OTHER_IMAGE in result["allowed_images"] and any(i.startswith(NOTEBOOK_IMAGE_NAME) or i.startswith("jhs/notebook")
                                                           for i in result["allowed_images"])
    assert result["mem_limit"] == 4 * 1024**3 and result["mem_guarantee"] == 1024**3
    assert result["cpu_limit"] == 2.0 and result["cpu_guarantee"] == 0.5
    assert 'value="small"' in result["options_form"] and 'value="large"' in result["options_form"]
    # The home was created by the pre-spawn hook, owned by the notebook user, before any service exists.
    assert result["home"] == "/mnt/efs/home/alice"
    assert result["home_owner"] == [1000, 1000]
    # The outbound proxy (github's combination sets outbound_proxy): users' servers and the image builds go through
    # it, in both spellings; the hub's names, the metadata service and localhost go direct.
    build_args = json.loads((rendered / f"{auth}-{tls}" / "build-args.json").read_text())
    proxied = {k: v for k, v in result["environment"].items() if k.lower().endswith("_proxy")}
    if auth == "github":
        direct = "localhost,127.0.0.1,169.254.169.254,.corp.example.test,10.20.0.0/16"
        for env, no_proxy in ((proxied, direct + ",jupyterhub,jupyterhub-proxy"), (build_args, direct)):
            expected = {"HTTP_PROXY": PROXY["http"], "HTTPS_PROXY": PROXY["http"], "NO_PROXY": no_proxy}
            assert env == {**expected, **{k.lower(): v for k, v in expected.items()}}
    else:
        assert proxied == {} and build_args == {}
    assert (efs / "home" / "alice").is_dir()
    assert result["volumes"] == {"/mnt/efs/home/{username}": "/home/jovyan"}
    # SQLite off NFS in the user server.
    assert result["environment"]["IPYTHONDIR"].startswith("/tmp/")
    assert "--NotebookNotary.db_file=:memory:" in result["args"]
    # The idle culler runs as a hub-managed service with a role scoped to what it needs.
    assert "--timeout=3600" in result["services"]["jupyterhub-idle-culler"]
    assert result["environment"]["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"
    assert result["roles"]["jupyterhub-idle-culler"] == {
        "scopes": ["delete:servers", "list:users", "read:servers", "read:users:activity"],
        "services": ["jupyterhub-idle-culler"]}
    assert "hub-db-backup" in result["services"]
    # The hub-metrics exporter's service: no process, a token that may read /hub/metrics and nothing else.
    assert result["services"]["jhs-hub-metrics"] is None
    assert result["roles"]["jhs-hub-metrics"] == {"scopes": ["read:metrics"], "services": ["jhs-hub-metrics"]}


def test_profile_default_image_and_defaults(rendered, jh_images, tmp_path):
    """Without a profile choice the spawner runs the default notebook image with the default sizes."""
    (tmp_path / "efs").mkdir()
    result, log = load_in_hub(jh_images["hub"], rendered / "github-selfsigned" / "jupyterhub_config.py",
                              rendered / "secrets", tmp_path / "efs")
    assert "not recognized" not in log
    assert result["image"].startswith("jhs/notebook:")
    # this combination gives capabilities back and has no pids limit
    assert result["extra_container_spec"] == {"cap_drop": ["ALL"], "cap_add": ["CHOWN", "SETUID", "SETGID"]}
    assert result["pids_limit"] == 0
    assert result["mem_limit"] == 2 * 1024**3 and result["cpu_limit"] == 1.0


BAD_CASES = {
    "oauth_without_client_id": ({"jupyterhub_authenticator": "github", "jupyterhub_allow_all": True},
                                "needs jupyterhub_oauth_client_id"),
    "certificate_files_missing": ({"jupyterhub_tls_mode": "provided", "jupyterhub_tls_cert_file": "/nonexistent/hub.crt",
                                   "jupyterhub_tls_key_file": "/nonexistent/hub.key"},
                                  "/nonexistent/hub.crt (jupyterhub_tls_cert_file / jupyterhub_tls_key_file) is missing"),
    "image_build_timeout_too_short": ({"jupyterhub_image_build_timeout": 10},
                                      "jupyterhub_image_build_timeout (10) must be at least 60 seconds"),
    "malformed_memory_limit": ({"jupyterhub_mem_limit": "2 GB"}, "jupyterhub_mem_limit (2 GB) and jupyterhub_mem_guarantee"),
    "profile_without_image": ({"jupyterhub_profiles": [{"name": "big", "mem_limit": "4G"}]},
                              "jupyterhub_profiles entry big: needs a name"),
    "image_outside_allowed_images": ({"jupyterhub_profiles": [{"name": "evil", "image": "evil/miner:1"}]},
                                     "image given: evil/miner:1"),
    "local_auth_outside_lab": ({"lab_mode": False, "jupyterhub_authenticator": "local"}, "refused outside the lab"),
    "selfsigned_outside_lab": ({"lab_mode": False, "jupyterhub_authenticator": "local", "jupyterhub_allow_insecure_auth": True,
                                "jupyterhub_tls_mode": "selfsigned"},
                               "jupyterhub_tls_mode=selfsigned is refused outside the lab (lab_mode)"),
    "proxy_named_like_the_hub": ({"jupyterhub_proxy_container_name": "jupyterhub"},
                                 "jupyterhub_proxy_container_name (jupyterhub) a lowercase DNS label of at most 59"),
    "proxy_api_on_the_proxys_own_port": ({"jupyterhub_proxy_api_port": 8443},
                                         "and the proxy's own ports in its container (8443, 8080)"),
    "proxy_as_root": ({"jupyterhub_proxy_uid": 0}, "jupyterhub_proxy_uid (0) an id 1-65534 (not root)"),
    "pull_role_not_a_role_arn": ({"jupyterhub_image_registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                                  "jupyterhub_image_registry_auth": "ecr", "aws_region": "eu-west-1",
                                  "jupyterhub_registry_pull_role_arn": "labhub-registry-pull"},
                                 "jupyterhub_registry_pull_role_arn empty or an IAM role's ARN, "
                                 "arn:aws:iam::<account>:role/<name> (got 'labhub-registry-pull')"),
    "hub_images_without_registry": ({"jupyterhub_registry_hub_images": True},
                                    "jupyterhub_registry_hub_images=True needs jupyterhub_image_registry (got '')"),
    "letsencrypt_without_email": ({"jupyterhub_tls_mode": "letsencrypt", "jupyterhub_domain": "hub.example.test"},
                                  "letsencrypt (needs jupyterhub_domain and jupyterhub_letsencrypt_email)"),
    "oidc_without_endpoints": ({"jupyterhub_authenticator": "oidc", "jupyterhub_oauth_client_id": "x",
                                "jupyterhub_domain": "hub.example.test", "jupyterhub_allow_all": True},
                               "jupyterhub_authenticator=oidc needs jupyterhub_oidc_authorize_url"),
    "oauth_nobody_allowed": ({"jupyterhub_authenticator": "github", "jupyterhub_oauth_client_id": "x",
                              "jupyterhub_domain": "hub.example.test"}, "lets nobody in"),
    "home_outside_shared_dir": ({"jupyterhub_home_template": "/home/{username}"}, "must contain {username} and lie under"),
    "vars_secrets_bad_cookie": ({"jupyterhub_secrets_source": "vars", "jupyterhub_cookie_secret": "short",
                                 "jupyterhub_proxy_token": "x" * 20}, "jupyterhub_cookie_secret must be 64 hex digits"),
    "hub_database_on_nfs": ({"jupyterhub_state_dir": "/mnt/efs/hub"}, "SQLite breaks on NFS"),
    "outbound_proxy_no_proxy_a_string": ({"outbound_proxy": {"http": "http://proxy:3128", "no_proxy": "a,b"}},
                                         "jupyterhub_outbound_proxy: outbound_proxy.no_proxy must be a list"),
    "hub_metrics_every_second": ({"jupyterhub_hub_metrics_enabled": True, "jupyterhub_hub_metrics_interval": 1},
                                 "jupyterhub_hub_metrics_interval=1: at least 10 seconds"),
    "state_device_neither_id_nor_path": ({"jupyterhub_state_device": "xvdf"},
                                         "jupyterhub_state_device (xvdf) must be empty, an EBS volume id (vol-...) or a /dev/ path"),
    "backup_bucket_not_a_bucket_name": ({"jupyterhub_backup_s3_bucket": "s3://My_Bucket"},
                                        "jupyterhub_backup_s3_bucket='s3://My_Bucket' must be empty (no copy) or an S3 bucket name"),
    "backup_prefix_without_slash": ({"jupyterhub_backup_s3_prefix": "hub-backups"},
                                    "jupyterhub_backup_s3_prefix='hub-backups' one or more path segments each ending in '/'"),
    "no_room_timeout_beyond_start_timeout": ({"jupyterhub_spawn_no_room_timeout": 300},
                                             "jupyterhub_spawn_no_room_timeout=300 a whole number of seconds"),
    "memory_limit_far_over_guarantee": ({"jupyterhub_mem_limit": "4G"},
                                        "the default server size: the memory limit 4G is more than "
                                        "jupyterhub_mem_limit_ratio_max (8) times the guarantee (256M)"),
    "memory_limit_without_guarantee": ({"jupyterhub_mem_guarantee": ""},
                                       "the memory limit 2G is more than jupyterhub_mem_limit_ratio_max (8) times "
                                       "the guarantee (none)"),
    "profile_memory_ratio": ({"jupyterhub_profiles": [{"name": "big", "image": "default", "mem_limit": "8G",
                                                       "mem_guarantee": "512M"}]},
                             "jupyterhub_profiles entry big: the memory limit 8G is more than"),
    "negative_pids_limit": ({"jupyterhub_pids_limit": -1},
                            "jupyterhub_pids_limit (-1) and jupyterhub_hsts_max_age (31536000) must be whole numbers >= 0"),
    "capability_not_a_name": ({"jupyterhub_notebook_capabilities": ["chown; reboot"]},
                              'jupyterhub_notebook_capabilities Linux capability names such as CHOWN or CAP_SETUID '
                              '(got ["chown; reboot"])'),
    "same_ports": ({"jupyterhub_https_port": 8443, "jupyterhub_http_port": 8443}, "must be\ntwo different ports"),
    "activity_slower_than_culler": ({"jupyterhub_idle_timeout": 300, "jupyterhub_activity_interval": 300},
                                    "at most half of\njupyterhub_idle_timeout (300)"),
    "acme_server_ca_not_pem": ({"jupyterhub_letsencrypt_server_ca": "/etc/ssl/private-acme-ca.pem"},
                               "jupyterhub_letsencrypt_server_ca must be empty"),
    # a single setting's fixed list of values: the role's argument_specs (choices), which preflight no longer repeats
    "authenticator_unknown": ({"jupyterhub_authenticator": "ldap"},
                              "value of jupyterhub_authenticator must be one of: github, oidc, local, got: ldap"),
    "on_worker_loss_unknown": ({"jupyterhub_on_worker_loss": "restart"},
                               "value of jupyterhub_on_worker_loss must be one of: keep, stop, got: restart"),
    # the scaler's settings, judged by its own code (every host of this run has the scaler on, with a schedule)
    "scaler_schedule_syntax": ({"jupyterhub_scaler_schedule": [{"days": "tue", "start": "9h45", "end": "12:00",
                                                                 "min_nodes": 2}]},
                               "jupyterhub_scaler_schedule[0].start: '9h45' is not a time of day as HH:MM"),
    "scaler_unknown_time_zone": ({"jupyterhub_scaler_timezone": "Europe/Londres"},
                                 "jupyterhub_scaler_timezone: 'Europe/Londres' is not a known IANA time zone"),
    "scaler_negative_headroom": ({"jupyterhub_scaler_headroom": -1}, "jupyterhub_scaler_headroom: -1 is below 0"),
    "scaler_min_above_max": ({"aws_cluster_worker_min_size": 5, "aws_cluster_worker_max_size": 2},
                             "jupyterhub_scaler_min_size (5) is above jupyterhub_scaler_max_size (2)"),
    "scaler_short_cooldown": ({"jupyterhub_scaler_cooldown": 30}, "jupyterhub_scaler_cooldown: 30 is below 60"),
    "scaler_guarantee_too_large": ({"aws_cluster_worker_instance_types": ["t3.medium"],
                                    "jupyterhub_profiles": [{"name": "huge", "image": "default", "mem_guarantee": "8G"}]},
                                   "jupyterhub_profiles huge: a guarantee of 0 CPU and 8.0G is larger than any worker "
                                   "instance type can hold"),
}


@pytest.fixture(scope="module")
def preflight_run(tmp_path_factory):
    """All bad cases (and one good one) as hosts of one run; each must stop in preflight with its own message."""
    work = tmp_path_factory.mktemp("jh-preflight")
    base = {"cluster_name": "jhtest", "lab_mode": True, "jupyterhub_authenticator": "local", "jupyterhub_tls_mode": "selfsigned",
            "jupyterhub_scaler_enabled": True, "jupyterhub_scaler_timezone": "Europe/London",
            "jupyterhub_scaler_schedule": [{"name": "class", "days": "tue", "start": "09:45", "end": "12:00",
                                            "min_nodes": 2}]}
    hosts = {name: {**base, "jupyterhub_config_dir": str(work / name), **overrides}
             for name, (overrides, _) in [*BAD_CASES.items(), ("good", ({}, ""))]}
    for name in hosts:
        (work / name).mkdir()
    proc = run_playbook("render.yml", write_inventory(work / "inventory.yml", hosts), json_output=True)
    return proc, failures(proc.stdout), work


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_preflight_refuses_bad_settings(case, preflight_run):
    proc, failed, work = preflight_run
    assert proc.returncode != 0
    expected = " ".join(BAD_CASES[case][1].split())
    assert case in failed, f"{case} did not fail; failures: {failed}"
    assert expected in " ".join(failed[case].split()), failed[case]


def test_preflight_accepts_good_settings_and_changes_nothing_before(preflight_run):
    proc, failed, work = preflight_run
    assert "good" not in failed
    # Only the good host got as far as rendering: preflight stopped the others before any change.
    assert (work / "good" / "jupyterhub_config.py").is_file()
    assert not any((work / case / "jupyterhub_config.py").exists() for case in BAD_CASES)


def test_images_are_cached_by_recipe(jh_images):
    """A second run of the image tasks builds nothing: the tags are hashes of the recipes."""
    assert jh_images["second_run"]["changed"] == 0
    assert jh_images["second_run"]["failed"] == 0


def test_notebook_image_runs_singleuser_with_sqlite_off_nfs(jh_images):
    image = jh_images["notebook"]
    proc = docker("run", "--rm", "--network", "none", image, "sh", "-c",
                  "id -u; jupyterhub-singleuser --version; jupyter lab --version; "
                  "jupyter server --show-config 2>/dev/null | grep -A1 NotebookNotary; echo IPYTHONDIR=$IPYTHONDIR",
                  timeout=120)
    out = proc.stdout
    assert out.splitlines()[0] == "1000"
    assert "5.5.4" in out and "4.6.6" in out
    assert ":memory:" in out
    assert "IPYTHONDIR=/tmp/jupyter-local/ipython" in out


def test_rendered_config_creates_homes_with_the_owners_uid_gid_and_mode(preflight_run):
    """The hub makes a home as efs_mount does: owner and mode from plugins/module_utils/jhs_names.py (the spawner's
    create_home, tests/test_jhs_spawner.py, makes it with these values)."""
    _, _, work = preflight_run
    config = (work / "good" / "jupyterhub_config.py").read_text()
    assert 'c.SwarmSpawner.home_mode = "0700"\n' in config
    assert "c.SwarmSpawner.home_uid = 1000\n" in config and "c.SwarmSpawner.home_gid = 1000\n" in config
