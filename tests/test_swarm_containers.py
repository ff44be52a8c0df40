"""jhs-swarm-containers (roles/jupyterhub/files): at boot, the cluster's containers the engine left stopped are
started once the engine's swarm has settled, each tried again until it starts or the time is up.

The real race (a busy boot, the engine giving up on the hub and the proxy) is reproduced in the lab
(tests/lab/test_site.py::test_a_manager_reboot_...). Here a stand-in `docker` on PATH plays what the lab cannot
produce on demand: a swarm that never settles, a container that never starts, a host outside a swarm.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap

from conftest import ROOT

SCRIPT = ROOT / "roles" / "jupyterhub" / "files" / "jhs-swarm-containers"

# The stand-in: state.json holds the swarm states to report in turn (the last one stays), each container's restart
# policy and the outcomes of its starts in turn ("ok" or an error); every call is appended to calls.log. Calls hold
# a lock from reading the state to writing it back (the script's starts run side by side).
FAKE_DOCKER = textwrap.dedent('''\
    #!/usr/bin/env python3
    import fcntl, json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "state.json")
    lock = open(os.path.join(here, "lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)     # the script starts its containers side by side: one call at a time here
    state = json.load(open(path))
    args = sys.argv[1:]
    with open(os.path.join(here, "calls.log"), "a") as log:
        log.write(" ".join(args) + "\\n")
    if args[0] == "info":
        swarm = state["swarm"]
        print(swarm[0])
        if len(swarm) > 1:
            swarm.pop(0)
    elif args[0] == "ps":
        assert "label=jhs.cluster=labhub" in args and "status=exited" in args, args
        print("\\n".join(state["containers"]))
    elif args[0] == "inspect":
        print(state["containers"][args[-1]]["policy"])
    elif args[0] == "start":
        outcomes = state["containers"][args[1]]["starts"]
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        json.dump(state, open(path, "w"))
        if outcome != "ok":
            print("Error response from daemon: " + outcome + "\\nError: failed to start containers: " + args[1],
                  file=sys.stderr)
            sys.exit(1)
        print(args[1])
        sys.exit(0)
    json.dump(state, open(path, "w"))
''')


def run(tmp_path, state: dict, seconds: int = 60) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    (bin_dir / "state.json").write_text(json.dumps(state))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run([str(SCRIPT), "labhub", str(seconds)], env=env, capture_output=True, text=True, timeout=120)
    calls = (bin_dir / "calls.log").read_text().splitlines() if (bin_dir / "calls.log").exists() else []
    return proc, calls


def test_waits_for_the_swarm_then_starts_each_stopped_container_through_the_failed_attachments(tmp_path):
    proc, calls = run(tmp_path, {"swarm": ["", "pending", "active"], "containers": {
        "jupyterhub-proxy": {"policy": "always", "starts": [
            "network 6dakmdkaze06al3uklgvyoir9 not found", "network q3kuk2o8jyl8fqiptejsolmej not found", "ok"]},
        "jupyterhub": {"policy": "always", "starts": ["ok"]},
        "a-one-off": {"policy": "no", "starts": ["ok"]}}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [c for c in calls if c.startswith("info")] == ["info --format {{.Swarm.LocalNodeState}}"] * 3
    starts = [c for c in calls if c.startswith("start")]
    assert sorted(starts) == ["start jupyterhub"] + ["start jupyterhub-proxy"] * 3     # never the one-off
    assert calls.index("start jupyterhub") > max(i for i, c in enumerate(calls) if c.startswith("info"))
    lines = proc.stdout.splitlines()
    assert "jhs-swarm-containers: started jupyterhub" in lines and "jhs-swarm-containers: started jupyterhub-proxy" in lines
    assert ("jhs-swarm-containers: jupyterhub-proxy: Error response from daemon: network 6dakmdkaze06al3uklgvyoir9 "
            "not found Error: failed to start containers: jupyterhub-proxy (again in 3 s)") in lines


def test_a_container_that_never_starts_fails_the_unit_with_its_error_once_the_time_is_up(tmp_path):
    proc, calls = run(tmp_path, {"swarm": ["active"], "containers": {
        "jupyterhub": {"policy": "always", "starts": ["ok"]},
        "jupyterhub-proxy": {"policy": "always", "starts": ["attaching to network failed: context deadline exceeded"]}}},
        seconds=10)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "jhs-swarm-containers: started jupyterhub" in proc.stdout
    assert ("jhs-swarm-containers: jupyterhub-proxy did not start: Error response from daemon: attaching to network "
            "failed: context deadline exceeded Error: failed to start containers: jupyterhub-proxy") in proc.stdout
    assert calls.count("start jupyterhub-proxy") >= 2


def test_a_swarm_that_never_settles_fails_the_unit_before_any_start(tmp_path):
    proc, calls = run(tmp_path, {"swarm": ["pending"], "containers": {
        "jupyterhub": {"policy": "always", "starts": ["ok"]}}}, seconds=3)
    assert proc.returncode == 1
    assert proc.stdout.strip() == "jhs-swarm-containers: the engine's swarm did not settle (state: pending)"
    assert not [c for c in calls if c.startswith(("ps", "start"))]


def test_a_host_outside_a_swarm_starts_its_stopped_containers_at_once(tmp_path):
    proc, calls = run(tmp_path, {"swarm": ["inactive"], "containers": {
        "jupyterhub": {"policy": "always", "starts": ["ok"]}}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls[0] == "info --format {{.Swarm.LocalNodeState}}" and calls.count("start jupyterhub") == 1
