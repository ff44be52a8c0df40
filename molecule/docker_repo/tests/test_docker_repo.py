"""molecule verify (pytest-testinfra): the engine came from Docker's apt repository (the scenario's stand-in),
trusted by the key docker_engine fetched, and answers."""
from __future__ import annotations

import os
import re
import urllib.request

testinfra_hosts = ["ansible://all"]

REPO = (f"http://{os.environ.get('MOLECULE_REPO_GATEWAY', '10.232.0.1')}:"
        f"{os.environ.get('MOLECULE_REPO_PORT', '5124')}/debian")


def test_the_source_names_the_repository_the_release_the_component_and_the_fetched_key(host):
    text = host.file("/etc/apt/sources.list.d/docker.sources").content_string
    for line in (f"URIs: {REPO}", "Suites: bookworm", "Components: stable", "Signed-By: /etc/apt/keyrings/docker.asc"):
        assert line in text.splitlines(), text


def test_the_installed_key_is_the_one_the_repository_serves(host):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # the scenario's network, never a proxy
    served = opener.open(f"{REPO}/gpg", timeout=10).read().decode()
    assert host.file("/etc/apt/keyrings/docker.asc").content_string == served


def test_apt_reads_the_repositorys_signed_index_with_no_warning(host):
    # The command, not a module: its output is what is checked (apt's warnings go to stderr).
    update = host.run("apt-get update")
    assert update.rc == 0, update.stderr
    assert re.search(rf"(Get|Hit):[0-9]+ {re.escape(REPO)} bookworm InRelease", update.stdout), update.stdout
    assert not re.search(r"W:|E:", update.stderr), update.stderr


def test_the_docker_ce_installed_is_the_repositorys(host):
    policy = host.check_output("apt-cache policy docker-ce")
    assert re.search(r"Installed:\s+5:99\.0\.0-1~jhs\.standin", policy), policy
    assert f"500 {REPO} bookworm/stable" in policy, policy


def test_the_engine_runs_and_answers(host):
    assert host.service("docker").is_running and host.service("docker").is_enabled
    assert host.check_output("docker version --format '{{.Server.Version}}'")
