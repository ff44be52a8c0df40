"""playbooks/teardown.yml: deletes exactly what carries the cluster's tag, keeps user data unless told.

Two clusters share one endpoint. Tearing one down (keeping user data) must leave only its EFS file system,
hub state volume and hub backups' bucket, and must not touch the other; with teardown_delete_user_data=true nothing is left.
ECR repositories go with their images either way; repositories under the cluster's name prefix that do not
carry its tag are never touched. The playbooks run as the operator, on an endpoint that judges every call by the
operator policy of docs/aws-permissions.md: none may be refused.
"""
from __future__ import annotations

import functools
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REGION, jhs_names, local_endpoint
from test_provision import cluster_resources, cluster_settings, make_client, recap
from test_provision import playbook as run_playbook

from lab.__main__ import operator_policy
from lab.config import AWS_CREDENTIALS, OPERATOR_CREDENTIALS

pytestmark = pytest.mark.slow   # several full provision runs against the local endpoint

A, B = "td-alpha", "td-beta"
A_NAMES, B_NAMES = jhs_names(A), jhs_names(B)
# their ECR repositories (aws_cluster_ecr_repositories' default, and the hub's and proxy's: aws_cluster_ecr_hub_images)
A_NOTEBOOK, B_NOTEBOOK = A_NAMES["ecr_prefix"] + "notebook", B_NAMES["ecr_prefix"] + "notebook"
A_REPOS, B_REPOS = ([names["ecr_prefix"] + name for name in ("hub", "notebook", "proxy")] for names in (A_NAMES, B_NAMES))
# Named like A's repositories, but not A's: one untagged, one tagged with B.
IMPOSTERS = {A_NAMES["ecr_prefix"] + "imposter": [],
             A_NAMES["ecr_prefix"] + "of-beta": [{"Key": "jhs:cluster", "Value": B}]}


@pytest.fixture(scope="module")
def endpoint_log(tmp_path_factory):
    return tmp_path_factory.mktemp("endpoint") / "moto.log"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory, endpoint_log):
    """An endpoint of this module's own that judges every call by IAM, as the lab's does: the playbooks run with the
    operator's keys, whose user holds docs/aws-permissions.md's policy for A and for B (the policy is written for one
    cluster; an operator of two holds both renderings)."""
    statements = []
    for cluster in (A, B):
        for statement in operator_policy(cluster, REGION)["Statement"]:
            statements.append({**statement, "Sid": statement["Sid"] + cluster.replace("-", "")})
    policy = endpoint_log.parent / "operator-policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    with local_endpoint("--enforce-iam", "--operator-policy", str(policy), log=endpoint_log) as url:
        yield url


@pytest.fixture(scope="module")
def client(moto_endpoint):
    return make_client(moto_endpoint, AWS_CREDENTIALS)   # the test's own look: the administrator's keys


@pytest.fixture(scope="module")
def story(moto_endpoint, client):
    """Provision A and B, tear A down keeping user data, then tear down A and B completely, as the operator."""
    playbook = functools.partial(run_playbook, keys=OPERATOR_CREDENTIALS)
    steps = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda settings: playbook(moto_endpoint, "provision", settings)[0],
                        [cluster_settings(A), cluster_settings(B, aws_cluster_nat_gateway=False,
                                                               aws_cluster_vpc_cidr="10.20.0.0/16",
                                                               aws_cluster_public_subnet_cidrs=["10.20.0.0/24", "10.20.1.0/24"],
                                                               aws_cluster_private_subnet_cidrs=["10.20.8.0/24", "10.20.9.0/24"])])
        for name, proc in zip((A, B), runs):
            assert proc.returncode == 0, proc.stdout[-5000:]
    ecr = client("ecr")
    for name, tags in IMPOSTERS.items():
        ecr.create_repository(repositoryName=name, tags=tags)
    # An image in A's repository: teardown deletes a repository with its images.
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                           "digest": "sha256:" + "0" * 64}, "layers": []}
    ecr.put_image(repositoryName=A_NOTEBOOK, imageManifest=json.dumps(manifest), imageTag="v1")
    steps["a_images"] = ecr.list_images(repositoryName=A_NOTEBOOK)["imageIds"]
    # A backup in A's bucket: teardown with user data deletes the bucket with its backups.
    account = client("sts").get_caller_identity()["Account"]
    steps["a_bucket"] = A_NAMES["backup_bucket_prefix"] + account
    client("s3").put_object(Bucket=steps["a_bucket"], Key="hub-backups/jupyterhub-20261201T030000Z.sqlite", Body=b"db")
    # A worker image baked for each cluster (as playbooks/worker_image.yml tags it, its snapshots too): teardown
    # deregisters A's and deletes its snapshots, even keeping user data; B's stays.
    ec2 = client("ec2")
    for cluster in (A, B):
        (manager,) = [i["InstanceId"] for r in ec2.describe_instances(Filters=[
            {"Name": "tag:jhs:cluster", "Values": [cluster]}, {"Name": "tag:jhs:role", "Values": ["manager"]},
            {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
        baked = jhs_names(cluster)["worker_image_prefix"] + "baked"   # a worker image's name, the test's own tail
        image = ec2.create_image(InstanceId=manager, Name=baked)["ImageId"]
        snapshots = [m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[image])["Images"][0]
                     .get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
        ec2.create_tags(Resources=[image, *snapshots], Tags=[{"Key": "jhs:cluster", "Value": cluster},
                                                             {"Key": "jhs:role", "Value": "worker-image"}])
    steps["a_before"] = cluster_resources(client, A)
    steps["b_before"] = cluster_resources(client, B)
    steps["keep"], _ = playbook(moto_endpoint, "teardown", {"cluster_name": A})
    steps["a_after_keep"] = cluster_resources(client, A)
    steps["b_after_keep"] = cluster_resources(client, B)
    steps["keep_again"], _ = playbook(moto_endpoint, "teardown", {"cluster_name": A})
    steps["imposters_after_keep"] = ecr_names(ecr, A)
    with ThreadPoolExecutor(max_workers=2) as pool:
        steps["delete_a"], steps["delete_b"] = pool.map(
            lambda extra: playbook(moto_endpoint, "teardown", {"teardown_delete_user_data": True, **extra})[0],
            [{"cluster_name": A}, {"cluster_name": B, "aws_cluster_teardown_keep_logs": True}])
    steps["a_after_delete"] = cluster_resources(client, A)
    steps["b_after_delete"] = cluster_resources(client, B)
    steps["imposters_after_delete"] = ecr_names(ecr, A)
    for name in IMPOSTERS:
        ecr.delete_repository(repositoryName=name)
    return steps


def ecr_names(ecr, cluster: str) -> list[str]:
    return sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"]
                  if r["repositoryName"].startswith(jhs_names(cluster)["ecr_prefix"]))


def test_both_clusters_were_complete(story):
    for before in (story["a_before"], story["b_before"]):
        for kind in ("vpcs", "subnets", "security_groups", "instances", "volumes", "launch_templates",
                     "auto_scaling_groups", "iam_roles", "instance_profiles", "ssm_parameters", "efs", "efs_mount_targets",
                     "ecr_repositories", "s3_buckets", "worker_images", "snapshots", "log_groups", "dashboards"):
            assert before.get(kind), kind
    assert sorted(story["a_before"]["ecr_repositories"]) == A_REPOS and len(story["a_images"]) == 1
    assert sorted(story["b_before"]["ecr_repositories"]) == B_REPOS
    assert "nat_gateways" in story["a_before"] and "nat_gateways" not in story["b_before"]


def test_teardown_keeps_only_user_data_and_says_so(story):
    proc = story["keep"]
    assert proc.returncode == 0, proc.stdout[-5000:]
    after = story["a_after_keep"]
    assert set(after) == {"efs", "volumes", "s3_buckets"}, after
    assert after["s3_buckets"] == [story["a_bucket"]]
    assert f"hub backups bucket {story['a_bucket']}" in proc.stdout
    assert after["efs"] == story["a_before"]["efs"]
    hub_volume = after["volumes"]
    assert len(hub_volume) == 1 and hub_volume[0] in story["a_before"]["volumes"]
    assert f"EFS file system {after['efs'][0]} (user homes" in proc.stdout
    assert f"hub state volume {A_NAMES['hub_state']} {hub_volume[0]}" in proc.stdout
    assert "teardown_delete_user_data=true" in proc.stdout
    for name in A_REPOS:   # the repositories, the notebook's with its image
        assert f"changed: [localhost] => (item={name})" in proc.stdout


def test_teardown_never_touches_a_repository_without_the_cluster_tag(story):
    assert story["imposters_after_keep"] == sorted(IMPOSTERS)
    assert story["imposters_after_delete"] == sorted(IMPOSTERS)


def test_teardown_of_one_cluster_leaves_the_other_untouched(story):
    assert story["b_after_keep"] == story["b_before"]


def test_teardown_again_is_harmless(story):
    proc = story["keep_again"]
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert recap(proc.stdout)["changed"] == 0


def test_teardown_with_delete_user_data_leaves_nothing(story):
    for key in ("delete_a", "delete_b"):
        assert story[key].returncode == 0, story[key].stdout[-5000:]
        assert "Nothing kept" in story[key].stdout
    assert story["a_after_delete"] == {}
    # B's teardown was told to keep the containers' logs (aws_cluster_teardown_keep_logs): their group stays alone
    assert story["b_after_delete"] == {"log_groups": [B_NAMES["log_group"]]}
    assert f"Kept: the log group {B_NAMES['log_group']} (aws_cluster_teardown_keep_logs)" in story["delete_b"].stdout


def test_the_operator_policy_sufficed_for_provision_and_teardown(story, endpoint_log):
    """Every call of the runs above was judged by the operator's policy (docs/aws-permissions.md): none was refused,
    not even one a module would go on without."""
    log = endpoint_log.read_text()
    assert "every request is judged by IAM" in log
    assert [line for line in log.splitlines() if "IAM denied" in line] == []
