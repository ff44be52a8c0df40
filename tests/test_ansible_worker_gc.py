"""scripts/jhs_ansible_worker_gc.py: in a process started as an Ansible command, the children it forks (its task
workers) run without the cyclic garbage collector; the command itself and every other program keep it. Each case
runs a new Python of the project's venv, where `make venv` installed the hook."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PROBE = """
import gc, os
print(gc.isenabled())
pid = os.fork()
if pid == 0:
    print(gc.isenabled(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(gc.isenabled())
"""


def run_as(tmp_path: Path, name: str, **env: str) -> list[str]:
    script = tmp_path / name
    script.write_text(PROBE)
    proc = subprocess.run([str(VENV_PYTHON), str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_an_ansible_commands_forked_workers_run_without_the_collector_and_it_keeps_its_own(tmp_path):
    # parent before the fork, the child, the parent after
    assert run_as(tmp_path, "ansible-playbook") == ["True", "False", "True"]
    assert run_as(tmp_path, "ansible") == ["True", "False", "True"]


def test_other_programs_of_the_venv_keep_the_collector_in_their_children(tmp_path):
    assert run_as(tmp_path, "pytest-like") == ["True", "True", "True"]


def test_it_can_be_turned_off_for_a_comparison(tmp_path):
    assert run_as(tmp_path, "ansible-playbook", JHS_ANSIBLE_WORKER_GC="on") == ["True", "True", "True"]
