"""jhs-backup-copy (roles/jupyterhub/files): the hub database's dated backups copied into S3 (the local endpoint).

What the manager runs (a container of the hub image on the host's network, every jupyterhub_backup_copy_interval
seconds) and what a restore fetches back is tested in the lab (tests/lab/test_site.py).
"""
from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from conftest import REGION, ROOT, credentials_later

SCRIPT = ROOT / "roles" / "jupyterhub" / "files" / "jhs-backup-copy"


def copy(env, directory, bucket, *extra, timeout=60):
    return subprocess.run([sys.executable, str(SCRIPT), "--dir", str(directory), "--bucket", bucket,
                           "--region", REGION, "--endpoint-url", env["AWS_ENDPOINT_URL"], *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)


def keys(boto, bucket, prefix="hub-backups/"):
    listing = boto("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def bucket(boto):
    name = f"backups-{uuid.uuid4().hex[:12]}"
    boto("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def backup(directory, stamp, body=b"SQLite format 3\0"):
    path = directory / f"jupyterhub-{stamp}.sqlite"
    path.write_bytes(body + stamp.encode())
    return path


def test_copies_new_backups_once_and_never_what_the_bucket_let_expire(aws_env, boto, bucket, tmp_path):
    first = backup(tmp_path, "20261201T030000Z")
    backup(tmp_path, "20261202T030000Z")
    (tmp_path / "jupyterhub-20261202T040000Z.partial").write_bytes(b"half")   # a backup being written
    proc = copy(aws_env, tmp_path, bucket, "--once")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(boto, bucket) == ["hub-backups/jupyterhub-20261201T030000Z.sqlite",
                                  "hub-backups/jupyterhub-20261202T030000Z.sqlite"]
    body = boto("s3").get_object(Bucket=bucket, Key="hub-backups/jupyterhub-20261201T030000Z.sqlite")["Body"].read()
    assert body == first.read_bytes()
    # Nothing new: nothing copied.
    again = copy(aws_env, tmp_path, bucket, "--once")
    assert again.returncode == 0 and "copied" not in again.stdout
    # The lifecycle rule expired the oldest: it is not copied again. A new backup is.
    boto("s3").delete_object(Bucket=bucket, Key="hub-backups/jupyterhub-20261201T030000Z.sqlite")
    backup(tmp_path, "20261203T030000Z")
    third = copy(aws_env, tmp_path, bucket, "--once")
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.count("copied ") == 1
    assert keys(boto, bucket) == ["hub-backups/jupyterhub-20261202T030000Z.sqlite",
                                  "hub-backups/jupyterhub-20261203T030000Z.sqlite"]


def test_a_prefix_of_its_own(aws_env, boto, bucket, tmp_path):
    backup(tmp_path, "20261201T030000Z")
    proc = copy(aws_env, tmp_path, bucket, "--once", "--prefix", "class-a/db/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert keys(boto, bucket, "") == ["class-a/db/jupyterhub-20261201T030000Z.sqlite"]


def test_a_missing_bucket_fails_with_its_name_and_the_loop_keeps_going(aws_env, tmp_path):
    backup(tmp_path, "20261201T030000Z")
    proc = copy(aws_env, tmp_path, "no-such-bucket-jhs", "--once")
    assert proc.returncode == 1
    assert "cannot list s3://no-such-bucket-jhs/hub-backups/" in proc.stdout
    # --every: the failure is logged and retried, the process stays up.
    loop = subprocess.Popen([sys.executable, str(SCRIPT), "--dir", str(tmp_path), "--bucket", "no-such-bucket-jhs",
                             "--region", REGION, "--endpoint-url", aws_env["AWS_ENDPOINT_URL"], "--every", "1"],
                            env=aws_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4)
        assert loop.poll() is None
    finally:
        loop.kill()
        out, _ = loop.communicate()
    assert out.count("cannot list") >= 2


def test_credentials_that_come_late_are_used_once_they_are_there(aws_env, boto, bucket, tmp_path):
    """On a manager that has just booted, the metadata service can be slow to hand out the role's credentials and the
    first client finds none (a client never looks again): the loop makes a new one, and copies once they are there."""
    backups = tmp_path / "backups"
    backups.mkdir()
    backup(backups, "20261201T030000Z")
    env, write_credentials = credentials_later(aws_env, tmp_path)
    loop = subprocess.Popen([sys.executable, str(SCRIPT), "--dir", str(backups), "--bucket", bucket,
                             "--region", REGION, "--endpoint-url", aws_env["AWS_ENDPOINT_URL"], "--every", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert keys(boto, bucket) == [] and loop.poll() is None
        write_credentials()
        deadline = time.monotonic() + 30
        while not keys(boto, bucket) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        loop.kill()
        out, _ = loop.communicate()
    assert "Unable to locate credentials" in out, out
    assert keys(boto, bucket) == ["hub-backups/jupyterhub-20261201T030000Z.sqlite"], out


def test_once_or_every_is_required(aws_env, tmp_path):
    proc = copy(aws_env, tmp_path, "b", "--every", "0")
    assert proc.returncode == 2 and "give --once or --every SECONDS" in proc.stderr
