"""What the scenarios' testinfra tests (molecule verify) share: a node of the scenario by name, and a user's home's
owner and mode from their one owner (plugins/module_utils/jhs_names.py). Each scenario's conftest imports it."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import testinfra

PROJECT = Path(__file__).resolve().parents[1]
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"


def node(name: str):
    """The scenario's node `name`, reached as molecule's Ansible reaches it (the scenario's inventory)."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY))


def home_owner() -> tuple[int, int, int]:
    """(uid, gid, mode) of a user's home."""
    spec = importlib.util.spec_from_file_location("jhs_names", PROJECT / "plugins" / "module_utils" / "jhs_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    home = module.home()
    return home["uid"], home["gid"], int(home["mode"], 8)
