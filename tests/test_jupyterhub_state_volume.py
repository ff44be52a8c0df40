"""jupyterhub role: the hub state volume is formatted once, mounted at the data directory, never reformatted.

A loop device on a sparse file stands in for the EBS volume aws_cluster attaches to the manager; a
container of the lab's Debian base (with the device and mount rights) stands in for the manager.
"""
from __future__ import annotations

import subprocess
import uuid

import pytest

from jhs_hub.helpers import docker, lab_base_image, recap, run_playbook, write_inventory

DATA_DIR = "/var/lib/jupyterhub"


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    work = tmp_path_factory.mktemp("jh-volume")
    disk = work / "hub-state.img"
    with disk.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    loop = subprocess.run(["losetup", "--find", "--show", str(disk)], capture_output=True, text=True, check=True)
    device = loop.stdout.strip()
    name = f"jhs-test-volume-{uuid.uuid4().hex[:8]}"
    try:
        docker("run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_ADMIN",
               "--security-opt", "apparmor=unconfined", "--device", device, lab_base_image(), "sleep", "3600")
        inv = write_inventory(work / "inventory.yml", {name: {
            "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
            "jupyterhub_state_device": device, "jupyterhub_data_dir": DATA_DIR}})
        yield {"name": name, "device": device, "inventory": inv}
    finally:
        docker("rm", "-f", name, check=False)
        subprocess.run(["losetup", "--detach", device], check=False)


def sh(name: str, cmd: str) -> str:
    return docker("exec", name, "sh", "-c", cmd).stdout


def test_volume_is_formatted_mounted_and_kept(manager):
    name, device = manager["name"], manager["device"]
    first = run_playbook("state_volume.yml", manager["inventory"])
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert sh(name, f"findmnt -n -o SOURCE,FSTYPE {DATA_DIR}").split() == [device, "ext4"]
    assert f"{device} {DATA_DIR} ext4 defaults,nofail" in sh(name, "cat /etc/fstab")

    sh(name, f"echo kept > {DATA_DIR}/marker")
    second = run_playbook("state_volume.yml", manager["inventory"])
    assert second.returncode == 0
    assert recap(second.stdout)[name]["changed"] == 0

    # A new manager instance: unmounted, the role runs again and finds the old data (no reformat).
    sh(name, f"umount {DATA_DIR}")
    assert sh(name, f"ls {DATA_DIR}").strip() == ""
    third = run_playbook("state_volume.yml", manager["inventory"])
    assert third.returncode == 0, third.stdout[-4000:]
    assert sh(name, f"cat {DATA_DIR}/marker").strip() == "kept"


VOLUME_ID = "vol-0123456789abcdef0"


@pytest.fixture
def loop_disk(tmp_path):
    disk = tmp_path / "hub-state.img"
    with disk.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    device = subprocess.run(["losetup", "--find", "--show", str(disk)], capture_output=True, text=True,
                            check=True).stdout.strip()
    yield device
    subprocess.run(["losetup", "--detach", device], check=False)


def stand_in_manager(tmp_path, device: str | None, settings: dict) -> tuple[str, object]:
    """A manager stand-in with the disk at `device` (host:container), and the inventory for it."""
    name = f"jhs-test-volume-{uuid.uuid4().hex[:8]}"
    args = ["--device", device] if device else []
    docker("run", "-d", "--name", name, "--network", "none", "--cap-add", "SYS_ADMIN", "--label", "jhs-test=1",
           "--security-opt", "apparmor=unconfined", *args, lab_base_image(), "sleep", "3600")
    inv = write_inventory(tmp_path / "inventory.yml", {name: {
        "ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3",
        "jupyterhub_data_dir": DATA_DIR, **settings}})
    return name, inv


@pytest.mark.parametrize("kind", ["nitro", "xen"])
def test_volume_found_by_its_id_on_nitro_and_on_xen(tmp_path, loop_disk, kind):
    """Nitro: an NVMe device (its number follows the order of attachment) with udev's link named after the volume
    id, which the role mounts by; Xen: the attachment's name. Here the disk is a loop device shown under those
    names, and the link is made as udev would (the containers run no udev)."""
    shown = "/dev/nvme1n1" if kind == "nitro" else "/dev/xvdf"
    name, inv = stand_in_manager(tmp_path, f"{loop_disk}:{shown}", {"jupyterhub_state_device": VOLUME_ID})
    try:
        by_id = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + VOLUME_ID.replace("-", "")
        if kind == "nitro":
            sh(name, f"mkdir -p /dev/disk/by-id && ln -s ../../nvme1n1 {by_id}")
        first = run_playbook("state_volume.yml", inv)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        source = by_id if kind == "nitro" else shown
        assert f"{source} {DATA_DIR} ext4 defaults,nofail" in sh(name, "cat /etc/fstab")
        assert sh(name, f"findmnt -n -o FSTYPE {DATA_DIR}").strip() == "ext4"
        again = run_playbook("state_volume.yml", inv)
        assert again.returncode == 0 and recap(again.stdout)[name]["changed"] == 0, again.stdout[-3000:]
    finally:
        docker("rm", "-f", name, check=False)


def test_volume_id_whose_device_never_appears_names_both_paths(tmp_path):
    name, inv = stand_in_manager(tmp_path, None, {"jupyterhub_state_device": VOLUME_ID,
                                                  "jupyterhub_state_device_timeout": 2})
    try:
        proc = run_playbook("state_volume.yml", inv)
        assert proc.returncode != 0
        out = " ".join(proc.stdout.split())
        assert (f"The hub state volume {VOLUME_ID} is not attached to this instance: neither "
                f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{VOLUME_ID.replace('-', '')} (Nitro) nor /dev/xvdf "
                "(Xen, jupyterhub_state_xen_device) appeared within 2 s.") in out, out[-3000:]
        assert sh(name, "cat /etc/fstab").count(DATA_DIR) == 0
    finally:
        docker("rm", "-f", name, check=False)
