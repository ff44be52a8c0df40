"""Shared by the swarm scenario's testinfra tests (molecule verify): one node by name, the scenario's inventory
variables, its AWS endpoint, and a play of the project run against the scenario's inventory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent))   # molecule/testinfra_helpers.py
from testinfra_helpers import INVENTORY, PROJECT, home_owner, node  # noqa: E402,F401  (for the tests)

MANAGER, WORKER1, WORKER2 = "jhs-molecule-manager", "jhs-molecule-worker1", "jhs-molecule-worker2"


def aws(service: str):
    """A client of the scenario's moto endpoint (on the network's gateway), as the nodes reach it."""
    import boto3
    settings = node(MANAGER).ansible.get_variables()
    return boto3.client(service, endpoint_url=f"http://{settings['molecule_moto_host']}:{settings['molecule_moto_port']}",
                        region_name="eu-west-1", aws_access_key_id="molecule", aws_secret_access_key="molecule")


def playbook(path: Path, *args: str) -> subprocess.CompletedProcess:
    """ansible-playbook against the scenario's nodes, with molecule's Ansible settings (its environment)."""
    return subprocess.run(["ansible-playbook", "-i", str(INVENTORY), str(path), *args], cwd=SCENARIO,
                          capture_output=True, text=True, timeout=600)
