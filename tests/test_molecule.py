"""Every molecule scenario (molecule/*/molecule.yml), run by scripts/run-molecule inside the pytest run.

`make test` runs them here rather than after pytest so that pytest-xdist hands them to the worker that is not
busy with the lab's tests (each scenario brings up its own Docker-in-Docker nodes on its own network).
`make molecule` still runs them on their own.
"""
from __future__ import annotations

import re
import subprocess

import pytest
from conftest import ROOT

SCENARIOS = sorted(path.parent.name for path in (ROOT / "molecule").glob("*/molecule.yml"))


def test_every_scenario_is_found():
    assert SCENARIOS == ["docker_repo", "jupyterhub", "swarm"]


def test_every_scenarios_testinfra_files_compile():
    """A verifier file that does not compile fails only its scenario's verify, minutes into the run; here in a second."""
    files = sorted((ROOT / "molecule").glob("*/tests/*.py")) + sorted((ROOT / "molecule").glob("*.py"))
    assert files
    for path in files:
        compile(path.read_text(), str(path), "exec")      # raises SyntaxError naming the file and line


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failed_action(out: str) -> str:
    """The output of the scenario's action that failed, so that a failure shows its cause rather than the cleanup
    and destroy that ran after it; empty when no action is marked failed. Molecule prints "<scenario> ➜ <action>:
    Executing" before each action; it marks the failed one "Executed: Failed" either right after it (an Ansible
    action) or only in the recap at the end (the testinfra verifier), so the section is found by the action's name:
    from its first "Executing" line to the next action's."""
    lines = ANSI.sub("", out).splitlines(keepends=True)
    failed = [m.group(1) for line in lines if (m := re.search(r"➜ (\S+): Executed: Failed", line))]
    if not failed:
        return ""
    starts = [i for i, line in enumerate(lines) if f"➜ {failed[0]}: Executing" in line]
    if not starts:
        return ""
    for i in range(starts[0] + 1, len(lines)):
        if (m := re.search(r"➜ (\S+): Executing", lines[i])) and m.group(1) != failed[0]:
            return "".join(lines[starts[0]:i])
    return "".join(lines[starts[0]:])


def test_failed_action_is_the_section_of_the_action_that_failed():
    out = ("I swarm ➜ converge: Executing\nok\nI swarm ➜ converge: Executed: Successful\n"
           "I swarm ➜ verify: Executing\nE assert 'pending' == 'active'\nI swarm ➜ verify: Executed: Failed\n"
           "I swarm ➜ destroy: Executing\nI swarm ➜ destroy: Executed: Successful\n")
    assert failed_action(out) == ("I swarm ➜ verify: Executing\nE assert 'pending' == 'active'\n"
                                  "I swarm ➜ verify: Executed: Failed\n")
    assert failed_action(out.replace("Failed", "Successful")) == ""


def test_failed_action_finds_a_verify_marked_failed_only_in_the_recap():
    """As molecule prints a testinfra failure: colours, "Verifier tests failed", the mark in the recap only."""
    out = ("\x1b[36mINFO\x1b[0m \x1b[32mswarm\x1b[0m ➜ \x1b[33mverify\x1b[0m: Executing\n"
           "INFO swarm ➜ verify: Executing Testinfra tests found in tests/...\n"
           "  │ FAILED test_3_changes.py::test_an_engine_restart - assert 'pending' == 'active'\n"
           "ERROR Verifier tests failed\n"
           "INFO swarm ➜ cleanup: Executing\nok\nINFO swarm ➜ cleanup: Executed: Successful\n"
           "INFO swarm ➜ destroy: Executing\nok\nINFO swarm ➜ destroy: Executed: Successful\n"
           "DETAILS\nswarm ➜ converge: Executed: Successful\n"
           "\x1b[32mswarm\x1b[0m ➜ \x1b[33mverify\x1b[0m: \x1b[31mExecuted: Failed\x1b[0m (Verifier tests failed)\n"
           "swarm ➜ destroy: Executed: Successful\n")
    section = failed_action(out)
    assert section.startswith("INFO swarm ➜ verify: Executing\n") and section.endswith("ERROR Verifier tests failed\n")
    assert "assert 'pending' == 'active'" in section and "cleanup" not in section


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario):
    # one stream, in the order printed: molecule logs its "➜ action: Executing" lines on stderr, the actions' output
    # on stdout
    proc = subprocess.run([str(ROOT / "scripts" / "run-molecule"), scenario], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1800)
    assert proc.returncode == 0, failed_action(proc.stdout)[-12000:] + "\n[...]\n" + proc.stdout[-4000:]
    assert f"=== {scenario} passed in" in proc.stdout
