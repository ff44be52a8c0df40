"""roles/docker_engine/files/jhs-server-isolation without Docker: the rules it puts in a user server's namespace,
from the container's `docker inspect`, and that its label and port agree with their owners (the spawner's label,
the hub's API port). The program itself runs on every lab node: tests/lab/test_site.py's cross-user test shows a
user's real server refused another's over the overlay, and let through once its rule is taken away."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "roles" / "docker_engine" / "files" / "jhs-server-isolation"
_loader = importlib.machinery.SourceFileLoader("jhs_server_isolation", str(PROGRAM))
_spec = importlib.util.spec_from_loader("jhs_server_isolation", _loader)
isolation = importlib.util.module_from_spec(_spec)
_loader.exec_module(isolation)
sys.path.insert(0, str(ROOT / "roles" / "jupyterhub" / "files"))


def inspected(*networks: tuple[str, int]) -> dict:
    return {"NetworkSettings": {"Networks": {f"net{i}": {"IPAddress": ip, "IPPrefixLen": length}
                                             for i, (ip, length) in enumerate(networks)}}}


def test_the_subnets_are_the_containers_networks():
    info = inspected(("10.0.1.7", 24), ("10.0.3.200", 22), ("10.0.1.9", 24))
    info["NetworkSettings"]["Networks"]["unaddressed"] = {"IPAddress": "", "IPPrefixLen": 0}
    assert isolation.subnets(info) == ["10.0.0.0/22", "10.0.1.0/24"]
    assert isolation.subnets({}) == [] and isolation.subnets({"NetworkSettings": {"Networks": None}}) == []


def test_the_rules_let_loopback_replies_and_the_hub_port_through_then_refuse_the_rest():
    assert isolation.rules(["10.0.1.0/24"], [8081]) == [
        ["-o", "lo", "-j", "RETURN"],
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
        ["-d", "10.0.1.0/24", "-p", "tcp", "--dport", "8081", "-j", "RETURN"],
        ["-d", "10.0.1.0/24", "-j", "REJECT"],
    ]
    two = isolation.rules(["10.0.1.0/24", "10.0.2.0/24"], [8081, 9000])
    # every network refused after its own exceptions
    assert [r[1] for r in two if r[-1] == "REJECT"] == ["10.0.1.0/24", "10.0.2.0/24"]
    assert ["-d", "10.0.2.0/24", "-p", "tcp", "--dport", "9000", "-j", "RETURN"] in two


def test_no_network_leaves_only_the_harmless_rules():
    assert all(rule[-1] == "RETURN" for rule in isolation.rules([], [8081]))


def test_apply_needs_a_container():
    with pytest.raises(SystemExit):
        isolation.main(["apply"])


def test_the_label_and_port_agree_with_the_spawner_and_the_hub():
    import jhs_spawner
    role_vars = yaml.safe_load((ROOT / "roles" / "docker_engine" / "vars" / "main.yml").read_text())
    label = f"{jhs_spawner.LABEL_COMPONENT}={jhs_spawner.COMPONENT}"
    assert role_vars["_docker_engine_user_server_label"] == label == isolation.LABEL
    config = (ROOT / "roles" / "jupyterhub" / "templates" / "jupyterhub_config.py.j2").read_text()
    hub_port = int(re.search(r"^c\.JupyterHub\.hub_port = (\d+)$", config, re.M).group(1))
    assert role_vars["_docker_engine_user_server_overlay_ports"] == [hub_port] == [isolation.HUB_API_PORT]
