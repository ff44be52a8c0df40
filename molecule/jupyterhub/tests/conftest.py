"""Shared by the jupyterhub scenario's testinfra tests (molecule verify): the nodes by name, the hub's URL as this
machine reaches it (the manager's address on the scenario's own network), and a client of the hub's API."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = SCENARIO.parents[1]
sys.path.insert(0, str(PROJECT))   # lab.hubclient: the hub API client the lab's tests and benchmarks use
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
MANAGER, WORKER = "jhs-molecule-hub", "jhs-molecule-hub-worker"


def home_owner() -> tuple[int, int, int]:
    """(uid, gid, mode) of a user's home, from their one owner (plugins/module_utils/jhs_names.py)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("jhs_names", PROJECT / "plugins" / "module_utils" / "jhs_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    home = module.home()
    return home["uid"], home["gid"], int(home["mode"], 8)


def node(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY))


@pytest.fixture(scope="session")
def hub_url() -> str:
    address = node(MANAGER).interface("eth0").addresses[0]
    return f"https://{address}"


@pytest.fixture(scope="session")
def hub(hub_url):
    from lab.hubclient import HubClient
    settings = node(MANAGER).ansible.get_variables()
    return HubClient(hub_url, admin="admin", password=settings["jupyterhub_local_password"])
