"""roles/aws_cluster: defaults/main.yml and meta/argument_specs.yml stay in step; every default is described in its spec
(descriptions live in argument_specs and docs/settings.md, not in comments in defaults)."""
from __future__ import annotations

import yaml
from conftest import ROOT

ROLE = ROOT / "roles" / "aws_cluster"


def test_argument_specs_match_defaults():
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]
    main = specs["main"]["options"]
    shared = {"cluster_name", "aws_region", "aws_endpoint_url", "repo_url", "repo_version"}
    teardown_only = set(specs["teardown"]["options"]) - set(main)     # aws_cluster_delete_user_data, ..._keep_logs
    assert teardown_only >= {"aws_cluster_delete_user_data", "aws_cluster_teardown_keep_logs"}
    assert set(main) - shared == set(defaults) - teardown_only
    for name, value in defaults.items():
        spec = main.get(name) or specs["teardown"]["options"][name]
        assert spec["default"] == value, name
        assert spec["type"] == {bool: "bool", int: "int", str: "str", list: "list", dict: "dict"}[type(value)], name
        assert spec["description"], name
    for name, spec in specs["teardown"]["options"].items():
        if name in defaults:
            assert spec["default"] == defaults[name], name

