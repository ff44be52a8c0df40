"""Helpers for lab tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# the lab's first site.yml run of a test session (test_site.py's site fixture), summarised at its end (conftest.py)
FIRST_SITE_LOG = ROOT / ".lab" / "logs" / "site-first.log"


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
