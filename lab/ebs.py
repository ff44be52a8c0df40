"""The lab's stand-in for the EBS volumes attached to an instance: a block device in its node, found as on a Nitro
instance.

Each volume the endpoint has attached to a running instance (other than its root volume) is a sparse file
`.lab/ebs/<volume id>.img` of the volume's size, set up as a loop device on the host and made in the node as
`/dev/ebs-<volume id>` with the link a Nitro instance's udev makes, `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_
vol<id without the dash>`; nodes may use loop devices (the reconciler starts them with `--device-cgroup-rule 'b 7:*
rwm'`). So the jupyterhub role finds the hub state volume by its id and formats and mounts it as on AWS. The file
outlives the attachment, as a volume outlives its instance: a detached volume keeps its data for the next
attachment, and only DeleteVolume removes it. A node that restarts (a reboot) gets its devices again. `lab down`
releases every loop device of the lab (release_all).
"""
from __future__ import annotations

import json
import os
import subprocess

from . import config
from .docker import docker

LOOP_MAJOR = 7
NITRO_LINK = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}"


def ebs_dir():
    return config.lab_dir() / "ebs"


def nitro_link(volume_id: str) -> str:
    return NITRO_LINK.format(volume_id.replace("-", ""))


def _losetup(*args: str) -> str:
    return subprocess.run(["losetup", *args], capture_output=True, text=True, check=True).stdout.strip()


def release_all() -> None:
    """Detach every loop device whose file is one of the lab's volumes (lab down). A reconciler started again reuses
    the loop device a volume's file already has (EbsStandIn.loop_of) instead."""
    try:
        devices = json.loads(_losetup("--list", "--json") or '{"loopdevices": []}')["loopdevices"]
    except (OSError, subprocess.CalledProcessError, ValueError):
        return
    prefix = str(ebs_dir().resolve()) + "/"
    for dev in devices:
        if (dev.get("back-file") or "").startswith(prefix):
            subprocess.run(["losetup", "--detach", dev["name"]], capture_output=True)


class EbsStandIn:
    def __init__(self) -> None:
        # volume -> (instance, its node's StartedAt, loop device, the node's container)
        self.attached: dict[str, tuple[str, str, str, str]] = {}

    def sync(self, ec2, instances: dict[str, dict], nodes: dict[str, dict]) -> list[str]:
        """One pass: devices for new attachments, gone for ended ones, files of deleted volumes removed. `nodes` maps an
        instance id to its node's `docker inspect`. Returns what changed, for the reconciler's log."""
        volumes = [v for page in ec2.get_paginator("describe_volumes").paginate() for v in page["Volumes"]]
        want: dict[str, tuple[str, str, int, str]] = {}
        for vol in volumes:
            for att in vol.get("Attachments", []):
                iid, node = att["InstanceId"], nodes.get(att["InstanceId"])
                root = instances.get(iid, {}).get("RootDeviceName")
                if att.get("State") == "attached" and att.get("Device") != root and node and node["State"]["Running"]:
                    want[vol["VolumeId"]] = (iid, node["State"]["StartedAt"], vol["Size"], node["Name"].lstrip("/"))
        changes = []
        for vol, (iid, started, loop, name) in list(self.attached.items()):
            if want.get(vol, ("", ""))[:2] != (iid, started):
                docker("exec", name, "rm", "-f", nitro_link(vol), f"/dev/ebs-{vol}", check=False)
                subprocess.run(["losetup", "--detach", loop], capture_output=True)
                del self.attached[vol]
                changes.append(f"{vol} detached from {iid}")
        for vol, (iid, started, size, name) in want.items():
            if vol not in self.attached:
                self.attach(vol, iid, started, size, name)
                changes.append(f"{vol} attached to {iid} as {nitro_link(vol)}")
        known = {v["VolumeId"] for v in volumes}
        for img in ebs_dir().glob("vol-*.img") if ebs_dir().is_dir() else []:
            if img.stem not in known:
                img.unlink()
                changes.append(f"{img.stem} deleted: its file removed")
        return changes

    @staticmethod
    def loop_of(img) -> str | None:
        """The loop device already set up for a volume's file (by a reconciler before this one), so a file never
        has two: one block device per volume, as on AWS."""
        found = _losetup("--associated", str(img))
        return found.split(":", 1)[0] if found else None

    def attach(self, vol: str, iid: str, started: str, size_gib: int, name: str) -> None:
        ebs_dir().mkdir(parents=True, exist_ok=True)
        img = ebs_dir() / f"{vol}.img"
        if not img.exists():
            with img.open("wb") as fh:
                fh.truncate(size_gib * 1024 ** 3)   # sparse: only what the node writes takes space
        loop = self.loop_of(img) or _losetup("--find", "--show", str(img))
        minor = os.minor(os.stat(loop).st_rdev)
        try:
            docker("exec", name, "sh", "-c",
                   f"rm -f /dev/ebs-{vol} && mknod -m 0660 /dev/ebs-{vol} b {LOOP_MAJOR} {minor} && "
                   f"mkdir -p /dev/disk/by-id && ln -sfn /dev/ebs-{vol} {nitro_link(vol)}")
        except Exception:
            subprocess.run(["losetup", "--detach", loop], capture_output=True)
            raise
        self.attached[vol] = (iid, started, loop, name)
