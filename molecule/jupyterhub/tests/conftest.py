"""Shared by the jupyterhub scenario's testinfra tests (molecule verify): the nodes by name, the hub's URL as this
machine reaches it (the manager's address on the scenario's own network), and a client of the hub's API."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))   # molecule/testinfra_helpers.py
from testinfra_helpers import PROJECT, home_owner, node  # noqa: E402,F401  (home_owner: for the tests)

sys.path.insert(0, str(PROJECT))   # lab.hubclient: the hub API client the lab's tests and benchmarks use
MANAGER, WORKER = "jhs-molecule-hub", "jhs-molecule-hub-worker"


@pytest.fixture(scope="session")
def hub_url() -> str:
    address = node(MANAGER).interface("eth0").addresses[0]
    return f"https://{address}"


@pytest.fixture(scope="session")
def hub(hub_url):
    from lab.hubclient import HubClient
    settings = node(MANAGER).ansible.get_variables()
    return HubClient(hub_url, admin="admin", password=settings["jupyterhub_local_password"])
