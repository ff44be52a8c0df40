"""Helpers for lab tests."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the lab package
from lab import config  # noqa: E402

PY = sys.executable
# the lab's first site.yml run of a test session (test_site.py's site fixture), summarised at its end (conftest.py)
FIRST_SITE_LOG = ROOT / ".lab" / "logs" / "site-first.log"


DEPLOY_GUIDE = ROOT / "docs" / "deploy-aws.md"
MIGRATION_GUIDE = ROOT / "docs" / "migrating-from-chef.md"
DOC_BLOCK = re.compile(r"^ *```bash(?: lab-test=([a-z-]+))?[^\n]*\n(.*?)^ *```", re.M | re.S)


# The trust policy of a role an instance profile holds: EC2 (the lab endpoint's metadata stand-in) assumes no other.
EC2_TRUST_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def doc_blocks(path: Path = DEPLOY_GUIDE) -> list[tuple[str, str]]:
    """The guide's fenced bash blocks: (the name it is marked `lab-test=<name>` with, or "", its body)."""
    return DOC_BLOCK.findall(path.read_text())


def doc_commands(path: Path = DEPLOY_GUIDE) -> dict[str, list[str]]:
    """The commands of the deploy guide's fenced blocks marked `lab-test=<name>`, by name, as a lab test runs them:
    the lab's inventory for the operator's copy (inventories/mine), no vault (the lab keeps no secret in one), and
    the project's virtual environment's ansible-playbook."""
    commands = {}
    for name, body in doc_blocks(path):
        if not name:
            continue
        lines = [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]
        assert len(lines) == 1, f"{path.name}: the block lab-test={name} must hold one command, not {lines}"
        argv = [("inventories/lab" if arg == "inventories/mine" else arg) for arg in shlex.split(lines[0])
                if arg != "--ask-vault-pass"]
        assert argv[0] == "ansible-playbook" and "inventories/lab" in argv, f"lab-test={name}: {lines[0]}"
        commands[name] = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), *argv[1:]]
    return commands


def doc_command(name: str) -> list[str]:
    """One command of the deploy guide (see doc_commands), for a lab test to run as an operator would."""
    commands = doc_commands()
    assert name in commands, f"{DEPLOY_GUIDE.name} has no block marked lab-test={name} (it has {sorted(commands)})"
    return commands[name]


def lab_cmd(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"python -m lab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_env() -> dict[str, str]:
    path = ROOT / ".lab" / "env"
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition", detail=None):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f"\n{detail()}" if detail else ""))
        time.sleep(interval)


def node_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=jhs-lab=node", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def node_exec(node: str, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", node, *cmd], capture_output=True, text=True, timeout=120)


def lab_admin_keys() -> dict[str, str]:
    """The lab administrator's keys (boto3 arguments), for the tests' own calls: .lab/env holds the operator's, whose
    policy (docs/aws-permissions.md) covers only what the plays do to the lab's cluster."""
    return {"aws_access_key_id": config.AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": config.AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
