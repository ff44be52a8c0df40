"""lab/docker.py's inspect_labelled, which the lab's reconciler calls every second: against this machine's engine,
with containers created (never started) for the test."""
from __future__ import annotations

import subprocess
import uuid

from jhs_hub.helpers import lab_base_image

from lab.docker import inspect, inspect_labelled


def test_inspect_labelled_finds_exactly_the_labelled_containers_as_docker_inspect_shows_them():
    label = f"jhs-lab-test.{uuid.uuid4().hex[:8]}"
    image = lab_base_image()
    names = [f"jhs-lab-test-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        for name, value in zip(names, ("node", "node", "other")):
            subprocess.run(["docker", "create", "--name", name, "--label", f"{label}={value}", image, "true"],
                           check=True, capture_output=True)
        found = inspect_labelled(f"{label}=node")
        assert sorted(found) == sorted(names[:2])
        for name in names[:2]:
            assert found[name] == inspect(name)     # what `docker inspect` shows, keyed by the container's name
            assert found[name]["State"]["Running"] is False
        assert sorted(inspect_labelled(label)) == sorted(names)
        assert inspect_labelled(f"{label}=none") == {}
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
