"""jupyterhub role, whole: run it on this machine against the host's Docker engine and the local AWS endpoint.

The hub container runs on a bridge network the test creates (the lab's overlay network needs the lab
swarm), with its ports on loopback only. Checks: secrets come from SSM SecureString parameters, land in
0600 files and in no log; the operator's certificate is served (outside the lab selfsigned is refused); a second run
changes nothing; the GitHub login redirects to GitHub's authorize
URL with the configured client id and callback; HTTP redirects to HTTPS; the database backup works.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import free_port, jhs_names
from jhs_hub.helpers import docker, image_vars, lab_base_image, recap, run_playbook, write_inventory
from test_jupyterhub_config import jh_images  # noqa: F401  (session fixture: images built once)

CLIENT_ID = "Iv1.jhs-test-client"
DOMAIN = "hub.example.test"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, headers: dict | None = None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.headers


def provided_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for DOMAIN, as an operator would provide them (jupyterhub_tls_mode=provided: outside
    the lab the role refuses selfsigned)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir()
    cert_file, key_file = directory / "hub.crt", directory / "hub.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture(scope="module")
def hub(tmp_path_factory, jh_images, moto_endpoint):  # noqa: F811
    import boto3

    work = tmp_path_factory.mktemp("jh-hub")
    suffix = uuid.uuid4().hex[:8]
    cluster = f"jhtest{suffix}"
    values = {"cookie-secret": secrets.token_hex(32), "proxy-token": secrets.token_hex(24),
              "oauth-client-secret": "oauth-" + secrets.token_hex(16)}   # by the hub's file name
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="eu-west-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    for name, value in values.items():
        ssm.put_parameter(Name=jhs_names(cluster)["ssm"][name.replace("-", "_")], Value=value, Type="SecureString")
    network = f"jhs-test-{suffix}"
    container, proxy = f"jhs-test-hub-{suffix}", f"jhs-test-proxy-{suffix}"
    docker("network", "create", "--label", "jhs-test=1", network)
    efs = work / "efs"
    efs.mkdir()
    https_port, http_port = free_port(), free_port()
    cert_file, key_file = provided_certificate(work / "provided")
    host = {**image_vars(lab_base_image(), work), "cluster_name": cluster, "lab_mode": False,
            "aws_region": "eu-west-1", "aws_endpoint_url": moto_endpoint,
            "jupyterhub_install_host_packages": False, "jupyterhub_build_notebook_image": False,
            "jupyterhub_notebook_image": jh_images["notebook"],
            "jupyterhub_container_name": container, "jupyterhub_proxy_container_name": proxy,
            "jupyterhub_network": network,
            "jupyterhub_bind_address": "127.0.0.1", "jupyterhub_https_port": https_port,
            "jupyterhub_http_port": http_port, "jupyterhub_domain": DOMAIN,
            "jupyterhub_authenticator": "github", "jupyterhub_oauth_client_id": CLIENT_ID,
            "jupyterhub_github_allowed_organizations": ["jhs-org"], "jupyterhub_admin_users": ["ada"],
            "jupyterhub_tls_mode": "provided", "jupyterhub_tls_cert_file": str(cert_file),
            "jupyterhub_tls_key_file": str(key_file), "jupyterhub_shared_dir": str(efs),
            "jupyterhub_home_template": str(efs / "home" / "{username}")}
    inv = write_inventory(work / "inventory.yml", {"manager": host})
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    try:
        first = run_playbook("site.yml", inv, env=env)
        assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-2000:]
        # the no-change run and the check run side by side: neither changes anything when the role is right, so
        # each sees what it would see after the other (and a run that does change something fails its test)
        with ThreadPoolExecutor(max_workers=2) as pool:
            again = pool.submit(run_playbook, "site.yml", inv, env=env)
            checked = pool.submit(run_playbook, "site.yml", inv, env=env, check=True)
            second, check = again.result(), checked.result()
        assert second.returncode == 0, second.stdout[-6000:]
        yield {"work": work, "https": https_port, "http": http_port, "container": container, "proxy": proxy,
               "values": values, "runs": [first, second, check], "host": host}
    finally:
        docker("rm", "-f", container, proxy, check=False)
        docker("network", "rm", network, f"{proxy}-api", check=False)   # the test's, and the hub and proxy's own


def test_second_run_changes_nothing(hub):
    counters = recap(hub["runs"][1].stdout)["manager"]
    assert counters["changed"] == 0, hub["runs"][1].stdout[-4000:]
    assert counters["failed"] == 0


def test_publishes_the_images_it_spawns_for_the_worker_image(hub, moto_endpoint):
    import boto3
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="eu-west-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    param = ssm.get_parameter(Name=jhs_names(hub["host"]["cluster_name"])["ssm"]["notebook_images"])["Parameter"]
    assert param["Type"] == "String"
    assert json.loads(param["Value"]) == {"images": [hub["host"]["jupyterhub_notebook_image"]], "registry": "",
                                          "registry_auth": "none"}


def test_check_mode_on_a_converged_manager_reports_no_change(hub):
    check = hub["runs"][2]
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)["manager"]["changed"] == 0, check.stdout[-4000:]


def test_github_login_redirects_to_github_with_client_id_and_callback(hub):
    status, headers = fetch(f"https://127.0.0.1:{hub['https']}/hub/oauth_login")
    assert status == 302
    location = urllib.parse.urlsplit(headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "github.com", "/login/oauth/authorize")
    query = urllib.parse.parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"https://{DOMAIN}:{hub['https']}/hub/oauth_callback"]
    assert query["response_type"] == ["code"]
    assert "read:org" in query["scope"][0]


def test_http_redirects_to_https(hub):
    status, headers = fetch(f"http://127.0.0.1:{hub['http']}/hub/login")
    assert status in (301, 302, 307, 308)
    target = urllib.parse.urlsplit(headers["Location"])
    assert target.scheme == "https" and target.port == hub["https"] and target.path == "/hub/login"


def test_hub_serves_the_provided_certificate(hub):
    pem = ssl.get_server_certificate(("127.0.0.1", hub["https"]))
    assert pem == Path(hub["host"]["jupyterhub_tls_cert_file"]).read_text()
    assert pem == (Path(hub["host"]["jupyterhub_tls_dir"]) / "fullchain.pem").read_text()


def test_secrets_come_from_ssm_into_0600_files_and_no_log(hub):
    """0600 root, but the proxy token: 0640 to the proxy's group (it runs as jupyterhub_proxy_uid, not root)."""
    secrets_dir = Path(hub["host"]["jupyterhub_config_dir"]) / "secrets"
    for name, value in hub["values"].items():
        f = secrets_dir / name
        assert f.read_text().strip() == value
        st = f.stat()
        assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == ((0o640, 0, 65532) if name == "proxy-token" else (0o600, 0, 0))
    assert (secrets_dir.stat().st_mode & 0o777) == 0o700
    # the hub-metrics service's token: derived from the cookie secret, 0600 root, and /hub/metrics answers it alone
    metrics_token = secrets_dir / "metrics-token"
    assert metrics_token.read_text().strip() == hashlib.sha256(
        (hub["values"]["cookie-secret"] + ":jhs-hub-metrics").encode()).hexdigest()
    assert (metrics_token.stat().st_mode & 0o777, metrics_token.stat().st_uid) == (0o600, 0)
    url = f"https://127.0.0.1:{hub['https']}/hub/"
    auth = {"Authorization": f"token {metrics_token.read_text().strip()}"}
    assert fetch(url + "metrics", auth)[0] == 200
    assert fetch(url + "metrics")[0] == 403
    assert fetch(url + "api/users", auth)[0] == 403
    logs = docker("logs", hub["container"]).stdout + docker("logs", hub["container"]).stderr
    config = (Path(hub["host"]["jupyterhub_config_dir"]) / "jupyterhub_config.py").read_text()
    inspect = docker("inspect", hub["container"]).stdout
    for value in hub["values"].values():
        for run in hub["runs"]:
            assert value not in run.stdout and value not in run.stderr
        assert value not in logs
        assert value not in config
        assert value not in inspect


def test_the_proxy_runs_as_its_own_user_with_no_capability_and_reads_only_its_files(hub):
    """configurable-http-proxy runs as jupyterhub_proxy_uid (65532), with every capability dropped and no privilege
    to gain, on unprivileged ports in its container (the published ports map to them: the HTTPS tests above pass
    through it). It reads the TLS key and the proxy token through its group; the other secrets stay root's."""
    import json

    info = json.loads(docker("inspect", hub["proxy"]).stdout)[0]
    assert info["Config"]["User"] == "65532:65532"
    assert info["HostConfig"]["CapDrop"] == ["ALL"] and not info["HostConfig"]["CapAdd"]
    assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    status = docker("exec", hub["proxy"], "cat", "/proc/1/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == ["65532"] * 4 and fields["Gid"].split() == ["65532"] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0 and fields["NoNewPrivs"].strip() == "1"
    assert "configurable-http-proxy" in docker("exec", hub["proxy"], "cat", "/proc/1/cmdline").stdout
    tls = Path(hub["host"]["jupyterhub_tls_dir"])
    assert (tls.stat().st_mode & 0o777, tls.stat().st_gid) == (0o750, 65532)
    key = (tls / "privkey.pem").stat()
    assert (key.st_mode & 0o777, key.st_uid, key.st_gid) == (0o640, 0, 65532)
    # the other secrets are not the proxy's: not readable by it, even if they were mounted
    assert (Path(hub["host"]["jupyterhub_config_dir"]) / "secrets" / "cookie-secret").stat().st_gid == 0


def test_hub_state_is_local_and_the_backup_service_writes_dated_copies(hub):
    state = Path(hub["host"]["jupyterhub_state_dir"])
    assert (state / "jupyterhub.sqlite").is_file()
    docker("exec", hub["container"], "python3", "/usr/local/bin/jupyterhub-db-backup", "--db",
           "/srv/jupyterhub/state/jupyterhub.sqlite", "--dest", "/srv/jupyterhub/backups", "--keep", "2", "--once")
    backups = sorted(Path(hub["host"]["jupyterhub_backup_dir"]).glob("jupyterhub-*.sqlite"))
    assert backups, "no backup written"
    assert backups[-1].stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(backups[-1]) as db:
        assert db.execute("select count(*) from users").fetchone()[0] >= 1  # the admin user "ada"
    ps = docker("exec", hub["container"], "ps", "-eo", "args").stdout
    assert "jupyterhub-db-backup" in ps and "jupyterhub_idle_culler" in ps


def test_hub_container_restarts_always_and_mounts(hub):
    import json

    info = json.loads(docker("inspect", hub["container"]).stdout)[0]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "always"
    targets = {m["Destination"] for m in info["Mounts"]}
    assert {"/var/run/docker.sock", "/srv/jupyterhub/state", hub["host"]["jupyterhub_shared_dir"]} <= targets
