"""plugins/callback/jhs_phases.py: which phase runs, since when, and which one failed, through ansible.cfg."""
from __future__ import annotations

import os
import re
import subprocess

from conftest import ROOT

PLAYBOOK = """
- name: Provision things
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A failure the play ignores
      ansible.builtin.fail: {msg: ignored}
      ignore_errors: true
    - name: A failure a block rescues
      block:
        - name: Fails inside the block
          ansible.builtin.fail: {msg: rescued}
      rescue:
        - name: The rescue
          ansible.builtin.debug: {msg: rescued}
- name: Configure the manager
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Breaks here
      ansible.builtin.fail: {msg: boom}
      when: break_it | default(false) | bool
- name: Never reached when the manager breaks
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Nothing
      ansible.builtin.debug: {msg: done}
"""


def run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "pb.yml").write_text(PLAYBOOK)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "JHS_RUN_LOG": ".lab/logs/site.log"}
    return subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(tmp_path / "pb.yml"), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_each_phase_is_announced_with_its_elapsed_time_and_timed_at_the_end(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    starts = re.findall(r"^phase (\d+)  (.+?)  \(at (\d+m\d\ds|\d+s)\)$", proc.stdout, re.M)
    assert [(n, name) for n, name, _ in starts] == [
        ("1", "Provision things"), ("2", "Configure the manager"), ("3", "Never reached when the manager breaks")]
    table = proc.stdout[proc.stdout.index("phases ("):]
    assert re.search(r"^\s+1\.\s+\d+s  Provision things$", table, re.M), table
    assert re.search(r"^\s+3\.\s+\d+s  Never reached when the manager breaks$", table, re.M), table
    # an ignored failure and a rescued one are not the run's failure
    assert "FAILED in phase" not in proc.stdout


def test_a_failure_names_its_phase_host_task_and_the_log(tmp_path):
    proc = run(tmp_path, "-e", "break_it=true")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("FAILED in phase 'Configure the manager' on localhost, failed: Breaks here; "
            "the whole log: .lab/logs/site.log") in proc.stdout
    assert "phase 3  Never reached" not in proc.stdout
