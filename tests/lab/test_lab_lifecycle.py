"""`make lab` / `make lab-down`: nothing left behind, nothing duplicated, clear errors before any change."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from labutil import ROOT, lab_cmd, wait_for

pytestmark = pytest.mark.lab
LAB_DIR = ROOT / ".lab"


def lab_processes() -> set[str]:
    """Process groups of the lab's own processes (moto endpoint, reconciler, git daemon)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            pgid = os.getpgid(int(pid))
        except OSError:
            continue
        if ("lab.motoserver" in cmd and "10.10.0.1" in cmd) or "lab.reconciler" in cmd or \
                ("git daemon" in cmd or "git-daemon" in cmd) and str(LAB_DIR) in cmd:
            found.add(str(pgid))
    return found


def inventory() -> dict[str, int]:
    def count(*args: str) -> int:
        out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout
        return len(out.split())
    return {
        "containers": count("ps", "-aq", "--filter", "label=jhs-lab"),
        "networks": count("network", "ls", "-q", "--filter", "label=jhs-lab"),
        "volumes": count("volume", "ls", "-q", "--filter", "label=jhs-lab"),
        "processes": len(lab_processes()),
        "lab_dir": int(LAB_DIR.exists()),
    }


def security_group_chain() -> bool:
    """The host's chain filtering traffic between the lab's nodes by the endpoint's security groups (lab/sgfilter.py)."""
    return subprocess.run(["iptables", "-S", "JHS-LAB-SG"], capture_output=True).returncode == 0


def test_up_down_up_leaves_no_leftovers_and_no_duplicates():
    lab_cmd("down")
    assert inventory() == {"containers": 0, "networks": 0, "volumes": 0, "processes": 0, "lab_dir": 0}

    lab_cmd("up")
    first = inventory()
    # the metadata stand-in, the two registries and the outbound proxy; the registries' volumes; one network; moto,
    # the reconciler and the git daemon
    assert first == {"containers": 4, "networks": 1, "volumes": 2, "processes": 3, "lab_dir": 1}, first
    lab_cmd("up")                                    # `make lab` twice: nothing duplicated
    assert inventory() == first

    lab_cmd("down")
    assert inventory() == {"containers": 0, "networks": 0, "volumes": 0, "processes": 0, "lab_dir": 0}
    assert not security_group_chain()
    lab_cmd("up")
    assert inventory() == first
    wait_for(security_group_chain, 30, 1, what="the reconciler's security group chain")


def test_port_already_taken_is_refused_before_any_change():
    before = inventory()
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = lab_cmd("up", env={"LAB_AWS_PORT": str(port)}, check=False)
    assert proc.returncode == 2
    assert f"LAB_AWS_PORT={port} is already in use" in proc.stderr
    assert inventory() == before


def _path_without_docker(tmp_path: Path) -> str:
    """A PATH with the usual tools but no docker, dockerd or debootstrap (readable by any user)."""
    bindir = Path(tempfile.mkdtemp(prefix="jhs-nodocker-"))
    bindir.chmod(0o755)
    for tool in ("bash", "sh", "id", "sort", "tr", "seq", "sleep", "cat", "env", "python3", "uname"):
        real = shutil.which(tool)
        if real:
            (bindir / tool).symlink_to(real)
    return str(bindir)


def test_docker_missing_and_not_root_says_what_to_do(tmp_path):
    path = _path_without_docker(tmp_path)
    proc = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                           "bash", str(ROOT / "scripts" / "ensure-docker")],
                          env={"PATH": path}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not root" in proc.stderr
    assert "sudo apt-get install -y" in proc.stderr and "docker.io" in proc.stderr


def test_docker_missing_is_reported_by_the_lab_itself(tmp_path):
    env = {"PATH": _path_without_docker(tmp_path), "LAB_DIR": str(tmp_path / "lab")}
    proc = subprocess.run([str(Path(os.sys.executable)), "-m", "lab", "up"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "the docker command is not installed" in proc.stderr
    assert not (tmp_path / "lab").exists()


def test_node_image_that_fails_to_build_names_the_step(tmp_path):
    proc = lab_cmd("images", env={"LAB_NODE_EXTRA_PACKAGES": "jhs-no-such-package",
                                  "LAB_DIR": str(tmp_path / "lab")}, check=False)
    assert proc.returncode == 2
    assert "cloud image failed at step 'RUN if [ -n " in proc.stderr, proc.stderr   # the first built from images/node
    assert "jhs-no-such-package" in proc.stderr
    assert f"log: {tmp_path / 'lab' / 'logs' / 'build-cloud.log'}" in proc.stderr
    log = (tmp_path / "lab" / "logs" / "build-cloud.log").read_text()
    assert "Unable to locate package jhs-no-such-package" in log
    # the failed build leaves no container behind (the builder's container of the failed step would run its
    # command; other tests run in parallel, so only the build's own containers are looked for)
    commands = subprocess.run(["docker", "ps", "-a", "--no-trunc", "--format", "{{.Command}}"],
                              capture_output=True, text=True, check=True).stdout
    assert "apt-get install -y --no-install-recommends ${PACKAGES} ${EXTRA_PACKAGES}" not in commands, commands
