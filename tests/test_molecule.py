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


def failed_action(out: str) -> str:
    """The output of the scenario's action that failed (molecule prints "<scenario> ➜ <action>: Executing" before
    each one and "Executed: Failed" after the one that failed), so that a failure shows its cause rather than the
    cleanup and destroy that ran after it; empty when no action is marked failed."""
    marks = re.compile(r"➜ \S+: \S*(Executing|Executed: Failed)")
    lines = out.splitlines(keepends=True)
    start = None
    for i, line in enumerate(lines):
        mark = marks.search(line)
        if mark and mark.group(1) == "Executing":
            start = i
        elif mark and start is not None:
            return "".join(lines[start:i + 1])
    return ""


def test_failed_action_is_the_section_of_the_action_that_failed():
    out = ("I swarm ➜ converge: Executing\nok\nI swarm ➜ converge: Executed: Successful\n"
           "I swarm ➜ verify: Executing\nE assert 'pending' == 'active'\nI swarm ➜ verify: Executed: Failed\n"
           "I swarm ➜ destroy: Executing\nI swarm ➜ destroy: Executed: Successful\n")
    assert failed_action(out) == ("I swarm ➜ verify: Executing\nE assert 'pending' == 'active'\n"
                                  "I swarm ➜ verify: Executed: Failed\n")
    assert failed_action(out.replace("Failed", "Successful")) == ""


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario):
    proc = subprocess.run([str(ROOT / "scripts" / "run-molecule"), scenario], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, (failed_action(proc.stdout)[-12000:] + "\n[...]\n" + proc.stdout[-2000:]
                                  + proc.stderr[-4000:])
    assert f"=== {scenario} passed in" in proc.stdout
