"""molecule verify (pytest-testinfra), what an operator and the cluster do next, in this order: worker1's engine
restarted (it stays in the swarm) with daemon.json exactly the settings; worker2 shut down (its leave unit leaves
the swarm) and the manager prunes the Down node; the SSM parameters; the join token rotated by the project's
playbook."""
from __future__ import annotations

import json
import time

from conftest import MANAGER, PROJECT, SCENARIO, WORKER1, WORKER2, aws, node, playbook

SWARM_STATE = "docker info --format '{{.Swarm.LocalNodeState}}'"


def swarm_state_once_settled(host, within: float = 180) -> str:
    """The engine's swarm state once it is past "pending": a restarted engine reports "pending" until its agent
    has reached the manager again, which takes longer the busier the machine is."""
    deadline = time.monotonic() + within
    while (state := host.check_output(SWARM_STATE)) == "pending" and time.monotonic() < deadline:
        time.sleep(1)
    return state


def test_an_engine_restart_keeps_the_worker_in_the_swarm():
    worker = node(WORKER1)
    worker.check_output("systemctl restart docker")
    assert swarm_state_once_settled(worker) == "active"      # the leave unit did not run ("inactive" if it had)


def test_daemon_json_is_exactly_the_settings():
    """json-file rotation, no live-restore, no-new-privileges, the address pools, the identity labels."""
    text = node(WORKER1).file("/etc/docker/daemon.json").content_string
    assert text.endswith("}\n")
    assert json.loads(text) == {
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}, "live-restore": False,
        "no-new-privileges": True, "default-address-pools": [{"base": "172.20.0.0/14", "size": 24}],
        "labels": ["jhs.availability-zone=eu-west-1a", "jhs.instance-id=i-0000000000000001a",
                   "jhs.instance-type=t3.large", "jhs.node-pool=default"]}


def test_a_worker_that_shuts_down_leaves_and_the_manager_prunes_it():
    worker = node(WORKER2)
    worker.check_output("systemctl stop jhs-swarm-leave.service")     # as its shutdown does: ExecStop leaves
    assert worker.check_output(SWARM_STATE) == "inactive"
    manager = node(MANAGER)
    deadline = time.monotonic() + 180      # the manager marks it Down once its heartbeats stop (slower when busy)
    while manager.check_output(f"docker node inspect {WORKER2} --format '{{{{.Status.State}}}}'") != "down":
        assert time.monotonic() < deadline, "the manager never saw the worker Down"
        time.sleep(1)
    # A Down worker the hub's reconciler removed after the play listed the nodes: the removal finds it gone, as
    # wanted, and goes on (the listing is given as an extra var, which outranks the role's registered one).
    gone = {"ID": "0123456789abcdefghijklmno", "Hostname": "ip-10-0-0-99", "Status": "down", "ManagerStatus": None}
    proc = playbook(SCENARIO / "prune.yml", "-e", json.dumps({"__swarm_manager_nodes": {"nodes": [gone]}}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"ok: [{MANAGER}] => (item=ip-10-0-0-99 ({gone['ID']}))" in proc.stdout, proc.stdout[-3000:]
    proc = playbook(SCENARIO / "prune.yml")                           # swarm_manager's prune_nodes
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    listed = manager.check_output("docker node ls --format '{{.Hostname}} {{.Status}}'").splitlines()
    assert sorted(listed) == [f"{MANAGER} Ready", f"{WORKER1} Ready"]


def token() -> str:
    return aws("ssm").get_parameter(Name="/molecule/swarm/worker-join-token", WithDecryption=True)["Parameter"]["Value"]


def test_the_swarm_parameters_are_secure_strings_and_a_rotation_publishes_the_new_token():
    params = sorted((p["Name"], p["Type"]) for p in aws("ssm").describe_parameters()["Parameters"])
    assert params == [("/molecule/swarm/manager-addr", "SecureString"), ("/molecule/swarm/worker-join-token", "SecureString")]
    before = token()
    proc = playbook(PROJECT / "playbooks" / "rotate_swarm_token.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    now = node(MANAGER).check_output("docker swarm join-token -q worker")
    assert token() == now and now != before
