"""The local lab: `python -m lab up|down|status|summary|images|reconcile`.

up       preflight, build (or reuse) images, create the lab network, start the local AWS endpoint
         (moto server) on the network's gateway, the metadata stand-in and the reconciler; write
         .lab/env. Safe to run again: what exists is kept, nothing is duplicated.
down     stop and remove every process, container, volume, network and file the lab made (images
         are kept as a build cache; `down --images` removes them too).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from . import config, ebs, images, sgfilter
from .docker import DockerError, docker, ids, inspect, inspect_labelled

BASE_AMI_NAME = "jhs-lab-debian-12"


class LabError(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


# ---------------------------------------------------------------- processes (moto, reconciler)
def pidfile(name: str) -> Path:
    return config.lab_dir() / f"{name}.pid"


def running_pid(name: str, must_contain: str = "") -> int | None:
    """The pid of the lab's process `name` if it runs (and its command line has must_contain)."""
    path = pidfile(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return pid if name in cmdline and must_contain in cmdline else None


def start_process(name: str, argv: list[str]) -> int:
    logs = config.lab_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=config.ROOT)
    pidfile(name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop_process(name: str) -> None:
    pid = running_pid(name)
    if pid:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
    pidfile(name).unlink(missing_ok=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def endpoint_ready(timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(config.endpoint_url() + "/moto-api/", timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise LabError(f"the local AWS endpoint did not answer at {config.endpoint_url()} within {timeout:.0f} s; "
                   f"see {config.lab_dir() / 'logs' / 'moto.log'}")


# ---------------------------------------------------------------- preflight
def host_ports(container: dict | None) -> list[str]:
    """The host ports a container (docker inspect output, or None) publishes."""
    bindings = ((container or {}).get("HostConfig", {}).get("PortBindings") or {}).values()
    return [b.get("HostPort") for bs in bindings for b in bs or []]


def preflight() -> None:
    if shutil.which("docker") is None:
        raise LabError("the docker command is not installed: run `make lab` (as root it installs docker.io) "
                       "or install Docker yourself")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise LabError("no Docker engine answers (`docker info` failed): start it (`make docker` as root "
                       "does) and re-run")
    registry_ports = [p for name in (config.REGISTRY_CONTAINER, config.ECR_CONTAINER)
                      for p in host_ports(inspect(name))]
    for var, port, ours in (("LAB_AWS_PORT", config.aws_port(), running_pid("moto", f"-p {config.aws_port()}")),
                            ("LAB_GIT_PORT", config.git_port(), running_pid("git", f"--port={config.git_port()}")),
                            ("LAB_REGISTRY_PORT", config.registry_host_port(),
                             str(config.registry_host_port()) in registry_ports),
                            ("LAB_ECR_PORT", config.ecr_host_port(), str(config.ecr_host_port()) in registry_ports)):
        if not 1024 <= port <= 65535:
            raise LabError(f"{var}={port}: use a port from 1024 to 65535")
        if not ours and not port_free(port):
            raise LabError(f"{var}={port} is already in use by another process; stop it or choose "
                           f"another port, e.g. {var}={port + 10} make lab")
    net = inspect(config.NETWORK, "network")
    if net:
        subnets = [c.get("Subnet") for c in net["IPAM"]["Config"] or []]
        if str(config.network_cidr()) not in subnets:
            raise LabError(f"network {config.NETWORK} exists with subnet {subnets}, not LAB_NETWORK_CIDR="
                           f"{config.network_cidr()}: run `make lab-down` first")


# ---------------------------------------------------------------- up / down
def build_images() -> dict[str, str]:
    log = config.lab_dir() / "logs" / "build.log"
    say("building images (cached by recipe; first build takes a few minutes)")
    try:
        tags = images.build_all(log)
    except images.BuildError as exc:
        raise LabError(str(exc)) from None
    (config.lab_dir() / "images.json").write_text(json.dumps(tags, indent=1) + "\n")
    return tags


def ensure_network() -> None:
    if inspect(config.NETWORK, "network"):
        return
    cidr = config.network_cidr()
    docker("network", "create", "--driver", "bridge", "--opt", f"com.docker.network.bridge.name={config.BRIDGE}",
           "--subnet", str(cidr), "--gateway", config.gateway(),
           "--ip-range", str(config.service_range()), "--label", f"{config.LABEL}=network", config.NETWORK)
    say(f"network {config.NETWORK} {cidr}")


def operator_policy(cluster: str = config.CLUSTER, region: str | None = None, zone_id: str = "NOZONEINTHELAB") -> dict:
    """The operator's IAM policy of docs/aws-permissions.md (its first json block), for a cluster (the lab's by
    default), a region (the lab's) and the endpoint's account. Its hosted-zone statement names the zone given (the
    rehearsal's, lab/rehearsal.py); the lab's own cluster makes no DNS record, and its policy names no zone."""
    text = config.PERMISSIONS_DOC.read_text()
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.S)
    if not blocks:
        raise LabError(f"{config.PERMISSIONS_DOC} holds no json block: the operator's policy is its first")
    for placeholder, value in (("CLUSTER", cluster), ("REGION", region or config.region()), ("ACCOUNT", config.ACCOUNT),
                               ("ZONE_ID", zone_id)):
        blocks[0] = re.sub(rf"\b{placeholder}\b", value, blocks[0])
    return json.loads(blocks[0])


def ensure_endpoint() -> None:
    """The local AWS endpoint, judging every request by IAM; the operator's user holds the operator policy of
    docs/aws-permissions.md as it reads now (put again on each `lab up`, so an edit of the doc takes effect)."""
    import boto3
    policy_file = config.lab_dir() / "operator-policy.json"
    policy = operator_policy()
    policy_file.write_text(json.dumps(policy, indent=1))
    if running_pid("moto", f"--operator-policy {policy_file} -H {config.gateway()} -p {config.aws_port()}") is None:
        stop_process("moto")  # one on another port, or of an older lab, if any
        argv = [sys.executable, "-m", "lab.motoserver", "--enforce-iam", "--operator-policy", str(policy_file),
                "-H", config.gateway(), "-p", str(config.aws_port())]
        start_process("moto", argv)
        say(f"local AWS endpoint (moto) at {config.endpoint_url()}")
    endpoint_ready()
    iam = boto3.client("iam", endpoint_url=config.endpoint_url(), region_name=config.region(),
                       aws_access_key_id=config.AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=config.AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    iam.put_user_policy(UserName=config.OPERATOR_USER, PolicyName=config.OPERATOR_POLICY_NAME,
                        PolicyDocument=json.dumps(policy))


def ensure_registry(image: str, base: str) -> None:
    """The lab's Docker Hub stand-in, seeded with the Debian base image as debian:bookworm-slim."""
    cur = inspect(config.REGISTRY_CONTAINER)
    if not (cur and cur["Config"]["Image"] == image and cur["State"]["Running"]):
        if cur:
            docker("rm", "-f", "-v", config.REGISTRY_CONTAINER)
        docker("run", "-d", "--name", config.REGISTRY_CONTAINER, "--label", f"{config.LABEL}=registry",
               "--network", config.NETWORK, "--ip", config.registry_addr().split(":")[0],
               "--mount", f"type=volume,dst=/var/lib/docker-registry,volume-label={config.LABEL}=registry",
               "-p", f"127.0.0.1:{config.registry_host_port()}:5000", "--restart", "unless-stopped", image)
        say(f"registry (Docker Hub stand-in) at {config.registry_addr()}")
    pushed = f"127.0.0.1:{config.registry_host_port()}/library/debian:bookworm-slim"
    docker("tag", base, pushed)
    for _ in range(50):
        if subprocess.run(["docker", "push", "-q", pushed], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise LabError(f"could not push the base image to the lab registry at {pushed}")


def ecr_login() -> tuple[str, str]:
    """The user and password the ECR stand-in takes: those of the local endpoint's GetAuthorizationToken (user AWS;
    moto's password names the account)."""
    from .reconciler import aws_client
    return "AWS", f"{aws_client('sts').get_caller_identity()['Account']}-auth-token"


def ensure_ecr(image: str) -> None:
    """The stand-in for Amazon ECR: a registry that takes only the user and password of an authorization
    token from the local endpoint's GetAuthorizationToken (ecr_login), so the hub's ECR login, push and the workers'
    authenticated pulls run as on AWS."""
    user, password = ecr_login()
    cur = inspect(config.ECR_CONTAINER)
    env = [f"LAB_REGISTRY_USER={user}", f"LAB_REGISTRY_PASSWORD={password}"]
    if (cur and cur["Config"]["Image"] == image and cur["State"]["Running"] and set(env) <= set(cur["Config"]["Env"])
            and str(config.ecr_host_port()) in host_ports(cur)):
        return
    if cur:
        docker("rm", "-f", "-v", config.ECR_CONTAINER)
    docker("run", "-d", "--name", config.ECR_CONTAINER, "--label", f"{config.LABEL}=ecr",
           "--network", config.NETWORK, "--ip", config.ecr_addr().split(":")[0],
           "--mount", f"type=volume,dst=/var/lib/docker-registry,volume-label={config.LABEL}=ecr",
           "-p", f"127.0.0.1:{config.ecr_host_port()}:5000",
           *[a for e in env for a in ("-e", e)], "--restart", "unless-stopped", image)
    say(f"registry (Amazon ECR stand-in, ECR tokens of the local endpoint) at {config.ecr_addr()}")


def ensure_proxy(image: str) -> None:
    """An outbound (corporate) proxy on the lab's network, which a node told to (outbound_proxy) goes through."""
    cur = inspect(config.PROXY_CONTAINER)
    if cur and cur["Config"]["Image"] == image and cur["State"]["Running"]:
        return
    if cur:
        docker("rm", "-f", "-v", config.PROXY_CONTAINER)
    docker("run", "-d", "--name", config.PROXY_CONTAINER, "--label", f"{config.LABEL}=proxy",
           "--network", config.NETWORK, "--ip", config.proxy_addr().split(":")[0], "--restart", "unless-stopped", image)
    say(f"outbound proxy (tinyproxy) at {config.proxy_addr()}")


def snapshot_repo() -> str:
    """Publish the working tree (tracked and untracked, not ignored) as branch `lab` of the lab's git
    repository, which lab instances ansible-pull from, the way AWS instances pull from repo_url.

    Provisioning pins workers to the commit the branch names, so the branch only ever moves forward: each new
    snapshot has the previous one as a parent (a worker pinned to it can still fetch it), and an unchanged tree
    on the same HEAD keeps the previous snapshot (a second `lab up` changes no launch template)."""
    bare = config.lab_dir() / "git" / config.GIT_REPO_NAME
    if not bare.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    index = config.lab_dir() / "git" / "index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=config.ROOT, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("read-tree", "HEAD")
    git("add", "-A")
    tree = git("write-tree")
    head = git("rev-parse", "HEAD")
    previous = subprocess.run(["git", f"--git-dir={bare}", "rev-parse", "-q", "--verify",
                               f"refs/heads/{config.GIT_BRANCH}^{{commit}}"], capture_output=True, text=True).stdout.strip()
    if previous:
        old_tree, *parents = subprocess.run(["git", f"--git-dir={bare}", "log", "-1", "--format=%T %P", previous],
                                            check=True, capture_output=True, text=True).stdout.split()
        if old_tree == tree and parents[:1] == [head]:
            index.unlink(missing_ok=True)
            return previous
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(bare / "objects")   # the parent, read where it is
    commit = git("commit-tree", tree, "-p", head, *(["-p", previous] if previous else []),
                 "-m", "lab snapshot of the working tree")
    git("push", "-q", "-f", str(bare), f"{commit}:refs/heads/{config.GIT_BRANCH}")
    index.unlink(missing_ok=True)
    return commit


def ensure_git_daemon() -> None:
    if running_pid("git", f"--port={config.git_port()}") is None:
        stop_process("git")
        start_process("git", ["git", "daemon", f"--base-path={config.lab_dir() / 'git'}", "--export-all",
                              "--reuseaddr", f"--listen={config.gateway()}", f"--port={config.git_port()}",
                              "--informative-errors"])
        say(f"git daemon at {config.repo_url()} (branch {config.GIT_BRANCH})")


def ensure_base_ami(node_image: str) -> str:
    """Register the lab's base AMI (boots the cloud image: Debian without a Docker engine) unless the endpoint
    already has it; its tag always names the current image."""
    from .reconciler import AMI_IMAGE_TAG, aws_client
    ec2 = aws_client()
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [BASE_AMI_NAME]}])
    if found["Images"]:
        ami = found["Images"][0]["ImageId"]
    else:
        ami = ec2.register_image(Name=BASE_AMI_NAME, Architecture="x86_64", RootDeviceName="/dev/xvda",
                                 Description="Lab stand-in for a Debian 12 AMI")["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=[{"Key": AMI_IMAGE_TAG, "Value": node_image}])
    return ami


def ensure_key_pair() -> Path:
    """The operator's side of SSH, as on AWS: a key (.lab/ssh/id_ed25519) imported into the endpoint as the EC2 key
    pair config.KEY_NAME, which provisioning puts on every instance, and an ssh config that Ansible uses
    (LAB_SSH_CONFIG in .lab/env). It names the key and a known_hosts file of the lab's own: the lab's addresses are
    reused by every lab, and each instance makes new host keys at its first boot, as on EC2."""
    from .reconciler import aws_client
    ssh_dir = config.lab_dir() / "ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", config.KEY_NAME, "-f", str(key)],
                       check=True)
    ec2 = aws_client()
    if not ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [config.KEY_NAME]}])["KeyPairs"]:
        ec2.import_key_pair(KeyName=config.KEY_NAME, PublicKeyMaterial=Path(f"{key}.pub").read_bytes())
    ssh_config = ssh_dir / "config"
    # ProxyJump's own ssh (to the manager) reads this file too (ssh passes -F on), not the command line's options.
    ssh_config.write_text(
        "# written by `python -m lab up`: how the control node reaches the lab's instances (Ansible: ansible_ssh_args)\n"
        f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
        "  StrictHostKeyChecking accept-new\n  ConnectTimeout 10\n  ServerAliveInterval 15\n")
    return ssh_config


def ensure_imds(image: str) -> None:
    cur = inspect(config.IMDS_CONTAINER)
    if cur and cur["Config"]["Image"] == image and cur["State"]["Running"]:
        return
    if cur:
        docker("rm", "-f", config.IMDS_CONTAINER)
    docker("run", "-d", "--name", config.IMDS_CONTAINER, "--label", f"{config.LABEL}=imds",
           "--cap-add", "NET_ADMIN", "--network", config.NETWORK, "--ip", config.imds_addr(),
           "-e", f"LAB_AWS_ENDPOINT_URL={config.endpoint_url()}", "-e", f"LAB_REGION={config.region()}",
           "-e", f"LAB_AWS_ACCESS_KEY_ID={config.AWS_CREDENTIALS['AWS_ACCESS_KEY_ID']}",
           "-e", f"LAB_AWS_SECRET_ACCESS_KEY={config.AWS_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}",
           "--restart", "unless-stopped", image)
    say(f"metadata stand-in at {config.imds_addr()} (nodes route 169.254.169.254 to it)")


def ensure_reconciler() -> None:
    if running_pid("reconciler") is None:
        start_process("reconciler", [sys.executable, "-m", "lab.reconciler", "--jhs-lab-reconciler"])
        say("reconciler started (node containers follow the endpoint's instances)")


def write_env(base_ami: str, extra: dict[str, str] | None = None) -> Path:
    path = config.lab_dir() / "env"
    old = read_env()
    env = {
        "AWS_ENDPOINT_URL": config.endpoint_url(),
        "AWS_DEFAULT_REGION": config.region(),
        "AWS_REGION": config.region(),
        **config.OPERATOR_CREDENTIALS,   # the operator's: only docs/aws-permissions.md's policy
        "LAB_BASE_AMI": base_ami,
        "LAB_EFS_DIR": str(config.efs_dir()),
        "LAB_NETWORK": config.NETWORK,
        "LAB_REPO_URL": config.repo_url(),
        "LAB_REPO_VERSION": config.GIT_BRANCH,
        "LAB_REGISTRY": config.registry_addr(),
        "LAB_ECR_REGISTRY": config.ecr_addr(),
        "LAB_ECR_PORT": str(config.ecr_host_port()),
    }
    for key in ("LAB_HUB_URL", "LAB_SSH_CONFIG", "LAB_KEY_NAME", "LAB_ADMIN_CIDR"):   # written by later steps
        if key in old:
            env[key] = old[key]
    env.update(extra or {})
    path.write_text("# written by `python -m lab up`; source it to point the aws CLI or boto3 at the lab\n"
                    + "".join(f"{k}={v}\n" for k, v in env.items()))
    return path


def read_env() -> dict[str, str]:
    path = config.lab_dir() / "env"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


@contextlib.contextmanager
def phase(name: str, started: float):
    """Say when a phase of `lab up` is done, with its time and the time since the start; or that it failed."""
    t = time.monotonic()
    try:
        yield
    except BaseException as exc:
        say(f"phase {name} FAILED after {time.monotonic() - t:.0f} s: {exc}")
        raise
    say(f"phase {name} done in {time.monotonic() - t:.0f} s (at {time.monotonic() - started:.0f} s)")


def up() -> None:
    started = time.monotonic()
    with phase("preflight", started):
        preflight()
        config.lab_dir().mkdir(parents=True, exist_ok=True)
        config.efs_dir().mkdir(parents=True, exist_ok=True)
    with phase("images (built once, then from the cache)", started):
        tags = build_images()
    with phase("network and local AWS endpoint", started):
        ensure_network()
        ensure_endpoint()
        base_ami = ensure_base_ami(tags["cloud"])
        ssh_config = ensure_key_pair()
    with phase("metadata service, registry, ECR stand-in, outbound proxy", started):
        ensure_imds(tags["imds"])
        ensure_registry(tags["registry"], tags["base"])
        ensure_ecr(tags["registry"])
        ensure_proxy(tags["proxy"])
    with phase("repository for ansible-pull and the group's reconciler", started):
        snapshot_repo()
        ensure_git_daemon()
        ensure_reconciler()
        path = write_env(base_ami, {"LAB_SSH_CONFIG": str(ssh_config), "LAB_KEY_NAME": config.KEY_NAME,
                                    "LAB_ADMIN_CIDR": f"{config.gateway()}/32"})
    say(f"up in {time.monotonic() - started:.0f} s. Endpoint {config.endpoint_url()}, base AMI {base_ami}; "
        f"`. {path.relative_to(config.ROOT)}` to use it")


def down(remove_images: bool = False) -> None:
    stop_process("reconciler")
    stop_process("moto")
    stop_process("git")
    sgfilter.remove(config.BRIDGE)
    for cid in ids("container", config.LABEL):
        docker("rm", "-f", "-v", cid, check=False)
    ebs.release_all()   # the loop devices of the volumes the nodes had (their files go with the lab's directory)
    for vol in ids("volume", config.LABEL):
        docker("volume", "rm", "-f", vol, check=False)
    for net in ids("network", config.LABEL):
        docker("network", "rm", net, check=False)
    if remove_images:
        for img in docker("images", "-q", "--filter", f"label={config.LABEL}.image").split():
            docker("rmi", "-f", img, check=False)
    if config.lab_dir().exists():
        shutil.rmtree(config.lab_dir())
    say("down: every lab process, container, volume, network and file removed"
        + ("" if remove_images else " (images kept as build cache; `python -m lab down --images` removes them)"))


def status(logs: int = 0) -> int:
    env = read_env()
    print(f"endpoint   {env.get('AWS_ENDPOINT_URL', '-')}  moto pid {running_pid('moto') or 'not running'}")
    print(f"reconciler pid {running_pid('reconciler') or 'not running'}")
    for name, info in inspect_labelled(f"{config.LABEL}=node").items():
        ip = info["NetworkSettings"]["Networks"].get(config.NETWORK, {}).get("IPAddress", "")
        booted = subprocess.run(["docker", "exec", name, "cat", "/var/lib/cloud/instance/boot-finished"],
                                capture_output=True, text=True).stdout.strip() if info["State"]["Running"] else ""
        print(f"node       {name}  {ip:<12} {info['State']['Status']:<8} "
              f"{'user-data done ' + booted if booted else 'booting'}")
    for line in user_servers():
        print(line)
    if logs:
        status_logs(logs)
    return 0


def status_logs(lines: int) -> None:
    """Why a worker has not joined (status --logs N): the Auto Scaling groups' instances and their lifecycle states,
    the last N lines of the reconciler's log, of each node's boot log and of the boot logs kept from removed
    instances (newest first)."""
    from .reconciler import BOOT_LOG, aws_client
    try:
        for page in aws_client("autoscaling").get_paginator("describe_auto_scaling_instances").paginate():
            for inst in page["AutoScalingInstances"]:
                print(f"group      {inst['AutoScalingGroupName']}  {inst['InstanceId']}  {inst['LifecycleState']}  "
                      f"{inst['HealthStatus']}")
    except Exception as exc:  # noqa: BLE001 (a report: the endpoint may be the problem)
        print(f"group      the endpoint did not answer: {exc}")

    def tail(title: str, text: str) -> None:
        print(f"--- {title} (last {lines} lines)")
        print("\n".join(text.splitlines()[-lines:]))
    logs = config.lab_dir() / "logs"
    reconciler_log = logs / "reconciler.log"
    tail("reconciler", reconciler_log.read_text(errors="replace") if reconciler_log.exists() else "")
    for name in running_nodes():
        tail(f"{name} {BOOT_LOG}", subprocess.run(["docker", "exec", name, "tail", "-n", str(lines), BOOT_LOG],
                                                  capture_output=True, text=True).stdout)
    kept = sorted((logs / "instances").glob("*.boot.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in kept[:4]:
        tail(f"{path.stem} (removed) {BOOT_LOG}", path.read_text(errors="replace"))


USER_SERVERS = r"""
docker node inspect --format 'node {{.Description.Hostname}} {{index .Description.Engine.Labels "jhs.instance-id"}}' \
  $(docker node ls -q)
ids=$(docker service ls -q --filter label=jhs.component=user-server)
[ -n "$ids" ] || exit 0
docker service inspect --format 'svc {{.Spec.Name}} {{index .Spec.Labels "jhs.user"}} {{index .Spec.Labels "jhs.server"}}' $ids
docker service ps --filter desired-state=running --format 'task {{.Name}} {{.Node}} {{.CurrentState}}' $ids
"""


def running_nodes() -> list[str]:
    return [name for name, info in inspect_labelled(f"{config.LABEL}=node").items() if info["State"]["Running"]]


def user_servers() -> list[str]:
    """One line per user server, read from each manager's swarm (the lab's cluster, and the rehearsal's when it runs):
    the user, the server's name, the worker (instance id) it runs on and the task's state. None when no manager
    answers."""
    managers = [n for n in running_nodes()
                if subprocess.run(["docker", "exec", n, "docker", "info", "-f", "{{.Swarm.ControlAvailable}}"],
                                  capture_output=True, text=True).stdout.strip() == "true"]
    lines = []
    for name in managers:
        out = subprocess.run(["docker", "exec", name, "sh", "-c", USER_SERVERS], capture_output=True, text=True).stdout
        hosts, services, tasks = {}, {}, {}
        for f in (line.split() for line in out.splitlines()):
            if f[:1] == ["node"] and len(f) == 3:
                hosts[f[1]] = f[2]
            elif f[:1] == ["svc"] and len(f) >= 3:
                services[f[1]] = (f[2], f[3] if len(f) > 3 else "")
            elif f[:1] == ["task"] and len(f) >= 4:
                tasks[f[1].rsplit(".", 1)[0]] = (f[2], " ".join(f[3:]))
        for service, (user, server) in sorted(services.items(), key=lambda kv: kv[1]):
            node, state = tasks.get(service, ("-", "no running task"))
            lines.append(f"server     {user}{'/' + server if server else ''}  on {hosts.get(node, node)}  {state}")
    if not managers:
        return []
    return lines or ["server     none running"]


def find_hub() -> str | None:
    """The URL of a hub answering on a manager instance of the lab (written to .lab/env as LAB_HUB_URL)."""
    import ssl
    from .reconciler import aws_client
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the lab's hub has a self-signed certificate
    resp = aws_client().describe_instances(Filters=[{"Name": "tag:jhs:role", "Values": ["manager"]},
                                                    {"Name": "tag:jhs:cluster", "Values": [config.CLUSTER]},
                                                    {"Name": "instance-state-name", "Values": ["running"]}])
    for res in resp["Reservations"]:
        for inst in res["Instances"]:
            url = f"https://{inst['PrivateIpAddress']}/"
            try:
                urllib.request.urlopen(url + "hub/api", timeout=5, context=ctx)
            except OSError:
                continue
            return url
    return None


def summary() -> int:
    status()
    hub = find_hub()
    if hub:
        env = read_env()
        write_env(env.get("LAB_BASE_AMI", ""), {"LAB_HUB_URL": hub})
    hub = read_env().get("LAB_HUB_URL") if hub else None
    print(f"hub        {hub}" if hub else "hub        not deployed in this lab yet")
    if hub:
        print(next_steps(hub))
    return 0


def dashboard(out: str, minutes: int) -> int:
    """The lab cluster's dashboard as a PNG; each widget's series and how many points each had."""
    from . import dashboard as board
    from .reconciler import aws_client
    name = config.cluster_names()["dashboard"]
    try:
        widgets = board.read(aws_client("cloudwatch"), name, minutes)
    except Exception as e:   # no dashboard yet: site.yml has not provisioned this lab
        raise LabError(f"dashboard {name}: {e} (run make lab first)") from None
    size = board.draw(widgets, out, f"CloudWatch dashboard {name} (lab endpoint), the last {minutes} minutes")
    for w in widgets:
        print(f"{w.title}: " + ", ".join(f"{s.label} {len(s.points)} points" for s in w.series))
    print(f"dashboard  {out} ({size[0]}x{size[1]})")
    return 0


def next_steps(hub: str) -> str:
    """What to do with a lab hub: how to sign in and open it, and three things to try."""
    from .reconciler import aws_client
    groups = [g["AutoScalingGroupName"] for g in
              aws_client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]]
    group = groups[0] if groups else "<the workers' Auto Scaling group>"
    managers = [i["PrivateIpAddress"] for r in aws_client().describe_instances(Filters=[
        {"Name": "tag:jhs:role", "Values": ["manager"]}, {"Name": "instance-state-name", "Values": ["running"]}])
        ["Reservations"] for i in r["Instances"]]
    manager = managers[0] if managers else "<manager address>"
    return f"""
sign in    open {hub} in a browser on this machine (the lab's network is local to it) and accept the
           self-signed certificate; any user name signs in, with any password (jupyterhub_local_password in
           inventories/lab/group_vars/all.yml sets one); the user admin is an admin (Admin page).
try        1. start a server: sign in, Start My Server, open a notebook and run a cell.
           2. scale the workers to 3; a new node joins by itself (make lab-status lists it), and the scaler
              removes it again once it has been empty for the cool-down (60 s here; docs/autoscaling.md):
              (set -a; . .lab/env; .venv/bin/python -c "import boto3; boto3.client('autoscaling').set_desired_capacity(AutoScalingGroupName='{group}', DesiredCapacity=3)")
           3. read the cluster's CloudWatch dashboard (users, nodes, reservations, spawn and API timings, the
              group), drawn from the lab endpoint's metrics: make lab-dashboard, then open .lab/dashboard.png
logs       the hub's, every spawn in it, over SSH as on AWS (the lab's key pair):
              ssh -F .lab/ssh/config admin@{manager} sudo docker logs jupyterhub
           make lab-down removes everything the lab made."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up")
    d = sub.add_parser("down")
    d.add_argument("--images", action="store_true", help="also remove the lab's images")
    st = sub.add_parser("status")
    st.add_argument("--logs", type=int, default=0, metavar="N",
                    help="also the Auto Scaling instances and the last N lines of the reconciler's and the boot logs")
    sub.add_parser("summary")
    sub.add_parser("images")
    db = sub.add_parser("dashboard", help="draw the cluster's CloudWatch dashboard from the endpoint's metrics")
    db.add_argument("--out", default=str(config.lab_dir() / "dashboard.png"), help="the PNG to write")
    db.add_argument("--minutes", type=int, default=60, help="how far back (default 60)")
    rh = sub.add_parser("rehearse", help="rehearse inventories/aws beside the lab's cluster (lab/rehearsal.py)")
    rh.add_argument("--down", action="store_true", help="tear the rehearsal's cluster down")
    rh.add_argument("--root", action="store_true", help="print the root of the ACME CA's certificates")
    rh.add_argument("--result", metavar="FILE", help="write what each step found as JSON")
    r = sub.add_parser("reconcile")
    r.add_argument("--once", action="store_true")
    args = parser.parse_args(argv)
    # One `up`, `down` or `images` at a time per lab directory (two racing would orphan processes, or build
    # the same image twice at once: pytest's workers and molecule may all ask for the images).
    lock_path = Path(tempfile.gettempdir()) / ("jhs-lab-" + hashlib.sha256(str(config.lab_dir()).encode())
                                               .hexdigest()[:12] + ".lock")
    lock = lock_path.open("w")
    if args.cmd in ("up", "down", "images"):
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if args.cmd == "up":
            up()
        elif args.cmd == "down":
            down(args.images)
        elif args.cmd == "status":
            return status(args.logs)
        elif args.cmd == "summary":
            return summary()
        elif args.cmd == "images":
            config.lab_dir().mkdir(parents=True, exist_ok=True)
            print(json.dumps(build_images(), indent=1))
        elif args.cmd == "dashboard":
            return dashboard(args.out, args.minutes)
        elif args.cmd == "rehearse":
            from . import rehearsal
            return rehearsal.main(args.down, args.result, args.root)
        elif args.cmd == "reconcile":
            from . import reconciler
            reconciler.run(json.loads((config.lab_dir() / "images.json").read_text())["cloud"], once=args.once)
    except (LabError, DockerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
