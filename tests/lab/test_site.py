"""The main job end to end in the lab: `ansible-playbook site.yml -i inventories/lab`.

Provision in the local endpoint, the manager configured over the inventory, workers that join the
swarm by themselves from their user-data (ansible-pull), JupyterHub over HTTPS spawning user servers
as swarm services on the workers.
"""
from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import warnings

import pytest
import requests
from conftest import home_owner, jhs_names, task_sections
from labutil import (FIRST_SITE_LOG, MIGRATION_GUIDE, ROOT, doc_command, doc_commands, lab_admin_keys, lab_cmd,
                     node_containers, node_exec, read_env, wait_for)

from lab import config
from lab.hubclient import HubClient

pytestmark = pytest.mark.lab
CLUSTER = "labhub"
NAMES = jhs_names(CLUSTER)
SSM = NAMES["ssm"]


def run_site(lab_env: dict, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **lab_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([*doc_command("run"), *extra],   # docs/deploy-aws.md's command, as an operator runs it
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)


def recap(output: str) -> dict[str, dict[str, int]]:
    hosts = {}
    for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M):
        hosts[m.group(1)] = {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                             "failed": int(m.group(5))}
    return hosts


def task_results(output: str, task: str) -> set[str]:
    """What a task reported in a run's output (the default callback's): {"ok", "changed", "skipping", ...}."""
    return {status for name, body in task_sections(output) if name == task
            for status in re.findall(r"^(\w+): \[", body, re.M)}


PULL_IMAGES_TASK = "jupyterhub : Images | pull the images of these recipes from the registry when it holds them"
RUN_OUTPUTS: list[str] = []   # every site.yml run's output, checked for secrets


@pytest.fixture(scope="module")
def site(lab, request):
    DENIALS_BEFORE.append(len(iam_denials()))   # refusals of an earlier run of these tests on the same lab
    proc = run_site(lab)
    RUN_OUTPUTS.append(proc.stdout + proc.stderr)
    # kept for the run's summary (tests/conftest.py): where the longest step of a test run spent its time
    FIRST_SITE_LOG.parent.mkdir(parents=True, exist_ok=True)
    FIRST_SITE_LOG.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:   # why, for the run's summary too: the groups' instances, the reconciler, the boot logs
        status = lab_cmd("status", "--logs", "40", check=False)
        with FIRST_SITE_LOG.open("a") as log:
            log.write("\n=== python -m lab status --logs 40 ===\n" + status.stdout + status.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    lab_cmd("summary")
    env = read_env()
    assert env.get("LAB_HUB_URL"), "make lab's summary found no hub answering on a manager"
    start_rehearsal(request.session)
    return env


# The rehearsal of inventories/aws (lab/rehearsal.py) runs in the background from the end of the site fixture: on
# nodes of its own, beside the lab's cluster, while the tests below run; its test, near the end, waits for it.
REHEARSAL_TEST = "test_inventories_aws_as_written_reaches_a_hub_over_https_with_an_acme_certificate_and_tears_down"
REHEARSAL: dict = {}


def start_rehearsal(session) -> None:
    if not any(item.name == REHEARSAL_TEST for item in session.items) or REHEARSAL:
        return
    logs = ROOT / ".lab" / "logs"
    files = {"up": logs / "rehearsal-up.json", "down": logs / "rehearsal-down.json", "log": logs / "rehearsal.log"}
    for f in files.values():
        f.unlink(missing_ok=True)
    py = shlex.quote(sys.executable)
    script = (f"{py} -m lab rehearse --result {shlex.quote(str(files['up']))}; "
              f"{py} -m lab rehearse --down --result {shlex.quote(str(files['down']))}")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    with files["log"].open("w") as log:
        # below the lab's tests (nice 10, as the other pytest worker): they keep their pace, it fills their waits
        REHEARSAL.update(files, proc=subprocess.Popen(["nice", "-n", "10", "bash", "-c", script], cwd=ROOT, env=env,
                                                      stdout=log, stderr=subprocess.STDOUT))


@pytest.fixture(scope="module")
def aws(site):
    import boto3
    kw = dict(endpoint_url=site["AWS_ENDPOINT_URL"], region_name=site["AWS_DEFAULT_REGION"], **lab_admin_keys())
    return lambda service: boto3.client(service, **kw)


def manager_id(aws) -> str:
    resp = aws("ec2").describe_instances(Filters=[
        {"Name": "tag:jhs:cluster", "Values": [CLUSTER]}, {"Name": "tag:jhs:role", "Values": ["manager"]},
        {"Name": "instance-state-name", "Values": ["running"]}])
    return resp["Reservations"][0]["Instances"][0]["InstanceId"]


def swarm_nodes(manager: str) -> list[dict]:
    ids = node_exec(manager, "docker", "node", "ls", "-q").stdout.split()
    return json.loads(node_exec(manager, "docker", "node", "inspect", *ids).stdout)


def worker_ids(aws) -> list[str]:
    """The group's instances that are not leaving it (InService, or Pending:Wait until their boot completes the
    launch hook)."""
    groups = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])
    return sorted(i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"]
                  if not i["LifecycleState"].startswith("Terminat"))


SCALER = "jupyterhub-scaler"


@pytest.fixture(autouse=True)
def scaler_running_after_each_test(request):
    """A test that paused the scaler and failed half-way leaves it running for the next one."""
    yield
    if "aws" in request.fixturenames:
        node_exec(manager_id(request.getfixturevalue("aws")), "docker", "start", SCALER)


@contextlib.contextmanager
def scaler_paused(manager: str):
    """The scaler stopped, for a test that sets the group's size by hand (the scaler would undo it)."""
    assert node_exec(manager, "docker", "stop", SCALER).returncode == 0
    try:
        yield
    finally:
        node_exec(manager, "docker", "start", SCALER)


def ready_workers(manager: str) -> dict[str, dict]:
    """Ready worker nodes by the instance id in their engine labels."""
    out = {}
    for n in swarm_nodes(manager):
        labels = n["Description"]["Engine"].get("Labels") or {}
        if n["Spec"]["Role"] == "worker" and n["Status"]["State"] == "ready" and "jhs.instance-id" in labels:
            out[labels["jhs.instance-id"]] = labels
    return out


def test_manager_and_workers_are_ready_swarm_nodes_with_labels(site, aws):
    manager = manager_id(aws)
    nodes = swarm_nodes(manager)
    leader = [n for n in nodes if n["Spec"]["Role"] == "manager"]
    assert len(leader) == 1 and leader[0]["Status"]["State"] == "ready"
    workers = ready_workers(manager)
    assert sorted(workers) == worker_ids(aws) and len(workers) == 2
    ec2 = aws("ec2")
    for iid, labels in workers.items():
        inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        assert labels["jhs.availability-zone"] == inst["Placement"]["AvailabilityZone"]
        assert labels["jhs.instance-type"] == inst["InstanceType"]
        assert labels["jhs.node-pool"] == "default"
        # the group's first workers too waited on the launch hook, which their boot completed once they had joined
        log = node_exec(iid, "cat", "/var/log/jhs-boot.log").stdout
        assert f"jhs-boot: launch lifecycle action of {iid} completed with CONTINUE" in log, log[-3000:]
    # no user server may land on the manager: it is not a worker and the spawner's placement says so
    assert not [n for n in nodes if n["Spec"]["Role"] == "manager" and n["Spec"]["Availability"] != "active"]


def private_ips(aws, iids: list[str]) -> dict[str, str]:
    resp = aws("ec2").describe_instances(InstanceIds=iids)
    return {i["InstanceId"]: i["PrivateIpAddress"] for r in resp["Reservations"] for i in r["Instances"]}


PORT_PROBE = """
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[f"{host}:{port}"] = "open"
    except ConnectionRefusedError:
        out[f"{host}:{port}"] = "refused"
    except OSError as e:
        out[f"{host}:{port}"] = type(e).__name__
print(json.dumps(out))
"""


def test_security_groups_are_enforced_between_nodes(site, aws):
    """The endpoint's security groups filter the traffic between the lab's nodes as AWS does (lab/sgfilter.py): a
    worker reaches the manager's swarm port, which the nodes' group allows, but not a port no group allows (dropped:
    a timeout, as on AWS), which the host (outside the groups) does reach. Without the filter the worker would get
    through: the test can fail. The whole lab test suite runs with the filter on, so the swarm, the hub and the
    workers' boot need no more than the groups allow."""
    from lab import sgfilter
    manager = manager_id(aws)
    worker = worker_ids(aws)[0]
    manager_ip = private_ips(aws, [manager])[manager]
    rules = subprocess.run(["iptables", "-S", sgfilter.CHAIN], capture_output=True, text=True).stdout
    assert f"-A {sgfilter.CHAIN} -d {manager_ip}/32 -m comment --comment {manager} -j DROP" in rules, rules
    assert node_exec(manager, "sh", "-c", "setsid -f python3 -m http.server 18080 >/dev/null 2>&1").returncode == 0
    jump = ["DOCKER-USER", "-i", config.BRIDGE, "-o", config.BRIDGE, "-j", sgfilter.CHAIN]
    try:
        def host_reaches() -> bool:
            try:
                socket.create_connection((manager_ip, 18080), timeout=3).close()
                return True
            except OSError:
                return False
        wait_for(host_reaches, 30, 1, what="a listener on the manager that the host reaches")
        targets = json.dumps([[manager_ip, 2377], [manager_ip, 18080]])
        probe = json.loads(node_exec(worker, "python3", "-c", PORT_PROBE, targets).stdout)
        assert probe == {f"{manager_ip}:2377": "open", f"{manager_ip}:18080": "TimeoutError"}, probe
        assert subprocess.run(["iptables", "-D", *jump], capture_output=True).returncode == 0
        try:
            probe = json.loads(node_exec(worker, "python3", "-c", PORT_PROBE, targets).stdout)
            assert probe == {f"{manager_ip}:2377": "open", f"{manager_ip}:18080": "open"}, probe
        finally:
            assert subprocess.run(["iptables", "-I", jump[0], "1", *jump[1:]], capture_output=True).returncode == 0
    finally:
        node_exec(manager, "pkill", "-f", "http.server 18080")


def test_nodes_are_reached_over_ssh_as_on_aws(site, aws):
    """Ansible reaches the lab's nodes as inventories/aws reaches instances: SSH as admin, root through sudo, the
    manager directly at its private address and the workers through it (their sshd sees the manager as the client),
    with the key of the instance's key pair, which the cloud-init stand-in installed from the metadata service.
    Each instance has host keys and a machine id of its own (a worker from the baked image too), and sshd takes no
    password. The
    nodes' group lets SSH in from the manager only: a worker's connection to another worker's sshd is dropped."""
    manager = manager_id(aws)
    workers = worker_ids(aws)
    assert len(workers) >= 2, workers
    ips = private_ips(aws, [manager, *workers])
    env = {**os.environ, **site, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "swarm_managers:swarm_workers", "-i", "inventories/lab", "-o",
         "-m", "ansible.builtin.shell", "-a", 'echo "$(id -un) $SSH_CONNECTION"; sudo -n id -u',
         "-e", "ansible_become=false"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(i-\w+) \| CHANGED \| rc=0 \| \(stdout\) (\S+) (\S+) \d+ (\S+) 22\\n0$", line)
        if m:
            seen[m.group(1)] = m.groups()[1:]
    assert seen.get(manager) == ("admin", site["LAB_ADMIN_CIDR"].split("/")[0], ips[manager]), proc.stdout
    for iid in workers:
        assert seen.get(iid) == ("admin", ips[manager], ips[iid]), proc.stdout
    pub = (ROOT / ".lab/ssh/id_ed25519.pub").read_text().split()[1]
    fingerprints, machine_ids = {}, {}
    for iid in [manager, *workers]:
        assert pub in node_exec(iid, "cat", "/home/admin/.ssh/authorized_keys").stdout, iid
        assert "passwordauthentication no" in node_exec(iid, "sshd", "-T").stdout, iid
        fingerprints[iid] = node_exec(iid, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
        machine_ids[iid] = node_exec(iid, "cat", "/etc/machine-id").stdout.strip()
    assert len(set(fingerprints.values())) == len(fingerprints), fingerprints
    assert len(set(machine_ids.values())) == len(machine_ids) and all(machine_ids.values()), machine_ids
    targets = json.dumps([[ips[workers[1]], 22]])
    assert json.loads(node_exec(manager, "python3", "-c", PORT_PROBE, targets).stdout) == {f"{ips[workers[1]]}:22": "open"}
    assert json.loads(node_exec(workers[0], "python3", "-c", PORT_PROBE, targets).stdout) == {
        f"{ips[workers[1]]}:22": "TimeoutError"}


CALLER = """
import json, sys, boto3
sts = boto3.client("sts", endpoint_url=sys.argv[1], region_name=sys.argv[2])
creds = boto3.Session().get_credentials().get_frozen_credentials()
print(json.dumps({"arn": sts.get_caller_identity()["Arn"], "key": creds.access_key}))
"""


def test_each_node_calls_aws_as_its_instance_profiles_role(site, aws):
    """The metadata stand-in hands each instance the temporary credentials of its instance profile's role, from the
    endpoint's STS (one session per instance, named after it), as EC2 does; so each node's calls are made as its
    role, and the endpoint names the assumed role as the caller (and judges the call by that role's policy: the
    next test)."""
    manager = manager_id(aws)
    workers = worker_ids(aws)
    keys = set()
    for iid, role, python in [(manager, NAMES["manager"], "python3")] + [
            (w, NAMES["worker"], "/opt/jhs/venv/bin/python") for w in workers]:
        proc = node_exec(iid, python, "-c", CALLER, site["AWS_ENDPOINT_URL"], site["AWS_DEFAULT_REGION"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        seen = json.loads(proc.stdout)
        assert seen["arn"].endswith(f":assumed-role/{role}/{iid}"), (iid, seen)
        assert seen["key"].startswith("ASIA") and seen["key"] != site["AWS_ACCESS_KEY_ID"], (iid, seen)
        keys.add(seen["key"])
    assert len(keys) == 1 + len(workers)   # a session of its own for each instance


# What a node's role may not do: (node, service, call, kwargs). EC2 calls are dry runs, so a role allowed them by
# mistake changes nothing (DryRunOperation, 412, instead of 403).
NOT_ALLOWED = [
    ("worker", "ssm", "get_parameter", {"Name": SSM["cookie_secret"]}),
    ("worker", "ssm", "put_parameter", {"Name": SSM["join_token"], "Value": "x",
                                        "Type": "SecureString", "Overwrite": True}),
    ("worker", "autoscaling", "set_desired_capacity", {"AutoScalingGroupName": NAMES["workers"],
                                                       "DesiredCapacity": 2}),
    ("worker", "ec2", "terminate_instances", {"InstanceIds": ["MANAGER"], "DryRun": True}),
    ("manager", "ssm", "put_parameter", {"Name": SSM["cookie_secret"], "Value": "x",
                                         "Type": "SecureString", "Overwrite": True}),
    ("manager", "ssm", "get_parameter", {"Name": jhs_names("another-cluster")["ssm"]["join_token"]}),
    ("manager", "ec2", "terminate_instances", {"InstanceIds": ["MANAGER"], "DryRun": True}),
    ("manager", "iam", "create_user", {"UserName": "jhs-not-allowed"}),
]
TRY_CALLS = """
import json, sys, boto3
from botocore.exceptions import ClientError
endpoint, region, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = []
for service, call, kwargs in calls:
    try:
        getattr(boto3.client(service, endpoint_url=endpoint, region_name=region), call)(**kwargs)
        out.append("allowed")
    except ClientError as e:
        out.append(e.response["ResponseMetadata"]["HTTPStatusCode"])
print(json.dumps(out))
"""
DENIALS_PROVOKED: list[str] = []   # the endpoint's log lines of the refusals the test below asks for
DENIALS_BEFORE: list[int] = []     # how many the log held when this module's site fixture began


def iam_denials() -> list[str]:
    """The endpoint's refusals since it began judging requests by IAM (its log, .lab/logs/moto.log)."""
    from lab.motoserver import IAM_ENFORCED
    log = (config.lab_dir() / "logs" / "moto.log").read_text(errors="replace")
    assert IAM_ENFORCED in log, "the lab's endpoint does not judge requests by IAM"
    return [line for line in log.rsplit(IAM_ENFORCED, 1)[1].splitlines() if line.startswith("IAM denied: ")]


def test_each_nodes_role_is_refused_what_it_was_not_given(site, aws):
    """The endpoint judges every request by IAM (lab/motoserver.py, --enforce-iam), so the whole run so far, every
    node's calls included, was allowed by the roles aws_cluster writes; and what a role was not given is refused:
    a worker reads no hub secret, publishes no token, scales nothing, terminates nothing; the manager writes no
    hub secret, reads no other cluster's parameters, terminates no instance and makes no IAM user."""
    manager, workers = manager_id(aws), worker_ids(aws)
    before = len(iam_denials())
    for role, node, python in (("worker", workers[0], "/opt/jhs/venv/bin/python"), ("manager", manager, "python3")):
        calls = [[service, call, json.loads(json.dumps(kwargs).replace("MANAGER", manager))]
                 for who, service, call, kwargs in NOT_ALLOWED if who == role]
        proc = node_exec(node, python, "-c", TRY_CALLS, site["AWS_ENDPOINT_URL"], site["AWS_DEFAULT_REGION"],
                         json.dumps(calls))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout) == [403] * len(calls), (role, calls, proc.stdout)
    provoked = iam_denials()[before:]
    DENIALS_PROVOKED.extend(provoked)
    assert len(provoked) == len(NOT_ALLOWED), provoked
    # what each role is given still works: the worker reads the join token, the manager the hub's secret
    allowed = [("worker", workers[0], "/opt/jhs/venv/bin/python", SSM["join_token"]),
               ("manager", manager, "python3", SSM["cookie_secret"])]
    for role, node, python, name in allowed:
        proc = node_exec(node, python, "-c", TRY_CALLS, site["AWS_ENDPOINT_URL"], site["AWS_DEFAULT_REGION"],
                         json.dumps([["ssm", "get_parameter", {"Name": name}]]))
        assert json.loads(proc.stdout) == ["allowed"], (role, proc.stdout, proc.stderr[-2000:])


AS_PULL_ROLE = """
import json, sys, boto3
from botocore.exceptions import ClientError
endpoint, region, role, repository = sys.argv[1:5]
creds = boto3.client("sts", endpoint_url=endpoint, region_name=region).assume_role(
    RoleArn=role, RoleSessionName="pull-test")["Credentials"]
ecr = boto3.client("ecr", endpoint_url=endpoint, region_name=region, aws_access_key_id=creds["AccessKeyId"],
                   aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
out = []
for call, kwargs in (("get_authorization_token", {}), ("batch_get_image", {"imageIds": [{"imageTag": "x"}]}),
                     ("put_image", {"imageManifest": "{}", "imageTag": "pushed-by-a-worker"})):
    if call != "get_authorization_token":
        kwargs["repositoryName"] = repository
    try:
        getattr(ecr, call)(**kwargs)
        out.append("allowed")
    except ClientError as e:
        out.append(e.response["ResponseMetadata"]["HTTPStatusCode"])
print(json.dumps(out))
"""


def test_the_registry_token_sent_with_every_spawn_is_a_pull_only_roles(site, aws):
    """The hub sends an ECR token with every spawn, which root on a worker can read: the manager gets it as the
    pull-only role aws_cluster makes (jupyterhub_registry_pull_role_arn), which logs in and pulls but never pushes.
    (The ECR stand-in takes one token for everyone, so the token itself cannot tell its identity here: the refresher
    names the role it asked as, and the role is judged by IAM.)"""
    manager, pull = manager_id(aws), jhs_names(CLUSTER)["registry_pull"]
    role = f"arn:aws:iam::{config.ACCOUNT}:role/{pull}"
    # the hub hands its spawns the credentials the refresher writes (the container's DOCKER_CONFIG, read-only)...
    hub = json.loads(node_exec(manager, "docker", "inspect", "jupyterhub").stdout)[0]
    mount = {m["Destination"]: m for m in hub["Mounts"]}[
        next(e.split("=", 1)[1] for e in hub["Config"]["Env"] if e.startswith("DOCKER_CONFIG="))]
    cmd = json.loads(node_exec(manager, "docker", "inspect", "jupyterhub-registry-login").stdout)[0]["Config"]["Cmd"]
    assert cmd[cmd.index("--config-dir") + 1] == mount["Source"] and not mount["RW"]
    assert cmd[cmd.index("--role-arn") + 1] == role
    # ...and its login, once more into a directory of its own, asks as the pull-only role
    once = cmd[:cmd.index("--every")]
    once[once.index("--config-dir") + 1] = "/tmp/jhs-pull-test"
    proc = node_exec(manager, "docker", "exec", "jupyterhub-registry-login", *once)
    assert f"as arn:aws:sts::{config.ACCOUNT}:assumed-role/{pull}/jhs-registry-login" in proc.stdout, (
        proc.stdout[-2000:] + proc.stderr[-2000:])
    before = len(iam_denials())
    proc = node_exec(manager, "python3", "-c", AS_PULL_ROLE, site["AWS_ENDPOINT_URL"], site["AWS_DEFAULT_REGION"], role,
                     jhs_names(CLUSTER)["ecr_prefix"] + "notebook")
    assert json.loads(proc.stdout) == ["allowed", "allowed", 403], proc.stdout + proc.stderr[-2000:]
    provoked = iam_denials()[before:]
    DENIALS_PROVOKED.extend(provoked)
    assert len(provoked) == 1 and "ecr:PutImage" in provoked[0], provoked


def test_the_lab_says_how_to_sign_in_and_what_to_try(site, aws):
    """`make lab` ends with `python -m lab summary`: the hub's URL, how to sign in and open it, and three things
    to try, naming this lab's own group and manager."""
    out = lab_cmd("summary").stdout
    assert f"hub        {site['LAB_HUB_URL']}" in out, out
    assert f"open {site['LAB_HUB_URL']} in a browser on this machine" in out, out
    assert "any user name signs in, with any password" in out and "the user admin is an admin" in out, out
    assert f"AutoScalingGroupName='{NAMES['workers']}', DesiredCapacity=3" in out, out
    manager = manager_id(aws)
    manager_ip = private_ips(aws, [manager])[manager]
    command = f"ssh -F .lab/ssh/config admin@{manager_ip} sudo docker logs jupyterhub"
    assert command in out, out
    proc = subprocess.run(command.split(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "JupyterHub" in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_a_manager_reboot_brings_back_the_hub_its_rules_and_the_servers_without_site_yml(site, aws, hub):
    """The manager instance reboots (its node restarts: systemd shuts down and boots again), and the boot is a busy
    one: the node has 4 % of a core until its engine has started, so the engine's swarm is not ready before the engine
    gives up starting the hub and the proxy (what a CI run's load did now and then, files/jhs-swarm-containers says
    why); the test checks the engine did give up on one at least. With no site.yml run: jhs-swarm-containers.service
    starts them, the engine comes back after the EFS mount, the containers' firewall is rebuilt before the engine, the
    hub answers through the proxy, the hub keeps its users, and a user's server (on a worker, untouched) answers with
    the file written before the reboot. The next test's site.yml run then changes nothing."""
    user = "u" + uuid.uuid4().hex[:6]
    hub.create_user(user)
    hub.start(user)
    manager = manager_id(aws)
    r = hub.call("PUT", f"/user/{user}/api/contents/before-reboot.txt",
                 json={"type": "file", "format": "text", "content": "written before the manager rebooted"})
    assert r.status_code in (200, 201), r.text
    service = node_exec(manager, "docker", "service", "inspect", "-f", "{{.ID}}", f"jupyter-{user}").stdout.strip()
    since = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")       # the node's clock is this machine's
    gave_up = "failed to start swarm container"

    def engine_log() -> str:
        return node_exec(manager, "journalctl", "-u", "docker", "--since", since, "--no-pager", "-o", "cat").stdout

    try:
        assert subprocess.run(["docker", "stop", "-t", "60", manager], capture_output=True).returncode == 0
        t0 = time.monotonic()
        try:
            assert subprocess.run(["docker", "start", manager], capture_output=True).returncode == 0
            # slowed from the engine's start on (the boot before it at full speed: it does not change the race)
            wait_for(lambda: node_exec(manager, "systemctl", "is-active", "docker.service").stdout.strip()
                     in ("activating", "active"), 120, 0.2, what="the engine to start on the rebooted manager")
            subprocess.run(["docker", "update", "--cpus", "0.04", manager], capture_output=True, check=True)
            wait_for(lambda: gave_up in (log := engine_log()) or "Daemon has completed initialization" in log, 600, 2,
                     what="the engine's start on the slowed node")
        finally:   # all the engine's cores (the most it takes): "--cpus 0" would leave the limit as it is
            cores = subprocess.run(["docker", "info", "--format", "{{.NCPU}}"], capture_output=True, text=True,
                                   check=True).stdout.strip()
            subprocess.run(["docker", "update", "--cpus", cores, manager], capture_output=True, check=True)
        slowed = time.monotonic() - t0
        assert gave_up in engine_log(), "the slowed boot's swarm was ready in time: the race was not reproduced"

        def manager_state() -> str:       # what a failure needs: the networks, the containers, the engine's log
            return "\n".join(node_exec(manager, *cmd).stdout for cmd in (
                ("docker", "network", "ls"), ("docker", "ps", "-a"), ("docker", "info", "-f", "{{json .Swarm}}"),
                ("journalctl", "-u", "docker", "-u", "jhs-swarm-containers", "--since", since, "-n", "60",
                 "--no-pager")))
        wait_for(lambda: hub_answers(hub), 300, 1, what="the hub to answer after the manager rebooted",
                 detail=manager_state)
        back = time.monotonic() - t0
        started = node_exec(manager, "journalctl", "-u", "jhs-swarm-containers", "--since", since, "--no-pager",
                            "-o", "cat").stdout
        assert re.search(r"^jhs-swarm-containers: started jupyterhub", started, re.M), started
        assert node_exec(manager, "systemctl", "is-system-running", "--wait").stdout.strip() == "running", \
            node_exec(manager, "systemctl", "--failed", "--no-legend").stdout
        # the rules are rebuilt at boot by their unit, before the engine (no site.yml ran)
        assert node_exec(manager, "/usr/local/sbin/jhs-container-firewall", "--check").returncode == 0
        def show(unit: str, prop: str) -> str:
            return node_exec(manager, "systemctl", "show", "-P", prop, unit).stdout.strip()
        firewall_done = int(show("jhs-container-firewall.service", "ActiveEnterTimestampMonotonic"))
        assert 0 < firewall_done <= int(show("docker.service", "ExecMainStartTimestampMonotonic"))
        # the engine requires the shared file system's mount (the lab's is a bind mount made before boot)
        assert "/mnt/efs" in show("docker.service", "RequiresMountsFor").split()
        assert show("mnt-efs.mount", "ActiveState") == "active"
        # the user's server was not touched, and its route is back
        assert node_exec(manager, "docker", "service", "inspect", "-f", "{{.ID}}", f"jupyter-{user}").stdout.strip() \
            == service
        wait_for(lambda: hub.call("GET", f"/user/{user}/api/status").status_code == 200, 60, 1,
                 what="the user's server through the proxy after the reboot")
        r = hub.call("GET", f"/user/{user}/api/contents/before-reboot.txt")
        assert r.status_code == 200 and r.json()["content"] == "written before the manager rebooted"
        assert user in [u["name"] for u in hub.call("GET", "/hub/api/users").json()]
        print(f"manager reboot: the hub answered {back:.1f} s after the node started again ({slowed:.1f} s slowed)")
    finally:
        hub.stop(user)


def test_the_guides_token_rotation_publishes_the_new_token_and_leaves_the_workers(site, aws):
    """docs/deploy-aws.md's "rotate the join token": the swarm's worker token changes, SSM holds the new one (what a
    booting worker reads), the workers in the swarm stay Ready, and site.yml afterwards changes nothing (next test)."""
    import hashlib
    manager, name = manager_id(aws), SSM["join_token"]

    def digest(text: str) -> str:   # compared by digest: a token never goes into an assertion's message
        return hashlib.sha256(text.strip().encode()).hexdigest()[:12]

    def swarm_token() -> str:
        return digest(node_exec(manager, "docker", "swarm", "join-token", "-q", "worker").stdout)

    def published() -> str:
        return digest(aws("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    before = swarm_token()
    assert published() == before
    workers = sorted(worker_ids(aws))
    env = {**os.environ, **site, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run(doc_command("rotate-token"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    RUN_OUTPUTS.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:]
    after = swarm_token()
    assert after != before and published() == after
    assert set(workers) <= set(ready_workers(manager))


def test_second_run_changes_nothing(site, aws):
    """A second site.yml run, after the manager's reboot and a join token rotation (the tests before), changes
    nothing. Its modules ran on the manager with the bytecode cache the first run gave the node's Python
    (playbooks/tasks/module_cache.yml)."""
    proc = run_site(site)
    RUN_OUTPUTS.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:]
    hosts = recap(proc.stdout)
    assert hosts, proc.stdout[-2000:]
    changed = {h: r["changed"] for h, r in hosts.items() if r["changed"] or r["failed"] or r["unreachable"]}
    assert changed == {}, proc.stdout[-6000:]
    # the manager holds every image of these recipes: nothing is pulled, and the build contexts are not written again
    for task in (PULL_IMAGES_TASK, "jupyterhub : Images | write the build contexts"):
        assert task_results(proc.stdout, task) == {"skipping"}, task
    manager = manager_id(aws)
    hook = node_exec(manager, "python3", "-c", "import zipimport; print(zipimport._compile_source.__module__)")
    assert hook.stdout.strip() == "jhs_ansiballz_cache", hook.stdout + hook.stderr
    # the modules' imports were compiled into root's cache (one entry a source, by its hash) and read from it since
    entries = node_exec(manager, "sh", "-c", "find /root/.cache/jhs-ansiballz -type f -printf x | wc -c").stdout
    assert int(entries) > 50, entries


def test_no_secret_in_the_runs_output(site, aws):
    """The hub's secrets, the swarm join token and the registry password (an ECR token of the local endpoint)
    appear in no run's output (the first site.yml run, the join token rotation and the second site.yml run)."""
    ssm = aws("ssm")
    names = [SSM["cookie_secret"], SSM["proxy_token"], SSM["join_token"]]
    values = [ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"]["Value"] for n in names]
    auth = aws("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    values += [auth, base64.b64decode(auth).decode().split(":", 1)[1]]
    assert len(RUN_OUTPUTS) == 3 and all(len(v) >= 16 for v in values)
    for output in RUN_OUTPUTS:
        leaked = [name for name, value in zip(names + ["ECR token", "ECR password"], values) if value in output]
        assert leaked == [], leaked


@pytest.fixture(scope="module")
def hub(site):
    return HubClient(site["LAB_HUB_URL"])


def hub_answers(hub: HubClient) -> bool:
    """The hub's health endpoint answers 200 through the proxy (False while the hub or its node restarts)."""
    try:
        return hub.call("GET", "/hub/health").status_code == 200
    except requests.RequestException:
        return False


def service_node(manager: str, user: str) -> str:
    """Instance id of the worker running the user's swarm service."""
    tasks = node_exec(manager, "docker", "service", "ps", f"jupyter-{user}", "--filter", "desired-state=running",
                      "--format", "{{.Node}}").stdout.split()
    assert len(tasks) == 1, tasks
    node = json.loads(node_exec(manager, "docker", "node", "inspect", tasks[0]).stdout)[0]
    assert node["Spec"]["Role"] == "worker"
    return node["Description"]["Engine"]["Labels"]["jhs.instance-id"]


def test_user_server_runs_on_a_worker_and_answers_through_the_hub(site, aws, hub):
    user = "u" + uuid.uuid4().hex[:6]
    assert hub.call("POST", f"/hub/api/users/{user}").status_code == 201
    hub.start(user)
    manager = manager_id(aws)
    assert service_node(manager, user) in worker_ids(aws)
    r = hub.call("GET", f"/user/{user}/api/status")
    assert r.status_code == 200 and "started" in r.json()
    # `make lab-status` lists the user's server with the worker it runs on
    status = lab_cmd("status").stdout
    assert re.search(rf"^server +{user} +on {service_node(manager, user)} +Running", status, re.M), status
    # --logs: what says why a worker has not joined (each worker InService in its group, the tail of its boot log)
    status = lab_cmd("status", "--logs", "5").stdout
    for worker in worker_ids(aws):
        assert re.search(rf"^group +{NAMES['workers']} +{worker} +InService", status, re.M), status
        assert f"--- {worker} /var/log/jhs-boot.log (last 5 lines)\n" in status and "user-data done" in status, status
    # the user's home is on the shared file system, owned by the notebook user
    home = ROOT / ".lab" / "efs" / "home" / user
    assert home.is_dir() and home.stat().st_uid == home_owner()[0]


def log_streams(aws, prefix: str) -> dict[str, list[str]]:
    """The messages of each stream of the cluster's containers' log group (CloudWatch Logs) whose name starts with
    prefix."""
    logs, group = aws("logs"), jhs_names(CLUSTER)["log_group"]
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)["logStreams"]
    return {s["logStreamName"]: [e["message"] for e in logs.get_log_events(
        logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]] for s in streams}


def test_every_containers_log_is_read_back_from_cloudwatch_logs(site, aws, hub):
    """Every node's engine sends its containers' logs to the group provisioning made (awslogs, with the instance's
    role, at the lab's endpoint), one stream per container name: a user's server's start, as its worker logged
    it, is read back from the group; so are the hub's and the proxy's, and each worker's boot log. `docker logs`
    still works on the node. No logs call of the run was refused."""
    user = "logs" + uuid.uuid4().hex[:6]
    assert hub.call("POST", f"/hub/api/users/{user}").status_code == 201
    hub.start(user)
    try:
        mine: dict[str, list[str]] = {}

        def read_back() -> bool:
            mine.update(log_streams(aws, f"jupyter-{user}."))
            return any(f"/user/{user}/lab" in m for messages in mine.values() for m in messages)
        wait_for(read_back, 60, 2, what=f"{user}'s server's start in the log group")
        (stream,) = mine     # one stream: <service>.<slot>.<task id>, the name its worker's `docker ps` shows
        assert re.fullmatch(rf"jupyter-{user}\.1\.[0-9a-z]{{25}}", stream), stream
        assert any("Jupyter Server" in m and "is running at" in m for m in mine[stream]), mine[stream][:20]
        worker = service_node(manager_id(aws), user)
        assert node_exec(worker, "docker", "inspect", "-f", "{{.HostConfig.LogConfig.Type}}", stream).stdout.strip() \
            == "awslogs"
        local = node_exec(worker, "docker", "logs", stream)
        assert f"/user/{user}/lab" in local.stdout + local.stderr     # the engine's local copy (dual logging)
    finally:
        hub.stop(user)
        hub.delete_user(user)
    for name in ("jupyterhub", "jupyterhub-proxy"):
        assert any(log_streams(aws, name).get(name, [])), f"no events in the stream {name}"
    # each worker's boot log, put there when its boot ended (jhs-asg log), says it joined
    for worker in worker_ids(aws):
        boots = log_streams(aws, f"boot/{worker}/")
        assert any(f"launch lifecycle action of {worker} completed with CONTINUE" in m
                   for messages in boots.values() for m in messages), sorted(boots)
    assert not [d for d in iam_denials() if "logs:" in d]


def test_the_dashboard_shows_only_metrics_with_data_after_a_spawn_and_is_drawn(site, aws, hub, tmp_path):
    """The dashboard provisioning made names only metrics that have data once a server was spawned: the scaler's,
    the hub-metrics exporter's (a spawn's duration, the API's latency, from /hub/metrics) and the group's own (the
    endpoint publishes them each minute, as AWS does). `python -m lab dashboard` draws it as a PNG. /hub/metrics
    answers the exporter's read:metrics token, and nothing else of the API does; nor does it answer without one."""
    from lab import dashboard
    from PIL import Image
    user = "dash" + uuid.uuid4().hex[:6]
    hub.create_user(user)
    hub.start(user)
    hub.stop(user)
    hub.delete_user(user)
    cw, name = aws("cloudwatch"), jhs_names(CLUSTER)["dashboard"]
    empty: list[str] = []

    def every_series_has_data() -> bool:
        widgets = dashboard.read(cw, name, minutes=15)
        empty[:] = [f"{w.title}: {s.label}" for w in widgets for s in w.series if not s.points]
        return not empty and len(widgets) == 7
    # the exporter reads every 10 s here; the group's metrics come each minute
    wait_for(every_series_has_data, 150, 5, what="data for every metric of the dashboard", detail=lambda: empty)

    proc = lab_cmd("dashboard", "--out", str(tmp_path / "dashboard.png"), "--minutes", "15")
    # no metric without data ("10 points" is not "0 points": session 26's run had a metric with exactly 10)
    assert "Spawn duration: mean" in proc.stdout and not re.search(r"\b0 points", proc.stdout), proc.stdout
    with Image.open(tmp_path / "dashboard.png") as image:
        assert image.format == "PNG" and image.size == (24 * dashboard.UNIT, 30 + 24 * dashboard.UNIT)

    token = node_exec(manager_id(aws), "cat", "/etc/jupyterhub/secrets/metrics-token").stdout.strip()
    session = requests.Session()
    session.trust_env, session.verify = False, False
    metrics = session.get(hub.url + "/hub/metrics", headers={"Authorization": f"token {token}"}, timeout=30)
    assert metrics.status_code == 200 and "jupyterhub_server_spawn_duration_seconds_bucket" in metrics.text
    assert session.get(hub.url + "/hub/metrics", timeout=30).status_code == 403
    assert session.get(hub.url + "/hub/api/users", headers={"Authorization": f"token {token}"},
                       timeout=30).status_code == 403
    assert not [d for d in iam_denials() if "cloudwatch:" in d]


def tls_handshake(host: str, port: int, highest: ssl.TLSVersion) -> str | None:
    """The protocol the server agrees to when the client offers TLS 1.0 up to `highest` (the client's own floor and
    security level lowered so that only the server can refuse); None when the server refuses the version (its
    protocol_version alert: any other failure, the client's own included, is an error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)    # TLS 1.0 and 1.1 are offered on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # the lab's self-signed certificate
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, highest
    try:
        with socket.create_connection((host, port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
            return tls.version()
    except ssl.SSLError as e:
        if e.reason == "TLSV1_ALERT_PROTOCOL_VERSION":
            return None
        raise


def test_a_user_server_runs_without_capabilities_or_new_privileges_under_a_pids_limit(site, aws, hub):
    """The user's server container, as the worker's engine runs it: every capability dropped, no-new-privileges
    (the engine's default, daemon.json), the role's pids limit. The hub's API listens on its overlay address only."""
    user = "u" + uuid.uuid4().hex[:6]
    hub.create_user(user)
    hub.start(user)
    manager = manager_id(aws)
    worker = service_node(manager, user)
    try:
        # users' servers send the same security headers as the hub's pages; the proxy refuses TLS below 1.2
        for path in ("/hub/login", f"/user/{user}/api/status"):
            r = hub.call("GET", path)
            assert r.headers.get("Strict-Transport-Security") == "max-age=31536000", (path, dict(r.headers))
            assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, dict(r.headers))
            # JupyterHub's own: 'none' on the login page, 'self' elsewhere
            assert re.search(r"frame-ancestors '(self|none)'", r.headers.get("Content-Security-Policy", "")), \
                (path, dict(r.headers))
        host, port = urllib.parse.urlsplit(site["LAB_HUB_URL"]).hostname, 443
        assert tls_handshake(host, port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert tls_handshake(host, port, ssl.TLSVersion.TLSv1_1) is None
        (cid,) = node_exec(worker, "docker", "ps", "-q", "--filter",
                           f"label=com.docker.swarm.service.name=jupyter-{user}").stdout.split()
        info = json.loads(node_exec(worker, "docker", "inspect", cid).stdout)[0]
        assert info["HostConfig"]["CapDrop"] == ["ALL"] and not info["HostConfig"]["CapAdd"], info["HostConfig"]
        assert info["HostConfig"]["PidsLimit"] == 4096, info["HostConfig"]
        status = dict(line.split(":\t", 1) for line in
                      node_exec(worker, "cat", f"/proc/{info['State']['Pid']}/status").stdout.splitlines() if ":\t" in line)
        assert status["NoNewPrivs"].strip() == "1", status
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    finally:
        hub.stop(user)
    # /proc/net/tcp of the hub container: the one socket listening on 8081 is bound to its overlay address
    pid = node_exec(manager, "docker", "inspect", "-f", "{{.State.Pid}}", "jupyterhub").stdout.strip()
    listening = [line.split()[1] for line in node_exec(manager, "cat", f"/proc/{pid}/net/tcp").stdout.splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[1].endswith(":1F91")]
    overlay = json.loads(node_exec(manager, "docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                   "jupyterhub").stdout)["jhs"]["IPAddress"]
    assert [socket.inet_ntoa(bytes.fromhex(a.split(":")[0])[::-1]) for a in listening] == [overlay], listening


def run_in_users_kernel(site: dict, hub, user: str, code: str, timeout: float = 90) -> str:
    """Run `code` in a new kernel of the user's own server (its real container on its worker: the lab's worker engines
    cannot `docker exec` into a container), over the kernel's websocket through the proxy; returns its stdout."""
    import websocket
    r = hub.call("POST", f"/user/{user}/api/kernels", json={"name": "python3"})
    assert r.status_code == 201, r.text[:300]
    kernel = r.json()["id"]
    url = urllib.parse.urlsplit(site["LAB_HUB_URL"])
    ws = websocket.create_connection(f"wss://{url.netloc}/user/{user}/api/kernels/{kernel}/channels",
                                     header=[f"Authorization: token {hub.token}"], timeout=timeout,
                                     sslopt={"cert_reqs": ssl.CERT_NONE, "check_hostname": False},
                                     http_no_proxy=[url.hostname])
    session = uuid.uuid4().hex

    def send(msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": msg_type, "username": "lab", "session": session,
                                       "version": "5.3"}, "parent_header": {}, "metadata": {}, "content": content,
                            "channel": "shell", "buffers": []}))
        return msg_id

    def replies(msg_id: str, seconds: float):
        deadline = time.time() + seconds
        ws.settimeout(1)
        while time.time() < deadline:
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                yield msg

    try:
        # a request sent before the kernel is connected is dropped: ask for kernel_info until it answers
        wait_for(lambda: any(m["msg_type"] == "kernel_info_reply" for m in replies(send("kernel_info_request", {}), 3)),
                 timeout, 0, what=f"{user}'s kernel to answer")
        request = send("execute_request", {"code": code, "silent": False, "store_history": False,
                                           "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        out = []
        for msg in replies(request, timeout):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
        raise AssertionError(f"no answer from {user}'s kernel within {timeout:.0f} s: {''.join(out)}")
    finally:
        ws.close()
        hub.call("DELETE", f"/user/{user}/api/kernels/{kernel}")


# Run inside one user's server: every way it might reach another user's files (the other user, the other server's
# overlay address as the proxy routes to it, the secret's file name).
CROSS_USER_PROBE = """
import json, os, urllib.error, urllib.request
other, target, secret = %r, %r, %r
out = {"home": sorted(os.listdir("/home")), "mount_roots": [], "paths": {}, "procs_naming_other": [], "http": {}}
for line in open("/proc/self/mountinfo"):
    root, point = line.split()[3:5]
    out["mount_roots"].append([root, point])
for path in (f"/home/{other}", f"/home/jovyan/../{other}/{secret}", f"/mnt/efs/home/{other}/{secret}", "/mnt/efs",
             f"/efs/home/{other}/{secret}", f"/proc/1/root/home/{other}"):
    out["paths"][path] = os.path.exists(path)
for pid in filter(str.isdigit, os.listdir("/proc")):
    for name in ("cmdline", "environ"):
        try:
            if other.encode() in open(f"/proc/{pid}/{name}", "rb").read():
                out["procs_naming_other"].append(f"{pid}/{name}")
        except OSError:
            pass
out["procs"] = len(list(filter(str.isdigit, os.listdir("/proc"))))

class Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(Keep)
token = os.environ["JUPYTERHUB_API_TOKEN"]
api = os.environ["JUPYTERHUB_API_URL"]
for name, url, auth in (("server_no_token", f"{target}/user/{other}/api/contents/{secret}?content=1", False),
                        ("server_own_token", f"{target}/user/{other}/api/contents/{secret}?content=1", True),
                        ("hub_user_model", f"{api}/users/{other}", True)):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if auth else {})
    try:
        with opener.open(req, timeout=10) as r:
            out["http"][name] = [r.status, r.read().decode(errors="replace")]
    except urllib.error.HTTPError as e:
        out["http"][name] = [e.code, e.read().decode(errors="replace")]
    except urllib.error.URLError as e:
        out["http"][name] = ["unreachable", str(e.reason)]
print(json.dumps(out))
"""


def test_two_users_cannot_read_each_others_files_by_any_path(site, aws, hub):
    """From inside one user's server (a kernel of its real container, on its worker): the other user's secret file is not
    reachable through the home mount (only its own directory is mounted, never the file system's root), /proc
    (its own processes only), the overlay (the connection to the other server is refused: the worker's
    jhs-server-isolation closed this server's namespace to the overlay but for the hub's API; with that rule taken
    away the other server still refuses a request without a token and one with this user's own token) or the hub's
    API (this user's token does not show the other user)."""
    a, b = ("u" + uuid.uuid4().hex[:6] for _ in range(2))
    manager = manager_id(aws)
    for user in (a, b):
        hub.create_user(user)
        hub.start(user)
    try:
        secret_name, secret = "secret.txt", "only-" + uuid.uuid4().hex
        b_home = ROOT / ".lab" / "efs" / "home" / b
        (b_home / secret_name).write_text(secret)
        os.chown(b_home / secret_name, 1000, 100)
        # the file is really there for b: its own server returns it
        r = hub.call("GET", f"/user/{b}/api/contents/{secret_name}", params={"content": 1})
        assert r.status_code == 200 and r.json()["content"] == secret, r.text[:300]
        routes = hub.call("GET", "/hub/api/proxy").json()
        target = routes[f"/user/{b}/"]["target"]
        out = run_in_users_kernel(site, hub, a, CROSS_USER_PROBE % (b, target, secret_name))
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["home"] == ["jovyan"], seen["home"]
        # the one mount from the shared file system is a's own home, at the notebook's home
        shared = [(root, point) for root, point in seen["mount_roots"] if "/efs" in root or "/home/" in root]
        assert shared and all(root.endswith(f"/home/{a}") for root, _ in shared), shared
        assert not any(seen["paths"].values()), seen["paths"]
        assert not seen["procs_naming_other"] and seen["procs"] < 50, seen
        for name in ("server_no_token", "server_own_token"):
            status, reason = seen["http"][name]
            assert status == "unreachable" and "refused" in reason.lower(), (name, status, reason)
        status, body = seen["http"]["hub_user_model"]
        assert status in (403, 404) and secret not in body, (status, body[:300])
        # the rule in a's namespace is what refuses it: taken away, the connection gets through to b's server, which
        # still answers no request of a's with b's file
        worker = service_node(manager, a)
        container = node_exec(worker, "docker", "ps", "-q", "--filter",
                              f"label=com.docker.swarm.service.name=jupyter-{a}").stdout.split()
        assert len(container) == 1, container
        netns = node_exec(worker, "docker", "inspect", "-f", "{{.NetworkSettings.SandboxKey}}",
                          container[0]).stdout.strip()
        assert node_exec(worker, "systemctl", "is-active", "jhs-server-isolation.service").stdout.strip() == "active"
        assert node_exec(worker, "/usr/local/sbin/jhs-server-isolation", "check").returncode == 0
        unrule = node_exec(worker, "nsenter", f"--net={netns}", "iptables", "-w", "-D", "OUTPUT", "-j",
                           "JHS-SERVER")
        assert unrule.returncode == 0, unrule.stderr
        try:
            assert node_exec(worker, "/usr/local/sbin/jhs-server-isolation", "check").returncode == 1
            opened = json.loads(run_in_users_kernel(site, hub, a, CROSS_USER_PROBE % (b, target, secret_name))
                                .strip().splitlines()[-1])
            for name in ("server_no_token", "server_own_token"):
                status, body = opened["http"][name]
                assert status in (302, 403, 404) and secret not in body, (name, status, body[:300])
        finally:
            assert node_exec(worker, "/usr/local/sbin/jhs-server-isolation", "apply", container[0]).returncode == 0
        assert node_exec(worker, "/usr/local/sbin/jhs-server-isolation", "check").returncode == 0
    finally:
        for user in (a, b):
            hub.stop(user)


def test_an_old_hubs_shared_directory_is_migrated_into_per_user_homes(site, aws, hub):
    """docs/migrating-from-chef.md, step 5, as written (lab-test=migrate-homes): the Chef project's one directory for
    everyone, copied to a staging directory on EFS, becomes each user's own home: their files, with the home's owner;
    nothing already in a home overwritten (a user who signed in first keeps what they wrote there); nothing for a
    user without a directory; the rest left in the staging copy. A second run changes nothing, and the user's
    server then finds their files and nobody else's."""
    a, b, c = ("mig" + uuid.uuid4().hex[:6] for _ in range(3))
    efs = ROOT / ".lab" / "efs"
    staging = efs / "migration" / uuid.uuid4().hex[:8]
    old = {a: {"notes.txt": "old notes", "data/results.csv": "1,2,3"}, b: {"thesis.tex": "old thesis", "fig.png": "png"},
           "course": {"week1.ipynb": "{}"}}          # the old layout: root's files, a directory per user, and the rest
    for owner, files in old.items():
        for rel, text in files.items():
            (staging / owner / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / owner / rel).write_text(text)
    (staging / a / "data" / "latest.csv").symlink_to("results.csv")
    home_b = efs / "home" / b                   # b signed in on the new hub first and wrote a file the old copy has too
    home_b.mkdir(parents=True, mode=0o700)
    (home_b / "thesis.tex").write_text("written on the new hub")
    for path in (home_b, home_b / "thesis.tex"):
        os.chown(path, *home_owner())
    site_path = f"/mnt/efs/migration/{staging.name}"
    argv = [("migrate_homes_source=" + site_path) if arg.startswith("migrate_homes_source=") else arg
            for arg in doc_commands(MIGRATION_GUIDE)["migrate-homes"]]
    argv += ["-e", json.dumps({"migrate_homes_users": [a, b, c]})]
    env = {**os.environ, **site, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    try:
        first = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stdout[-4000:]
        assert re.search(rf"{a}: changed: 4 copied, \d+ given the owner, 0 kept", first.stdout), first.stdout[-3000:]
        assert re.search(rf"{b}: changed: 1 copied, 1 given the owner, 1 kept", first.stdout), first.stdout[-3000:]
        assert f"no directory there, nothing done: {c}" in first.stdout
        home_a = efs / "home" / a
        assert (home_a / "notes.txt").read_text() == "old notes" and (home_a / "data" / "results.csv").read_text() == "1,2,3"
        assert os.readlink(home_a / "data" / "latest.csv") == "results.csv"
        assert oct(home_a.stat().st_mode & 0o777) == "0o700"
        for path in [home_a, *home_a.rglob("*"), *home_b.rglob("*")]:
            assert (path.lstat().st_uid, path.lstat().st_gid) == home_owner(), path
        assert (home_b / "thesis.tex").read_text() == "written on the new hub"
        assert (home_b / "fig.png").read_text() == "png"
        assert not (efs / "home" / c).exists() and not (efs / "home" / "course").exists()
        assert sorted(p.name for p in staging.iterdir()) == sorted([a, b, "course"])     # the staging copy is untouched
        again = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        hosts = recap(again.stdout)
        assert again.returncode == 0 and hosts and all(h["changed"] == 0 for h in hosts.values()), again.stdout[-3000:]
        # a's own server finds a's files, and nothing of b's or of the course
        assert hub.call("POST", f"/hub/api/users/{a}").status_code == 201
        hub.start(a)
        seen = run_in_users_kernel(site, hub, a, "import os; print(sorted(n for n in os.listdir(os.path.expanduser('~'))"
                                                  " if not n.startswith('.')));"
                                                  "print(open(os.path.expanduser('~/data/latest.csv')).read())")
        assert "['data', 'notes.txt']" in seen and "1,2,3" in seen, seen
    finally:
        if hub.call("GET", f"/hub/api/users/{a}").status_code == 200:
            hub.stop(a)
            hub.delete_user(a)
        shutil.rmtree(staging, ignore_errors=True)


def token_session(hub) -> requests.Session:
    """A client of the lab's hub URL with the admin's token: no proxy from the environment, the lab's certificate
    not checked."""
    session = requests.Session()
    session.trust_env, session.verify = False, False
    session.headers["Authorization"] = f"token {hub.token}"
    return session


def test_a_hub_restart_leaves_a_users_server_answering_through_the_proxy(site, aws, hub):
    """The proxy (configurable-http-proxy) runs in a container of its own and holds the published ports: while the
    hub container restarts (an upgrade, a setting), a user's server keeps answering through it, every 0.2 s, and
    the proxy itself is not restarted."""
    user = "u" + uuid.uuid4().hex[:6]
    hub.create_user(user)
    hub.start(user)
    manager = manager_id(aws)
    assert node_exec(manager, "docker", "port", "jupyterhub").stdout.strip() == ""     # no published port
    # the public ports map to the unprivileged ones the proxy (not root) listens on
    ports = node_exec(manager, "docker", "port", "jupyterhub-proxy").stdout
    assert "8443/tcp -> 0.0.0.0:443" in ports and "8080/tcp -> 0.0.0.0:80" in ports, ports
    proxy_started = node_exec(manager, "docker", "inspect", "-f", "{{.State.StartedAt}}", "jupyterhub-proxy").stdout
    url = f"{site['LAB_HUB_URL']}/user/{user}/api/status"
    poller = token_session(hub)
    assert poller.get(url, timeout=10).status_code == 200   # the server has checked this token with the hub once
    answers, done = [], threading.Event()

    def poll():
        while not done.is_set():
            at = time.monotonic()
            try:
                answers.append((at, poller.get(url, timeout=5).status_code))
            except requests.RequestException as e:
                answers.append((at, type(e).__name__))
            time.sleep(0.2)
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        time.sleep(1)
        restart_at = time.monotonic()
        assert node_exec(manager, "docker", "restart", "jupyterhub").returncode == 0
        wait_for(lambda: hub_answers(hub), 120, 1, what="the hub to answer again")
        hub_back = time.monotonic() - restart_at
        time.sleep(1)
    finally:
        done.set()
        thread.join(10)
        hub.stop(user)
    during = [(at, code) for at, code in answers if at >= restart_at]
    assert len(during) >= 5, answers
    assert [code for _, code in answers if code != 200] == [], answers
    gaps = [b - a for (a, _), (b, _) in zip(answers, answers[1:])]
    print(f"hub restart: back after {hub_back:.1f} s; {len(during)} requests to the user's server meanwhile, all 200;"
          f" longest gap between answers {max(gaps):.2f} s")
    assert node_exec(manager, "docker", "inspect", "-f", "{{.State.StartedAt}}", "jupyterhub-proxy").stdout == \
        proxy_started


def test_a_restarted_proxy_gets_its_routes_back_without_a_hub_restart(site, aws, hub):
    """configurable-http-proxy keeps its routes in memory. When its container restarts (as certbot's renewal hooks
    stop and start it, or after a crash), the hub's reconciler sees it start and has the hub give it every route
    (POST /hub/api/proxy): a user's server answers through the fresh proxy again within seconds, not after the
    hub's own 5-minute route check, and the hub container is not restarted."""
    user = "u" + uuid.uuid4().hex[:6]
    hub.create_user(user)
    hub.start(user)
    manager = manager_id(aws)
    hub_started = node_exec(manager, "docker", "inspect", "-f", "{{.State.StartedAt}}", "jupyterhub").stdout
    url = f"{site['LAB_HUB_URL']}/user/{user}/api/status"
    client = token_session(hub)

    def answers() -> bool:
        try:
            r = client.get(url, timeout=5, allow_redirects=False)
        except requests.RequestException:
            return False
        return r.status_code == 200 and "last_activity" in r.text
    try:
        assert answers()
        since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
        assert node_exec(manager, "docker", "stop", "jupyterhub-proxy").returncode == 0
        assert node_exec(manager, "docker", "start", "jupyterhub-proxy").returncode == 0
        t0 = time.monotonic()
        wait_for(answers, 60, 0.5, what="the user's server through the restarted proxy",
                 detail=lambda: hub_logs(manager, since)[-3000:])
        print(f"proxy restart: the user's route back {time.monotonic() - t0:.1f} s after the proxy started")
        # the reconciler's doing (its line follows the routes it had added)
        wait_for(lambda: "the hub gave it its routes" in hub_logs(manager, since), 15, 0.5,
                 what="the reconciler's line", detail=lambda: hub_logs(manager, since)[-3000:])
    finally:
        hub.stop(user)
    assert node_exec(manager, "docker", "inspect", "-f", "{{.State.StartedAt}}", "jupyterhub").stdout == hub_started


def test_notebook_image_comes_from_the_ecr_stand_in_with_the_hubs_credentials(site, aws, hub):
    """The notebook image is only in the lab's ECR stand-in, which refuses an anonymous pull. Workers hold no
    registry credentials; once they lack the image, a user's spawn still starts, because the hub sends the ECR
    token (from the local endpoint, kept fresh by the refresher container) with the service it creates."""
    manager = manager_id(aws)
    published = json.loads(aws("ssm").get_parameter(Name=SSM["notebook_images"])["Parameter"]["Value"])
    image = published["images"][0]
    assert published["registry"] == site["LAB_ECR_REGISTRY"] and published["registry_auth"] == "ecr"
    assert image.startswith(f"{site['LAB_ECR_REGISTRY']}/{NAMES['ecr_prefix']}notebook:")
    refresher = node_exec(manager, "docker", "inspect", "-f", "{{.State.Running}} {{.HostConfig.NetworkMode}}",
                          "jupyterhub-registry-login")
    assert refresher.stdout.split() == ["true", "host"], refresher.stdout + refresher.stderr
    workers = worker_ids(aws)
    for worker in workers:
        assert node_exec(worker, "test", "-e", "/root/.docker/config.json").returncode != 0
        anonymous = node_exec(worker, "docker", "pull", image)
        assert anonymous.returncode != 0 and "no basic auth credentials" in anonymous.stdout + anonymous.stderr
        node_exec(worker, "docker", "image", "rm", "--force", image)   # untagged (running servers keep theirs)
        assert node_exec(worker, "docker", "image", "inspect", image).returncode != 0
    user = "u" + uuid.uuid4().hex[:6]
    assert hub.call("POST", f"/hub/api/users/{user}").status_code == 201
    hub.start(user)
    node = service_node(manager, user)
    assert node_exec(node, "docker", "image", "inspect", image).returncode == 0   # pulled for the spawn
    hub.stop(user)


def test_home_survives_stop_and_start_on_the_other_worker(site, aws, hub):
    user = "u" + uuid.uuid4().hex[:6]
    assert hub.call("POST", f"/hub/api/users/{user}").status_code == 201
    hub.start(user)
    manager = manager_id(aws)
    first = service_node(manager, user)
    r = hub.call("PUT", f"/user/{user}/api/contents/notes.txt",
                 json={"type": "file", "format": "text", "content": "kept across servers"})
    assert r.status_code in (200, 201), r.text
    hub.stop(user)
    node_name = next(n["ID"] for n in swarm_nodes(manager)
                     if (n["Description"]["Engine"].get("Labels") or {}).get("jhs.instance-id") == first)
    node_exec(manager, "docker", "node", "update", "--availability", "drain", node_name)
    try:
        hub.start(user)
        assert service_node(manager, user) != first
        r = hub.call("GET", f"/user/{user}/api/contents/notes.txt")
        assert r.status_code == 200 and r.json()["content"] == "kept across servers"
    finally:
        node_exec(manager, "docker", "node", "update", "--availability", "active", node_name)
        hub.stop(user)



def test_a_person_in_a_browser_signs_in_picks_a_profile_runs_a_cell_and_finds_the_notebook_after_a_restart(
        site, aws, hub):
    """What a student does, in a real browser (Debian's chromium, tests/lab/browser.py): sign in on the hub's
    login page, pick the "small" profile in the spawn form, wait for JupyterLab, open a new notebook from the
    launcher, run a cell and see its output, save. The server is stopped and started again; the notebook is
    still there with its output. Signing out leads back to the login page. Screenshots and the page's HTML of
    a failure are saved in .lab/logs/browser/."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.keys import Keys

    import browser
    assert not browser.missing(), browser.missing()
    url = site["LAB_HUB_URL"].rstrip("/")
    user = "b" + uuid.uuid4().hex[:6]
    driver = browser.start()
    try:
        with browser.screenshots_on_failure(driver, ROOT / ".lab" / "logs" / "browser", user):
            driver.get(url + "/hub/login")
            browser.visible(driver, "#username_input").send_keys(user)
            driver.find_element(By.CSS_SELECTOR, "#password_input").send_keys("lab")
            driver.find_element(By.CSS_SELECTOR, "#login_submit").click()
            browser.wait(driver).until(lambda d: "/hub/login" not in d.current_url, "still on the login page")
            # the spawn form offers the lab's profiles (inventories/lab/group_vars/all.yml); pick the second
            driver.get(url + "/hub/spawn")
            select = browser.visible(driver, "#spawn_form select[name=profile]")
            offered = [o.get_attribute("value") for o in select.find_elements(By.TAG_NAME, "option")]
            assert offered == ["standard", "small"], offered
            select.find_element(By.CSS_SELECTOR, "option[value=small]").click()
            driver.find_element(By.CSS_SELECTOR, "#spawn_form [type=submit]").click()
            browser.visible(driver, ".jp-LauncherCard[data-category=Notebook]", timeout=240).click()
            editor = browser.visible(driver, ".jp-NotebookPanel .jp-Cell .cm-content", timeout=120)
            editor.click()
            ActionChains(driver).send_keys("print(6 * 7)").perform()
            # a cell run before the kernel is connected is dropped (the cell stays "[ ]"): wait for it, as a person does
            browser.wait(driver, 120).until(
                lambda d: "Idle" in d.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text, "the kernel never idle")

            def output_shown(d):
                return any(o.text.strip() == "42" for o in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
            for attempt in range(3):
                driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell .cm-content").click()
                ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
                try:
                    browser.wait(driver, 30).until(output_shown, "the cell's output 42 never showed")
                    break
                except TimeoutException:
                    if attempt == 2:
                        raise
            ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
            # the first save of an untitled notebook asks for a name: keep the one it has
            browser.visible(driver, ".jp-Dialog .jp-Dialog-button.jp-mod-accept", timeout=30).click()

            def saved():
                r = hub.call("GET", f"/user/{user}/api/contents/Untitled.ipynb")
                if r.status_code != 200:
                    return None
                cells = r.json()["content"]["cells"]
                return cells if any("42" in "".join(o.get("text", "")) for c in cells for o in c.get("outputs", [])) \
                    else None
            wait_for(saved, 60, 1, what="Untitled.ipynb saved with the cell's output")
            # the profile picked in the form sized the server: "small" has a 1G memory limit (the default is 2G)
            spec = json.loads(node_exec(manager_id(aws), "docker", "service", "inspect", f"jupyter-{user}").stdout)[0]
            assert spec["Spec"]["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == 1024 ** 3

            hub.stop(user)
            hub.start(user)
            driver.get(f"{url}/user/{user}/lab/tree/Untitled.ipynb")
            browser.wait(driver, 120).until(
                lambda d: any(o.text.strip() == "42" for o in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")),
                "the notebook and its output after the restart")
            assert "print(6 * 7)" in browser.visible(driver, ".jp-NotebookPanel .jp-Cell .cm-content").text

            driver.get(url + "/hub/logout")
            browser.visible(driver, "#username_input")
            driver.get(url + "/hub/home")
            browser.wait(driver).until(lambda d: "/hub/login" in d.current_url, "/hub/home answered after sign-out")
    finally:
        driver.quit()
        with contextlib.suppress(RuntimeError):   # stopped already when the test failed before its start
            hub.stop(user)


EGRESS_PROBE = """
import json, socket, sys
out = {}
for name, host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=5).close()
        out[name] = "open"
    except ConnectionRefusedError:
        out[name] = "refused"
    except OSError as e:
        out[name] = type(e).__name__
print(json.dumps(out))
"""


def test_user_server_reaches_the_hub_and_no_private_address(site, aws, hub):
    """From a container on a worker, like a user's server: the hub over the overlay answers, the lab registry
    (the one exception the lab's docker_engine_egress_allowed lists) is open; nothing listens at the proxy's API
    port on the overlay (the API is on the hub and proxy's own network); the instance metadata, the
    manager's swarm ports (2377, 7946) and SSH, the other worker's gossip port, the AWS endpoint (which also stands
    in for EFS's mount targets: the lab has no NFS), the ECR stand-in (private addresses) and the worker's own
    swarm port (INPUT, not FORWARD) are refused. The worker itself still reaches them; without the rules the container would
    too; the rules stay when the worker's engine restarts (and it stays in the swarm), and are back before the
    engine when the worker reboots (and it joins again by itself).

    `docker exec` into a swarm task's container fails inside these Docker-in-Docker nodes (runc setns
    error), so the probe runs in a container of the user's image on the user's network, on the worker
    that runs the user's server: the same forwarded path through DOCKER-USER as the server itself.
    """
    user = "u" + uuid.uuid4().hex[:6]
    assert hub.call("POST", f"/hub/api/users/{user}").status_code == 201
    hub.start(user)
    manager = manager_id(aws)
    worker = service_node(manager, user)
    spec = json.loads(node_exec(manager, "docker", "service", "inspect", f"jupyter-{user}").stdout)[0]["Spec"]
    image = spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
    network = node_exec(manager, "docker", "network", "inspect", "-f", "{{.Name}}",
                        spec["TaskTemplate"]["Networks"][0]["Target"]).stdout.strip()
    other = sorted(set(ready_workers(manager)) - {worker})[:1]
    assert other, "the lab's second worker is not a Ready node"
    ips = private_ips(aws, [manager, worker, *other])
    manager_ip, worker_ip, other_ip = ips[manager], ips[worker], ips[other[0]]
    endpoint = site["AWS_ENDPOINT_URL"].split("//")[1]
    registry, ecr = config.registry_addr(), config.ecr_addr()
    targets = [("hub", "jupyterhub", 8081), ("proxy_api", "jupyterhub-proxy", 8001),
               ("registry", registry.split(":")[0], int(registry.split(":")[1])),
               ("metadata", "169.254.169.254", 80), ("manager_swarm", manager_ip, 2377),
               ("endpoint", endpoint.split(":")[0], int(endpoint.split(":")[1])),
               ("ecr", ecr.split(":")[0], int(ecr.split(":")[1])),
               # the worker's own swarm gossip port: traffic to the host itself passes INPUT, not FORWARD
               ("worker_itself", worker_ip, 7946),
               ("manager_gossip", manager_ip, 7946), ("other_worker", other_ip, 7946),
               # last: the worker itself may not reach it either (the manager's SSH is for admin networks only)
               ("manager_ssh", manager_ip, 22)]

    def probe_container():
        def run():
            out = node_exec(worker, "docker", "run", "--rm", "--network", network, image, "python3", "-c",
                            EGRESS_PROBE, json.dumps(targets))
            # Right after an engine restart the worker may not know the attachable overlay yet ("network <id>
            # not found" until its swarm agent has the network again): that is a wait, any other error fails.
            if out.returncode != 0 and re.search(r"network \S+ not found", out.stderr):
                return None
            return out
        out = wait_for(run, 90, 2, what=f"the network {network} usable on {worker}")
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])
    closed = {"proxy_api": "refused", "metadata": "refused", "manager_swarm": "refused", "endpoint": "refused",
              "ecr": "refused", "worker_itself": "refused", "manager_gossip": "refused", "other_worker": "refused",
              "manager_ssh": "refused"}
    assert probe_container() == {"hub": "open", "registry": "open", **closed}
    # the worker itself reaches them (the rules are what blocks the container, not a broken route)
    host = json.loads(node_exec(worker, "python3", "-c", EGRESS_PROBE, json.dumps(targets[2:-1])).stdout)
    assert set(host.values()) == {"open"}, host
    hub.stop(user)
    # without the rules the same container gets through: the test can fail
    jump = ["DOCKER-USER", "-j", "JHS-CONTAINERS"]
    assert node_exec(worker, "iptables", "-D", *jump).returncode == 0
    try:
        assert node_exec(worker, "/usr/local/sbin/jhs-container-firewall", "--check").returncode == 1
        assert node_exec(worker, "iptables", "-D", "INPUT", "-j", "JHS-CONTAINERS-INPUT").returncode == 0
        opened = probe_container()
        assert opened["endpoint"] == "open" and opened["ecr"] == "open" and opened["worker_itself"] == "open", opened
    finally:
        assert node_exec(worker, "/usr/local/sbin/jhs-container-firewall").returncode == 0
    assert node_exec(worker, "/usr/local/sbin/jhs-container-firewall", "--check").returncode == 0
    # the engine restarted (as on an upgrade): the rules are still in place, and still hold
    node_id = json.loads(node_exec(worker, "docker", "info", "-f", "{{json .Swarm.NodeID}}").stdout)
    restart = node_exec(worker, "systemctl", "restart", "docker")
    assert restart.returncode == 0, restart.stderr
    wait_for(lambda: node_exec(worker, "docker", "version").returncode == 0, 60, 1, what="the worker's engine")
    assert node_exec(worker, "/usr/local/sbin/jhs-container-firewall", "--check").returncode == 0
    wait_for(lambda: node_exec(manager, "docker", "node", "inspect", "-f", "{{.Status.State}}", node_id).stdout.strip()
             == "ready", 120, 2, what="the worker Ready again after its engine restarted")
    assert probe_container() == {"hub": "open", "registry": "open", **closed}
    # the worker rebooted (its node restarts) with no site.yml run: it left the swarm at shutdown (the leave unit's
    # ExecStop), its boot unit joined it again, and the rules were rebuilt by their unit before the engine started
    t0 = time.monotonic()
    assert subprocess.run(["docker", "restart", "-t", "60", worker], capture_output=True).returncode == 0

    def rejoined() -> bool:
        return any(n["ID"] != node_id and n["Status"]["State"] == "ready"
                   and (n["Description"]["Engine"].get("Labels") or {}).get("jhs.instance-id") == worker
                   for n in swarm_nodes(manager))
    wait_for(rejoined, 300, 2, what="the rebooted worker back in the swarm",
             detail=lambda: node_exec(worker, "tail", "-n", "30", "/var/log/jhs-boot.log").stdout)
    print(f"worker reboot: a Ready node again after {time.monotonic() - t0:.1f} s")
    # its old node left the swarm: down, or already removed by jhs-reconcile once down longer than its node grace (30 s
    # in the lab; a slow reboot outlasts it)
    old = node_exec(manager, "docker", "node", "inspect", "-f", "{{.Status.State}}", node_id)
    assert old.stdout.strip() == "down" or (old.returncode != 0 and "No such node" in old.stderr), old
    # removed here, unless jhs-reconcile removed it in the meantime (session 26's run: between the two calls)
    removed = node_exec(manager, "docker", "node", "rm", node_id)
    assert removed.returncode == 0 or "No such node" in removed.stderr, removed

    def show(unit: str, prop: str) -> int:
        return int(node_exec(worker, "systemctl", "show", "-P", prop, unit).stdout.strip() or 0)
    assert 0 < show("jhs-container-firewall.service", "ActiveEnterTimestampMonotonic") \
        <= show("docker.service", "ExecMainStartTimestampMonotonic")
    assert node_exec(worker, "/usr/local/sbin/jhs-container-firewall", "--check").returncode == 0
    assert probe_container() == {"hub": "open", "registry": "open", **closed}
    # and the program that closes users' servers to one another runs again beside the engine
    assert node_exec(worker, "systemctl", "is-active", "jhs-server-isolation.service").stdout.strip() == "active"


def set_outbound_proxy(lab_env: dict, node: str, proxy: dict) -> subprocess.CompletedProcess:
    """The docker_engine role's outbound proxy tasks on one node (tests/lab/outbound_proxy.yml), with outbound_proxy
    as an operator sets it."""
    env = {**os.environ, **lab_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "tests/lab/outbound_proxy.yml",
                           "-i", "inventories/lab", "-e", json.dumps({"target": node, "outbound_proxy": proxy})],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_a_node_behind_an_outbound_proxy_pulls_and_installs_through_it(site, aws):
    """A corporate network: the worker's direct way to the lab registry is closed (a rule on the lab's bridge, as
    a firewall would), so its pulls fail, until outbound_proxy sends its engine and apt through the lab's proxy
    (tinyproxy): then a pull and `apt-get update` succeed, and the proxy's log has the worker's requests. Back to
    no proxy, the files go and the engine goes direct again. (Image builds and users' servers get the same setting:
    tests/test_jupyterhub_config.py; the workers' boot: tests/test_provision.py.)"""
    from lab.images import debian_mirror
    manager = manager_id(aws)
    worker = sorted(ready_workers(manager))[0]
    worker_ip = private_ips(aws, [worker])[worker]
    registry_ip, registry_port = config.registry_addr().split(":")
    proxy = {"http": f"http://{config.proxy_addr()}"}
    image = f"{config.registry_addr()}/library/debian:bookworm-slim"
    close = ["DOCKER-USER", "-s", worker_ip, "-d", registry_ip, "-p", "tcp", "--dport", registry_port,
             "-j", "REJECT", "--reject-with", "tcp-reset"]

    def pull() -> subprocess.CompletedProcess:
        return node_exec(worker, "docker", "pull", "-q", image)

    def engine_env() -> str:
        return node_exec(worker, "systemctl", "show", "-P", "Environment", "docker").stdout
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert subprocess.run(["iptables", "-I", *close[:1], "1", *close[1:]], capture_output=True).returncode == 0
    try:
        refused = pull()
        assert refused.returncode != 0, refused.stdout     # the direct way is closed: the test can fail
        on = set_outbound_proxy(site, worker, proxy)
        assert on.returncode == 0, on.stdout[-3000:] + on.stderr[-2000:]
        assert "RUNNING HANDLER [docker_engine : Restart Docker engine]" in on.stdout
        wait_for(lambda: node_exec(worker, "docker", "version").returncode == 0, 60, 1, what="the worker's engine")
        assert f"HTTP_PROXY={proxy['http']}" in engine_env() and "169.254.169.254" in engine_env()
        pulled = pull()
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        apt = node_exec(worker, "apt-get", "update", "-q")
        assert apt.returncode == 0, apt.stdout[-2000:] + apt.stderr[-2000:]
        logs = subprocess.run(["docker", "logs", "--since", since, config.PROXY_CONTAINER], capture_output=True,
                              text=True)
        log = logs.stdout + logs.stderr
        assert f"http://{config.registry_addr()}/v2/library/debian/manifests/bookworm-slim" in log, log[-3000:]
        assert worker_ip in log, log[-3000:]
        mirror_host = urllib.parse.urlsplit(debian_mirror()).hostname   # the nodes' apt source (lab/images.py)
        assert mirror_host in log, (mirror_host, log[-3000:])
        # the same run again changes nothing (and restarts nothing)
        again = set_outbound_proxy(site, worker, proxy)
        assert again.returncode == 0 and recap(again.stdout)[worker]["changed"] == 0, again.stdout[-3000:]
    finally:
        off = set_outbound_proxy(site, worker, {})
        subprocess.run(["iptables", "-D", *close], capture_output=True)
    assert off.returncode == 0, off.stdout[-3000:] + off.stderr[-2000:]
    wait_for(lambda: node_exec(worker, "docker", "version").returncode == 0, 60, 1, what="the worker's engine")
    assert "HTTP_PROXY" not in engine_env()
    assert node_exec(worker, "test", "-e", "/etc/apt/apt.conf.d/80jhs-outbound-proxy").returncode == 1
    assert pull().returncode == 0      # direct again
    wait_for(lambda: worker in ready_workers(manager), 120, 2, what="the worker Ready again after its engine restarts")


def set_server_isolation(lab_env: dict, node: str, on: bool) -> subprocess.CompletedProcess:
    """The docker_engine role's server isolation tasks on one node (tests/lab/server_isolation.yml)."""
    env = {**os.environ, **lab_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "tests/lab/server_isolation.yml",
                           "-i", "inventories/lab", "-e", json.dumps({"target": node,
                                                                     "docker_engine_isolate_user_servers": on})],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_server_isolation_turned_off_removes_its_unit_and_turned_on_brings_it_back(site, aws):
    """docker_engine_isolate_user_servers: false stops and removes jhs-server-isolation.service (servers started from
    then on are not closed: the cross-user test shows what the unit does when on); a second run changes nothing;
    turned on again, the unit runs and every user server's namespace is closed again (`check`)."""
    manager = manager_id(aws)
    worker = sorted(ready_workers(manager))[0]

    def unit() -> tuple[str, int]:
        active = node_exec(worker, "systemctl", "is-active", "jhs-server-isolation.service").stdout.strip()
        return active, node_exec(worker, "test", "-e", "/etc/systemd/system/jhs-server-isolation.service").returncode
    assert unit() == ("active", 0)
    try:
        off = set_server_isolation(site, worker, False)
        assert off.returncode == 0, off.stdout[-3000:] + off.stderr[-2000:]
        assert recap(off.stdout)[worker]["changed"] >= 2, off.stdout[-3000:]   # stopped, removed
        assert unit() == ("inactive", 1)
        again = set_server_isolation(site, worker, False)
        assert again.returncode == 0 and recap(again.stdout)[worker]["changed"] == 0, again.stdout[-3000:]
    finally:
        on = set_server_isolation(site, worker, True)
    assert on.returncode == 0, on.stdout[-3000:] + on.stderr[-2000:]
    assert unit() == ("active", 0)
    assert node_exec(worker, "/usr/local/sbin/jhs-server-isolation", "check").returncode == 0


def run_hub_settings(lab_env: dict, *extra: str) -> subprocess.CompletedProcess:
    """docs/deploy-aws.md's "change a hub setting only": playbooks/manager.yml limited to the hub's config and run."""
    env = {**os.environ, **lab_env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([*doc_command("hub-settings"), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)


def hub_logs(manager: str, since: str) -> str:
    proc = node_exec(manager, "docker", "logs", "--since", since, "jupyterhub")
    return proc.stdout + proc.stderr


def test_idle_culler_stops_a_server_left_idle(site, aws, hub):
    """The hub-managed jupyterhub-idle-culler, given a short timeout through the role's settings, stops a
    server nobody uses, and leaves alone one that is used; the default settings are put back afterwards."""
    manager = manager_id(aws)
    # as an operator changes a hub setting: only the hub's configure and run steps (docs/deploy-aws.md, day two)
    proc = run_hub_settings(site, "-e", "jupyterhub_idle_timeout=40",
                       "-e", "jupyterhub_idle_cull_every=10", "-e", "jupyterhub_activity_interval=5")
    assert proc.returncode == 0, proc.stdout[-4000:]
    try:
        since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
        idle, busy = "idle" + uuid.uuid4().hex[:5], "busy" + uuid.uuid4().hex[:5]
        hub.create_user(idle)
        hub.start(idle)
        t0 = time.monotonic()
        hub.create_user(busy)
        hub.start(busy)
        # the busy user's server reports activity (a kernel that runs), the idle one's reports none
        r = hub.call("POST", f"/user/{busy}/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel = r.json()["id"]

        def busy_server_active():
            hub.call("GET", f"/user/{busy}/api/kernels/{kernel}")   # keeps the hub's last_activity fresh
            node_exec(manager, "true")
            return hub.server(idle) is None

        wait_for(busy_server_active, 180, 5, what=f"the culler to stop {idle}'s idle server",
                 detail=lambda: hub_logs(manager, since)[-3000:])
        culled_after = time.monotonic() - t0
        assert culled_after >= 35, f"stopped {culled_after:.0f} s after it was ready, before the 40 s idle timeout"
        logs = hub_logs(manager, since)
        assert re.search(rf"Culling server {idle}\b", logs), logs[-3000:]
        assert node_exec(manager, "docker", "service", "inspect", f"jupyter-{idle}").returncode != 0
        assert hub.server(busy) and hub.server(busy)["ready"], "the culler stopped a server in use"
        assert not re.search(rf"Culling server {busy}\b", logs), logs[-3000:]
        print(f"idle server culled {culled_after:.0f} s after it was ready (timeout 40 s, a pass every 10 s)")
        hub.stop(busy)
    finally:
        proc = run_hub_settings(site)
        assert proc.returncode == 0, proc.stdout[-4000:]
    config = node_exec(manager, "sh", "-c", "cat /etc/jupyterhub/jupyterhub_config.py").stdout
    assert "--timeout=3600" in config, "the default idle timeout was not put back"


def user_services(manager: str) -> dict[str, dict]:
    """The swarm's user services (labelled by the hub's spawner), by name, with their labels."""
    ids = node_exec(manager, "docker", "service", "ls", "-q", "--filter", "label=jhs.component=user-server").stdout.split()
    if not ids:
        return {}
    return {s["Spec"]["Name"]: s["Spec"]["Labels"]
            for s in json.loads(node_exec(manager, "docker", "service", "inspect", *ids).stdout)}


def hub_owned_servers(hub: HubClient) -> set[tuple[str, str]]:
    users = hub.call("GET", "/hub/api/users", params={"state": "active"}).json()
    return {(u["name"], name) for u in users for name in u["servers"]}


def test_a_service_no_hub_server_owns_is_removed_and_logged(site, aws, hub):
    """jhs-reconcile (a hub-managed service; the lab runs it every 10 s with a 30 s grace) removes a user service
    whose user has no server in the hub, and logs it; it leaves alone the service of a server the hub runs, and
    the service of a user the hub does not know (a lost database must not take every user's server with it)."""
    manager = manager_id(aws)
    since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    owner, ghost, stranger = ("own" + uuid.uuid4().hex[:5], "ghost" + uuid.uuid4().hex[:5],
                              "stranger" + uuid.uuid4().hex[:5])
    hub.create_user(owner)
    hub.start(owner)
    hub.create_user(ghost)                     # known to the hub, with no server
    hub_image = node_exec(manager, "docker", "inspect", "-f", "{{.Config.Image}}", "jupyterhub").stdout.strip()
    for user in (ghost, stranger):
        made = node_exec(manager, "docker", "service", "create", "--detach", "--name", f"jupyter-{user}",
                         "--label", "jhs.component=user-server", "--label", f"jhs.user={user}", "--label", "jhs.server=",
                         "--constraint", "node.role==manager", hub_image, "sleep", "3600")
        assert made.returncode == 0, made.stderr
    t0 = time.monotonic()
    try:
        wait_for(lambda: f"jupyter-{ghost}" not in user_services(manager), 120, 2,
                 what=f"jhs-reconcile to remove jupyter-{ghost}", detail=lambda: hub_logs(manager, since)[-3000:])
        print(f"orphaned service removed {time.monotonic() - t0:.0f} s after it was created (grace 30 s)")
        assert time.monotonic() - t0 >= 25, "removed before its grace period"
        logs = hub_logs(manager, since)
        assert re.search(rf"removing service jupyter-{ghost}: no hub server owns it", logs), logs[-3000:]
        assert re.search(rf"keeping service jupyter-{stranger}: its user '{stranger}' is unknown to the hub", logs)
        assert f"jupyter-{stranger}" in user_services(manager)
        assert f"jupyter-{owner}" in user_services(manager) and hub.server(owner)["ready"]
    finally:
        for user in (ghost, stranger):
            node_exec(manager, "docker", "service", "rm", f"jupyter-{user}")
        hub.stop(owner)


def test_a_worker_lost_with_two_servers_on_it(site, aws, hub):
    """A worker that dies (the instance terminated in the endpoint and its node killed, as on a hardware failure) while it runs two users' servers: swarm re-creates both on the other worker, the hub keeps both
    (jupyterhub_on_worker_loss=keep), both users reach their files through the hub within 90 s, no user service
    is left without a hub server, jhs-reconcile removes the Down node, and the group's replacement joins."""
    manager = manager_id(aws)
    since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    workers = ready_workers(manager)
    assert len(workers) == 2, workers
    doomed, survivor = sorted(workers)
    nodes = {(n["Description"]["Engine"].get("Labels") or {}).get("jhs.instance-id"): n["ID"] for n in swarm_nodes(manager)}
    users = ["lost" + uuid.uuid4().hex[:5] for _ in range(2)]
    node_exec(manager, "docker", "node", "update", "--availability", "drain", nodes[survivor])
    try:
        for user in users:
            hub.create_user(user)
            hub.start(user)
            assert service_node(manager, user) == doomed
            r = hub.call("PUT", f"/user/{user}/api/contents/kept.txt",
                         json={"type": "file", "format": "text", "content": f"{user} before the loss"})
            assert r.status_code in (200, 201), r.text
    finally:
        node_exec(manager, "docker", "node", "update", "--availability", "active", nodes[survivor])
    before = set(worker_ids(aws))
    # the hardware fails: the instance ends in the endpoint, and its node dies at once, before the lab's reconciler
    # would stop it gently (its shutdown hook would leave the swarm, which a failing machine does not do)
    aws("ec2").terminate_instances(InstanceIds=[doomed])
    subprocess.run(["docker", "kill", doomed], capture_output=True)
    t0 = time.monotonic()

    def reachable(user):
        try:
            r = hub.call("GET", f"/user/{user}/api/contents/kept.txt")
        except Exception:
            return False
        return r.status_code == 200 and r.json()["content"] == f"{user} before the loss"

    back = {}
    while len(back) < len(users) and time.monotonic() - t0 < 90:
        for user in users:
            if user not in back and reachable(user):
                back[user] = time.monotonic() - t0
        time.sleep(1)
    print(f"servers reachable again after the worker's loss: { {u: round(t) for u, t in back.items()} } s")
    assert sorted(back) == sorted(users), (back, hub_logs(manager, since)[-4000:])
    for user in users:
        assert service_node(manager, user) == survivor
        assert hub.server(user)["ready"], f"the hub dropped {user}'s rescheduled server"
        # the proxy reaches it on every request, not on some
        assert all(reachable(user) for _ in range(10))
    assert {(labels["jhs.user"], labels["jhs.server"]) for labels in user_services(manager).values()} \
        <= hub_owned_servers(hub)
    wait_for(lambda: nodes[doomed] not in {n["ID"] for n in swarm_nodes(manager)}, 120, 2,
             what="jhs-reconcile to remove the lost worker's Down node", detail=lambda: hub_logs(manager, since)[-3000:])
    assert re.search(r"removing node \S+ \(\w+\): Down for", hub_logs(manager, since))
    new = wait_for(lambda: set(worker_ids(aws)) - before, 60, 2, what="the group to replace the lost worker")
    (iid,) = new
    wait_for(lambda: iid in ready_workers(manager), 600, 3, what=f"the replacement {iid} to join",
             detail=lambda: node_exec(iid, "tail", "-30", "/var/log/jhs-boot.log").stdout)
    for user in users:
        hub.stop(user)
    assert not {labels["jhs.user"] for labels in user_services(manager).values()} & set(users)


def user_with_token(hub: HubClient, prefix: str, note: str) -> tuple[str, str]:
    """A new hub user and an API token of theirs."""
    user = prefix + uuid.uuid4().hex[:6]
    hub.create_user(user)
    r = hub.call("POST", f"/hub/api/users/{user}/tokens", json={"note": note})
    assert r.status_code in (200, 201), r.text
    return user, r.json()["token"]


def back_up_now(manager: str) -> str:
    """Take a database backup on the manager at once (as the hub's scheduled backup does); its file name."""
    backup = node_exec(manager, "docker", "exec", "jupyterhub", "python3", "/usr/local/bin/jupyterhub-db-backup",
                       "--db", "/srv/jupyterhub/state/jupyterhub.sqlite", "--dest", "/srv/jupyterhub/backups", "--once")
    assert backup.returncode == 0, backup.stderr
    return re.search(r"(jupyterhub-\d{8}T\d{6}Z\.sqlite)", backup.stderr).group(1)


def lose_the_database(site: dict, manager: str, lose: str, user: str) -> None:
    """Stop the hub, run the shell command `lose` on the manager, start the hub again: it comes up on an empty
    database that no longer knows the user."""
    node_exec(manager, "docker", "stop", "jupyterhub")
    lost = node_exec(manager, "sh", "-c", lose)
    assert lost.returncode == 0, lost.stderr
    node_exec(manager, "docker", "start", "jupyterhub")
    fresh = wait_for(lambda: _client_or_none(site["LAB_HUB_URL"]), 120, 2, what="the hub on an empty database")
    assert fresh.call("GET", f"/hub/api/users/{user}").status_code == 404


def run_restore(site: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, **site, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run(doc_command("restore"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def token_owner(site: dict, token: str) -> requests.Response:
    """GET /hub/api/user with a user's own token."""
    as_user = requests.Session()
    as_user.trust_env = False            # no proxy from the environment, and verify=False stays off (self-signed)
    return as_user.get(site["LAB_HUB_URL"] + "/hub/api/user", headers={"Authorization": f"token {token}"},
                       verify=False, timeout=30)


def test_hub_database_restored_from_a_backup_after_it_was_lost(site, aws, hub):
    """The hub's database is lost (the hub restarts on an empty one, which no longer knows its users); the
    restore playbook puts the newest dated backup back: the users come back, a user's API token works again, and
    the database it replaced is kept beside it."""
    manager = manager_id(aws)
    user, token = user_with_token(hub, "keep", "restore test")
    back_up_now(manager)
    # the database is lost: the hub starts again on an empty one
    lose_the_database(site, manager, "rm /var/lib/jupyterhub/state/jupyterhub.sqlite", user)
    proc = run_restore(site)
    assert re.search(r"Restored jupyterhub-\d{8}T\d{6}Z\.sqlite \(\d+ users\)", proc.stdout), proc.stdout[-2000:]
    assert hub.call("GET", f"/hub/api/users/{user}").status_code == 200          # the admin's old token works too
    r = token_owner(site, token)
    assert r.status_code == 200 and r.json()["name"] == user, r.text
    kept = node_exec(manager, "sh", "-c", "ls /var/lib/jupyterhub/state/").stdout
    assert "jupyterhub.sqlite.before-restore-" in kept, kept


STORM_USERS = 60
SLOTS_PER_WORKER = 3          # what the ballast leaves on each worker, in the hub's default memory guarantees
MEM_GUARANTEE = 256 * 2**20   # jupyterhub_mem_guarantee's default (256M), which the lab keeps
RESERVE = 512 * 2**20         # jupyterhub_scaler_reserve_memory's default: kept off each worker by the packing


def ballast_for(workers: list[dict], slots: float) -> int:
    """Memory a ballast must reserve on each worker so that ``slots`` default servers fit beside it."""
    memory = min(n["Description"]["Resources"]["MemoryBytes"] for n in workers)
    return int(memory - RESERVE - slots * MEM_GUARANTEE)


def test_a_storm_of_60_against_small_capacity_every_spawn_ready_or_failed_with_its_cause(site, aws, hub):
    """60 users start at once against 2 workers that have room for 3 servers each (a ballast service reserves
    the rest of their memory; no scaler). Every spawn is ready, refused by concurrent_spawn_limit, or failed
    naming its cause ("No room ..." after jupyterhub_spawn_no_room_timeout, or the start timeout); the number of
    pending spawns never exceeds the limit; nothing is left half-created: no user service without a ready hub
    server, no server pending. Prints the hub API's latency during the storm (docs/benchmarks.md)."""
    manager = manager_id(aws)
    with scaler_paused(manager):    # the issue's storm runs with the scaler off (it would add workers)
        storm(aws, hub, manager)


def storm(aws, hub, manager):
    import statistics
    import threading

    limit = 40                    # jupyterhub_concurrent_spawn_limit's default, which the lab keeps
    for u in hub.call("GET", "/hub/api/users", params={"state": "active"}).json():
        if "" in u["servers"]:
            hub.stop(u["name"])
    workers = [n for n in json.loads(node_exec(manager, "docker", "node", "inspect",
                                               *node_exec(manager, "docker", "node", "ls", "-q").stdout.split()).stdout)
               if n["Spec"]["Role"] == "worker" and n["Status"]["State"] == "ready"
               and n["Spec"].get("Availability") == "active"]
    assert len(workers) == 2, [n["Description"]["Hostname"] for n in workers]
    ballast = ballast_for(workers, SLOTS_PER_WORKER + 0.5)
    made = node_exec(manager, "docker", "service", "create", "--detach", "--name", "jhs-storm-ballast", "--mode", "global",
                     "--constraint", "node.role == worker", "--reserve-memory", str(ballast), "--no-resolve-image",
                     "debian:bookworm-slim", "sleep", "infinity")
    assert made.returncode == 0, made.stderr
    users = [f"storm{i:02d}" + uuid.uuid4().hex[:4] for i in range(STORM_USERS)]
    try:
        wait_for(lambda: node_exec(manager, "docker", "service", "ps", "jhs-storm-ballast", "--filter",
                                   "desired-state=running", "--format", "{{.CurrentState}}").stdout.count("Running") == 2,
                 180, 2, what="the ballast running on both workers")
        for user in users:
            hub.create_user(user)
        latencies, most_pending, stop = [], [0], threading.Event()

        def watch():                       # the hub's API as a user's page polls it, and the pending count
            while not stop.is_set():
                t0 = time.monotonic()
                r = hub.call("GET", "/hub/api/users", params={"state": "active"})
                latencies.append(time.monotonic() - t0)
                if r.status_code == 200:
                    pending = sum(1 for u in r.json() for srv in u["servers"].values() if srv.get("pending") == "spawn")
                    most_pending[0] = max(most_pending[0], pending)
                stop.wait(0.5)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=STORM_USERS) as pool:
            answers = dict(zip(users, pool.map(lambda u: hub.call("POST", f"/hub/api/users/{u}/server"), users)))
        codes = {u: r.status_code for u, r in answers.items()}
        assert set(codes.values()) <= {201, 202, 429}, {u: (c, answers[u].text[:200]) for u, c in codes.items()}
        refused = [u for u, c in codes.items() if c == 429]
        for user in refused:
            assert "Too many users trying to log in right now" in answers[user].json()["message"], answers[user].text

        def settled():
            active = {u["name"]: u["servers"].get("") for u in hub.call("GET", "/hub/api/users",
                                                                         params={"state": "active"}).json()}
            return all(active.get(u) is None or active[u].get("ready") for u in users) and active
        wait_for(settled, 400, 3, what="every spawn of the storm to end (ready or failed)")
        stop.set()
        watcher.join()
        active = {u["name"]: u["servers"].get("") for u in hub.call("GET", "/hub/api/users",
                                                                     params={"state": "active"}).json()}
        ready = [u for u in users if active.get(u) and active[u].get("ready")]
        failed = [u for u in users if u not in ready and u not in refused]
        causes = {}
        for user in failed:
            progress = hub.call("GET", f"/hub/api/users/{user}/server/progress", stream=True)
            events = [json.loads(line[len("data:"):]) for line in progress.iter_lines(decode_unicode=True)
                      if line and line.startswith("data:")]
            progress.close()
            causes[user] = events[-1].get("message", "") if events and events[-1].get("failed") else repr(events[-1:])
        unnamed = {u: m for u, m in causes.items() if not re.search(
            r"No room for this server in the cluster: swarm found no suitable node|[Tt]ime ?out|didn't respond in", m)}
        assert not unnamed, unnamed
        no_room = [u for u, m in causes.items() if "No room" in m]
        assert 1 <= len(ready) <= 2 * SLOTS_PER_WORKER, (len(ready), causes)
        assert no_room, causes
        assert most_pending[0] <= limit, most_pending
        # Nothing half-created: a user service only for a ready server, none pending, and the hub log names it.
        services = {labels.get("jhs.user") for labels in user_services(manager).values()}
        assert services & set(users) == set(ready), (sorted(services & set(users)), sorted(ready))
        assert "No room for this server in the cluster" in hub_logs(manager, "10m")
        p = sorted(latencies)
        print(f"storm of {STORM_USERS} against {2 * SLOTS_PER_WORKER} slots: {len(ready)} ready, {len(no_room)} "
              f"no room, {len(failed) - len(no_room)} timed out, {len(refused)} refused (limit {limit}); at most "
              f"{most_pending[0]} pending; hub API GET /hub/api/users p50 {statistics.median(p):.3f} s, "
              f"p95 {p[int(0.95 * (len(p) - 1))]:.3f} s, max {p[-1]:.3f} s over {len(p)} calls")
    finally:
        node_exec(manager, "docker", "service", "rm", "jhs-storm-ballast")
        for user in users:
            server = hub.server(user) if hub.call("GET", f"/hub/api/users/{user}").status_code == 200 else None
            if server is not None:
                hub.stop(user)
            hub.delete_user(user)


def _client_or_none(url: str) -> HubClient | None:
    try:
        return HubClient(url)
    except Exception:
        return None


def move_lab_branch() -> tuple[str, str]:
    """Move the lab repository's branch one commit forward (same tree), as a push to a branch would; returns the
    commit it named before and the new one."""
    bare = config.lab_dir() / "git" / config.GIT_REPO_NAME

    def git(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={bare}", *args], check=True, capture_output=True, text=True,
                              env={**os.environ, "GIT_AUTHOR_NAME": "lab", "GIT_AUTHOR_EMAIL": "lab@example.test",
                                   "GIT_COMMITTER_NAME": "lab", "GIT_COMMITTER_EMAIL": "lab@example.test"}).stdout.strip()
    before = git("rev-parse", f"refs/heads/{config.GIT_BRANCH}")
    moved = git("commit-tree", f"{before}^{{tree}}", "-p", before, "-m", "the branch moved after provisioning")
    git("update-ref", f"refs/heads/{config.GIT_BRANCH}", moved, before)
    return before, moved


def test_a_worker_from_the_baked_image_joins_skipping_what_the_image_holds(site, aws):
    """playbooks/worker_image.yml bakes the cluster's worker image (the hub's notebook image pre-pulled from the
    ECR stand-in, which the builder logs in to first): a tagged image, the default of a new launch template
    version that changes nothing else, the builder terminated; the same inputs again bake nothing. The group's
    next worker boots from it, runs the same boot playbook without the steps the image already holds, and joins
    with its labels and the notebook image in place. The branch it was provisioned
    from moves before the worker boots: the worker runs the commit provisioning pinned, not the branch's new one."""
    env = {**os.environ, **site, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    bake = subprocess.run(doc_command("bake"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert bake.returncode == 0, bake.stdout[-5000:]
    ec2, asg, manager = aws("ec2"), aws("autoscaling"), manager_id(aws)
    template = NAMES["worker"]
    (meta,) = ec2.describe_launch_templates(LaunchTemplateNames=[template])["LaunchTemplates"]
    assert meta["DefaultVersionNumber"] == meta["LatestVersionNumber"]     # the new version is the default
    latest, previous = ec2.describe_launch_template_versions(
        LaunchTemplateName=template, Versions=[str(meta["LatestVersionNumber"]),
                                               str(meta["LatestVersionNumber"] - 1)])["LaunchTemplateVersions"]
    (image,) = ec2.describe_images(ImageIds=[latest["LaunchTemplateData"]["ImageId"]])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["jhs:role"] == "worker-image"
    assert image["Name"].startswith(NAMES["worker_image_prefix"]) and tags["Name"] == image["Name"]
    assert tags["jhs:content-hash"] in image["Name"]
    assert tags["jhs:repo-version"] == site["LAB_REPO_VERSION"]
    assert tags["jhs:base-ami"] == previous["LaunchTemplateData"]["ImageId"] == site["LAB_BASE_AMI"]
    labels = json.loads(subprocess.run(["docker", "image", "inspect", tags["jhs-lab:image"]], capture_output=True,
                                       text=True, check=True).stdout)[0]["Config"]["Labels"]
    assert labels["jhs-lab.image"] == "ami" and labels["jhs-lab.ami"] == image["ImageId"]   # the lab committed it
    # the new version is the previous one with the image changed, nothing else
    assert {k: v for k, v in latest["LaunchTemplateData"].items() if k != "ImageId"} == \
        {k: v for k, v in previous["LaunchTemplateData"].items() if k != "ImageId"}
    res = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                          {"Name": "tag:jhs:role", "Values": ["builder"]}])
    builders = {i["InstanceId"]: i["State"]["Name"] for r in res["Reservations"] for i in r["Instances"]}
    assert len(builders) == 1 and set(builders.values()) == {"terminated"}, builders
    wait_for(lambda: not set(builders) & set(node_containers()), 60, what="the builder's node removed")
    notebook = json.loads(aws("ssm").get_parameter(Name=SSM["notebook_images"])["Parameter"]["Value"])

    user_data = base64.b64decode(latest["LaunchTemplateData"]["UserData"]).decode()
    pinned = re.search(r"\nrepo_commit=([0-9a-f]{40})\n", user_data).group(1)
    assert tags["jhs:repo-commit"] == pinned

    before = set(worker_ids(aws))
    branch_was, moved = move_lab_branch()
    paused = scaler_paused(manager)       # the group's size is set by hand here: the scaler would undo it
    paused.__enter__()
    asg.set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=3)
    (iid,) = wait_for(lambda: set(worker_ids(aws)) - before, 30, what="a worker from the baked image")
    try:
        assert branch_was == pinned
        wait_for(lambda: iid in ready_workers(manager), 300, 1, what=f"{iid} to join from the baked image",
                 detail=lambda: node_exec(iid, "tail", "-30", "/var/log/jhs-boot.log").stdout)
        # the play's output reaches the log in blocks: read it once the user-data has finished
        wait_for(lambda: "jhs-boot: user-data done" in node_exec(iid, "cat", "/var/log/jhs-boot.log").stdout, 60,
                 what=f"{iid}'s user-data to finish")
        log = node_exec(iid, "cat", "/var/log/jhs-boot.log").stdout
        assert "TASK [swarm_worker : Join the swarm advertising the private address]" in log
        for held in ("docker_engine : Find which of the engine's packages are installed",
                     "efs_mount : Create the mount point", "swarm_worker : Install the script that leaves the swarm",
                     "docker_engine : Server isolation | the program",
                     "docker_engine : Outbound proxy | none (apt and the engine go direct)"):
            assert f"TASK [{held}]" not in log, held                            # the image holds these
        # docker_engine's files from settings: as the image holds them (the digest the bake recorded), not written
        # again; the firewall's rules checked all the same
        for task, result in (("docker_engine : Firewall | the script that builds the containers' rules", "skipping"),
                             ("docker_engine : Firewall | the unit that builds them at boot, before the engine",
                              "skipping"),
                             ("docker_engine : Firewall | are the rules in place", "ok")):
            assert task_results(log, task) == {result}, task
        # the checkout is at the pinned commit already: the playbook runs from it without ansible-pull's checkout
        assert f"jhs-boot: /opt/jhs/repo is at {pinned}: ansible-playbook from it" in log
        assert "Starting Ansible Pull" not in log
        # the boot's modules ran on the image's venv with the bytecode cache the bake put into the system's Python
        hook = node_exec(iid, "/opt/jhs/venv/bin/python", "-c",
                         "import zipimport; print(zipimport._compile_source.__module__)")
        assert hook.stdout.strip() == "jhs_ansiballz_cache", hook.stdout + hook.stderr
        assert ready_workers(manager)[iid]["jhs.node-pool"] == "default"
        for ref in notebook["images"]:
            assert node_exec(iid, "docker", "image", "inspect", ref).returncode == 0, ref
        assert node_exec(iid, "test", "-x", "/usr/local/sbin/jhs-swarm-leave").returncode == 0
        # an instance of its own, as on EC2: the image holds no machine id (the bake empties it, as `cloud-init
        # clean` does), so systemd makes one at the first boot; the builder's SSH host keys are replaced at the first
        # boot (the cloud-init stand-in, as cloud-init's ssh module); the key pair's key lets Ansible in
        def in_image(*cmd: str) -> str:
            return subprocess.run(["docker", "run", "--rm", "--entrypoint", cmd[0], tags["jhs-lab:image"], *cmd[1:]],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert in_image("cat", "/etc/machine-id") == ""
        assert in_image("find", "/var/cache/apt/archives", "-name", "*.deb") == ""   # apt-get clean: no archives kept
        machine_ids = {n: node_exec(n, "cat", "/etc/machine-id").stdout.strip() for n in [iid, manager, *before]}
        assert machine_ids[iid] and list(machine_ids.values()).count(machine_ids[iid]) == 1, machine_ids
        host_key = node_exec(iid, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
        assert host_key != in_image("cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        pub = (ROOT / ".lab/ssh/id_ed25519.pub").read_text().split()[1]
        assert pub in node_exec(iid, "cat", "/home/admin/.ssh/authorized_keys").stdout
        # the lab restored the AMI's disk ahead of this node (as AWS hands over a volume made from the snapshot)
        started = [line for line in (ROOT / ".lab/logs/reconciler.log").read_text().splitlines()
                   if f"{iid}: running at" in line]
        assert started and "a disk restored ahead" in started[-1], started
        assert node_exec(iid, "/opt/jhs/venv/bin/ansible-pull", "--version").returncode == 0  # the boot skips it
        assert node_exec(iid, "test", "-e", "/root/.jhs-bake-docker").returncode != 0   # no credentials baked in
        fact = json.loads(node_exec(iid, "cat", "/etc/ansible/facts.d/jhs_worker_image.fact").stdout)
        assert fact["repo_commit"] == pinned                                     # the boot's preinstalled check
        assert len(fact["docker_engine_files_digest"]) == 64                    # sha256 of what the bake wrote
        assert "log-driver" in json.loads(node_exec(iid, "cat", "/etc/docker/daemon.json").stdout)
        # the boot ran the pinned commit, although the branch had moved on
        head = node_exec(iid, "git", "-C", "/opt/jhs/repo", "rev-parse", "HEAD").stdout.strip()
        assert head == pinned != moved
    finally:
        subprocess.run(["git", f"--git-dir={config.lab_dir() / 'git' / config.GIT_REPO_NAME}", "update-ref",
                        f"refs/heads/{config.GIT_BRANCH}", branch_was], check=True)
        paused.__exit__(None, None, None)
        asg.set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=2)
        # Same inputs again (the branch is back where provisioning found it): the image is found, nothing is
        # baked or changed. It runs while the group scales in, which it does not touch.
        again = subprocess.Popen(bake.args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        try:
            wait_for(lambda: len(worker_ids(aws)) == 2, 60, what="the group to scale in")
            gone = (before | {iid}) - set(worker_ids(aws))
            wait_for(lambda: not (gone & set(ready_workers(manager))), 120, 2, what="the removed worker to leave")
            proc = subprocess.run(doc_command("workers"), cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, proc.stdout[-4000:]
        finally:
            again_out, _ = again.communicate(timeout=1800)
    assert again.returncode == 0, again_out[-5000:]
    assert recap(again_out)["localhost"]["changed"] == 0, again_out[-4000:]
    res = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                          {"Name": "tag:jhs:role", "Values": ["builder"]}])
    assert len([i for r in res["Reservations"] for i in r["Instances"]]) == 1, "a second builder was launched"
    assert ec2.describe_launch_templates(LaunchTemplateNames=[template])["LaunchTemplates"][0][
        "LatestVersionNumber"] == meta["LatestVersionNumber"]


def test_a_failed_boot_is_replaced_the_replacement_joins_and_scale_in_leaves_no_down_node(site, aws):
    """Scale out while the join token in SSM is one the manager refuses: the new worker's boot fails both
    attempts (the lab's aws_cluster_worker_boot_attempts), the instance marks itself Unhealthy, the group (the
    lab's endpoint) replaces it, and the replacement, with the right token back, joins by itself. After the
    baked-worker test: both boot from the baked image, as a group's workers do once an image is baked (the
    boot path that fails, the join, is the same; a base-image boot adds about 100 s of installs to each)."""
    asg, ssm, manager = aws("autoscaling"), aws("ssm"), manager_id(aws)
    name = SSM["join_token"]
    param = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    prefix, _, secret = param["Value"].rpartition("-")
    before = set(worker_ids(aws))
    boot_logs: dict[str, str] = {}

    def read_boot_log(iid: str) -> str:
        out = node_exec(iid, "cat", "/var/log/jhs-boot.log")
        if out.returncode == 0:
            boot_logs[iid] = out.stdout
        return boot_logs.get(iid, "")

    paused = scaler_paused(manager)       # the group's size is set by hand here: the scaler would undo it
    paused.__enter__()
    ssm.put_parameter(Name=name, Value=f"{prefix}-{'x' * len(secret)}", Type=param["Type"], Overwrite=True)
    try:
        asg.set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=3)
        (failed,) = wait_for(lambda: set(worker_ids(aws)) - before, 30, what="a third instance")
        t0 = time.time()
        wait_for(lambda: "jhs-boot: attempt 1 of 2 failed" in read_boot_log(failed), 600, 1,
                 what=f"{failed}'s first boot attempt to fail", detail=lambda: boot_logs.get(failed, "")[-3000:])
        wait_for(lambda: failed not in worker_ids(aws) and (read_boot_log(failed) or True), 300, 1,
                 what=f"{failed} to be marked Unhealthy and taken out of the group",
                 detail=lambda: boot_logs.get(failed, "")[-3000:])
        print(f"failed worker out of the group {time.time() - t0:.0f} s after it was seen InService")
    finally:
        ssm.put_parameter(Name=name, Value=param["Value"], Type=param["Type"], Overwrite=True)
    # the boot gave up, marked its instance Unhealthy and abandoned its launch lifecycle action: the group (the
    # lab's endpoint, on the ABANDON) terminated it, and the reconciler kept its boot log when its node went
    ec2 = aws("ec2")
    wait_for(lambda: ec2.describe_instances(InstanceIds=[failed])["Reservations"][0]["Instances"][0]["State"]["Name"]
             in ("shutting-down", "terminated"), 60, 1, what=f"{failed} to be terminated")
    kept = config.lab_dir() / "logs" / "instances" / f"{failed}.boot.log"
    wait_for(kept.exists, 120, 1, what=f"{failed}'s boot log kept when its node was removed")
    boot_logs[failed] = kept.read_text()
    assert "marking this instance Unhealthy and abandoning its launch" in boot_logs[failed], boot_logs[failed][-3000:]
    assert "jhs-asg abandon failed" not in boot_logs[failed], boot_logs[failed][-3000:]
    assert "Joining the swarm at" in boot_logs[failed], boot_logs[failed][-3000:]   # the refused token
    assert failed not in ready_workers(manager)
    # the replacement: the group's desired capacity is still 3
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 3
    new = wait_for(lambda: set(worker_ids(aws)) - before - {failed}, 60, what="the replacement instance")
    (iid,) = new
    t0 = time.time()
    wait_for(lambda: iid in ready_workers(manager), 600, 3, what=f"{iid} to join the swarm by itself",
             detail=lambda: node_exec(iid, "tail", "-30", "/var/log/jhs-boot.log").stdout)
    print(f"replacement worker Ready {time.time() - t0:.0f} s after it was seen InService")

    paused.__exit__(None, None, None)     # back: it completes the termination hook of the worker the group picks
    asg.set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=2)
    wait_for(lambda: len(worker_ids(aws)) == 2, 60, what="the group to scale in")
    gone = (before | new) - set(worker_ids(aws))
    wait_for(lambda: not (gone & set(ready_workers(manager))), 120, 2, what="the removed worker to leave")
    # No operator's run needed: the removed worker left the swarm on its way down (jhs-swarm-leave), and the hub's
    # reconciler removes a node Down past its grace (30 s in the lab). (The baked-worker test runs
    # playbooks/workers.yml after a scale-in: that play's own removal of Down nodes.)
    def node_states() -> list[tuple[str, str]]:
        return [(n["Description"]["Hostname"], n["Status"]["State"]) for n in swarm_nodes(manager)]
    wait_for(lambda: len(node_states()) == 3 and all(state == "ready" for _, state in node_states()), 120, 2,
             what="no Down node left, the manager and two workers Ready", detail=lambda: str(node_states()))


# --- autoscaling (jhs_scaler on the manager; the lab's endpoint holds lifecycle waits as AWS does) ---------------
# Last in the file: the workers they add boot from the image the baked-worker test made, as on AWS after a bake.
def group(aws) -> dict:
    return aws("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"][0]


def lifecycle(aws) -> dict[str, tuple[str, bool]]:
    """Each instance of the group: (LifecycleState, ProtectedFromScaleIn)."""
    return {i["InstanceId"]: (i["LifecycleState"], i.get("ProtectedFromScaleIn", False)) for i in group(aws)["Instances"]}


def scaler_log(manager: str, since: str) -> str:
    out = node_exec(manager, "docker", "logs", "--since", since, SCALER)
    return out.stdout + out.stderr


def running_tasks(manager: str, users: list[str]) -> dict[str, str]:
    """The running task id of each user's service."""
    out = {}
    for user in users:
        ids = node_exec(manager, "docker", "service", "ps", f"jupyter-{user}", "--filter", "desired-state=running",
                        "-q", "--no-trunc").stdout.split()
        out[user] = ids[0] if len(ids) == 1 else repr(ids)
    return out


def node_of(manager: str, iid: str) -> dict:
    return next(n for n in swarm_nodes(manager)
                if (n["Description"]["Engine"].get("Labels") or {}).get("jhs.instance-id") == iid)


def answers(hub: HubClient, user: str) -> bool:
    r = hub.call("GET", f"/user/{user}/api/status")
    return r.status_code == 200 and "started" in r.json()


@pytest.fixture(scope="module")
def autoscale():
    """What the autoscaling tests hand on, in file order: users, where their servers run, the new worker."""
    return {}


def test_a_spawn_no_worker_has_room_for_adds_a_worker_and_runs_there(site, aws, hub, autoscale):
    """Two workers with room for 2 servers each (a ballast service reserves the rest): four servers are packed
    two per worker (the most allocated with room first); the fifth finds no room, the scaler raises the desired
    capacity by exactly one, the new worker boots, joins, completes its launch hook, and the spawn succeeds there."""
    manager = manager_id(aws)
    for u in hub.call("GET", "/hub/api/users", params={"state": "active"}).json():
        if "" in u["servers"]:
            hub.stop(u["name"])
    workers = [n for n in swarm_nodes(manager) if n["Spec"]["Role"] == "worker" and n["Status"]["State"] == "ready"
               and n["Spec"].get("Availability") == "active"]
    assert len(workers) == 2 and group(aws)["DesiredCapacity"] == 2, [n["Description"]["Hostname"] for n in workers]
    made = node_exec(manager, "docker", "service", "create", "--detach", "--name", "jhs-scale-ballast", "--mode",
                     "global", "--constraint", "node.role == worker", "--reserve-memory",
                     str(ballast_for(workers, 2.5)), "--no-resolve-image", "debian:bookworm-slim", "sleep", "infinity")
    assert made.returncode == 0, made.stderr
    wait_for(lambda: node_exec(manager, "docker", "service", "ps", "jhs-scale-ballast", "--filter",
                               "desired-state=running", "--format", "{{.CurrentState}}").stdout.count("Running") == 2,
             180, 2, what="the ballast running on both workers")
    users = ["scale" + uuid.uuid4().hex[:5] for _ in range(5)]
    autoscale.update(users=users, manager=manager)
    for user in users[:4]:
        hub.create_user(user)
        hub.start(user)
    placed = {user: service_node(manager, user) for user in users[:4]}
    assert placed[users[0]] == placed[users[1]] != placed[users[2]] == placed[users[3]], placed
    before = set(worker_ids(aws))
    since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    hub.create_user(users[4])
    # the hub answers a spawn that is slow to start after 10 s: the request goes in the background
    requested = concurrent.futures.ThreadPoolExecutor(1).submit(hub.request_start, users[4])
    t0 = time.monotonic()
    wait_for(lambda: group(aws)["DesiredCapacity"] == 3, 30, 0.2, what="the scaler to raise the desired capacity",
             detail=lambda: scaler_log(manager, since))
    t_desired = time.monotonic() - t0
    (new,) = wait_for(lambda: set(worker_ids(aws)) - before, 30, 0.5, what="the group to launch a worker")
    wait_for(lambda: new in ready_workers(manager), 300, 1, what=f"{new} to join",
             detail=lambda: node_exec(new, "tail", "-30", "/var/log/jhs-boot.log").stdout)
    t_joined = time.monotonic() - t0
    requested.result()
    hub.wait_ready(users[4], 300, 1)
    t_ready = time.monotonic() - t0
    assert service_node(manager, users[4]) == new
    wait_for(lambda: lifecycle(aws)[new][0] == "InService", 60, 1, what=f"{new}'s launch hook to complete")
    log = scaler_log(manager, since)
    assert re.search(r"desired 2 -> 3: scale out: 1 pending spawn\(s\) need 1 more node\(s\)", log), log
    assert group(aws)["DesiredCapacity"] == 3            # one pending spawn, one node
    print(f"spawn with no room: desired capacity raised {t_desired:.1f} s after the request, the new worker Ready "
          f"after {t_joined:.1f} s, the server ready after {t_ready:.1f} s")
    autoscale.update(new=new, placed={**placed, users[4]: new})


def test_lowering_the_desired_capacity_by_hand_while_every_worker_holds_a_server_terminates_none(aws, hub, autoscale):
    """Every worker holds a server, so the scaler protects each from scale-in; an operator lowers the desired
    capacity by hand: the group terminates none, and no server is touched."""
    manager, users = autoscale["manager"], autoscale["users"]
    wait_for(lambda: all(protected for _, protected in lifecycle(aws).values()) and len(lifecycle(aws)) == 3, 30, 1,
             what="the scaler to protect the three busy workers", detail=lambda: lifecycle(aws))
    tasks = running_tasks(manager, users)
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=2)
    time.sleep(15)
    assert {iid: state for iid, (state, _) in lifecycle(aws).items()} == {
        iid: "InService" for iid in set(autoscale["placed"].values())}
    assert group(aws)["DesiredCapacity"] == 2
    assert running_tasks(manager, users) == tasks
    assert all(answers(hub, user) for user in users)


def test_a_worker_in_terminating_wait_with_a_server_goes_only_once_the_server_stops(aws, hub, autoscale):
    """Whoever terminates a worker (here TerminateInstanceInAutoScalingGroup, as a rebalance would), its
    termination hook holds it in Terminating:Wait: the scaler pauses its node (no new server there, the running
    one stays), sends heartbeats, and completes the hook once the server has stopped; then the instance ends."""
    manager, users, new = autoscale["manager"], autoscale["users"], autoscale["new"]
    since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    task = running_tasks(manager, users[4:])
    aws("autoscaling").terminate_instance_in_auto_scaling_group(InstanceId=new, ShouldDecrementDesiredCapacity=False)
    wait_for(lambda: lifecycle(aws)[new][0] == "Terminating:Wait", 15, 0.5, what=f"{new} in Terminating:Wait")
    wait_for(lambda: node_of(manager, new)["Spec"]["Availability"] == "pause", 20, 1, what=f"{new}'s node paused",
             detail=lambda: scaler_log(manager, since))
    time.sleep(10)
    assert lifecycle(aws).get(new, ("gone",))[0] == "Terminating:Wait"
    assert running_tasks(manager, users[4:]) == task and answers(hub, users[4])
    assert re.search(rf"heartbeat {new}: 1 server\(s\) still there", scaler_log(manager, since))
    hub.stop(users[4])
    t0 = time.monotonic()
    wait_for(lambda: new not in lifecycle(aws), 60, 1, what=f"{new} to leave the group once empty",
             detail=lambda: scaler_log(manager, since))
    print(f"terminating worker let go {time.monotonic() - t0:.1f} s after its last server stopped")
    assert f"complete {new}: no user server left" in scaler_log(manager, since)
    state = aws("ec2").describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_empty_workers_go_after_the_cooldown_down_to_zero_and_a_schedule_pre_warms_them(aws, hub, autoscale):
    """With the group's minimum lowered to 0 (as an operator would): the users of one worker stop, and after the
    cool-down the scaler drains and terminates that worker, leaving the other and its servers untouched; then the
    rest stop and the workers go down to zero. A schedule window starting now (one pass of the scaler with it)
    pre-warms the group again."""
    manager, users, placed = autoscale["manager"], autoscale["users"], autoscale["placed"]
    asg = aws("autoscaling")
    first, second = placed[users[0]], placed[users[2]]
    since = node_exec(manager, "date", "-u", "+%Y-%m-%dT%H:%M:%SZ").stdout.strip()
    asg.update_auto_scaling_group(AutoScalingGroupName=NAMES["workers"], MinSize=0)
    try:
        kept = running_tasks(manager, users[2:4])
        for user in users[:2]:
            hub.stop(user)
        t0 = time.monotonic()
        wait_for(lambda: first not in lifecycle(aws), 240, 1, what=f"the empty {first} to be removed",
                 detail=lambda: scaler_log(manager, since))
        print(f"empty worker removed {time.monotonic() - t0:.0f} s after its last server stopped (cool-down 60 s)")
        log = scaler_log(manager, since)
        assert re.search(rf"desired 2 -> 1: scale in: {first} empty for \d+s", log), log
        assert second in lifecycle(aws) and group(aws)["DesiredCapacity"] == 1
        assert running_tasks(manager, users[2:4]) == kept and all(answers(hub, user) for user in users[2:4])
        for user in users[2:4]:
            hub.stop(user)
        wait_for(lambda: not lifecycle(aws), 240, 1, what="the workers to scale to zero",
                 detail=lambda: scaler_log(manager, since))
        assert group(aws)["DesiredCapacity"] == 0
        # a window that starts in two minutes (within the pre-warm), run by a second copy of the scaler for one pass
        cmd = json.loads(node_exec(manager, "docker", "inspect", "-f", "{{json .Config.Cmd}}", SCALER).stdout)
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = now + datetime.timedelta(minutes=2), now + datetime.timedelta(minutes=30)
        window = [{"name": "lab class", "days": [start.strftime("%a").lower()], "start": start.strftime("%H:%M"),
                   "end": end.strftime("%H:%M"), "min_nodes": 2}]
        cmd[cmd.index("--schedule") + 1] = json.dumps(window)
        once = node_exec(manager, "docker", "exec", SCALER, *cmd, "--once")
        assert once.returncode == 0, once.stdout + once.stderr
        assert re.search(r"desired 0 -> 2: scale out: floor 2 \(schedule lab class \(pre-warm\)\)", once.stdout), once.stdout
        wait_for(lambda: len(ready_workers(manager)) == 2, 300, 2, what="the pre-warmed workers to join")
    finally:
        asg.update_auto_scaling_group(AutoScalingGroupName=NAMES["workers"], MinSize=2)
        node_exec(manager, "docker", "service", "rm", "jhs-scale-ballast")
        for user in users:
            if hub.call("GET", f"/hub/api/users/{user}").status_code == 200 and hub.server(user) is not None:
                hub.stop(user)
            hub.delete_user(user)
        wait_for(lambda: len(ready_workers(manager)) == 2 and len(worker_ids(aws)) == 2, 300, 2,
                 what="two workers again")


def test_a_replaced_manager_on_a_new_state_volume_gets_the_workers_back_and_the_hub_database_from_s3(site, aws, hub):
    """Near last (it replaces the manager, whose private address is the hub's in the lab). The manager instance is lost with
    its state volume: terminated, the volume deleted; its swarm, hub database and local backups go with it. The
    operator runs the guide's site.yml: a new manager on a new state volume leads a new swarm, and the workers of the
    old swarm, which nothing would bring back, are replaced by the group and the new ones join. The guide's restore
    then finds no backup on the manager and fetches the newest from the bucket (the manager copies each one there):
    the user and their token come back, and their server starts on a new worker with the file written before."""
    ec2, manager = aws("ec2"), manager_id(aws)
    bucket = aws("ssm").get_parameter(Name=SSM["backup_bucket"])["Parameter"]["Value"]
    copier = node_exec(manager, "docker", "inspect", "-f", "{{.State.Running}} {{.HostConfig.NetworkMode}}",
                       "jupyterhub-backup-copy")
    assert copier.stdout.split() == ["true", "host"], copier.stdout + copier.stderr
    user, token = user_with_token(hub, "r", "manager replacement test")
    hub.start(user)   # left running: the restored database says so, and the new hub finds no such service
    r = hub.call("PUT", f"/user/{user}/api/contents/notes.txt",
                 json={"type": "file", "format": "text", "content": "kept across managers"})
    assert r.status_code in (200, 201), r.text
    name = back_up_now(manager)

    def copied():
        listing = aws("s3").list_objects_v2(Bucket=bucket, Prefix="hub-backups/")
        return f"hub-backups/{name}" in [o["Key"] for o in listing.get("Contents", [])]
    wait_for(copied, 120, 2, what=f"{name} copied to s3://{bucket}/hub-backups/",
             detail=lambda: node_exec(manager, "docker", "logs", "--tail", "20", "jupyterhub-backup-copy").stdout)
    old_workers = worker_ids(aws)
    volumes = [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
        {"Name": "tag:jhs:cluster", "Values": [CLUSTER]}, {"Name": "tag:jhs:data", "Values": ["hub-state"]}])["Volumes"]]
    assert len(volumes) == 1, volumes
    ec2.terminate_instances(InstanceIds=[manager])
    wait_for(lambda: manager not in node_containers(), 120, 1, what="the manager's node to go")
    with contextlib.suppress(Exception):   # the endpoint may have detached it with the instance
        ec2.detach_volume(VolumeId=volumes[0], Force=True)
    ec2.delete_volume(VolumeId=volumes[0])

    proc = run_site(site)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    new_manager = manager_id(aws)
    assert new_manager != manager
    (volume,) = ec2.describe_volumes(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                              {"Name": "tag:jhs:data", "Values": ["hub-state"]}])["Volumes"]
    assert volume["VolumeId"] != volumes[0] and volume["Attachments"][0]["InstanceId"] == new_manager
    assert "TASK [Replace the workers that joined another swarm (the manager was replaced since)]" in proc.stdout
    # the new manager pulled the hub's, the proxy's and the notebook image the old one had pushed, rather than build
    # them again
    pulled = [ref for name, body in task_sections(proc.stdout) if name == PULL_IMAGES_TASK
              for ref in re.findall(r"^changed: \[[^]]+\] => \(item=([^)]+)\)", body, re.M)]
    assert sorted(ref.rsplit(":", 1)[0].rsplit("/", 1)[-1] for ref in pulled) == ["hub", "notebook", "proxy"], \
        proc.stdout[-6000:]
    assert task_results(proc.stdout, "jupyterhub : Images | write the build contexts") == {"skipping"}
    workers = worker_ids(aws)
    assert workers and not set(workers) & set(old_workers), (workers, old_workers)
    ready = {(n["Description"]["Engine"].get("Labels") or {}).get("jhs.instance-id") for n in swarm_nodes(new_manager)
             if n["Status"]["State"] == "ready"}
    assert set(workers) <= ready, (workers, ready)

    lab_cmd("summary")   # the hub's address is the new manager's (the lab may give it the old one's again)
    fresh = {**site, "LAB_HUB_URL": read_env()["LAB_HUB_URL"]}
    new_hub = HubClient(fresh["LAB_HUB_URL"])
    assert new_hub.call("GET", f"/hub/api/users/{user}").status_code == 404   # an empty database
    proc = run_restore(fresh)
    assert "TASK [jupyterhub : Restore | download the backup]" in proc.stdout
    restored = re.search(r"Restored (jupyterhub-\d{8}T\d{6}Z\.sqlite) \(\d+ users\)", proc.stdout)
    assert restored and restored.group(1) == name, proc.stdout[-2000:]
    r = token_owner(fresh, token)
    assert r.status_code == 200 and r.json()["name"] == user, r.text
    new_hub = HubClient(fresh["LAB_HUB_URL"])   # the restored database holds the tokens it knew
    wait_for(lambda: new_hub.server(user) is None, 120, 2, what=f"the hub to find {user}'s old server gone")
    new_hub.start(user)
    assert service_node(new_manager, user) in workers
    r = new_hub.call("GET", f"/user/{user}/api/contents/notes.txt")
    assert r.status_code == 200 and r.json()["content"] == "kept across managers", r.text
    local = node_exec(new_manager, "sh", "-c", "ls /var/lib/jupyterhub/backups/").stdout.split()
    assert restored.group(1) in local      # kept where the manager's backups go
    new_hub.stop(user)


def test_inventories_aws_as_written_reaches_a_hub_over_https_with_an_acme_certificate_and_tears_down(site):
    """#13's rehearsal of the AWS example: a copy of inventories/aws as written, with only lab/rehearsal_overlay.yml
    over it, run by an operator holding only docs/aws-permissions.md's policy for its cluster and zone, takes the
    endpoint from nothing of that cluster to a hub answering over HTTPS at the name of the zone's record, with a
    certificate the ACME CA issued through an HTTP-01 challenge at that name; teardown.yml then leaves nothing of it.
    It ran in the background since the site fixture (start_rehearsal)."""
    assert REHEARSAL, "the site fixture did not start the rehearsal"
    try:
        REHEARSAL["proc"].wait(timeout=2400)
    finally:
        REHEARSAL["proc"].kill()
    log = REHEARSAL["log"].read_text()
    up = json.loads(REHEARSAL["up"].read_text())
    down = json.loads(REHEARSAL["down"].read_text())
    site_log = ROOT / ".lab" / "logs" / "rehearsal-site.log"
    assert "error" not in up, f"{up['error']}\n{log[-3000:]}\n" + (site_log.read_text()[-6000:] if site_log.exists() else "")
    assert up["site_rc"] == 0 and up["cluster"] == "myhub"   # inventories/aws's name, as written
    assert up["secret_in_site_log"] is False   # the OAuth client secret given with -e, as docs/deploy-aws.md says
    # the lab cluster's images, the same recipes: copied, not built again
    assert sorted(i.split(":")[0] for i in up["images_copied"]) == ["myhub/hub", "myhub/notebook", "myhub/proxy"]
    https = up["https"]
    assert https["status"] == 200 and https["login_page_offers_github"], https   # GitHub sign-in, as written
    assert https["subject_alt_names"] == [up["domain"]] == ["hub.example.org"], https
    assert https["issuer"]["commonName"].startswith("Pebble Intermediate CA"), https   # the ACME CA's, not self-signed
    # the hub state volume found by its id, as inventories/aws has it: the lab's EBS stand-in (lab/ebs.py)
    vol = up["state_volume"]
    assert vol["mounted_from"] == f"/dev/ebs-{vol['volume_id']}", vol
    assert "error" not in down, f"{down['error']}\n{log[-3000:]}"
    assert down["teardown_rc"] == 0
    assert down["left"] == {"instances": [], "vpcs": [], "volumes": [], "records": []}, down["left"]
    print(f"rehearsal: site.yml {up['site_seconds']} s, teardown {down['teardown_seconds']} s")


def test_no_request_of_the_run_was_refused_but_those_asked_to_be(site):
    """Last in the file: every request of the whole run (site.yml, the workers' boots, the scaler, the backups, every
    test above) was allowed by its caller's policy, but for the refusals the role test asked for. A role that lacks a
    permission its job needs shows here, named by the endpoint's log line, even where a retry hid the failure."""
    assert DENIALS_PROVOKED, "the role test above did not run"
    assert iam_denials()[DENIALS_BEFORE[0]:] == DENIALS_PROVOKED
