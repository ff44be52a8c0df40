"""The lab's EBS stand-in (lab/ebs.py) on its own: a volume the endpoint attaches to an instance becomes a block device
in the instance's node at the link a Nitro instance has, usable there (formatted and mounted); a detached volume keeps
its data for its next attachment; a deleted one loses its file; a restarted node gets its device again. A container of
the lab's base image, started as the reconciler starts nodes (SYS_ADMIN, loop devices allowed), stands in for the node;
the endpoint is moto's. The rehearsal of inventories/aws (tests/lab/test_site.py) uses it end to end."""
from __future__ import annotations

import json
import subprocess
import uuid

import boto3
import pytest

from jhs_hub.helpers import docker, lab_base_image
from lab import ebs


@pytest.fixture
def node(aws_env, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    name = f"jhs-test-ebs-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_ADMIN",
           "--security-opt", "apparmor=unconfined", "--device-cgroup-rule", f"b {ebs.LOOP_MAJOR}:* rwm",
           lab_base_image(), "sleep", "3600")
    ec2 = boto3.client("ec2", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name=aws_env["AWS_REGION"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    try:
        yield {"name": name, "ec2": ec2, "instance": inst, "dir": tmp_path / "ebs"}
    finally:
        docker("rm", "-f", name, check=False)
        ebs.release_all()


def sync(stand_in: ebs.EbsStandIn, node: dict) -> list[str]:
    """One reconciler pass, the container standing for the instance's node."""
    container = json.loads(docker("inspect", node["name"]).stdout)[0]
    iid = node["instance"]["InstanceId"]
    return stand_in.sync(node["ec2"], {iid: node["instance"]}, {iid: container})


def sh(node: dict, cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", node["name"], "sh", "-c", cmd], capture_output=True, text=True)


def test_an_attached_volume_is_a_device_at_its_nitro_link_and_keeps_its_data_until_deleted(node):
    ec2, iid, stand_in = node["ec2"], node["instance"]["InstanceId"], ebs.EbsStandIn()
    zone = node["instance"]["Placement"]["AvailabilityZone"]
    vol = ec2.create_volume(Size=1, AvailabilityZone=zone)["VolumeId"]
    assert sync(stand_in, node) == []                       # not attached: nothing
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/xvdf")
    assert sync(stand_in, node) == [f"{vol} attached to {iid} as {ebs.nitro_link(vol)}"]
    link = ebs.nitro_link(vol)
    assert sh(node, f"test -b {link}").returncode == 0   # the link a Nitro instance has, to a block device
    made = sh(node, f"mkfs.ext4 -q {link} && mkdir -p /data && mount {link} /data && echo kept > /data/f && umount /data")
    assert made.returncode == 0, made.stderr
    assert sync(stand_in, node) == []                       # unchanged: nothing done again
    assert (node["dir"] / f"{vol}.img").stat().st_size == 1024 ** 3   # the volume's size, sparse

    # a restarted node (a reboot) gets its device again
    docker("restart", "-t", "1", node["name"])
    assert sh(node, f"test -e {link}").returncode != 0     # /dev is new
    assert sync(stand_in, node) == [f"{vol} detached from {iid}", f"{vol} attached to {iid} as {link}"]
    assert sh(node, f"mkdir -p /data && mount {link} /data && cat /data/f && umount /data").stdout == "kept\n"

    # detached: the device goes, the data stays for the next attachment
    ec2.detach_volume(VolumeId=vol, InstanceId=iid)
    assert sync(stand_in, node) == [f"{vol} detached from {iid}"]
    assert sh(node, f"test -e {link}").returncode != 0
    assert not subprocess.run(["losetup", "--associated", str(node["dir"] / f"{vol}.img")],
                              capture_output=True, text=True).stdout   # no loop device left
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/xvdf")
    sync(stand_in, node)
    assert sh(node, f"mount {link} /data && cat /data/f && umount /data").stdout == "kept\n"

    # deleted: its file goes
    ec2.detach_volume(VolumeId=vol, InstanceId=iid)
    ec2.delete_volume(VolumeId=vol)
    assert sync(stand_in, node) == [f"{vol} detached from {iid}", f"{vol} deleted: its file removed"]
    assert not (node["dir"] / f"{vol}.img").exists()


def test_a_failing_stand_in_is_logged_once_while_it_lasts_and_holds_up_nothing(monkeypatch):
    """The reconciler's pass of the DNS and EBS stand-ins (side_pass): a machine without loop devices, or a CA gone,
    is said once, not every pass, and the pass goes on; once it works again, a new failure is said again."""
    from types import SimpleNamespace

    from lab import reconciler
    logged = []
    monkeypatch.setattr(reconciler, "log", logged.append)
    rec = SimpleNamespace(side_errors={})

    def broken():
        raise RuntimeError("losetup: cannot find an unused loop device")

    for _ in range(3):
        reconciler.Reconciler.side_pass(rec, "ebs", broken)    # returns: the rest of the pass goes on
    assert logged == ["ebs: losetup: cannot find an unused loop device"]
    reconciler.Reconciler.side_pass(rec, "ebs", lambda: ["vol-1 attached to i-1 as /dev/x"])
    reconciler.Reconciler.side_pass(rec, "ebs", broken)
    assert logged[1:] == ["ebs: vol-1 attached to i-1 as /dev/x", "ebs: losetup: cannot find an unused loop device"]
