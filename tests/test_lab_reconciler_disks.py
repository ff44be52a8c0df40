"""The lab reconciler's spare disks of baked AMIs (lab/reconciler.py): the next disk of an AMI is restored once the
node that took the last one has booted, judged by a boot-finished mark newer than the node (the builder's mark in
the image is older), or at once when that node is removed before its boot ended; never while the node boots. The
docker calls and the restore itself are stubbed: what is checked is when the restore is asked for. How the reconciler
reads a node's mark (booted_at) is checked against a container of the lab's base image."""
from __future__ import annotations

import time
import uuid

import pytest
from jhs_hub.helpers import docker, lab_base_image

from lab import reconciler


@pytest.fixture
def rec(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    rec = reconciler.Reconciler.__new__(reconciler.Reconciler)   # no endpoint, no engine: only the disk state
    rec.refills, rec.filling, rec.spares = {}, set(), {}
    rec.lock = reconciler.threading.Lock()
    rec.asked = []
    monkeypatch.setattr(rec, "refill_later", lambda ami, image: rec.asked.append((ami, image)))
    monkeypatch.setattr(reconciler, "docker", lambda *args, **kw: "")
    return rec


def test_the_next_disk_waits_for_a_mark_newer_than_the_node(rec, monkeypatch):
    since = time.time()
    rec.refills["i-1"] = ("ami-1", "jhs-lab/ami:ami-1", since)
    marks = {"i-1": 0.0}
    monkeypatch.setattr(reconciler, "booted_at", lambda iid: marks[iid])
    rec.refill_booted()                     # booting, no mark yet
    marks["i-1"] = since - 600              # the builder's mark, baked into the image
    rec.refill_booted()
    assert rec.asked == [] and "i-1" in rec.refills
    marks["i-1"] = since + 11.5             # its own boot ended
    rec.refill_booted()
    assert rec.asked == [("ami-1", "jhs-lab/ami:ami-1")] and rec.refills == {}


def test_the_next_disk_is_restored_after_two_minutes_whatever_the_mark(rec, monkeypatch):
    rec.refills["i-1"] = ("ami-1", "jhs-lab/ami:ami-1", time.time() - 121)
    monkeypatch.setattr(reconciler, "booted_at", lambda iid: 0.0)
    rec.refill_booted()
    assert rec.asked == [("ami-1", "jhs-lab/ami:ami-1")]


def test_a_node_removed_before_its_boot_ended_restores_the_next_disk_at_once(rec):
    rec.refills["i-1"] = ("ami-1", "jhs-lab/ami:ami-1", time.time())
    rec.remove("i-2", {"State": {"Running": False}, "Mounts": []})     # another node: nothing to restore
    assert rec.asked == []
    rec.remove("i-1", {"State": {"Running": True}, "Mounts": []})
    assert rec.asked == [("ami-1", "jhs-lab/ami:ami-1")] and rec.refills == {}

def test_the_reconciler_reads_when_a_nodes_user_data_ended():
    """lab/reconciler.py's booted_at: the time in the node's boot-finished, 0 while there is none (or not a time),
    against a container of the lab's base image standing in for a node."""
    name = f"jhs-test-cloud-init-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep", lab_base_image(), "600")
    try:
        assert reconciler.booted_at(name) == 0.0
        docker("exec", name, "sh", "-c", "mkdir -p /var/lib/cloud/instances/i-1 && "
               "ln -s /var/lib/cloud/instances/i-1 /var/lib/cloud/instance && "
               "echo '1765134000.250 rc=0' > /var/lib/cloud/instance/boot-finished")
        assert reconciler.booted_at(name) == 1765134000.25
        docker("exec", name, "sh", "-c", "echo garbled > /var/lib/cloud/instance/boot-finished")
        assert reconciler.booted_at(name) == 0.0
    finally:
        docker("rm", "-f", name, check=False)
    assert reconciler.booted_at(name) == 0.0     # no such container
