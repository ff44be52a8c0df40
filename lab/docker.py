"""Thin helpers around the docker CLI (the lab drives the engine the way an operator would), and one through the
engine's API for what the reconciler asks every second (inspect_labelled)."""
from __future__ import annotations

import functools
import json
import subprocess

import docker as docker_sdk


class DockerError(RuntimeError):
    pass


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = 300) -> str:
    proc = subprocess.run(["docker", *args], capture_output=capture, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])}... failed: {(proc.stderr or '').strip()}")
    return (proc.stdout or "").strip()


def ids(kind: str, label: str) -> list[str]:
    """IDs (names for networks) of containers/networks/volumes carrying a label filter."""
    if kind == "container":
        out = docker("ps", "-aq", "--filter", f"label={label}")
    elif kind == "network":
        out = docker("network", "ls", "-q", "--filter", f"label={label}")
    elif kind == "volume":
        out = docker("volume", "ls", "-q", "--filter", f"label={label}")
    else:
        raise ValueError(kind)
    return [line for line in out.splitlines() if line]


def inspect(obj: str, kind: str = "container") -> dict | None:
    proc = subprocess.run(["docker", kind, "inspect", obj], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


@functools.cache
def _engine_api() -> docker_sdk.APIClient:
    return docker_sdk.from_env().api


def inspect_labelled(label: str) -> dict[str, dict]:
    """Name -> `docker inspect` of every container carrying a label filter, through the engine's API.

    For the reconciler, which asks every second: one `docker` CLI process per container per pass cost about a
    tenth of a core with the lab idle (docs/benchmarks.md); the API costs no process. A container removed
    between the listing and its inspection is left out, as `inspect` returns None for it."""
    api, found = _engine_api(), {}
    for ref in api.containers(all=True, quiet=True, filters={"label": label}):
        try:
            info = api.inspect_container(ref["Id"])
        except docker_sdk.errors.NotFound:
            continue
        found[info["Name"].lstrip("/")] = info
    return found
