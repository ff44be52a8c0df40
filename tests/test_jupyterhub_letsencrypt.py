"""jupyterhub role, Let's Encrypt mode: the role's certbot tasks against a real ACME server (pebble).

A stand-in manager container (the lab's ACME image: its Debian base + Debian's certbot and pebble; no network but
its loopback) runs pebble; the role's tasks run in it over the docker connection. Pebble really validates
the HTTP-01 challenge against certbot's standalone server on the hub's HTTP port.
"""
from __future__ import annotations

import hashlib
import uuid

import pytest

from jhs_hub.helpers import HERE, docker, lab_image, recap, run_playbook, write_inventory

DOMAIN = "hub.example.test"


@pytest.fixture(scope="module")
def acme_manager(tmp_path_factory):
    base = lab_image("acme")
    recipe = b"".join((HERE / f).read_bytes() for f in ("acme.Dockerfile", "start-pebble", "docker-shim")) + base.encode()
    image = f"jhs-test/acme:{hashlib.sha256(recipe).hexdigest()[:12]}"
    if docker("image", "inspect", image, check=False).returncode != 0:
        docker("build", "-q", "-f", str(HERE / "acme.Dockerfile"), "--build-arg", f"BASE={base}", "-t", image,
               str(HERE), env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"}, timeout=900)
    name = f"jhs-test-acme-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "none", "--add-host", f"{DOMAIN}:127.0.0.1",
           image, "sleep", "3600")
    try:
        docker("exec", name, "start-pebble", timeout=60)
        # pebble's HTTPS API has a throwaway CA: given to the role as a private ACME CA, which certbot then trusts
        api_ca = docker("exec", name, "cat", "/pebble/ca.pem").stdout
        work = tmp_path_factory.mktemp("jh-acme")
        inv = write_inventory(work / "inventory.yml", {name: {
            "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
            "cluster_name": "jhtest", "lab_mode": True, "jupyterhub_authenticator": "local",
            "jupyterhub_tls_mode": "letsencrypt", "jupyterhub_domain": DOMAIN,
            "jupyterhub_letsencrypt_email": "ops@example.test",
            "jupyterhub_letsencrypt_directory_url": "https://127.0.0.1:14000/dir",
            "jupyterhub_letsencrypt_server_ca": api_ca,
            "jupyterhub_http_port": 5002}})
        first = run_playbook("letsencrypt.yml", inv)
        assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-2000:]
        second = run_playbook("letsencrypt.yml", inv)
        assert second.returncode == 0, second.stdout[-5000:]
        yield {"name": name, "runs": [first, second]}
    finally:
        docker("rm", "-f", name, check=False)


def sh(name: str, cmd: str) -> str:
    return docker("exec", name, "sh", "-c", cmd, timeout=120).stdout


def test_certificate_issued_by_the_acme_server_for_the_domain(acme_manager):
    name = acme_manager["name"]
    text = sh(name, "openssl x509 -in /etc/jupyterhub/tls/fullchain.pem -noout -issuer -ext subjectAltName")
    assert "Pebble" in text
    assert f"DNS:{DOMAIN}" in text
    # root's, readable by the proxy's group only (it runs as jupyterhub_proxy_uid, 65532, not root)
    assert sh(name, "stat -c '%a %u %g' /etc/jupyterhub/tls/privkey.pem").split() == ["640", "0", "65532"]


def test_second_run_changes_nothing(acme_manager):
    assert recap(acme_manager["runs"][1].stdout)[acme_manager["name"]]["changed"] == 0


def test_renewal_settings_keep_the_hooks_that_free_the_http_port(acme_manager):
    conf = sh(acme_manager["name"], f"cat /etc/letsencrypt/renewal/{DOMAIN}.conf")
    # the proxy holds the HTTP port; the hub is not restarted (its reconciler gives the fresh proxy its routes)
    assert "pre_hook = docker stop jupyterhub-proxy || true" in conf
    assert "post_hook = docker start jupyterhub-proxy || true\n" in conf
    assert "http01_port = 5002" in conf
    assert "server = https://127.0.0.1:14000/dir" in conf


def test_renewal_hands_the_new_certificate_to_the_hub(acme_manager):
    name = acme_manager["name"]
    before = sh(name, "cat /etc/jupyterhub/tls/fullchain.pem")
    # What certbot's timer runs when a certificate is due (forced here), with the environment its service's drop-in
    # gives it: the ACME server's private CA. The deploy hook copies the certificate over.
    dropin = sh(name, "cat /etc/systemd/system/certbot.service.d/jupyterhub-acme-ca.conf")
    env = [line.split("=", 1)[1] for line in dropin.splitlines() if line.startswith("Environment=")]
    assert env == ["REQUESTS_CA_BUNDLE=/etc/letsencrypt/acme-server-ca.pem"], dropin
    assert sh(name, "cat /etc/letsencrypt/acme-server-ca.pem") == sh(name, "cat /pebble/ca.pem")
    sh(name, f"env {env[0]} certbot renew --force-renewal --non-interactive --no-random-sleep-on-renew")
    after = sh(name, "cat /etc/jupyterhub/tls/fullchain.pem")
    assert after != before
    # The proxy was stopped for the challenge, handed the certificate and started again; the hub was left alone.
    calls = sh(name, "cat /var/log/docker-calls").splitlines()
    assert calls[-2:] == ["docker stop jupyterhub-proxy", "docker start jupyterhub-proxy"], calls
    assert after == sh(name, f"cat /etc/letsencrypt/live/{DOMAIN}/fullchain.pem")
    # the deploy hook installs the renewed files as the role does
    for f in ("fullchain.pem", "privkey.pem"):
        assert sh(name, f"stat -c '%a %u %g' /etc/jupyterhub/tls/{f}").split() == ["640", "0", "65532"]
