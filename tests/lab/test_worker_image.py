"""The worker image bake (playbooks/worker_image.yml) in the lab: a builder node is configured, imaged,
committed by the lab into the AMI's container image, and always terminated; instances of the new
launch template version boot from that image."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid

import pytest

from labutil import ROOT, node_containers, node_exec, wait_for

pytestmark = pytest.mark.lab

PREPULL = "debian:bookworm-slim"   # the lab registry serves it (the Docker Hub stand-in)
SUBNET_CIDR = "10.10.241.0/24"
USER_DATA = base64.b64encode(b"#!/bin/bash\necho worker-image-test >/var/lib/worker-image-test\n").decode()     # apart from the lab cluster's subnets, so node addresses never clash


def run_bake(lab, name: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **lab, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"}
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"),
         str(ROOT / "playbooks" / "worker_image.yml"), "-e", f"cluster_name={name}",
         "-e", json.dumps({"worker_image_prepull_images": [PREPULL]}), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def recap(proc: subprocess.CompletedProcess, host: str = "localhost") -> dict[str, int]:
    for line in proc.stdout.splitlines():
        if line.startswith(host + " ") and "ok=" in line:
            return {k: int(v) for k, v in (f.split("=") for f in line.split(":", 1)[1].split())}
    raise AssertionError(f"no recap for {host}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")


@pytest.fixture(scope="module")
def cluster(lab):
    """The parts of a provisioned cluster the bake uses: a private subnet, the nodes' group, the worker
    profile and the workers' launch template (roles/aws_cluster names), made directly, quickly."""
    import boto3
    kw = dict(endpoint_url=lab["AWS_ENDPOINT_URL"], region_name=lab["AWS_DEFAULT_REGION"],
              aws_access_key_id="lab", aws_secret_access_key="lab")
    ec2, iam = boto3.client("ec2", **kw), boto3.client("iam", **kw)
    name = "wi" + uuid.uuid4().hex[:6]
    tags = [{"Key": "jhs:cluster", "Value": name}]
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR, AvailabilityZone=lab["AWS_DEFAULT_REGION"] + "a",
                               TagSpecifications=[{"ResourceType": "subnet", "Tags": tags + [
                                   {"Key": "jhs:tier", "Value": "private"}]}])["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{name}-nodes", Description="nodes", VpcId=vpc,
                                      TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
    iam.create_role(RoleName=f"{name}-worker", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
    iam.create_instance_profile(InstanceProfileName=f"{name}-worker")
    iam.add_role_to_instance_profile(InstanceProfileName=f"{name}-worker", RoleName=f"{name}-worker")
    ec2.create_launch_template(LaunchTemplateName=f"{name}-worker", LaunchTemplateData={
        "ImageId": lab["LAB_BASE_AMI"], "InstanceType": "t3.large", "IamInstanceProfile": {"Name": f"{name}-worker"},
        "SecurityGroupIds": [group], "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
        "UserData": USER_DATA, "TagSpecifications": [{"ResourceType": "volume", "Tags": tags}]})
    made: list[str] = []
    yield {"name": name, "ec2": ec2, "subnet": subnet, "group": group, "instances": made}
    if made:
        ec2.terminate_instances(InstanceIds=made)
    for img in ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:jhs:cluster", "Values": [name]}])["Images"]:
        ec2.deregister_image(ImageId=img["ImageId"])
        lab_image = {t["Key"]: t["Value"] for t in img.get("Tags", [])}.get("jhs-lab:image")
        if lab_image:
            subprocess.run(["docker", "rmi", lab_image], capture_output=True)
    ec2.delete_launch_template(LaunchTemplateName=f"{name}-worker")
    iam.remove_role_from_instance_profile(InstanceProfileName=f"{name}-worker", RoleName=f"{name}-worker")
    iam.delete_instance_profile(InstanceProfileName=f"{name}-worker")
    iam.delete_role(RoleName=f"{name}-worker")
    wait_for(lambda: not set(made) & set(node_containers()), 90, what="test nodes removed")
    ec2.delete_security_group(GroupId=group)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def builders(ec2, name: str) -> dict[str, str]:
    res = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [name]},
                                          {"Name": "tag:jhs:role", "Values": ["builder"]}])
    return {i["InstanceId"]: i["State"]["Name"] for r in res["Reservations"] for i in r["Instances"]}


def push_to_ecr_stand_in(lab, name: str, tmp_path) -> str:
    """A small image in the lab's ECR stand-in, pushed from the host with a token of the local endpoint
    (jhs-registry-login); returns its name as nodes see it."""
    config_dir, at_host = tmp_path / "docker", f"127.0.0.1:{lab['LAB_ECR_PORT']}"
    env = {**os.environ, **lab}
    subprocess.run([str(ROOT / ".venv/bin/python"), str(ROOT / "roles/jupyterhub/files/jhs-registry-login"),
                    "--registry", at_host, "--config-dir", str(config_dir), "--region", lab["AWS_DEFAULT_REGION"],
                    "--endpoint-url", lab["AWS_ENDPOINT_URL"]], env=env, check=True, capture_output=True)
    base = json.loads((ROOT / ".lab" / "images.json").read_text())["base"]
    subprocess.run(["docker", "tag", base, f"{at_host}/{name}/base:1"], check=True)
    pushed = subprocess.run(["docker", "push", f"{at_host}/{name}/base:1"], capture_output=True, text=True,
                            env={**os.environ, "DOCKER_CONFIG": str(config_dir)})
    assert pushed.returncode == 0, pushed.stderr
    subprocess.run(["docker", "rmi", f"{at_host}/{name}/base:1"], capture_output=True)
    return f"{lab['LAB_ECR_REGISTRY']}/{name}/base:1"


def test_bake_makes_a_tagged_image_the_template_default_and_terminates_the_builder(lab, cluster, tmp_path):
    ec2, name = cluster["ec2"], cluster["name"]
    # one image from the Docker Hub stand-in, one from the ECR stand-in, which the builder logs in to first
    from_ecr = push_to_ecr_stand_in(lab, name, tmp_path)
    settings = json.dumps({"worker_image_prepull_images": [PREPULL, from_ecr],
                           "worker_image_registry": lab["LAB_ECR_REGISTRY"], "worker_image_registry_auth": "ecr"})
    proc = run_bake(lab, name, "-e", settings)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]

    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:jhs:cluster", "Values": [name]}])["Images"]
    assert len(images) == 1
    ami = images[0]
    tags = {t["Key"]: t["Value"] for t in ami["Tags"]}
    assert ami["Name"].startswith(f"{name}-worker-") and tags["Name"] == ami["Name"]
    assert tags["jhs:role"] == "worker-image"
    assert tags["jhs:repo-version"] == lab["LAB_REPO_VERSION"]
    assert tags["jhs:content-hash"] in ami["Name"]
    assert tags["jhs:base-ami"] == lab["LAB_BASE_AMI"]
    lab_image = tags["jhs-lab:image"]                      # the lab committed the builder
    labels = json.loads(subprocess.run(["docker", "image", "inspect", lab_image], capture_output=True,
                                       text=True, check=True).stdout)[0]["Config"]["Labels"]
    assert labels["jhs-lab.image"] == "ami" and labels["jhs-lab.ami"] == ami["ImageId"]

    template = ec2.describe_launch_templates(LaunchTemplateNames=[f"{name}-worker"])["LaunchTemplates"][0]
    default = ec2.describe_launch_template_versions(LaunchTemplateName=f"{name}-worker", Versions=["$Default"])
    data = default["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert template["DefaultVersionNumber"] == template["LatestVersionNumber"] == 2
    assert data["ImageId"] == ami["ImageId"]
    assert data["SecurityGroupIds"] == [cluster["group"]]    # everything else kept from the source version
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["UserData"] == USER_DATA
    assert data["IamInstanceProfile"]["Arn"].endswith(f"/{name}-worker")
    assert data["TagSpecifications"] == [{"ResourceType": "volume", "Tags": [{"Key": "jhs:cluster", "Value": name}]}]

    states = builders(ec2, name)
    assert len(states) == 1 and set(states.values()) == {"terminated"}
    wait_for(lambda: not set(states) & set(node_containers()), 60, what="the builder's node removed")

    # Same inputs again: the image is found, nothing is baked or changed.
    again = run_bake(lab, name, "-e", settings)
    assert again.returncode == 0, again.stdout[-5000:] + again.stderr[-2000:]
    assert recap(again)["changed"] == 0, again.stdout[-4000:]
    assert len(builders(ec2, name)) == 1
    assert len(ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:jhs:cluster", "Values": [name]}])["Images"]) == 1

    # A worker from the template's default version boots from the baked image.
    iid = ec2.run_instances(MinCount=1, MaxCount=1, SubnetId=cluster["subnet"],
                            LaunchTemplate={"LaunchTemplateName": f"{name}-worker", "Version": "$Default"},
                            )["Instances"][0]["InstanceId"]
    cluster["instances"].append(iid)
    wait_for(lambda: node_exec(iid, "docker", "info").returncode == 0, 90, what=f"the engine on {iid}")
    # the lab restored the AMI's disk ahead of this node (as AWS hands over a volume made from the snapshot)
    started = [line for line in (ROOT / ".lab/logs/reconciler.log").read_text().splitlines() if f"{iid}: running at" in line]
    assert started and "a disk restored ahead" in started[-1], started
    assert node_exec(iid, "/opt/jhs/venv/bin/ansible-pull", "--version").returncode == 0  # the boot skips installing it
    head = node_exec(iid, "git", "-C", "/opt/jhs/repo", "rev-parse", "HEAD").stdout.strip()
    assert head and head == tags["jhs:repo-commit"]                            # the repo at repo_version
    for image in (PREPULL, from_ecr):
        present = node_exec(iid, "docker", "image", "inspect", image)
        assert present.returncode == 0, present.stderr                         # pre-pulled into the image
    assert node_exec(iid, "test", "-e", "/root/.jhs-bake-docker").returncode != 0   # no credentials baked in
    anonymous = node_exec(iid, "docker", "pull", from_ecr)                       # so the login was needed
    assert anonymous.returncode != 0 and "no basic auth credentials" in anonymous.stdout + anonymous.stderr
    fact = json.loads(node_exec(iid, "cat", "/etc/ansible/facts.d/jhs_worker_image.fact").stdout)
    assert fact["repo_commit"] == tags["jhs:repo-commit"]                      # the boot's preinstalled check
    daemon = json.loads(node_exec(iid, "cat", "/etc/docker/daemon.json").stdout)
    assert "log-driver" in daemon                                               # docker_engine's config


def test_builder_is_terminated_when_its_configuration_fails(lab, cluster):
    ec2, name = cluster["ec2"], cluster["name"]
    before = set(builders(ec2, name))
    # A package the mirror does not have: the configuration fails on the builder, after it was launched, at its
    # first step (the engine's install), so the test does not wait for the rest of the configuration.
    missing = "jhs-lab-test-no-such-package"
    proc = run_bake(lab, name, "-e", json.dumps({"docker_engine_distribution_packages": [missing]}))
    assert proc.returncode != 0
    assert "Configuring the builder" in proc.stdout and missing in proc.stdout, proc.stdout[-4000:]
    new = {i: s for i, s in builders(ec2, name).items() if i not in before}
    assert len(new) == 1 and set(new.values()) == {"terminated"}
    assert not ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:jhs:cluster", "Values": [name]},
                                                             {"Name": "tag:jhs:content-hash", "Values": ["*"]}],
                                   )["Images"][1:]                              # no second image made
