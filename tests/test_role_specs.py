"""Every role: defaults/main.yml and meta/argument_specs.yml agree on names, defaults and types, and each
setting is described (issue 16, item 3, in part: the description lives in argument_specs)."""
from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

ROLES = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
TYPES = {bool: {"bool"}, int: {"int", "float"}, float: {"float"}, str: {"str", "path", "raw"}, list: {"list"},
         dict: {"dict"}}


def templated(value) -> bool:
    return isinstance(value, str) and "{{" in value


def test_every_role_has_argument_specs():
    assert ROLES == sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults/main.yml").exists())


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    base = ROOT / "roles" / role
    defaults = yaml.safe_load((base / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((base / "meta/argument_specs.yml").read_text())["argument_specs"]
    options = {}
    for entry in specs.values():
        for name, spec in (entry.get("options") or {}).items():
            options.setdefault(name, spec)
    problems = []
    for name, value in defaults.items():
        spec = options.get(name)
        if spec is None:
            problems.append(f"{name}: a default with no argument_specs entry")
            continue
        # a default computed from other settings or facts may be left out of the spec (it is described there)
        if spec.get("default") != value and not (templated(value) and "default" not in spec):
            problems.append(f"{name}: default {value!r} in defaults, {spec.get('default')!r} in argument_specs")
        allowed = TYPES.get(type(value), {"raw"}) | {"raw"}
        if spec.get("type", "str") not in allowed and not templated(value):
            problems.append(f"{name}: type {spec.get('type')!r} for a {type(value).__name__} default")
        if not spec.get("description"):
            problems.append(f"{name}: no description")
    for name, spec in options.items():
        if name.startswith(f"{role}_") and name not in defaults and not spec.get("required"):
            problems.append(f"{name}: in argument_specs, neither required nor given a default in defaults")
    assert not problems, "\n".join(problems)
