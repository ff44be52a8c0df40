"""swarm_worker / swarm_manager / docker_engine without a swarm: the SSM wait against the local AWS endpoint,
and bad settings stopping in preflight. The swarm itself is exercised by the molecule scenario `swarm`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, credentials_later, endpoint_env, host_failure, jhs_names


def playbook(tmp_path: Path, tasks: str) -> Path:
    path = tmp_path / "play.yml"
    path.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                    + textwrap.indent(textwrap.dedent(tasks), "    "))
    return path


def ansible(tmp_path: Path, env: dict, play: Path, variables: dict, **kw):
    (tmp_path / "vars.json").write_text(json.dumps(
        {"ansible_python_interpreter": str(VENV_BIN / "python"), **variables}))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(play), "-e", f"@{tmp_path / 'vars.json'}"]
    return subprocess.Popen(cmd, env={**env, "ANSIBLE_ROLES_PATH": str(ROOT / "roles")}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


JOIN_PARAMS = """\
- name: Read the join parameters the way swarm_worker does
  ansible.builtin.include_role:
    name: swarm_worker
    tasks_from: join_params
- name: Keep what the role read
  ansible.builtin.copy:
    content: "{{ {'addr': _swarm_worker_manager_addr, 'token': _swarm_worker_join_token,
                  'attempts': __swarm_worker_join_params.attempts, 'waited': _swarm_worker_join_waited} | to_json }}"
    dest: "{{ playbook_dir }}/read.json"
    mode: "0600"
"""


def waiting(proc: subprocess.Popen) -> list[str]:
    """The output of a play running join_params until its wait has begun and missed: its task has started (a loaded
    machine can take many seconds to get there), and a few of its reads (0.5 s, then up to 2 s apart) found nothing."""
    header, seen = "TASK [swarm_worker : Wait for the manager to publish the join token and address]", []
    deadline = time.time() + 120
    while time.time() < deadline and not any(header in line for line in seen):
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
    assert any(header in line for line in seen), "".join(seen)
    time.sleep(5)
    assert proc.poll() is None, "".join(seen) + proc.communicate()[0]
    return seen


def join_vars(cluster: str, endpoint: str, **extra) -> dict:
    return {"cluster_name": cluster, "aws_region": "eu-west-1", "aws_endpoint_url": endpoint,
            "swarm_worker_join_wait_initial_delay": 0.5, "swarm_worker_join_wait_max_delay": 2, **extra}


def test_worker_waits_until_the_manager_publishes_then_reads_both(tmp_path, aws_env, boto, moto_endpoint):
    ssm = boto("ssm")
    proc = ansible(tmp_path, {**aws_env, "PYTHONUNBUFFERED": "1"}, playbook(tmp_path, JOIN_PARAMS),
                   join_vars("waiter", moto_endpoint, swarm_worker_join_wait_timeout=120))
    # Publish only once the wait has begun and missed.
    seen = waiting(proc)
    token = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25
    names = jhs_names("waiter")["ssm"]
    ssm.put_parameter(Name=names["join_token"], Value=token, Type="SecureString")
    ssm.put_parameter(Name=names["manager_addr"], Value="10.10.1.5", Type="SecureString")
    out, _ = proc.communicate(timeout=120)
    out = "".join(seen) + out
    assert proc.returncode == 0, out
    read = json.loads((tmp_path / "read.json").read_text())
    assert read["addr"] == "10.10.1.5:2377"          # port added when the manager published a bare address
    assert read["token"] == token
    assert read["attempts"] >= 2 and float(read["waited"]) > 0  # it missed at least once, then read them
    assert token not in out, "the join token must never appear in the output"


def test_worker_whose_credentials_come_late_reads_them_once_they_are_there(tmp_path, aws_env, boto, moto_endpoint):
    """Just after launch an instance's metadata service can be slow to hand out the role's credentials (botocore
    asks once, with a 1 s timeout, and a client keeps what it found). The wait looks them up again, so a worker
    whose first lookup found none joins once they are there, not after the whole wait (a CI run waited 15 min)."""
    ssm = boto("ssm")
    names = jhs_names("late-creds")["ssm"]
    ssm.put_parameter(Name=names["join_token"], Value="SWMTKN-1-" + "c" * 50, Type="SecureString")
    ssm.put_parameter(Name=names["manager_addr"], Value="10.10.1.6:2377", Type="SecureString")
    env, write_credentials = credentials_later(aws_env, tmp_path)
    proc = ansible(tmp_path, env, playbook(tmp_path, JOIN_PARAMS),
                   join_vars("late-creds", moto_endpoint, swarm_worker_join_wait_timeout=60))
    seen = waiting(proc)
    write_credentials()
    out, _ = proc.communicate(timeout=150)
    # without a new lookup every attempt fails until the 60 s wait ends ("SSM parameters not available")
    assert proc.returncode == 0, "".join(seen) + out
    read = json.loads((tmp_path / "read.json").read_text())
    assert read["addr"] == "10.10.1.6:2377" and read["attempts"] >= 2


def test_worker_gives_up_after_the_configured_wait_with_a_clear_message(tmp_path, aws_env, moto_endpoint):
    start = time.monotonic()
    proc = ansible(tmp_path, aws_env, playbook(tmp_path, JOIN_PARAMS),
                   join_vars("nobody-home", moto_endpoint, swarm_worker_join_wait_timeout=3))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "SSM parameters not available after 3 s" in out
    names = jhs_names("nobody-home")["ssm"]
    assert names["join_token"] in out and names["manager_addr"] in out
    assert time.monotonic() - start < 60


ROLE = """\
- name: Apply the role
  ansible.builtin.include_role:
    name: {role}
"""

WORKER_OK = {"cluster_name": "hub", "aws_region": "eu-west-1", "swarm_worker_instance_id": "i-0abc",
             "swarm_worker_availability_zone": "eu-west-1a", "swarm_worker_instance_type": "t3.large",
             "swarm_worker_advertise_addr": "10.10.1.5"}


# (role, settings, the message its preflight or argument_specs must print)
BAD_SETTINGS = [
    ("swarm_worker", {**WORKER_OK, "swarm_worker_node_pool": "gpu"},
     "swarm_worker_node_pool 'gpu' is not a pool of this cluster: allowed are default"),
    ("swarm_worker", {**WORKER_OK, "swarm_worker_extra_labels": {"Team Name": "x"}},
     "Malformed node label Team Name=x"),
    ("swarm_worker", {**WORKER_OK, "swarm_worker_extra_labels": {"team": "a b"}},
     "Malformed node label team=a b"),
    ("swarm_worker", {**WORKER_OK, "swarm_worker_advertise_addr": "eth0"},
     "swarm_worker_advertise_addr an IPv4 address (got 'eth0'"),
    # the one cluster_name rule (plugins/module_utils/jhs_names.py), as aws_cluster applies it
    ("swarm_worker", {**WORKER_OK, "cluster_name": "Hub"}, "cluster_name=Hub: use 3-28 characters of a-z, 0-9 and '-'"),
    ("swarm_manager", {"cluster_name": "my--hub", "aws_region": "eu-west-1", "swarm_manager_advertise_addr": "10.10.1.4"},
     "cluster_name=my--hub: use 3-28 characters of a-z, 0-9 and '-'"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1", "docker_engine_image_files_digest": "abc"},
     "docker_engine_image_files_digest must be empty or the SHA-256 hex digest"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1", "docker_engine_log_driver": "syslog"},
     "docker_engine_log_driver must be one of: json-file, local, awslogs"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1", "docker_engine_log_max_size": "lots"},
     "docker_engine_log_max_size a size like 10m (got lots)"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1", "docker_engine_awslogs_endpoint": "logs.example"},
     "docker_engine_awslogs_endpoint empty or an http(s) URL (got 'logs.example')"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1",
                       "docker_engine_labels": {"jhs.node-pool": ""}},
     "docker_engine_labels: key 'jhs.node-pool'"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1", "docker_engine_source": "docker",
                       "docker_engine_docker_repo_url": "download.example/linux/"},
     "docker_engine_docker_repo_url must be an http(s) URL with no trailing slash (got 'download.example/linux/'"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1",
                       "docker_engine_egress_allowed": [{"cidr": "10.1.2.0/24", "port": 70000}]},
     "docker_engine_egress_allowed a list of {cidr: IPv4 CIDR, port: 1-65535, protocol: tcp or udp (default tcp)}"),
    ("docker_engine", {"cluster_name": "hub", "aws_region": "eu-west-1",
                       "docker_engine_egress_blocked_cidrs": ["10.0.0.0/8", "fd00::/8"]},
     "docker_engine_egress_blocked_cidrs must be IPv4 CIDRs (got [\"10.0.0.0/8\", \"fd00::/8\"])"),
    ("swarm_manager", {"cluster_name": "hub", "aws_region": "eu-west-1", "swarm_manager_advertise_addr": ""},
     "swarm_manager_advertise_addr an IPv4 address (got ''"),
    ("swarm_manager", {"cluster_name": "hub", "aws_region": "", "swarm_manager_advertise_addr": "10.10.1.4"},
     "Publishing to SSM needs aws_region"),
]


@pytest.fixture(scope="module")
def bad_settings_run(tmp_path_factory, moto_endpoint):
    """Every case of BAD_SETTINGS in one ansible-playbook run: a host per case (on the control node, the case's
    settings as its vars) that includes the case's role (one Ansible start instead of one per case)."""
    work = tmp_path_factory.mktemp("swarm-roles-preflight")
    hosts = {f"case{i}": {"ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
                          "case_role": role, **variables} for i, (role, variables, _) in enumerate(BAD_SETTINGS)}
    (work / "cases.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    # gather_facts is needed by docker_engine's platform check; no task after preflight may run.
    (work / "play.yml").write_text("- hosts: all\n  gather_facts: true\n  gather_subset: [min]\n  tasks:\n"
                                   "    - ansible.builtin.include_role:\n        name: '{{ case_role }}'\n")
    env = {**endpoint_env(moto_endpoint), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(work / "cases.yml"), str(work / "play.yml")],
                          env=env, cwd=work, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", range(len(BAD_SETTINGS)), ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(BAD_SETTINGS)])
def test_bad_settings_stop_in_preflight(bad_settings_run, case):
    role, _, message = BAD_SETTINGS[case]
    assert bad_settings_run.returncode != 0
    flat = " ".join(host_failure(bad_settings_run.stdout, f"case{case}")[1].split())
    assert message in flat, bad_settings_run.stdout[-6000:]
    recap = dict(re.findall(r"^(case\d+)\s+: (ok=.*)$", bad_settings_run.stdout, re.M))
    # Nothing after the preflight ran (it would have needed a Docker engine or the metadata service).
    assert "failed=1" in recap[f"case{case}"] and "changed=0" in recap[f"case{case}"], recap
