"""molecule verify (pytest-testinfra), from the manager and the workers: three Ready nodes with the workers'
identity labels, the overlay network, the workers' wait for the token and their leave unit."""
from __future__ import annotations

import json
import time

from conftest import MANAGER, WORKER1, WORKER2, node

LABELS = {
    WORKER1: {"jhs.availability-zone": "eu-west-1a", "jhs.instance-id": "i-0000000000000001a",
              "jhs.instance-type": "t3.large", "jhs.node-pool": "default"},
    WORKER2: {"jhs.availability-zone": "eu-west-1b", "jhs.instance-id": "i-0000000000000002b",
              "jhs.instance-type": "t3.large", "jhs.node-pool": "gpu"},
}


def swarm_nodes() -> dict[str, dict]:
    manager = node(MANAGER)
    ids = manager.check_output("docker node ls -q").split()
    return {n["Description"]["Hostname"]: n for n in json.loads(manager.check_output("docker node inspect " + " ".join(ids)))}


def test_three_ready_nodes_and_each_worker_carries_its_identity_labels():
    deadline = time.monotonic() + 120     # a node that missed a heartbeat on a busy machine is "down" for a while
    nodes = swarm_nodes()
    while {n["Status"]["State"] for n in nodes.values()} != {"ready"} and time.monotonic() < deadline:
        time.sleep(2)
        nodes = swarm_nodes()
    assert sorted(nodes) == [MANAGER, WORKER1, WORKER2]
    assert {n["Status"]["State"] for n in nodes.values()} == {"ready"}
    assert [nodes[name]["Spec"]["Role"] for name in (MANAGER, WORKER1, WORKER2)] == ["manager", "worker", "worker"]
    for name, labels in LABELS.items():
        assert nodes[name]["Description"]["Engine"]["Labels"] == labels, name
    facts = node(WORKER1).ansible("setup", "gather_subset=network")["ansible_facts"]
    assert nodes[WORKER1]["Status"]["Addr"] == facts["ansible_default_ipv4"]["address"]


def test_the_network_is_an_attachable_swarm_overlay_encrypted_as_set():
    manager = node(MANAGER)
    (network,) = json.loads(manager.check_output("docker network inspect jhs"))
    assert (network["Driver"], network["Scope"], network["Attachable"]) == ("overlay", "swarm", True)
    encrypted = manager.ansible.get_variables()["swarm_manager_network_encrypted"]
    assert ("encrypted" in (network.get("Options") or {})) == encrypted


def test_each_worker_waited_for_the_manager_and_has_the_leave_unit():
    for name in (WORKER1, WORKER2):
        worker = node(name)
        # started before the token existed (converge.yml records how long the join waited)
        assert float(worker.file("/var/tmp/molecule-join-waited").content_string) > 1, name
        show = dict(line.split("=", 1) for line in worker.check_output(
            "systemctl show jhs-swarm-leave.service -p UnitFileState -p ActiveState -p ExecStop -p After -p Requires"
        ).splitlines())
        assert (show["UnitFileState"], show["ActiveState"]) == ("enabled", "active"), show
        assert "/usr/local/sbin/jhs-swarm-leave" in show["ExecStop"]
        # it stops before the engine (After=), without pulling the engine down with it (no Requires=)
        assert "docker.service" in show["After"].split() and "docker.service" not in show["Requires"].split()
