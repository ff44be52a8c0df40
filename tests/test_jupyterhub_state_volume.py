"""jupyterhub role: the hub state volume is formatted once, mounted at the data directory, never reformatted.

A loop device on a sparse file stands in for the EBS volume aws_cluster attaches to the manager; a
container of the lab's Debian base (with the device and mount rights) stands in for the manager.
"""
from __future__ import annotations

import subprocess
import uuid

import pytest

from jupyterhub.helpers import docker, lab_base_image, recap, run_playbook, write_inventory

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
