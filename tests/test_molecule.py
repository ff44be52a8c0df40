"""Every molecule scenario (molecule/*/molecule.yml), run by scripts/run-molecule inside the pytest run.

`make test` runs them here rather than after pytest so that pytest-xdist hands them to the worker that is not
busy with the lab's tests (each scenario brings up its own Docker-in-Docker nodes on its own network).
`make molecule` still runs them on their own.
"""
from __future__ import annotations

import subprocess

import pytest
from conftest import ROOT

SCENARIOS = sorted(path.parent.name for path in (ROOT / "molecule").glob("*/molecule.yml"))


def test_every_scenario_is_found():
    assert SCENARIOS == ["docker_repo", "jupyterhub", "swarm"]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario_passes(scenario):
    proc = subprocess.run([str(ROOT / "scripts" / "run-molecule"), scenario], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert f"=== {scenario} passed in" in proc.stdout
