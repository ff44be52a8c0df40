"""Instances in the local AWS endpoint become node containers that boot from their user-data."""
from __future__ import annotations

import base64
import json
import uuid

import pytest

from labutil import EC2_TRUST_POLICY, node_containers, node_exec, wait_for

pytestmark = pytest.mark.lab

USER_DATA = """#!/bin/bash
set -eu
T=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token)
md() { curl -sf -H "X-aws-ec2-metadata-token: $T" "http://169.254.169.254/latest/meta-data/$1"; }
mkdir -p /var/lib/lab-test
md instance-id > /var/lib/lab-test/instance-id
md local-ipv4 > /var/lib/lab-test/local-ipv4
md placement/availability-zone > /var/lib/lab-test/az
# IMDSv2 only: a request without a token is refused, as on an instance with HttpTokens=required.
curl -s -o /dev/null -w '%{http_code}' http://169.254.169.254/latest/meta-data/instance-id > /var/lib/lab-test/v1
# Call the endpoint with the instance's own credentials (from the metadata service) via boto3, which the
# base AMI (Debian's cloud image stand-in) lacks, as a real one does.
DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3-boto3 >/dev/null
# botocore asks the metadata service for the role's credentials once, with a 1 s timeout, by default; the lab's
# stand-in shares a loaded 2-core machine with everything else, so give it the time a slow answer needs.
AWS_METADATA_SERVICE_TIMEOUT=5 AWS_METADATA_SERVICE_NUM_ATTEMPTS=5 python3 - <<'PY' > /var/lib/lab-test/endpoint
import boto3
print(boto3.client("ec2", endpoint_url="__ENDPOINT__", region_name="__REGION__")
      .describe_instances(InstanceIds=[open("/var/lib/lab-test/instance-id").read().strip()])
      ["Reservations"][0]["Instances"][0]["State"]["Name"])
PY
echo done > /var/lib/lab-test/marker
"""


@pytest.fixture
def asg_env(lab, lab_aws):
    """A VPC in the lab network's CIDR, a subnet, a launch template with the test user-data."""
    ec2, asg = lab_aws("ec2"), lab_aws("autoscaling")
    name = "labtest-" + uuid.uuid4().hex[:6]
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.250.0/24",
                               AvailabilityZone=lab["AWS_DEFAULT_REGION"] + "a")["Subnet"]["SubnetId"]
    script = USER_DATA.replace("__ENDPOINT__", lab["AWS_ENDPOINT_URL"]).replace("__REGION__",
                                                                               lab["AWS_DEFAULT_REGION"])
    iam = lab_aws("iam")
    # the endpoint judges calls by IAM: EC2 (the metadata stand-in) assumes only a role that trusts it, and the
    # user-data's one call needs its permission
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=EC2_TRUST_POLICY)
    iam.put_role_policy(RoleName=name, PolicyName="describe", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}]}))
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": lab["LAB_BASE_AMI"], "InstanceType": "t3.small", "IamInstanceProfile": {"Name": name},
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
        "UserData": base64.b64encode(script.encode()).decode()})
    yield name, subnet
    try:
        asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    except Exception:
        pass
    ec2.delete_launch_template(LaunchTemplateName=name)
    iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    iam.delete_instance_profile(InstanceProfileName=name)
    iam.delete_role_policy(RoleName=name, PolicyName="describe")
    iam.delete_role(RoleName=name)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)


def asg_instances(asg, name):
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in groups[0]["Instances"]) if groups else []


def test_asg_instances_become_nodes_that_run_their_user_data(lab, lab_aws, asg_env):
    name, subnet = asg_env
    asg, ec2 = lab_aws("autoscaling"), lab_aws("ec2")
    before = set(node_containers())
    asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=3, DesiredCapacity=2,
                                  LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
                                  VPCZoneIdentifier=subnet)
    ids = asg_instances(asg, name)
    assert len(ids) == 2
    wait_for(lambda: set(ids) <= set(node_containers()), 60, what="two node containers")
    assert set(node_containers()) - before == set(ids)

    for iid in ids:
        wait_for(lambda: node_exec(iid, "cat", "/var/lib/lab-test/marker").stdout.strip() == "done", 90,
                 what=f"user-data of {iid} to finish",
                 detail=lambda: node_exec(iid, "cat", "/var/log/cloud-init-output.log").stdout)
        inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        read = {f: node_exec(iid, "cat", f"/var/lib/lab-test/{f}").stdout.strip()
                for f in ("instance-id", "local-ipv4", "az", "v1", "endpoint")}
        assert read["instance-id"] == iid                        # metadata stand-in knows who asks
        assert read["local-ipv4"] == inst["PrivateIpAddress"]
        assert read["az"] == inst["Placement"]["AvailabilityZone"]
        assert read["v1"] == "401"                               # IMDSv2 required
        assert read["endpoint"] == "running"                     # reached the endpoint with instance creds
        # The node really sits at the instance's private IP on the lab network.
        addr = node_exec(iid, "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert f"inet {inst['PrivateIpAddress']}/" in addr
        boot = node_exec(iid, "cat", "/var/lib/cloud/instance/boot-finished").stdout
        assert "rc=0" in boot
        # systemd is PID 1, as on an instance, and the boot left no failed unit
        assert node_exec(iid, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        state = node_exec(iid, "systemctl", "is-system-running", "--wait")
        assert state.stdout.strip() == "running", node_exec(iid, "systemctl", "--failed", "--no-legend").stdout

    asg.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0)
    wait_for(lambda: not (set(ids) & set(node_containers())), 90, what="nodes removed after scale to 0")
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]}
    assert set(states.values()) == {"terminated"}


def test_an_instance_that_cannot_boot_does_not_hold_up_the_others(lab, lab_aws, asg_env):
    """An instance whose AMI names a container image the lab does not have never becomes a node, the
    reconciler says why once, and an instance started after it still boots."""
    from labutil import ROOT
    name, subnet = asg_env
    ec2 = lab_aws("ec2")
    ami = ec2.register_image(Name=f"{name}-broken", RootDeviceName="/dev/xvda",
                             BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}])["ImageId"]
    missing = f"jhs-lab/ami:missing-{uuid.uuid4().hex[:8]}"
    ec2.create_tags(Resources=[ami], Tags=[{"Key": "jhs-lab:image", "Value": missing}])
    try:
        (bad,) = [i["InstanceId"] for i in ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet,
                                                               InstanceType="t3.small")["Instances"]]
        log = ROOT / ".lab" / "logs" / "reconciler.log"
        wait_for(lambda: bad in log.read_text(), 30, what="the reconciler to report the instance it cannot boot")
        (good,) = [i["InstanceId"] for i in ec2.run_instances(
            LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"}, MinCount=1, MaxCount=1,
            SubnetId=subnet)["Instances"]]
        wait_for(lambda: node_exec(good, "cat", "/var/lib/lab-test/marker").stdout.strip() == "done", 120,
                 what=f"{good} to boot while {bad} cannot")
        assert bad not in node_containers()
        lines = [line for line in log.read_text().splitlines() if line.split(" ", 1)[-1].startswith(f"{bad}: ")]
        assert len(lines) == 1 and missing in lines[0], lines      # said once, naming the image
        ec2.terminate_instances(InstanceIds=[bad, good])
        wait_for(lambda: good not in node_containers(), 90, what=f"{good} removed")
    finally:
        ec2.deregister_image(ImageId=ami)
