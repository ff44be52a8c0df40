"""Helpers for the jupyterhub role's tests: run the role's playbooks on this machine, build its images once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
# The host's CA bundle (a TLS-inspecting proxy's CA may be in it): the role's "extra CA certificates".
CA_BUNDLE = os.environ.get("LAB_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
# The role's own image names: tags are recipe hashes, so tests share the build cache with any other run.
HUB_IMAGE_NAME = "jhs/hub"
NOTEBOOK_IMAGE_NAME = "jhs/notebook"


def ansible_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{VENV_BIN}:{os.environ['PATH']}",
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env.update(extra or {})
    return env


def write_inventory(path: Path, hosts: dict[str, dict]) -> Path:
    """A YAML inventory of local hosts, each running with this venv's Python (docker, cryptography, boto3)."""
    data = {"all": {"hosts": {name: {"ansible_python_interpreter": sys.executable, **hv}
                              for name, hv in hosts.items()}}}
    path.write_text(yaml.safe_dump(data))
    return path


def run_playbook(playbook: str, inventory: Path, env: dict | None = None, json_output: bool = False,
                 timeout: int = 900, check: bool = False) -> subprocess.CompletedProcess:
    extra = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"} if json_output else {}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(HERE / playbook)]
                          + (["--check", "--diff"] if check else []),
                          env=ansible_env({**(env or {}), **extra}), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host from the default callback's output."""
    out = {}
    for line in stdout.splitlines():
        if " : ok=" in line:
            host, counters = line.split(" : ", 1)
            out[host.strip()] = {k: int(v) for k, v in (kv.split("=") for kv in counters.split())}
    return out


def failures(json_stdout: str) -> dict[str, str]:
    """{host: message} of the failed tasks in an ansible.posix.json run."""
    start = json_stdout.index("{\n") if json_stdout.startswith("{\n") else json_stdout.index("\n{\n") + 1
    data, _ = json.JSONDecoder().raw_decode(json_stdout[start:])
    out = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if res.get("failed"):
                    msgs = [res.get("msg", "")] + [r.get("msg", "") for r in res.get("results", []) if r.get("failed")]
                    out[host] = " ".join(m for m in msgs if m)
    return out


def lab_image(name: str = "base") -> str:
    """One of the lab's images (lab/images.py: built from Debian packages, cached by recipe); the Debian base by
    default."""
    proc = subprocess.run([sys.executable, "-m", "lab", "images"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout[proc.stdout.index("{"):])[name]


def lab_base_image() -> str:
    """The lab's Debian base image."""
    return lab_image("base")


def image_vars(base: str, build_dir: Path) -> dict:
    """Role settings shared by every test that builds or runs the images, so they share one build cache."""
    return {"cluster_name": "jhtest", "jupyterhub_build_base_image": base,
            "jupyterhub_extra_ca_certificates": [CA_BUNDLE] if Path(CA_BUNDLE).is_file() else [],
            "jupyterhub_hub_image_name": HUB_IMAGE_NAME, "jupyterhub_notebook_image_name": NOTEBOOK_IMAGE_NAME,
            "jupyterhub_build_dir": str(build_dir / "build"), "jupyterhub_config_dir": str(build_dir / "etc"),
            "jupyterhub_tls_dir": str(build_dir / "etc" / "tls"), "jupyterhub_data_dir": str(build_dir / "data"),
            "jupyterhub_state_dir": str(build_dir / "state"),
            "jupyterhub_backup_dir": str(build_dir / "backups")}


def docker(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc
