"""The worker image bake (playbooks/worker_image.yml) in the lab, when it fails: the builder is terminated all
the same. The bake that succeeds, and a worker booting from its image, are tested on the lab's own cluster
(tests/lab/test_site.py, the baked-worker test), so the lab bakes once per run."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid

import pytest
from conftest import jhs_names

from labutil import EC2_TRUST_POLICY, ROOT, lab_admin_keys, node_containers, wait_for

pytestmark = pytest.mark.lab

PREPULL = "debian:bookworm-slim"   # the lab registry serves it (the Docker Hub stand-in)
SUBNET_CIDR = "10.10.241.0/24"
USER_DATA = base64.b64encode(b"#!/bin/bash\necho worker-image-test >/var/lib/worker-image-test\n").decode()     # apart from the lab cluster's subnets, so node addresses never clash


def run_bake(lab, name: str, *extra: str) -> subprocess.CompletedProcess:
    # the administrator's keys: this cluster is not the one the operator's policy is rendered for (lab/config.py)
    env = {**os.environ, **lab, **{k.upper(): v for k, v in lab_admin_keys().items()},
           "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"}
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"),
         str(ROOT / "playbooks" / "worker_image.yml"), "-e", f"cluster_name={name}",
         "-e", json.dumps({"worker_image_prepull_images": [PREPULL]}),
         # this cluster has no manager to jump through: SSH to the builder's private address, as from inside the VPC
         "-e", "worker_image_connection=direct", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cluster(lab):
    """The parts of a provisioned cluster the bake uses: a private subnet, the nodes' group, the worker
    profile and the workers' launch template with the lab's key pair (roles/aws_cluster names), made directly,
    quickly."""
    import boto3
    kw = dict(endpoint_url=lab["AWS_ENDPOINT_URL"], region_name=lab["AWS_DEFAULT_REGION"], **lab_admin_keys())
    ec2, iam = boto3.client("ec2", **kw), boto3.client("iam", **kw)
    name = "wi" + uuid.uuid4().hex[:6]
    names = jhs_names(name)
    worker = names["worker"]   # the worker role, its instance profile and the launch template
    tags = [{"Key": "jhs:cluster", "Value": name}]
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=SUBNET_CIDR, AvailabilityZone=lab["AWS_DEFAULT_REGION"] + "a",
                               TagSpecifications=[{"ResourceType": "subnet", "Tags": tags + [
                                   {"Key": "jhs:tier", "Value": "private"}]}])["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=names["nodes"], Description="nodes", VpcId=vpc,
                                      TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
    # trusted by EC2, as aws_cluster's worker role is: the endpoint's metadata stand-in assumes no other
    iam.create_role(RoleName=worker, AssumeRolePolicyDocument=EC2_TRUST_POLICY)
    iam.create_instance_profile(InstanceProfileName=worker)
    iam.add_role_to_instance_profile(InstanceProfileName=worker, RoleName=worker)
    ec2.create_launch_template(LaunchTemplateName=worker, LaunchTemplateData={
        "ImageId": lab["LAB_BASE_AMI"], "InstanceType": "t3.large", "IamInstanceProfile": {"Name": worker},
        "KeyName": lab["LAB_KEY_NAME"], "SecurityGroupIds": [group], "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
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
    ec2.delete_launch_template(LaunchTemplateName=worker)
    iam.remove_role_from_instance_profile(InstanceProfileName=worker, RoleName=worker)
    iam.delete_instance_profile(InstanceProfileName=worker)
    iam.delete_role(RoleName=worker)
    wait_for(lambda: not set(made) & set(node_containers()), 90, what="test nodes removed")
    ec2.delete_security_group(GroupId=group)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def builders(ec2, name: str) -> dict[str, str]:
    res = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [name]},
                                          {"Name": "tag:jhs:role", "Values": ["builder"]}])
    return {i["InstanceId"]: i["State"]["Name"] for r in res["Reservations"] for i in r["Instances"]}


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
