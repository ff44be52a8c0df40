"""docs/deploy-aws.md's commands are the ones the lab's tests run: each fenced block marked `lab-test=<name>` is read
by a lab test through labutil.doc_command, and every other ansible-playbook command of the guide says why the lab
does not run it."""
from __future__ import annotations

import shlex

from conftest import ROOT
from labutil import MIGRATION_GUIDE, doc_blocks, doc_commands

# ansible-playbook commands of the guide the lab's tests do not run, with the reason
NOT_IN_THE_LAB = {
    "playbooks/manager.yml -i inventories/mine --ask-vault-pass":
        "site.yml runs it whole (lab-test=run); the lab's tests run it with the guide's --tags (lab-test=hub-settings)",
    "playbooks/teardown.yml -i inventories/mine":
        "tests/test_teardown.py runs it against the local endpoint; the lab's tests leave their cluster up",
}


def fenced_playbook_commands(marked: bool) -> list[str]:
    """The guide's ansible-playbook commands (without the program's name), of its marked or its other blocks."""
    return [" ".join(shlex.split(line.strip()))[len("ansible-playbook "):] for name, body in doc_blocks()
            if bool(name) == marked for line in body.replace("\\\n", " ").splitlines()
            if line.strip().startswith("ansible-playbook ")]


def test_every_marked_command_is_run_by_a_lab_test():
    commands = doc_commands()
    assert {"run", "hub-settings", "bake", "rotate-token", "restore", "workers"} <= set(commands), sorted(commands)
    lab_tests = "".join(p.read_text() for p in (ROOT / "tests" / "lab").glob("test_*.py"))
    for name, argv in commands.items():
        playbook = next(a for a in argv[1:] if a.endswith(".yml"))
        assert (ROOT / playbook).is_file(), f"lab-test={name}: no {playbook}"
        assert f'doc_command("{name}")' in lab_tests, f"no lab test runs the guide's lab-test={name} command"


def test_the_migration_guides_command_is_the_one_a_lab_test_runs():
    """docs/migrating-from-chef.md's step 5 (lab-test=migrate-homes) is run, as written, by the lab's migration test."""
    commands = doc_commands(MIGRATION_GUIDE)
    assert sorted(commands) == ["migrate-homes"]
    assert commands["migrate-homes"][1] == "playbooks/migrate_homes.yml" and (ROOT / commands["migrate-homes"][1]).is_file()
    lab_tests = "".join(p.read_text() for p in (ROOT / "tests" / "lab").glob("test_*.py"))
    assert 'doc_commands(MIGRATION_GUIDE)["migrate-homes"]' in lab_tests


def test_every_other_playbook_command_of_the_guide_says_why_the_lab_does_not_run_it():
    marked = set(fenced_playbook_commands(marked=True))
    unmarked = [c for c in fenced_playbook_commands(marked=False) if c not in marked]
    assert sorted(unmarked) == sorted(NOT_IN_THE_LAB), unmarked


def test_a_marked_block_reads_as_the_lab_runs_it(tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text("text\n\n  ```bash lab-test=demo\n  ansible-playbook playbooks/x.yml -i inventories/mine \\\n"
                     "    --ask-vault-pass --tags a,b\n  ```\n")
    (argv,) = doc_commands(guide).values()
    assert argv[0] == str(ROOT / ".venv" / "bin" / "ansible-playbook")
    assert argv[1:] == ["playbooks/x.yml", "-i", "inventories/lab", "--tags", "a,b"]
