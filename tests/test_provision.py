"""playbooks/provision.yml against the local AWS endpoint: what it creates, idempotence, check mode, secrets, ECR.

One cluster is provisioned once for the whole module (module-scoped fixture) and every assertion reads
the endpoint's real state back with boto3.
"""
from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import REGION, ROOT, VENV_BIN, credentials_later, git_repo, jhs_names, task_sections

pytestmark = pytest.mark.slow   # several full provision runs against the local endpoint

CLUSTER = "prov-a"
NAMES = jhs_names(CLUSTER)
SSM = NAMES["ssm"]
NOTEBOOK_REPO = NAMES["ecr_prefix"] + "notebook"   # the ECR repository aws_cluster_ecr_repositories makes by default
# the hub's and the proxy's (aws_cluster_ecr_hub_images, on by default), which only the manager pushes and pulls
HUB_REPOS = [NAMES["ecr_prefix"] + "hub", NAMES["ecr_prefix"] + "proxy"]
ALL_REPOS = sorted([NOTEBOOK_REPO, *HUB_REPOS])
ZONE = "example.test"
DOMAIN = "hub.example.test"
BASE_AMI = "ami-1e749f67"     # one of the images the local endpoint serves
REPO_URL, REPO_COMMITS = git_repo()   # provisioning resolves repo_version (git ls-remote) and pins workers to it
KEY_PAIR = "prov-a-admin"     # aws_cluster_key_name: on the manager and, through the launch template, every worker


@lru_cache(maxsize=1)
def inventory() -> str:
    """A bare inventory with the control node only: no lab group_vars, every setting comes from the test."""
    directory = tempfile.mkdtemp(prefix="jhs-aws-cluster-")
    atexit.register(shutil.rmtree, directory, True)
    path = Path(directory) / "localhost.yml"
    path.write_text((ROOT / "inventories/lab/localhost.yml").read_text())
    return str(path)


TESTING_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}   # any keys, where IAM is off


def make_env(endpoint: str, keys: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION, **(keys or TESTING_KEYS),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    return env


def make_client(endpoint: str, keys: dict | None = None):
    keys = keys or TESTING_KEYS

    def client(service: str):
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
    return client


def playbook(endpoint: str, name: str, extra: dict, *args: str,
             keys: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a playbook of the repository against the endpoint (with `keys`, or any where IAM is off); return the
    process and its wall time."""
    extra = dict({"aws_endpoint_url": endpoint, "aws_region": REGION}, **extra)
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), f"playbooks/{name}.yml", "-i", inventory(),
         "-e", json.dumps(extra), *args],
        cwd=ROOT, env=make_env(endpoint, keys), capture_output=True, text=True, timeout=900)
    return proc, time.monotonic() - t0


def recap(out: str) -> dict[str, int]:
    match = re.search(r"^localhost\s+:\s+(.*)$", out, re.M)
    assert match, out[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", resource.get("tags", []))}


def cluster_resources(client, cluster: str) -> dict[str, list[str]]:
    """Everything on the endpoint that carries the cluster's tag (or lives under its names), by kind."""
    names = jhs_names(cluster)
    ec2 = client("ec2")
    f = [{"Name": "tag:jhs:cluster", "Values": [cluster]}]
    out = {
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=f)["Vpcs"]],
        "subnets": [v["SubnetId"] for v in ec2.describe_subnets(Filters=f)["Subnets"]],
        "security_groups": [v["GroupId"] for v in ec2.describe_security_groups(Filters=f)["SecurityGroups"]],
        "internet_gateways": [v["InternetGatewayId"] for v in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]],
        "route_tables": [v["RouteTableId"] for v in ec2.describe_route_tables(Filters=f)["RouteTables"]],
        # Checked by tag here too: the local endpoint ignores tag filters on NAT gateways.
        "nat_gateways": [v["NatGatewayId"] for v in ec2.describe_nat_gateways(Filters=f)["NatGateways"]
                         if v["State"] not in ("deleted", "deleting") and tags_of(v).get("jhs:cluster") == cluster],
        "elastic_ips": [v["AllocationId"] for v in ec2.describe_addresses(Filters=f)["Addresses"]],
        "instances": [i["InstanceId"] for r in ec2.describe_instances(Filters=f)["Reservations"]
                      for i in r["Instances"] if i["State"]["Name"] != "terminated"],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=f)["Volumes"]],
        "worker_images": [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=f)["Images"]],
        "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=f)["Snapshots"]],
        "launch_templates": [v["LaunchTemplateId"] for v in ec2.describe_launch_templates(Filters=f)["LaunchTemplates"]],
    }
    out["auto_scaling_groups"] = [
        g["AutoScalingGroupName"] for g in client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        if tags_of(g).get("jhs:cluster") == cluster]
    iam = client("iam")
    out["iam_roles"] = [r["RoleName"] for r in iam.list_roles()["Roles"]
                        if tags_of(iam.list_role_tags(RoleName=r["RoleName"])).get("jhs:cluster") == cluster]
    out["instance_profiles"] = [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
                                if tags_of(p).get("jhs:cluster") == cluster
                                or p["InstanceProfileName"] in (names["manager"], names["worker"])]
    out["ssm_parameters"] = [p["Name"] for p in client("ssm").get_parameters_by_path(
        Path=names["ssm_prefix"], Recursive=True)["Parameters"]]
    efs = client("efs")
    out["efs"] = [fs["FileSystemId"] for fs in efs.describe_file_systems(CreationToken=cluster)["FileSystems"]]
    out["efs_mount_targets"] = [mt["MountTargetId"] for fs in out["efs"]
                                for mt in efs.describe_mount_targets(FileSystemId=fs)["MountTargets"]]
    out["ecr_repositories"] = list(ecr_repositories(client, cluster))
    out["log_groups"] = [g["logGroupName"] for g in client("logs").describe_log_groups(
        logGroupNamePrefix=names["ssm_prefix"] + "/")["logGroups"]]   # any group under /<cluster>/
    out["dashboards"] = [d["DashboardName"] for d in client("cloudwatch").list_dashboards(
        DashboardNamePrefix=names["dashboard"])["DashboardEntries"] if d["DashboardName"] == names["dashboard"]]
    out["s3_buckets"] = [name for name in s3_buckets(client) if name.startswith(names["backup_bucket_prefix"])
                         and s3_tags(client, name).get("jhs:cluster") == cluster]
    return {k: sorted(v) for k, v in out.items() if v}


def s3_buckets(client) -> list[str]:
    return sorted(b["Name"] for b in client("s3").list_buckets()["Buckets"])


def s3_tags(client, bucket: str) -> dict[str, str]:
    try:
        return tags_of({"Tags": client("s3").get_bucket_tagging(Bucket=bucket)["TagSet"]})
    except client("s3").exceptions.ClientError:
        return {}


def ecr_repositories(client, cluster: str) -> dict[str, dict]:
    """The repositories under <cluster>/ that carry the cluster's tag, by name, each with its tags."""
    ecr = client("ecr")
    found = {}
    for repo in ecr.describe_repositories()["repositories"]:
        if repo["repositoryName"].startswith(jhs_names(cluster)["ecr_prefix"]):
            tags = {"tags": ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]}
            if tags_of(tags).get("jhs:cluster") == cluster:
                found[repo["repositoryName"]] = dict(repo, tags=tags_of(tags))
    return found


def account_state(client) -> dict:
    """A snapshot of everything on the endpoint the role could touch (any cluster)."""
    ec2 = client("ec2")
    state = {
        "vpcs": ec2.describe_vpcs()["Vpcs"],
        "subnets": ec2.describe_subnets()["Subnets"],
        "security_groups": ec2.describe_security_groups()["SecurityGroups"],
        "internet_gateways": ec2.describe_internet_gateways()["InternetGateways"],
        "route_tables": ec2.describe_route_tables()["RouteTables"],
        "nat_gateways": ec2.describe_nat_gateways()["NatGateways"],
        "addresses": ec2.describe_addresses()["Addresses"],
        "instances": ec2.describe_instances()["Reservations"],
        "volumes": ec2.describe_volumes()["Volumes"],
        "launch_templates": ec2.describe_launch_templates()["LaunchTemplates"],
        "asgs": client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"],
        "roles": client("iam").list_roles()["Roles"],
        "instance_profiles": client("iam").list_instance_profiles()["InstanceProfiles"],
        "ssm": client("ssm").describe_parameters()["Parameters"],
        "efs": client("efs").describe_file_systems()["FileSystems"],
        "zones": client("route53").list_hosted_zones()["HostedZones"],
        "ecr": client("ecr").describe_repositories()["repositories"],
        "buckets": s3_buckets(client),
    }
    return json.loads(json.dumps(state, default=str, sort_keys=True))


def cluster_settings(cluster: str, **more) -> dict:
    return dict({"cluster_name": cluster, "repo_url": REPO_URL, "repo_version": "v1.2.3",
                 "aws_cluster_ami_id": BASE_AMI}, **more)


@pytest.fixture(scope="module")
def client(moto_endpoint):
    return make_client(moto_endpoint)


@pytest.fixture(scope="module")
def provisioned(moto_endpoint, client):
    oauth_secret = "oauth-" + secrets.token_hex(20)
    settings = cluster_settings(CLUSTER, aws_cluster_oauth_client_secret=oauth_secret,
                                aws_cluster_dns_record=True, aws_cluster_domain=DOMAIN, aws_cluster_hosted_zone=ZONE,
                                aws_cluster_worker_desired_capacity=1, aws_cluster_key_name=KEY_PAIR,
                                aws_cluster_worker_verify_commit=True,
                                aws_cluster_worker_boot_vars={"docker_engine_registry_mirrors": ["http://10.10.255.253:5000"],
                                                              "outbound_proxy": PROXY})
    client("ec2").create_key_pair(KeyName=KEY_PAIR)
    result = {"oauth_secret": oauth_secret, "settings": settings}
    result["before_check"] = account_state(client)
    result["check"], _ = playbook(moto_endpoint, "provision", settings, "--check")
    result["after_check"] = account_state(client)
    client("route53").create_hosted_zone(Name=ZONE, CallerReference=secrets.token_hex(8))
    result["first"], result["first_seconds"] = playbook(moto_endpoint, "provision", settings)
    assert result["first"].returncode == 0, result["first"].stdout[-5000:]
    # The hub scales workers between runs; provision must leave the desired capacity alone.
    client("autoscaling").set_desired_capacity(AutoScalingGroupName=NAMES["workers"], DesiredCapacity=2)
    # The no-change run and two check runs, side by side: none of them changes anything when provisioning is
    # right, so they see the state they would see one after another (and when one does change something, its
    # own test fails).
    drift = dict(settings, aws_cluster_worker_max_size=12, aws_cluster_ecr_repositories=["notebook", "base"],
                 aws_cluster_ecr_keep_images=5)    # two drifts: the group's maximum, a new ECR repository
    with ThreadPoolExecutor(max_workers=3) as pool:
        second = pool.submit(playbook, moto_endpoint, "provision", settings)
        check_existing = pool.submit(playbook, moto_endpoint, "provision", settings, "--check")
        check_drift = pool.submit(playbook, moto_endpoint, "provision", drift, "--check")
        result["second"], result["second_seconds"] = second.result()
        result["check_existing"], _ = check_existing.result()
        result["check_drift"], _ = check_drift.result()
    return result


def test_check_mode_on_empty_account_creates_nothing_and_says_what_it_would(provisioned):
    proc = provisioned["check"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert provisioned["before_check"] == provisioned["after_check"]
    assert "a real run would create" in proc.stdout
    for thing in (f"VPC {NAMES['vpc']} 10.10.0.0/16", f"Auto Scaling Group {NAMES['workers']}", "NAT gateway",
                  f"security groups {NAMES['hub']}", f"manager instance {NAMES['manager']}",
                  f".dkr.ecr.{REGION}.amazonaws.com/{HUB_REPOS[1]} (scan on push on, image tags mutable, "
                  "keep the newest 10 images)",
                  f"S3 bucket {NAMES['backup_bucket_prefix']}",
                  f"CloudWatch Logs group {NAMES['log_group']} for the logs of every container (kept 30 days)",
                  f"CloudWatch dashboard {NAMES['dashboard']}"):
        assert thing in proc.stdout
    registry = rf"\d{{12}}\.dkr\.ecr\.{REGION}\.amazonaws\.com"
    assert re.search(rf"ECR repositories {registry}/{NOTEBOOK_REPO}, {registry}/{HUB_REPOS[0]}, {registry}/{HUB_REPOS[1]} ",
                     proc.stdout)


def test_first_run_creates_second_run_changes_nothing(provisioned):
    assert recap(provisioned["first"].stdout)["changed"] > 0
    second = provisioned["second"]
    assert second.returncode == 0, second.stdout[-5000:]
    assert recap(second.stdout)["changed"] == 0, re.findall(r"^changed: .*$", second.stdout, re.M)
    # repositories as the settings say and tagged: the second run configures and tags none of them (no call)
    for task in ("aws_cluster : ECR | repositories with scan on push, tag mutability and lifecycle policy",
                 "aws_cluster : ECR | tag the repositories with the cluster"):
        assert [re.findall(r"^(\w+): \[", body, re.M) for name, body in task_sections(second.stdout)
                if name == task] == [["skipping"]], task
    print(f"provision from empty {provisioned['first_seconds']:.1f}s, no-change re-run {provisioned['second_seconds']:.1f}s")


def test_check_mode_on_existing_cluster_reports_no_change(provisioned):
    proc = provisioned["check_existing"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc.stdout)["changed"] == 0, re.findall(r"^changed: .*$", proc.stdout, re.M)


CPU_POLICY_TASK = "aws_cluster : Workers | target-tracking policy on average CPU (opt-in)"
PULL_ROLE_TASK = "aws_cluster : IAM | the registry's pull-only role, which the manager assumes for the spawns' token"


def changed_tasks(out: str) -> list[str]:
    """The names of the tasks that reported changed for any host or item (the default callback's output)."""
    return [name for name, body in task_sections(out) if re.search(r"^changed:", body, re.M)]


def test_check_mode_reports_a_drift_and_changes_nothing(provisioned, client):
    """Two drifts: the group's maximum, and a new ECR repository (which the nodes' and the registry-pull role's IAM
    policies then name)."""
    proc = provisioned["check_drift"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert changed_tasks(proc.stdout) == [
        "aws_cluster : ECR | repositories a real run would create or change",
        "aws_cluster : ECR | tag the repositories with the cluster",
        "aws_cluster : IAM | least-privilege inline policies",
        "aws_cluster : IAM | the pull-only role's policy",
        "aws_cluster : Workers | Auto Scaling Group across the private subnets"]
    assert recap(proc.stdout)["changed"] == 5
    (group,) = client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"]
    assert group["MaxSize"] == 10


def test_check_mode_reports_ecr_drift_and_changes_nothing(provisioned, client):
    """A new repository and a changed lifecycle policy on an existing cluster: reported, not made."""
    proc = provisioned["check_drift"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    drift = re.search(r"TASK \[aws_cluster : ECR \| repositories a real run would create or change\][^\n]*\n[^\n]*\n"
                      r"changed: \[localhost\] =>(.*?)\nTASK \[", proc.stdout, re.S)
    assert drift, proc.stdout[-3000:]
    assert f"{NOTEBOOK_REPO}: lifecycle policy changed" in drift.group(1)
    assert f"{NAMES['ecr_prefix']}base: create" in drift.group(1)
    assert sorted(ecr_repositories(client, CLUSTER)) == ALL_REPOS
    lifecycle = json.loads(client("ecr").get_lifecycle_policy(repositoryName=NOTEBOOK_REPO)["lifecyclePolicyText"])
    assert lifecycle["rules"][0]["selection"]["countNumber"] == 10


def test_network_two_zones_public_and_private(provisioned, client):
    ec2 = client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]}])["Vpcs"]
    assert len(vpcs) == 1 and vpcs[0]["CidrBlock"] == "10.10.0.0/16"
    assert tags_of(vpcs[0])["Name"] == NAMES["vpc"]
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    tiers = {tier: [s for s in subnets if tags_of(s).get("jhs:tier") == tier] for tier in ("public", "private")}
    assert len(tiers["public"]) == 2 and len(tiers["private"]) == 2
    assert len({s["AvailabilityZone"] for s in tiers["private"]}) == 2
    assert all(s["MapPublicIpOnLaunch"] for s in tiers["public"])
    assert not any(s["MapPublicIpOnLaunch"] for s in tiers["private"])
    assert all(tags_of(s)["jhs:cluster"] == CLUSTER for s in subnets)
    igws = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])["InternetGateways"]
    assert len(igws) == 1 and tags_of(igws[0])["jhs:cluster"] == CLUSTER
    nats = [n for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["NatGateways"]
            if n["State"] == "available"]
    assert len(nats) == 1 and nats[0]["SubnetId"] in {s["SubnetId"] for s in tiers["public"]}
    tables = ec2.describe_route_tables(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]}])["RouteTables"]
    by_name = {tags_of(t)["Name"]: t for t in tables}
    public_routes = {r["DestinationCidrBlock"]: r for r in by_name[NAMES["public"]]["Routes"]}
    private_routes = {r["DestinationCidrBlock"]: r for r in by_name[NAMES["private"]]["Routes"]}
    assert public_routes["0.0.0.0/0"]["GatewayId"] == igws[0]["InternetGatewayId"]
    assert private_routes["0.0.0.0/0"]["NatGatewayId"] == nats[0]["NatGatewayId"]
    assert {a["SubnetId"] for a in by_name[NAMES["private"]]["Associations"]} == {s["SubnetId"] for s in tiers["private"]}


def groups(client) -> dict[str, dict]:
    found = client("ec2").describe_security_groups(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]}])
    return {g["GroupName"]: g for g in found["SecurityGroups"]}


def test_security_groups_least_exposure(provisioned, client):
    sgs = groups(client)
    assert set(sgs) == {NAMES["hub"], NAMES["nodes"], NAMES["efs"]}
    hub, nodes, efs = sgs[NAMES["hub"]], sgs[NAMES["nodes"]], sgs[NAMES["efs"]]
    hub_rules = {(p["IpProtocol"], p["FromPort"], p["ToPort"]): [r["CidrIp"] for r in p["IpRanges"]] for p in hub["IpPermissions"]}
    assert hub_rules == {("tcp", 80, 80): ["0.0.0.0/0"], ("tcp", 443, 443): ["0.0.0.0/0"]}  # no SSH by default
    node_rules = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p for p in nodes["IpPermissions"]}
    # Docker's swarm ports, and ESP (IP protocol 50), which the encrypted overlay (the default) needs between nodes
    assert set(node_rules) == {("tcp", 2377, 2377), ("tcp", 7946, 7946), ("udp", 7946, 7946), ("udp", 4789, 4789),
                               ("50", None, None)}
    for rule in node_rules.values():
        assert rule["IpRanges"] == [] and [g["GroupId"] for g in rule["UserIdGroupPairs"]] == [nodes["GroupId"]]
    (nfs,) = efs["IpPermissions"]
    assert (nfs["IpProtocol"], nfs["FromPort"], nfs["ToPort"]) == ("tcp", 2049, 2049)
    assert nfs["IpRanges"] == [] and [g["GroupId"] for g in nfs["UserIdGroupPairs"]] == [nodes["GroupId"]]


# Docker's documented traffic between swarm nodes ("Open protocols and ports between the hosts" in the swarm
# tutorial, and the overlay network driver's page, docs.docker.com): the contract the nodes' group must meet.
SWARM_FLOWS = {("tcp", 2377): "cluster management", ("tcp", 7946): "node communication",
               ("udp", 7946): "node communication", ("udp", 4789): "overlay network traffic (VXLAN)"}
ENCRYPTED_OVERLAY_FLOWS = {("50", None): "ESP (IP protocol 50): the encrypted overlay's IPsec"}


def test_the_nodes_group_lets_through_what_dockers_swarm_needs_between_nodes(provisioned, client):
    """A contract test, since the lab cannot run the encrypted overlay (its kernel has no ESP transform,
    CONFIG_INET_ESP: docs/lab.md, "Security groups"): the flows Docker documents for swarm nodes, and ESP when the
    overlay is encrypted (swarm_manager's default), are each allowed between members of the nodes' group; and the
    lab's filter, which enforces the groups between the lab's nodes, lets each one pass from one member to another."""
    from lab import sgfilter
    encrypted = yaml.safe_load((ROOT / "roles/swarm_manager/defaults/main.yml").read_text())[
        "swarm_manager_network_encrypted"]
    assert encrypted is True
    required = {**SWARM_FLOWS, **(ENCRYPTED_OVERLAY_FLOWS if encrypted else {})}
    nodes = groups(client)[NAMES["nodes"]]

    def allowed(proto: str, port: int | None) -> bool:
        for perm in nodes["IpPermissions"]:
            if perm["IpProtocol"] not in (proto, "-1"):
                continue
            if port is not None and perm["IpProtocol"] != "-1" and not perm["FromPort"] <= port <= perm["ToPort"]:
                continue
            if nodes["GroupId"] in [g["GroupId"] for g in perm["UserIdGroupPairs"]]:
                return True
        return False

    assert {flow: why for flow, why in required.items() if not allowed(*flow)} == {}
    members = [{"InstanceId": iid, "PrivateIpAddress": ip, "SecurityGroups": [{"GroupId": nodes["GroupId"]}]}
               for iid, ip in (("i-a", "10.10.128.4"), ("i-b", "10.10.144.5"))]
    lines = sgfilter.rules(members, [nodes])
    for proto, port in required:
        match = f"-d 10.10.144.5/32 -s 10.10.128.4/32 -p {proto}" + (f" --dport {port} " if port else " ")
        assert any(line.startswith(f"-A {sgfilter.CHAIN} {match}") and line.endswith("-j RETURN") for line in lines), \
            (proto, port, lines)


def test_efs_encrypted_with_backups_lifecycle_and_mount_targets(provisioned, client):
    efs = client("efs")
    (fs,) = efs.describe_file_systems(CreationToken=CLUSTER)["FileSystems"]
    assert fs["Encrypted"] is True
    tags = tags_of({"Tags": efs.list_tags_for_resource(ResourceId=fs["FileSystemId"])["Tags"]})
    assert tags["jhs:cluster"] == CLUSTER and tags["Name"] == NAMES["home"]
    assert efs.describe_backup_policy(FileSystemId=fs["FileSystemId"])["BackupPolicy"]["Status"] == "ENABLED"
    lifecycle = efs.describe_lifecycle_configuration(FileSystemId=fs["FileSystemId"])["LifecyclePolicies"]
    assert lifecycle == [{"TransitionToIA": "AFTER_30_DAYS"}]
    targets = efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
    private = client("ec2").describe_subnets(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                                      {"Name": "tag:jhs:tier", "Values": ["private"]}])["Subnets"]
    assert sorted(t["SubnetId"] for t in targets) == sorted(s["SubnetId"] for s in private)
    efs_sg = groups(client)[NAMES["efs"]]["GroupId"]
    for target in targets:
        assert efs.describe_mount_target_security_groups(MountTargetId=target["MountTargetId"])["SecurityGroups"] == [efs_sg]


def test_hub_backups_bucket_private_encrypted_expiring_and_published(provisioned, client):
    """The bucket the manager copies the hub database's backups into (jupyterhub's jhs-backup-copy)."""
    s3 = client("s3")
    account = client("sts").get_caller_identity()["Account"]
    bucket = NAMES["backup_bucket_prefix"] + account
    assert bucket in s3_buckets(client)
    assert s3_tags(client, bucket) == {"jhs:cluster": CLUSTER, "jhs:data": "hub-backups", "Name": bucket}
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    (ownership,) = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == {"ObjectOwnership": "BucketOwnerEnforced"}
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["Status"] == "Enabled" and lifecycle["Expiration"] == {"Days": 30}
    assert lifecycle.get("Filter", {}).get("Prefix", lifecycle.get("Prefix")) == "hub-backups/"
    parameter = client("ssm").get_parameter(Name=SSM["backup_bucket"])["Parameter"]
    assert (parameter["Type"], parameter["Value"]) == ("String", bucket)
    # The manager may put, get and list under hub-backups/ only, and nothing else in S3.
    manager = {s["Sid"]: s for s in policy(client, NAMES["manager"])["Statement"]}
    assert manager["CopyHubBackupsToTheBucket"]["Action"] == ["s3:PutObject", "s3:GetObject"]
    assert manager["CopyHubBackupsToTheBucket"]["Resource"] == f"arn:aws:s3:::{bucket}/hub-backups/*"
    assert manager["ListHubBackups"]["Resource"] == f"arn:aws:s3:::{bucket}"
    assert manager["ListHubBackups"]["Condition"] == {"StringLike": {"s3:prefix": ["hub-backups/*"]}}
    s3_actions = [a for s in manager.values() for a in s["Action"] if a.startswith("s3:")]
    assert sorted(s3_actions) == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    worker = policy(client, NAMES["worker"])["Statement"]
    assert not [a for s in worker for a in s["Action"] if a.startswith("s3:")]


def policy(client, role: str) -> dict:
    iam = client("iam")
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    return json.loads(document) if isinstance(document, str) else document


ECR_LOGIN = ["ecr:GetAuthorizationToken"]
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
ECR_PUSH_PULL = ECR_PULL + ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]


def ecr_statements(statements: list[dict]) -> list[tuple[list[str], object]]:
    """(actions, resource) of every statement with an ecr: action, in order."""
    return [(s["Action"], s["Resource"]) for s in statements if any(a.startswith("ecr:") for a in s["Action"])]


def test_iam_roles_split_and_least_privilege(provisioned, client):
    iam = client("iam")
    account = client("sts").get_caller_identity()["Account"]
    asg_arn = f"arn:aws:autoscaling:{REGION}:{account}:autoScalingGroup:*:autoScalingGroupName/{NAMES['workers']}"
    param = f"arn:aws:ssm:{REGION}:{account}:parameter"
    for role in ("manager", "worker"):
        name = NAMES[role]
        got = iam.get_role(RoleName=name)["Role"]
        trust = got["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
        assert tags_of(iam.list_role_tags(RoleName=name))["jhs:role"] == role
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [name]
    worker = policy(client, NAMES["worker"])["Statement"]
    actions = {a for s in worker for a in s["Action"]}
    assert actions == {"ssm:GetParameter", "ssm:GetParameters", "autoscaling:CompleteLifecycleAction",
                       "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceHealth"} \
        | set(ECR_LOGIN) | set(ECR_PULL) | set(LOGS_WRITE)
    assert worker[0]["Resource"] == [param + SSM["join_token"], param + SSM["manager_addr"], param + SSM["efs_id"]]
    assert worker[1]["Resource"] == asg_arn
    # ECR: log in anywhere (GetAuthorizationToken has no resource), pull only from the cluster's repositories.
    repository_arn = f"arn:aws:ecr:{REGION}:{account}:repository/{NOTEBOOK_REPO}"
    hub_arns = [f"arn:aws:ecr:{REGION}:{account}:repository/{name}" for name in HUB_REPOS]
    assert ecr_statements(worker) == [(ECR_LOGIN, "*"), (ECR_PULL, [repository_arn])]   # never the hub's images
    manager = {s["Sid"]: s for s in policy(client, NAMES["manager"])["Statement"]}
    assert manager["PublishSwarmJoinParameters"]["Resource"] == [param + SSM["join_token"], param + SSM["manager_addr"]]
    # the hub publishes the images it spawns, for the worker-image bake to pre-pull
    assert manager["PublishNotebookImages"]["Resource"] == param + SSM["notebook_images"]
    assert manager["PublishNotebookImages"]["Action"] == ["ssm:PutParameter", "ssm:AddTagsToResource",
                                                          "ssm:ListTagsForResource"]
    assert {"autoscaling:SetDesiredCapacity", "autoscaling:SetInstanceProtection"} <= set(manager["ScaleAndProtectWorkers"]["Action"])
    assert manager["ScaleAndProtectWorkers"]["Resource"] == asg_arn
    # The hub's scaler: scale in by terminating a chosen instance of the cluster's own group, nowhere else.
    terminate = [s for s in manager.values() if "autoscaling:TerminateInstanceInAutoScalingGroup" in s["Action"]]
    assert [(s["Sid"], s["Resource"], s.get("Condition")) for s in terminate] == [("ScaleAndProtectWorkers", asg_arn, None)]
    # ...and its metrics: PutMetricData takes no resource, so only the namespace condition scopes it.
    cloudwatch = [s for s in manager.values() if any(a.startswith("cloudwatch:") for a in s["Action"])]
    assert [(s["Action"], s["Resource"], s["Condition"]) for s in cloudwatch] == [
        (["cloudwatch:PutMetricData"], "*", {"StringEquals": {"cloudwatch:namespace": "JupyterHubSwarm"}})]
    # The only "*" resources without a condition: Describe calls (SSM's DescribeParameters, which
    # community.aws.ssm_parameter calls before it writes, lists names, never values) and the ECR login, which have no
    # resource-level permissions.
    star = [s for s in manager.values() if s["Resource"] == "*" and "Condition" not in s]
    assert len(star) == 3 and all(a.split(":")[1].startswith("Describe") for s in star[:2] for a in s["Action"])
    assert star[0]["Action"] == ["ssm:DescribeParameters"]
    assert star[2]["Action"] == ECR_LOGIN
    assert [s["Sid"] for s in manager.values() if s["Resource"] == "*" and "Condition" in s] == ["PutScalerMetrics"]
    assert ecr_statements(list(manager.values())) == [(ECR_LOGIN, "*"), (ECR_PUSH_PULL, [repository_arn, *hub_arns])]
    # The token the hub sends with every spawn (and root on a worker can read) is a pull-only role's, which the
    # manager alone may assume.
    pull = NAMES["registry_pull"]
    pull_arn = f"arn:aws:iam::{account}:role/{pull}"
    assert manager["AssumeTheRegistryPullRole"] == {"Sid": "AssumeTheRegistryPullRole", "Effect": "Allow",
                                                    "Action": ["sts:AssumeRole"], "Resource": pull_arn}
    assert [s for s in manager.values() if any(a.startswith("sts:") for a in s["Action"])] == [
        manager["AssumeTheRegistryPullRole"]]
    got = iam.get_role(RoleName=pull)["Role"]
    trust = got["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert [(s["Principal"], s["Action"]) for s in trust["Statement"]] == [
        ({"AWS": f"arn:aws:iam::{account}:role/{NAMES['manager']}"}, "sts:AssumeRole")]
    assert tags_of(iam.list_role_tags(RoleName=pull))["jhs:role"] == "registry-pull"
    statements = policy(client, pull)["Statement"]
    assert ecr_statements(statements) == [(ECR_LOGIN, "*"), (ECR_PULL, [repository_arn])]
    assert [a for s in statements for a in s["Action"] if not a.startswith("ecr:")] == []
    assert iam.list_instance_profiles_for_role(RoleName=pull)["InstanceProfiles"] == []   # no instance runs as it


LOGS_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]


def logs_statements(statements: list[dict]) -> list[tuple]:
    return [(s["Action"], s["Resource"]) for s in statements if any(a.startswith("logs:") for a in s["Action"])]


def test_the_containers_log_group_kept_for_its_retention_and_written_only_by_the_nodes(provisioned, client):
    """The CloudWatch Logs group every node's Docker engine sends its containers' logs to (awslogs): made with the
    retention setting's default and the cluster's tags; both instance roles may create streams and put events in
    it and in no other group, and nothing more of CloudWatch Logs."""
    logs = client("logs")
    group = NAMES["log_group"]
    (found,) = [g for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] if g["logGroupName"] == group]
    assert found["retentionInDays"] == 30
    assert logs.list_tags_log_group(logGroupName=group)["tags"]["jhs:cluster"] == CLUSTER
    account = client("sts").get_caller_identity()["Account"]
    arn = f"arn:aws:logs:{REGION}:{account}:log-group:{group}"
    for role in ("manager", "worker"):
        assert logs_statements(policy(client, NAMES[role])["Statement"]) == [(LOGS_WRITE, [arn, arn + ":*"])]


def test_the_clusters_dashboard_shows_users_nodes_reservations_timings_and_the_groups_metrics(provisioned, client):
    """The dashboard provisioning puts: seven widgets of the region, each metric of the scaler's and the hub-metrics
    exporter's namespace by the cluster's ClusterName, the group's own by its name. That each has data after a spawn
    is the lab's test (tests/lab/test_site.py)."""
    body = json.loads(client("cloudwatch").get_dashboard(DashboardName=NAMES["dashboard"])["DashboardBody"])
    widgets = body["widgets"]
    assert [w["properties"]["title"] for w in widgets] == [
        "Users running and spawns pending", "Worker nodes: Ready, desired, in service",
        "CPU: reserved by servers vs allocatable", "Memory: reserved by servers vs allocatable", "Spawn duration",
        "Hub API latency", "The workers' Auto Scaling group"]
    named = {}
    for w in widgets:
        assert w["type"] == "metric" and w["properties"]["region"] == REGION and w["properties"]["period"] == 60
        for namespace, metric, dimension, value, options in w["properties"]["metrics"]:
            named.setdefault(namespace, set()).add((metric, dimension, value))
            assert options["stat"] in ("Average", "Minimum", "Maximum") and options["label"]
    hub = {(m, "ClusterName", CLUSTER) for m in (
        "UsersRunning", "SpawnsPending", "NodesReady", "DesiredCapacity", "CpuReserved", "CpuAllocatable",
        "MemoryReserved", "MemoryAllocatable", "SpawnDuration", "HubApiLatency")}
    group = {(m, "AutoScalingGroupName", NAMES["workers"]) for m in (
        "GroupInServiceInstances", "GroupDesiredCapacity", "GroupPendingInstances", "GroupTerminatingInstances",
        "GroupMinSize", "GroupMaxSize")}
    assert named == {"JupyterHubSwarm": hub, "AWS/AutoScaling": group}
    # the group collects exactly those (and more): Auto Scaling publishes them
    (g,) = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])[
        "AutoScalingGroups"]
    assert {m for m, _, _ in group} <= {m["Metric"] for m in g["EnabledMetrics"]}


def test_secrets_stored_encrypted_kept_and_never_printed(provisioned, client):
    ssm = client("ssm")
    names = {p["Name"]: p for p in ssm.describe_parameters(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": [NAMES["ssm_prefix"]]}])["Parameters"]}
    expected = {SSM["cookie_secret"], SSM["proxy_token"], SSM["oauth_client_secret"],
                SSM["manager_addr"], SSM["efs_id"]}
    # the backups bucket's name is no secret (a String, test_hub_backups_bucket_...)
    assert names.pop(SSM["backup_bucket"])["Type"] == "String"
    assert set(names) == expected
    assert all(p["Type"] == "SecureString" for p in names.values())
    values = {n: ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"] for n in expected}
    assert re.fullmatch(r"[0-9a-f]{64}", values[SSM["cookie_secret"]]["Value"])
    assert re.fullmatch(r"[0-9a-f]{64}", values[SSM["proxy_token"]]["Value"])
    assert values[SSM["oauth_client_secret"]]["Value"] == provisioned["oauth_secret"]
    (fs,) = client("efs").describe_file_systems(CreationToken=CLUSTER)["FileSystems"]
    assert values[SSM["efs_id"]]["Value"] == fs["FileSystemId"]
    # Generated once: the re-runs kept version 1.
    assert values[SSM["cookie_secret"]]["Version"] == 1
    assert values[SSM["proxy_token"]]["Version"] == 1
    output = "".join(provisioned[k].stdout + provisioned[k].stderr for k in ("check", "first", "second", "check_existing"))
    for name in (SSM["cookie_secret"], SSM["proxy_token"], SSM["oauth_client_secret"]):
        assert values[name]["Value"] not in output, name
    tags = tags_of({"Tags": ssm.list_tags_for_resource(ResourceType="Parameter",
                                                       ResourceId=SSM["cookie_secret"])["TagList"]})
    assert tags["jhs:cluster"] == CLUSTER


def test_ecr_repositories_for_notebook_and_hub_images(provisioned, client):
    """The notebook images' repository and the hub's and proxy's (pushed and pulled by the manager alone, see the IAM
    test), each scanned on push, with a lifecycle policy and the cluster's tag."""
    ecr = client("ecr")
    repos = ecr_repositories(client, CLUSTER)
    assert sorted(repos) == ALL_REPOS
    for name, repo in repos.items():
        assert repo["tags"] == {"jhs:cluster": CLUSTER, "Name": name}
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo["imageTagMutability"] == "MUTABLE"
        assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
        lifecycle = json.loads(ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"])
        (rule,) = lifecycle["rules"]
        assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
        assert rule["action"] == {"type": "expire"}
    registry = repos[NOTEBOOK_REPO]["repositoryUri"].split("/", 1)[0]
    assert registry == f"{repos[NOTEBOOK_REPO]['registryId']}.dkr.ecr.{REGION}.amazonaws.com"
    uris = ", ".join(f"{registry}/{name}" for name in [NOTEBOOK_REPO, *HUB_REPOS])
    assert f"ECR registry {registry}, repositories {uris}" in provisioned["first"].stdout


def launch_template(client) -> dict:
    ec2 = client("ec2")
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateName=NAMES["worker"],
                                                       Versions=["$Latest"])["LaunchTemplateVersions"]
    return version


def test_launch_template_hardened(provisioned, client):
    version = launch_template(client)
    assert version["VersionNumber"] == 1          # re-runs added no version
    data = version["LaunchTemplateData"]
    assert data["ImageId"] == BASE_AMI and data["InstanceType"] == "t3.large"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["VolumeType"] == "gp3"
    assert data["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{NAMES['worker']}")
    assert data["SecurityGroupIds"] == [groups(client)[NAMES["nodes"]]["GroupId"]]
    assert data["KeyName"] == KEY_PAIR           # workers reachable over SSH (through the manager) as the manager is
    (lt,) = client("ec2").describe_launch_templates(LaunchTemplateNames=[NAMES["worker"]])["LaunchTemplates"]
    lt_tags = client("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [lt["LaunchTemplateId"]]}])
    assert tags_of(lt_tags)["jhs:cluster"] == CLUSTER


def test_worker_user_data_contract(provisioned, client, moto_endpoint, tmp_path):
    script = base64.b64decode(launch_template(client)["LaunchTemplateData"]["UserData"]).decode()
    assert script.startswith("#!/bin/bash\n")
    assert "exec >>/var/log/jhs-boot.log 2>&1" in script
    assert "command -v git" in script and "apt-get install -y -q --no-install-recommends git" in script
    assert f"AWS_DEFAULT_REGION={REGION}\n" in script
    assert f"AWS_ENDPOINT_URL={moto_endpoint}\n" in script
    pull = re.search(r"\n    (\S*ansible-pull) (.*?)\n", script).group(2)
    # pinned: the commit the annotated tag v1.2.3 names (not the tag object), with its signature checked
    assert f"\nrepo_commit={REPO_COMMITS['v1.2.3']}\nverify_commit=true\n" in script
    assert pull == f'-U {REPO_URL} -C "$repo_commit" --verify-commit -d /opt/jhs/repo "${{boot_args[@]}}"'
    args = re.search(r"\nboot_args=\((.*?)\)\n", script, re.S).group(1)
    args = " ".join(args.split())
    assert args.startswith('-i localhost, playbooks/worker_boot.yml -e @/etc/jhs/boot-vars.json "${identity[@]}" ')
    # the identity document, read with IMDSv2 by the boot script, reaches the playbook as worker_boot_identity
    assert "X-aws-ec2-metadata-token-ttl-seconds" in script and "/dynamic/instance-identity/document" in script
    assert '{"worker_boot_identity": %s}' in script and "identity=(-e @/run/jhs-boot-identity.json)" in script
    assert args.endswith(f"-e cluster_name={CLUSTER} -e aws_region={REGION} -e aws_endpoint_url={moto_endpoint}")
    boot_vars = json.loads(re.search(r"<<'JHS_VARS'\n(.*?)\nJHS_VARS\n", script, re.S).group(1))
    assert boot_vars == {"cluster_name": CLUSTER, "aws_region": REGION, "aws_endpoint_url": moto_endpoint,
                         "docker_engine_registry_mirrors": ["http://10.10.255.253:5000"], "outbound_proxy": PROXY}
    # the outbound proxy: the user-data's apt, pip and git go through it, and so does every boot (boot.env)
    no_proxy = "localhost,127.0.0.1,169.254.169.254,.corp.example.test"
    head = script.split("JHS_VENV=", 1)[0]
    for key, value in (("HTTP_PROXY", PROXY["http"]), ("HTTPS_PROXY", PROXY["http"]), ("NO_PROXY", no_proxy)):
        assert f"export {key}={value}\n" in head and f"export {key.lower()}={value}\n" in head
        assert f"\n{key}={value}\n" in heredoc(script, "JHS_ENV")
    assert "chmod 0600 /etc/jhs/boot-vars.json" in script
    # a bounded retry (3 attempts, 30 s apart by default), then the instance reports itself Unhealthy and abandons
    # its launch; after a successful attempt it completes the launch with CONTINUE (test_worker_boot_completes_...)
    assert "attempts=3\n" in script and "    sleep 30\n" in script
    asg = jhs_asg_script(script)
    group, launch_hook = NAMES["workers"], NAMES["launch"]
    assert f'GROUP = "{group}"\n' in asg and f'LAUNCH_HOOK = "{launch_hook}"\n' in asg
    assert 'set_instance_health(InstanceId=iid, HealthStatus="Unhealthy"' in asg
    compiled = subprocess.run([str(VENV_BIN / "python"), "-c", "import sys; compile(sys.stdin.read(), 'jhs-asg', 'exec')"],
                              input=asg, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    # the boot is a oneshot unit, this boot's run included (one code path for every boot, no cron fallback)
    assert "systemctl enable jhs-boot.service\nsystemctl start jhs-boot.service\n" in script
    assert "WantedBy=multi-user.target" in script and "cron" not in script
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


PROXY = {"http": "http://proxy.corp.example.test:3128", "no_proxy": [".corp.example.test"]}


def heredoc(user_data: str, marker: str) -> str:
    """The body of the user-data's heredoc `<<'MARKER'` (a file it writes)."""
    match = re.search(rf"<<'{marker}'\n(.*?\n){marker}\n", user_data, re.S)
    assert match, f"no {marker} heredoc in the user-data"
    return match.group(1)


def jhs_asg_script(user_data: str) -> str:
    """/usr/local/sbin/jhs-asg: the worker's own Auto Scaling calls (launch hook completion, Unhealthy)."""
    return heredoc(user_data, "JHS_ASG")


def worker_user_data(client) -> str:
    return base64.b64decode(launch_template(client)["LaunchTemplateData"]["UserData"]).decode()


class WorkerAwsStandIn(BaseHTTPRequestHandler):
    """A worker's view of AWS for jhs-asg: its metadata service (IMDSv2) and the Auto Scaling endpoint, which
    records every call and answers it, or fails it with `error` (code, HTTP status)."""
    instance_id = "i-0a1b2c3d4e5f60718"
    token = "imds-token-1"
    calls: list[dict] = []
    error: tuple[str, int] | None = None

    def _send(self, status: int, body: bytes, content_type: str = "text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._send(200 if ok else 400, self.token.encode() if ok else b"")

    def do_GET(self):
        ok = self.path == "/latest/meta-data/instance-id" and self.headers.get("X-aws-ec2-metadata-token") == self.token
        self._send(200 if ok else 401, self.instance_id.encode() if ok else b"")

    def do_POST(self):
        params = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
        WorkerAwsStandIn.calls.append(params)
        ns = "http://autoscaling.amazonaws.com/doc/2011-01-01/"
        if WorkerAwsStandIn.error:
            code, status = WorkerAwsStandIn.error
            body = (f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code><Message>stand-in {code}'
                    f'</Message></Error><RequestId>1</RequestId></ErrorResponse>')
            self._send(status, body.encode(), "text/xml")
            return
        action = params["Action"]
        body = (f'<{action}Response xmlns="{ns}"><{action}Result/><ResponseMetadata><RequestId>1</RequestId>'
                f'</ResponseMetadata></{action}Response>')
        self._send(200, body.encode(), "text/xml")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def worker_aws():
    server = ThreadingHTTPServer(("127.0.0.1", 0), WorkerAwsStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def jhs_asg_env(url: str) -> dict:
    """jhs-asg's environment as the boot gives it (boot.env's region and endpoint), aimed at the stand-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="worker", AWS_SECRET_ACCESS_KEY="worker",
               AWS_MAX_ATTEMPTS="1", JHS_METADATA_URL=url, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return env


def run_jhs_asg(script_path: Path, url: str, action: str, error: tuple[str, int] | None = None):
    """Run jhs-asg as the boot runs it (boot.env's region and endpoint exported); return the process and its calls."""
    WorkerAwsStandIn.calls, WorkerAwsStandIn.error = [], error
    proc = subprocess.run([str(VENV_BIN / "python"), str(script_path), *action.split()], env=jhs_asg_env(url),
                          capture_output=True, text=True, timeout=60)
    return proc, [{k: v for k, v in c.items() if k != "Version"} for c in WorkerAwsStandIn.calls]


def test_jhs_asg_completes_the_launch_hook_and_reports_health(provisioned, client, worker_aws, tmp_path):
    """The rendered jhs-asg makes exactly the calls the boot relies on, for this instance (its id from IMDSv2),
    in the cluster's group and launch hook; no action waiting (ValidationError) is logged and not an error."""
    path = tmp_path / "jhs-asg"
    path.write_text(jhs_asg_script(worker_user_data(client)))
    iid, launch = WorkerAwsStandIn.instance_id, {"AutoScalingGroupName": NAMES["workers"],
                                                 "LifecycleHookName": NAMES["launch"]}
    for action, result in (("continue", "CONTINUE"), ("abandon", "ABANDON")):
        proc, calls = run_jhs_asg(path, worker_aws, action)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert calls == [dict(launch, Action="CompleteLifecycleAction", InstanceId=iid, LifecycleActionResult=result)]
        assert f"launch lifecycle action of {iid} completed with {result}" in proc.stdout
    proc, calls = run_jhs_asg(path, worker_aws, "unhealthy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls == [{"Action": "SetInstanceHealth", "InstanceId": iid, "HealthStatus": "Unhealthy",
                      "ShouldRespectGracePeriod": "false"}]
    # a later boot (no action waiting): logged, exit 0
    proc, calls = run_jhs_asg(path, worker_aws, "continue", ("ValidationError", 400))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(calls) == 1 and f"no launch lifecycle action of {iid} waits in {NAMES['workers']}" in proc.stdout
    # any other failure: one line in the log and a non-zero exit, for the boot script to say what it means
    proc, calls = run_jhs_asg(path, worker_aws, "continue", ("AccessDenied", 403))
    assert proc.returncode == 1 and len(calls) == 1
    assert "jhs-boot: jhs-asg continue failed: ClientError" in proc.stdout and "AccessDenied" in proc.stdout


def test_jhs_asg_heartbeats_keep_the_launch_until_no_action_waits_or_their_limit(provisioned, client, worker_aws,
                                                                                   tmp_path):
    """The boot's heartbeats (jhs-asg heartbeat EVERY FOR): one RecordLifecycleActionHeartbeat on the cluster's launch
    hook every EVERY seconds; a failed beat does not end them; 'no action waits' (the boot completed it) does, and so
    does the limit. The boot script starts them with a third of the hook's timeout and boot_attempts timeouts."""
    user_data = worker_user_data(client)
    assert "/usr/local/sbin/jhs-asg heartbeat 300 2700 &" in heredoc(user_data, "JHS_BOOT")   # 900 s, 3 attempts
    path = tmp_path / "jhs-asg"
    path.write_text(jhs_asg_script(user_data))
    beat = {"Action": "RecordLifecycleActionHeartbeat", "InstanceId": WorkerAwsStandIn.instance_id,
            "AutoScalingGroupName": NAMES["workers"], "LifecycleHookName": NAMES["launch"]}
    # the limit: 2.4 s of beats 1 s apart is two beats
    proc, calls = run_jhs_asg(path, worker_aws, "heartbeat 1 2.4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert calls == [beat] * 2 and "launch heartbeats stop after 2 s" in proc.stdout
    # a failed beat is logged and the beats go on; no action waiting ends them
    WorkerAwsStandIn.calls, WorkerAwsStandIn.error = [], ("Throttling", 400)
    beats = subprocess.Popen([str(VENV_BIN / "python"), str(path), "heartbeat", "0.2", "600"], env=jhs_asg_env(worker_aws),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(WorkerAwsStandIn.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        WorkerAwsStandIn.error = ("ValidationError", 400)
        out, _ = beats.communicate(timeout=30)
    finally:
        beats.kill()
    assert beats.returncode == 0, out
    assert out.count("a launch heartbeat failed") >= 2 and "Throttling" in out, out
    assert "no more heartbeats" in out, out
    assert {c["Action"] for c in WorkerAwsStandIn.calls} == {"RecordLifecycleActionHeartbeat"}


def test_the_boots_aws_calls_survive_credentials_that_come_late(provisioned, client, worker_aws, tmp_path):
    """Just after launch the metadata service can be slow to hand out the role's credentials. The boot gives the SDK
    a longer metadata wait and retries (boot.env), and the heartbeats look credentials up again after finding none
    (a client keeps what it found when made), so beats start once credentials are there."""
    user_data = worker_user_data(client)
    boot_env = heredoc(user_data, "JHS_ENV").splitlines()
    assert "AWS_METADATA_SERVICE_TIMEOUT=5" in boot_env and "AWS_METADATA_SERVICE_NUM_ATTEMPTS=3" in boot_env
    path = tmp_path / "jhs-asg"
    path.write_text(jhs_asg_script(user_data))
    env, write_credentials = credentials_later(jhs_asg_env(worker_aws), tmp_path)
    WorkerAwsStandIn.calls, WorkerAwsStandIn.error = [], None
    beats = subprocess.Popen([str(VENV_BIN / "python"), str(path), "heartbeat", "0.2", "600"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)   # beats without credentials: none reaches the endpoint
        assert WorkerAwsStandIn.calls == [] and beats.poll() is None
        write_credentials("worker")
        deadline = time.monotonic() + 30
        while not WorkerAwsStandIn.calls and time.monotonic() < deadline:
            time.sleep(0.1)
        WorkerAwsStandIn.error = ("ValidationError", 400)   # the boot completed the action: the beats end
        out, _ = beats.communicate(timeout=30)
    finally:
        beats.kill()
    assert beats.returncode == 0, out
    assert "Unable to locate credentials" in out and "no more heartbeats" in out, out
    assert WorkerAwsStandIn.calls and {c["Action"] for c in WorkerAwsStandIn.calls} == {"RecordLifecycleActionHeartbeat"}


def run_jhs_boot(user_data: str, tmp_path: Path, pull_rc: int, asg_rc: int = 0,
                 checkout: Path | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the user-data's /usr/local/sbin/jhs-boot with ansible-pull, ansible-playbook and jhs-asg replaced by stubs
    that log their call (ansible-playbook its directory too) and exit with the given status (ansible-playbook as
    ansible-pull); no retry delay, no metadata service, no console. /opt/jhs/repo is `checkout` (default: none)."""
    boot = heredoc(user_data, "JHS_BOOT")
    calls = tmp_path / "calls"
    for name, rc, logged in (("ansible-pull", pull_rc, "${1:-}"), ("ansible-playbook", pull_rc, "${1:-} $PWD"),
                             ("jhs-asg", asg_rc, "${1:-}")):
        stub = tmp_path / name
        stub.write_text(f'#!/bin/bash\necho "{name} {logged}" >>{calls}\nexit {rc}\n')
        stub.chmod(0o755)
    (tmp_path / "boot.env").write_text("")
    for real, stand_in in (("/opt/jhs/venv/bin/ansible-pull", tmp_path / "ansible-pull"),
                           ("/opt/jhs/venv/bin/ansible-playbook", tmp_path / "ansible-playbook"),
                           ("/opt/jhs/repo", checkout or tmp_path / "no-checkout"),
                           ("/usr/local/sbin/jhs-asg", tmp_path / "jhs-asg"),
                           ("/etc/jhs/boot.env", tmp_path / "boot.env"),
                           ("/run/jhs-boot-log-from", tmp_path / "boot-log-from"),
                           ("/var/log/jhs-boot.log", tmp_path / "jhs-boot.log"),
                           ("imds=http://169.254.169.254/latest", "imds=http://127.0.0.1:9/latest"),
                           ("/dev/console", tmp_path / "console")):
        assert real in boot, real
        boot = boot.replace(real, str(stand_in))
    boot = re.sub(r"\bsleep \d+", "sleep 0", boot)
    path = tmp_path / "jhs-boot"
    path.write_text(boot)
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
    return proc, calls.read_text().splitlines() if calls.exists() else []


def without_heartbeats(calls: list[str]) -> list[str]:
    """The boot's calls in order, its heartbeats set apart. They start in the background, once; with the stubs the
    boot can end (and kill them) before the stub has logged its call, so none is allowed too. That the boot starts
    them, with which period and limit, is checked on the rendered script (the heartbeat test)."""
    assert calls.count("jhs-asg heartbeat") <= 1, calls
    return [c for c in calls if c != "jhs-asg heartbeat"]


def test_worker_boot_completes_the_launch_hook(provisioned, client, tmp_path):
    """jhs-boot as rendered: a boot whose node joined completes the launch hook with CONTINUE (and succeeds even
    when that call fails); after the last failed attempt it marks the instance Unhealthy, then ABANDONs the launch.
    Either way it puts its log into the cluster's log group first (and goes on when that fails)."""
    user_data = worker_user_data(client)
    (tmp_path / "joined").mkdir()
    proc, calls = run_jhs_boot(user_data, tmp_path / "joined", pull_rc=0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert without_heartbeats(calls) == ["ansible-pull -U", "jhs-asg continue", "jhs-asg log"]
    (tmp_path / "no-completion").mkdir()
    proc, calls = run_jhs_boot(user_data, tmp_path / "no-completion", pull_rc=0, asg_rc=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert without_heartbeats(calls) == ["ansible-pull -U", "jhs-asg continue", "jhs-asg log"]
    assert "the node joined, but its launch lifecycle action was not completed" in proc.stdout
    assert "the boot log could not be put into CloudWatch Logs" in proc.stdout
    (tmp_path / "failed").mkdir()
    proc, calls = run_jhs_boot(user_data, tmp_path / "failed", pull_rc=2)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the boot log goes to CloudWatch Logs before the instance is given up (with aws_cluster_logs, the default)
    assert without_heartbeats(calls) == ["ansible-pull -U"] * 3 + ["jhs-asg log", "jhs-asg unhealthy",
                                                                   "jhs-asg abandon"]
    assert "jhs-boot: attempt 3 of 3 failed" in proc.stdout


def test_a_boot_from_a_checkout_at_its_commit_runs_the_playbook_without_ansible_pull(provisioned, client, tmp_path):
    """jhs-boot as rendered: where /opt/jhs/repo is already at the launch template's commit with no local change (a
    baked image), the boot runs ansible-playbook -c local from there; a checkout at another commit, one with a local
    change, or (with verify_commit) one whose commit has no good signature goes through ansible-pull."""
    user_data = worker_user_data(client)
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "site.yml").write_text("---\n")
    subprocess.run([*git, "add", "site.yml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    pinned = re.search(r"\nrepo_commit=(\S+)\n", user_data).group(1)
    unverified = user_data.replace(f"\nrepo_commit={pinned}\n", f"\nrepo_commit={head}\n")
    assert unverified != user_data and "\nverify_commit=true\n" in unverified
    unverified = unverified.replace("\nverify_commit=true\n", "\nverify_commit=false\n")

    def boot(name: str, script: str) -> list[str]:
        (tmp_path / name).mkdir()
        proc, calls = run_jhs_boot(script, tmp_path / name, pull_rc=0, checkout=repo)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return without_heartbeats(calls)

    assert boot("at-commit", unverified) == [f"ansible-playbook -c {repo}", "jhs-asg continue", "jhs-asg log"]
    # the signature is asked for and this commit has none: ansible-pull (whose git module then refuses it)
    assert boot("verify", unverified.replace("\nverify_commit=false\n", "\nverify_commit=true\n"))[0] == "ansible-pull -U"
    # the launch template names another commit
    assert boot("other-commit", user_data)[0] == "ansible-pull -U"
    (repo / "site.yml").write_text("--- # changed here\n")
    assert boot("changed", unverified)[0] == "ansible-pull -U"


def test_jhs_asg_puts_the_boot_log_into_the_clusters_log_group(provisioned, client, moto_endpoint, worker_aws,
                                                              tmp_path):
    """jhs-asg log (the end of every boot): this boot's part of the boot log (from the offset its start wrote), one
    event per line in order (an empty line as a space, CloudWatch Logs takes no empty event), in a new stream
    boot/<instance id>/<UTC time> of the cluster's group, in batches CloudWatch Logs takes (this one needs two);
    the stream is named in the boot log. An earlier boot's part, shipped at its own end, is not sent again."""
    user_data = worker_user_data(client)
    # each boot's start notes where its part begins: the user-data on the first boot, jhs-boot on every boot
    mark = "[ -e /run/jhs-boot-log-from ] || stat -c %s /var/log/jhs-boot.log >/run/jhs-boot-log-from"
    assert user_data.split("exec >>/var/log/jhs-boot.log", 1)[0].count(mark) == 1
    assert heredoc(user_data, "JHS_BOOT").split("set -a", 1)[0].count(mark) == 1
    path = tmp_path / "jhs-asg"
    path.write_text(jhs_asg_script(user_data))
    log = tmp_path / "jhs-boot.log"
    earlier = "".join(f"jhs-boot: an earlier boot's line {i}\n" for i in range(50))
    lines = [f"TASK [line {i}] " + "*" * 300 for i in range(3000)] + ["", "jhs-boot: the last line"]
    log.write_text(earlier + "\n".join(lines) + "\n")
    (tmp_path / "log-from").write_text(f"{len(earlier.encode())}\n")
    env = dict(jhs_asg_env(worker_aws), AWS_ENDPOINT_URL=moto_endpoint, JHS_BOOT_LOG=str(log),
               JHS_BOOT_LOG_FROM=str(tmp_path / "log-from"))
    proc = subprocess.run([str(VENV_BIN / "python"), str(path), "log"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs, group = client("logs"), NAMES["log_group"]
    (stream,) = [s["logStreamName"] for s in logs.describe_log_streams(
        logGroupName=group, logStreamNamePrefix=f"boot/{WorkerAwsStandIn.instance_id}/")["logStreams"]]
    assert re.fullmatch(rf"boot/{WorkerAwsStandIn.instance_id}/\d{{8}}T\d{{6}}Z", stream), stream
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    assert [e["message"] for e in events] == [line or " " for line in lines]
    assert f"the boot log (3002 lines) is in CloudWatch Logs: group {group}, stream {stream}" in proc.stdout


def test_auto_scaling_group(provisioned, client):
    asg = client("autoscaling")
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"]) == (0, 10)
    assert group["DesiredCapacity"] == 2            # set by "the hub" between runs, left alone by provision
    assert group["HealthCheckGracePeriod"] == 300
    # Gated from its first launch: the group was created empty and given its first worker only once the launch
    # hook existed, so no instance is InService without having joined (none boots here; the endpoint replaces a
    # launch whose hook times out with another that waits).
    assert group["Instances"] and {i["LifecycleState"] for i in group["Instances"]} == {"Pending:Wait"}, group["Instances"]
    assert group["LaunchTemplate"]["LaunchTemplateName"] == NAMES["worker"]
    private = client("ec2").describe_subnets(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                                      {"Name": "tag:jhs:tier", "Values": ["private"]}])["Subnets"]
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(s["SubnetId"] for s in private)
    tags = {t["Key"]: t for t in group["Tags"]}
    for key, value in {"jhs:cluster": CLUSTER, "jhs:role": "worker", "jhs:node-pool": "default",
                       "Name": NAMES["worker"]}.items():
        assert tags[key]["Value"] == value and tags[key]["PropagateAtLaunch"] is True
    hooks = {h["LifecycleHookName"]: h for h in
             asg.describe_lifecycle_hooks(AutoScalingGroupName=NAMES["workers"])["LifecycleHooks"]}
    assert set(hooks) == {NAMES["launch"], NAMES["drain"]}
    # InService only once the node has joined (its boot completes the hook); a boot that never does is abandoned
    launch = hooks[NAMES["launch"]]
    assert launch["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert launch["HeartbeatTimeout"] == 900 and launch["DefaultResult"] == "ABANDON"
    drain = hooks[NAMES["drain"]]
    assert drain["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert drain["HeartbeatTimeout"] == 600 and drain["DefaultResult"] == "CONTINUE"
    # no CPU target tracking by default: the hub's scaler sizes the group (test_a_baked_worker_image_stays_in_the_launch_template turns it on and off)
    assert asg.describe_policies(AutoScalingGroupName=NAMES["workers"])["ScalingPolicies"] == []
    # Instances the group launched carry the propagated tags. (Not terminated: an endpoint that holds a launch in
    # Pending:Wait abandons it after the launch hook's timeout, no worker boots here, and launches another.)
    workers = client("ec2").describe_instances(Filters=[{"Name": "tag:jhs:role", "Values": ["worker"]},
                                                        {"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                                        {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert sum(len(r["Instances"]) for r in workers["Reservations"]) == 2


def test_manager_instance_volume_address_and_dns(provisioned, client):
    ec2 = client("ec2")
    found = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                            {"Name": "tag:jhs:role", "Values": ["manager"]},
                                            {"Name": "instance-state-name", "Values": ["running"]}])
    (manager,) = [i for r in found["Reservations"] for i in r["Instances"]]
    assert tags_of(manager)["Name"] == NAMES["manager"]
    assert manager["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{NAMES['manager']}")
    assert manager["KeyName"] == KEY_PAIR
    sg = groups(client)
    assert {g["GroupId"] for g in manager["SecurityGroups"]} == {sg[NAMES["hub"]]["GroupId"], sg[NAMES["nodes"]]["GroupId"]}
    assert manager["MetadataOptions"]["HttpTokens"] == "required"
    subnet = ec2.describe_subnets(SubnetIds=[manager["SubnetId"]])["Subnets"][0]
    assert tags_of(subnet)["jhs:tier"] == "public"
    (volume,) = ec2.describe_volumes(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                              {"Name": "tag:jhs:data", "Values": ["hub-state"]}])["Volumes"]
    assert volume["Encrypted"] is True and volume["VolumeType"] == "gp3" and volume["Size"] == 10
    assert volume["Attachments"][0]["InstanceId"] == manager["InstanceId"]
    (address,) = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [manager["InstanceId"]]}])["Addresses"]
    assert tags_of(address)["jhs:cluster"] == CLUSTER
    addr = client("ssm").get_parameter(Name=SSM["manager_addr"], WithDecryption=True)["Parameter"]["Value"]
    assert addr == manager["PrivateIpAddress"]
    route53 = client("route53")
    (zone,) = [z for z in route53.list_hosted_zones()["HostedZones"] if z["Name"] == ZONE + "."]
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    (record,) = [r for r in records if r["Name"] == DOMAIN + "." and r["Type"] == "A"]
    assert [v["Value"] for v in record["ResourceRecords"]] == [address["PublicIp"]]


def test_every_resource_carries_the_cluster_tag(provisioned, client):
    found = cluster_resources(client, CLUSTER)
    for kind in ("vpcs", "subnets", "security_groups", "internet_gateways", "route_tables", "nat_gateways",
                 "elastic_ips", "instances", "volumes", "launch_templates", "auto_scaling_groups", "iam_roles",
                 "instance_profiles", "ssm_parameters", "efs", "efs_mount_targets", "ecr_repositories", "s3_buckets",
                 "log_groups"):
        assert found.get(kind), kind
    # The NAT gateway's and the manager's addresses both carry it.
    assert len(found["elastic_ips"]) == 2


def test_no_ecr_repositories_no_ecr_statements_and_no_logs(provisioned, client, moto_endpoint):
    """aws_cluster_ecr_repositories: [] drops the ECR statements from both policies; an existing repository is
    left alone (its images are the hub's; teardown removes it). The same run has aws_cluster_logs false, which drops
    the logs statements and the boot's `jhs-asg log` (a new launch template version) and leaves the group and its
    events to teardown. The run changes those things and nothing else (one run for all: each provisioning run here
    costs about a minute). Changes the policies: runs after the tests that read them."""
    asg = client("autoscaling")
    settings = dict(provisioned["settings"], aws_cluster_ecr_repositories=[], aws_cluster_logs=False)
    proc, _ = playbook(moto_endpoint, "provision", settings)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert changed_tasks(proc.stdout) == ["aws_cluster : IAM | least-privilege inline policies", PULL_ROLE_TASK,
                                          "aws_cluster : Workers | launch template"]
    assert re.findall(r"^changed: .*$", proc.stdout, re.M) == ["changed: [localhost] => (item=manager)",
                                                               "changed: [localhost] => (item=worker)",
                                                               "changed: [localhost]", "changed: [localhost]"]
    boot = heredoc(worker_user_data(client), "JHS_BOOT")
    assert "jhs-asg log" not in boot and "/usr/local/sbin/jhs-asg continue" in boot
    for role in ("manager", "worker"):
        statements = policy(client, NAMES[role])["Statement"]
        assert not [a for s in statements for a in s["Action"] if a.startswith(("ecr:", "sts:", "logs:"))], role
    # aws_cluster_logs false: the roles may no longer write logs; the group and its events are left for teardown
    assert cluster_resources(client, CLUSTER)["log_groups"] == [NAMES["log_group"]]
    assert NAMES["registry_pull"] not in [r["RoleName"] for r in client("iam").list_roles()["Roles"]]
    assert "ECR |" not in proc.stdout and "no ECR repositories" in proc.stdout
    assert sorted(ecr_repositories(client, CLUSTER)) == ALL_REPOS
    # the hooks are untouched
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=NAMES["workers"])["LifecycleHooks"]
    assert sorted(h["LifecycleHookName"] for h in hooks) == [NAMES["drain"], NAMES["launch"]]


def test_a_baked_worker_image_stays_in_the_launch_template(provisioned, client, moto_endpoint):
    """After playbooks/worker_image.yml imaged a worker for the cluster, provisioning again keeps workers on
    that image (it does not put the base AMI back) and a further run changes nothing; another cluster's image
    is never picked; aws_cluster_worker_use_baked_image=false goes back to the base AMI. A minimum raised above the
    desired capacity takes the desired capacity with it.
    The first run also turns on aws_cluster_worker_cpu_scaling, which adds the target-tracking policy on average CPU
    (the policy the hub's scaler replaces); the further run, with the default (false), removes it and changes
    nothing else (one run fewer than a run of its own for the policy).
    Runs last in this module: it adds launch template versions."""
    ec2 = client("ec2")
    found = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                            {"Name": "tag:jhs:role", "Values": ["manager"]},
                                            {"Name": "instance-state-name", "Values": ["running"]}])
    instance = found["Reservations"][0]["Instances"][0]["InstanceId"]

    def image(name: str, cluster: str) -> str:
        image_id = ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": "jhs:cluster", "Value": cluster},
                                                     {"Key": "jhs:role", "Value": "worker-image"}])
        return image_id

    baked = image(NAMES["worker_image_prefix"] + "baked", CLUSTER)
    image("other-worker-baked", "other-cluster")     # newer, but another cluster's

    def default_image() -> str:
        (v,) = ec2.describe_launch_template_versions(LaunchTemplateName=NAMES["worker"],
                                                     Versions=["$Default"])["LaunchTemplateVersions"]
        return v["LaunchTemplateData"]["ImageId"]

    settings, asg = provisioned["settings"], client("autoscaling")
    first, _ = playbook(moto_endpoint, "provision", dict(settings, aws_cluster_worker_cpu_scaling=True))
    assert first.returncode == 0, first.stdout[-4000:]
    assert default_image() == baked
    assert CPU_POLICY_TASK in changed_tasks(first.stdout)
    (scaling,) = asg.describe_policies(AutoScalingGroupName=NAMES["workers"])["ScalingPolicies"]
    assert scaling["PolicyName"] == NAMES["cpu_target"] and scaling["PolicyType"] == "TargetTrackingScaling"
    config = scaling["TargetTrackingConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ASGAverageCPUUtilization"
    assert config["TargetValue"] == 70.0
    again, _ = playbook(moto_endpoint, "provision", settings)      # the CPU policy back at its default: off
    assert again.returncode == 0, again.stdout[-4000:]
    assert changed_tasks(again.stdout) == [CPU_POLICY_TASK] and recap(again.stdout)["changed"] == 1, \
        re.findall(r"^changed: .*$", again.stdout, re.M)
    assert asg.describe_policies(AutoScalingGroupName=NAMES["workers"])["ScalingPolicies"] == []
    assert default_image() == baked
    # The same run raises the group's minimum above its desired capacity (2, the hub's): AWS refuses a desired
    # capacity below the minimum (so does the lab's endpoint), so provisioning moves it up to the new minimum. (The
    # desired capacity setting, which preflight keeps at or above the minimum, applies only to a new group.)
    base, _ = playbook(moto_endpoint, "provision", dict(settings, aws_cluster_worker_use_baked_image=False,
                                                        aws_cluster_worker_min_size=3,
                                                        aws_cluster_worker_desired_capacity=3))
    assert base.returncode == 0, base.stdout[-4000:]
    assert default_image() == BASE_AMI
    (group,) = client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"]
    assert (group["MinSize"], group["DesiredCapacity"]) == (3, 3)
