"""worker_image: older baked images go with their snapshots (entry point prune, finish's last step); its settings
are checked before any AWS call. Against an endpoint that judges every call by the operator policy of
docs/aws-permissions.md, with the operator's keys (the bake runs as the operator)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import REGION, ROOT, jhs_names, local_endpoint
from test_provision import inventory, make_client, make_env, recap, tags_of

from lab.__main__ import operator_policy
from lab.config import AWS_CREDENTIALS, OPERATOR_CREDENTIALS

CLUSTER, OTHER = "wi-prune", "wi-other"
NAMES = jhs_names(CLUSTER)
AMI = "ami-12c6146b"   # one of the images moto knows


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    policy = tmp_path_factory.mktemp("iam") / "operator-policy.json"
    policy.write_text(json.dumps(operator_policy(CLUSTER, REGION)))
    with local_endpoint("--enforce-iam", "--operator-policy", str(policy)) as url:
        yield url


def prune(endpoint: str, **settings) -> subprocess.CompletedProcess:
    extra = {"cluster_name": CLUSTER, "aws_region": REGION, "aws_endpoint_url": endpoint, **settings}
    return subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), str(ROOT / "tests/worker_image/prune.yml"),
                           "-i", inventory(), "-e", json.dumps(extra)],
                          cwd=ROOT, env=make_env(endpoint, OPERATOR_CREDENTIALS), capture_output=True, text=True,
                          timeout=600)


def baked(ec2, instance: str, cluster: str, n: int) -> list[str]:
    """n images tagged as bakes of `cluster` (their snapshots too, as the bake tags them), oldest first; the
    endpoint dates an image to the second, so they are a second apart."""
    ids = []
    for i in range(n):
        image = ec2.create_image(InstanceId=instance, Name=jhs_names(cluster)["worker_image_prefix"] + f"{i:04d}")
        tags = [{"Key": "jhs:cluster", "Value": cluster}, {"Key": "jhs:role", "Value": "worker-image"}]
        ec2.create_tags(Resources=[image["ImageId"], *snapshots(ec2, image["ImageId"])], Tags=tags)
        ids.append(image["ImageId"])
        time.sleep(1.1)
    return ids


def snapshots(ec2, image: str) -> list[str]:
    (img,) = ec2.describe_images(ImageIds=[image])["Images"]
    return [m["Ebs"]["SnapshotId"] for m in img.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def images_of(ec2, cluster: str) -> set[str]:
    return {i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=[
        {"Name": "tag:jhs:cluster", "Values": [cluster]}])["Images"]}


def test_a_bake_keeps_the_newest_images_and_the_one_in_use_and_deletes_the_rest_with_their_snapshots(endpoint):
    ec2 = make_client(endpoint, AWS_CREDENTIALS)("ec2")
    (instance,) = [i["InstanceId"] for i in ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "jhs:cluster", "Value": CLUSTER}]}])["Instances"]]
    ours = baked(ec2, instance, CLUSTER, 5)
    others = baked(ec2, instance, OTHER, 4)
    # The workers roll back to the oldest image: their launch template's default version uses it.
    ec2.create_launch_template(LaunchTemplateName=NAMES["worker"], LaunchTemplateData={"ImageId": ours[0]},
                               TagSpecifications=[{"ResourceType": "launch-template",
                                                   "Tags": [{"Key": "jhs:cluster", "Value": CLUSTER}]}])
    gone_snapshots = [s for image in ours[1:3] for s in snapshots(ec2, image)]
    assert gone_snapshots, "the endpoint made no snapshots to check"

    kept_all = prune(endpoint, worker_image_keep_images=0)
    assert kept_all.returncode == 0, kept_all.stdout[-3000:]
    assert images_of(ec2, CLUSTER) == set(ours)

    first = prune(endpoint, worker_image_keep_images=2)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert recap(first.stdout)["changed"] == 1   # one loop task, two images
    assert images_of(ec2, CLUSTER) == {ours[0], ours[3], ours[4]}
    assert images_of(ec2, OTHER) == set(others)   # another cluster's never
    left = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not left & set(gone_snapshots)
    assert all(set(snapshots(ec2, image)) <= left for image in (ours[0], ours[3], ours[4], *others))
    assert tags_of(ec2.describe_images(ImageIds=[ours[4]])["Images"][0])["jhs:cluster"] == CLUSTER

    again = prune(endpoint, worker_image_keep_images=2)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0
    assert images_of(ec2, CLUSTER) == {ours[0], ours[3], ours[4]}


@pytest.mark.parametrize("value,message", [
    (-1, "worker_image_keep_images=-1: a whole number, 0 (keep every image) or more."),
    ("two", "argument 'worker_image_keep_images' is of type str and we were unable to convert to int")])
def test_a_bad_number_of_images_to_keep_stops_the_bake_before_it_looks_at_anything(value, message, endpoint):
    """The argument spec refuses a word, preflight a negative number, both before the first look-up (Discover)."""
    extra = {"cluster_name": CLUSTER, "aws_region": REGION, "aws_endpoint_url": endpoint,
             "repo_url": "https://example.org/repo.git", "repo_version": "main", "worker_image_keep_images": value}
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/worker_image.yml", "-i", inventory(),
                           "-e", json.dumps(extra)], cwd=ROOT, env=make_env(endpoint, OPERATOR_CREDENTIALS),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert message in out, out[-3000:]
    assert "Discover |" not in out
