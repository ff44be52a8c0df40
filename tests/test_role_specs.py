"""Every role: defaults/main.yml and meta/argument_specs.yml agree on names, defaults, types and choices, and each
setting is described in argument_specs, the one description; docs/settings.md is generated from them and current
(issue 16, item 3). A test of the test: a default added without a spec entry is caught."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def spec_problems(base: Path) -> list[str]:
    """What disagrees between the role at ``base``'s defaults and its argument_specs ([] when they agree)."""
    role = base.name
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
        if "choices" in spec and not templated(value) and value not in spec["choices"]:
            problems.append(f"{name}: default {value!r} is not one of its choices {spec['choices']}")
        if not spec.get("description"):
            problems.append(f"{name}: no description")
    for name, spec in options.items():
        if name.startswith(f"{role}_") and name not in defaults and not spec.get("required"):
            problems.append(f"{name}: in argument_specs, neither required nor given a default in defaults")
    return problems


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    problems = spec_problems(ROOT / "roles" / role)
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_default_without_a_spec_a_wrong_choice_and_a_missing_description(tmp_path):
    base = tmp_path / "demo"
    (base / "defaults").mkdir(parents=True)
    (base / "meta").mkdir()
    (base / "defaults/main.yml").write_text("demo_mode: fast\ndemo_size: 3\ndemo_new: 1\n")
    (base / "meta/argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {"options": {
        "demo_mode": {"type": "str", "default": "fast", "choices": ["slow", "safe"], "description": "How."},
        "demo_size": {"type": "int", "default": 3},
        "demo_gone": {"type": "str", "description": "A spec whose default went."}}}}}))
    assert spec_problems(base) == [
        "demo_mode: default 'fast' is not one of its choices ['slow', 'safe']",
        "demo_size: no description",
        "demo_new: a default with no argument_specs entry",
        "demo_gone: in argument_specs, neither required nor given a default in defaults"]


def test_docs_settings_md_is_generated_from_the_specs_and_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/settings-doc"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / "docs/settings.md").read_text()
    for role in ROLES:
        assert f"## {role}\n" in text
    assert "| `jupyterhub_scaler_cooldown` | int | `300` |" in text


def tagged_includes_without_apply(tasks: list[dict]) -> list[str]:
    """The include_tasks in a task list that carry tags but do not apply them to the tasks they include: a run
    with --tags would include the file and then skip every task in it."""
    bad = []
    for task in tasks:
        include = task.get("ansible.builtin.include_tasks")
        if include is None or not task.get("tags"):
            continue
        applied = include.get("apply", {}).get("tags") if isinstance(include, dict) else None
        if sorted(applied or []) != sorted(task["tags"]):
            bad.append(task["name"])
    return bad


@pytest.mark.parametrize("role", sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks/main.yml").exists()))
def test_a_roles_tags_reach_the_tasks_it_includes(role):
    """`--tags jupyterhub_configure,jupyterhub_run` (docs/deploy-aws.md, day two) runs those steps: every tagged
    include in a role's entry point applies its tags to what it includes."""
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks/main.yml").read_text())
    assert tagged_includes_without_apply(tasks) == []


def test_the_tags_check_catches_an_include_whose_tags_stop_at_the_include():
    tasks = [{"name": "ok", "ansible.builtin.include_tasks": {"file": "a.yml", "apply": {"tags": ["x"]}}, "tags": ["x"]},
             {"name": "stops", "ansible.builtin.include_tasks": "b.yml", "tags": ["x"]},
             {"name": "untagged", "ansible.builtin.include_tasks": "c.yml"}]
    assert tagged_includes_without_apply(tasks) == ["stops"]


INCLUDE_KEYS = {f"{ns}{kind}_role" for ns in ("", "ansible.builtin.", "ansible.legacy.") for kind in ("include", "import")}


def role_entry_uses(node, where: str) -> list[tuple[str, str, str]]:
    """Every (role, tasks_from, where) that a YAML document's include_role/import_role tasks ask for."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in INCLUDE_KEYS and isinstance(value, dict) and "tasks_from" in value:
                found.append((value["name"], str(value["tasks_from"]).removesuffix(".yml"), where))
            found += role_entry_uses(value, where)
    elif isinstance(node, list):
        for item in node:
            found += role_entry_uses(item, where)
    return found


def undeclared_entry_points(uses: list[tuple[str, str, str]], roles_dir: Path) -> list[str]:
    """The uses whose role declares no such entry point in meta/argument_specs.yml (or has no task file for it)."""
    bad = []
    for role, entry, where in uses:
        specs = roles_dir / role / "meta/argument_specs.yml"
        declared = yaml.safe_load(specs.read_text())["argument_specs"] if specs.exists() else {}
        if entry not in declared or not (roles_dir / role / "tasks" / f"{entry}.yml").exists():
            bad.append(f"{where}: {role} tasks_from {entry} is not a declared entry point")
    return bad


def test_every_tasks_from_names_a_declared_entry_point():
    """No task file, playbook or test reaches into a role's internals (issue 16, item 4): a role is entered only
    through an entry point its meta/argument_specs.yml declares, which also validates the settings it is given."""
    files = [ROOT / "site.yml", *(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").rglob("tasks/*.yml"),
             *(ROOT / "tests").rglob("*.yml"), *(ROOT / "molecule").rglob("*.yml")]
    uses = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            uses += role_entry_uses(doc, str(path.relative_to(ROOT)))
    assert len(uses) >= 10   # the walk finds them (the bake, the hub's jobs, teardown, restore, the tests' own)
    assert undeclared_entry_points(uses, ROOT / "roles") == []


def test_the_entry_point_check_catches_an_include_of_an_internal_task_file(tmp_path):
    (tmp_path / "demo/meta").mkdir(parents=True)
    (tmp_path / "demo/tasks").mkdir()
    (tmp_path / "demo/meta/argument_specs.yml").write_text("argument_specs: {main: {}, job: {}}\n")
    for name in ("main", "job", "step"):
        (tmp_path / f"demo/tasks/{name}.yml").write_text("[]\n")
    play = [{"hosts": "all", "tasks": [
        {"name": "a", "ansible.builtin.include_role": {"name": "demo", "tasks_from": "job"}},
        {"name": "b", "block": [{"name": "c", "ansible.builtin.import_role": {"name": "demo", "tasks_from": "step.yml"}}]}]}]
    uses = role_entry_uses(play, "play.yml")
    assert uses == [("demo", "job", "play.yml"), ("demo", "step", "play.yml")]
    assert undeclared_entry_points(uses, tmp_path) == ["play.yml: demo tasks_from step is not a declared entry point"]


class _StrictLoader(yaml.SafeLoader):
    """Refuses what Ansible's own loader warns about at every run: a key given twice in one mapping, and a merge key
    (`<<: *x`) followed by a key it also brings."""


def _strict_mapping(loader, node, deep=False):
    if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
        raise yaml.constructor.ConstructorError(None, None, "a merge key (<<); alias the options instead",
                                                node.start_mark)
    keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise yaml.constructor.ConstructorError(None, None, f"keys given twice: {duplicates}", node.start_mark)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_load_without_the_warnings_ansible_prints_at_every_run(role):
    yaml.load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text(), Loader=_StrictLoader)


def test_the_strict_load_catches_a_merge_key_and_a_key_given_twice():
    with pytest.raises(yaml.constructor.ConstructorError, match="merge key"):
        yaml.load("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n", Loader=_StrictLoader)
    with pytest.raises(yaml.constructor.ConstructorError, match="given twice"):
        yaml.load("a: 1\na: 2\n", Loader=_StrictLoader)
    assert yaml.load("a: &a {x: 1}\nb: {y: *a}\n", Loader=_StrictLoader) == {"a": {"x": 1}, "b": {"y": {"x": 1}}}
