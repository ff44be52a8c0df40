"""The lab's cloud-init stand-in (lab/images/node/lab-cloud-init) on its own: /var/lib/cloud/instance names the
running instance's own directory, as cloud-init links it. A node launched from an image baked on another instance
(the lab's AMIs are committed builder nodes) must not find the builder's boot-finished there: the reconciler takes
that file as the end of the node's boot, and restores the next spare disk of the AMI only then (lab/reconciler.py,
refill_booted), so that the copy does not compete with the boot."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stand_in():
    path = ROOT / "lab" / "images" / "node" / "lab-cloud-init"
    loader = importlib.machinery.SourceFileLoader("lab_cloud_init", str(path))
    spec = importlib.util.spec_from_loader("lab_cloud_init", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_a_new_instance_does_not_find_the_builders_boot_finished(tmp_path):
    cloud = stand_in()
    root = tmp_path / "cloud"
    # the image as baked: the builder's boot ran, and (as the stand-in once did) left a plain directory
    (root / "instance").mkdir(parents=True)
    (root / "instance" / "boot-finished").write_text("1.0 rc=0\n")
    (root / "instances" / "i-builder").mkdir(parents=True)
    (root / "instances" / "i-new").mkdir()
    cloud.link_instance_dir("i-new", str(root))
    assert (root / "instance").is_symlink()
    assert (root / "instance").resolve() == (root / "instances" / "i-new").resolve()
    assert not (root / "instance" / "boot-finished").exists()
    # a boot of the same instance keeps its directory, and what its earlier boot wrote there
    (root / "instance" / "boot-finished").write_text("2.0 rc=0\n")
    cloud.link_instance_dir("i-new", str(root))
    assert (root / "instances" / "i-new" / "boot-finished").read_text() == "2.0 rc=0\n"
    # an image baked from this instance, launched as another: the link moves to the new instance's directory
    (root / "instances" / "i-next").mkdir()
    cloud.link_instance_dir("i-next", str(root))
    assert (root / "instance").resolve() == (root / "instances" / "i-next").resolve()
    assert not (root / "instance" / "boot-finished").exists()
    assert (root / "instances" / "i-new" / "boot-finished").exists()

