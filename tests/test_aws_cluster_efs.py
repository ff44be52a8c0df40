"""plugins/modules/jhs_efs.py against the local AWS endpoint: create, idempotence, check mode, detach, delete."""
from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REGION, ROOT, VENV_BIN
from test_provision import inventory, make_client, make_env

TOKEN = "efs-module-test"


def jhs_efs(endpoint: str, check: bool = False, **args) -> dict:
    args = dict({"creation_token": TOKEN, "region": REGION, "endpoint_url": endpoint}, **args)
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", inventory(), "-m", "jhs_efs",
           "-a", json.dumps(args), "-o"] + (["--check"] if check else [])
    proc = subprocess.run(cmd, cwd=ROOT, env=make_env(endpoint), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1])


@pytest.fixture(scope="module")
def network(moto_endpoint):
    ec2 = make_client(moto_endpoint)("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.77.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
               for i, z in enumerate(zones)]
    group = ec2.create_security_group(GroupName="efs-module-test", Description="t", VpcId=vpc)["GroupId"]
    return {"subnets": subnets, "group": group}


def test_lifecycle_of_a_file_system(moto_endpoint, network):
    efs = make_client(moto_endpoint)("efs")
    targets = [{"subnet_id": s, "security_groups": [network["group"]]} for s in network["subnets"]]
    wanted = dict(tags={"Name": "t-home", "jhs:cluster": "t"}, transition_to_ia="AFTER_30_DAYS", mount_targets=targets)

    planned = jhs_efs(moto_endpoint, check=True, **wanted)
    assert planned["changed"] is True and planned["actions"][0].startswith("create file system")
    assert efs.describe_file_systems(CreationToken=TOKEN)["FileSystems"] == []

    made = jhs_efs(moto_endpoint, **wanted)
    assert made["changed"] is True and made["file_system_id"].startswith("fs-")
    fs_id = made["file_system_id"]
    (fs,) = efs.describe_file_systems(CreationToken=TOKEN)["FileSystems"]
    assert fs["Encrypted"] is True and fs["FileSystemId"] == fs_id
    assert {t["Key"]: t["Value"] for t in efs.list_tags_for_resource(ResourceId=fs_id)["Tags"]}["jhs:cluster"] == "t"
    assert sorted(m["subnet_id"] for m in made["mount_targets"]) == sorted(network["subnets"])

    again = jhs_efs(moto_endpoint, **wanted)
    assert again["changed"] is False and again["actions"] == []

    lifecycle_off = jhs_efs(moto_endpoint, **dict(wanted, transition_to_ia=""))
    assert lifecycle_off["changed"] is True
    assert efs.describe_lifecycle_configuration(FileSystemId=fs_id)["LifecyclePolicies"] == []

    one_zone = jhs_efs(moto_endpoint, **dict(wanted, mount_targets=targets[:1]))
    assert one_zone["changed"] is True
    assert [m["SubnetId"] for m in efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]] == network["subnets"][:1]

    detached = jhs_efs(moto_endpoint, state="detached")
    assert detached["changed"] is True and detached["file_system_id"] == fs_id
    assert efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"] == []
    assert len(efs.describe_file_systems(CreationToken=TOKEN)["FileSystems"]) == 1

    assert jhs_efs(moto_endpoint, check=True, state="absent")["changed"] is True
    assert len(efs.describe_file_systems(CreationToken=TOKEN)["FileSystems"]) == 1
    gone = jhs_efs(moto_endpoint, state="absent")
    assert gone["changed"] is True
    assert efs.describe_file_systems(CreationToken=TOKEN)["FileSystems"] == []
    assert jhs_efs(moto_endpoint, state="absent")["changed"] is False
    assert jhs_efs(moto_endpoint, state="detached")["changed"] is False
