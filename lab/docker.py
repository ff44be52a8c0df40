"""Thin helpers around the docker CLI (the lab drives the engine the way an operator would)."""
from __future__ import annotations

import json
import subprocess


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
