"""plugins/modules/jhs_ecr_info.py and jhs_ecr_tag.py against the local AWS endpoint, and the role's check-mode
comparison of repositories with the settings (filter aws_cluster_ecr_drift)."""
from __future__ import annotations

import importlib.util
import json
import subprocess

from conftest import REGION, ROOT, VENV_BIN
from test_provision import inventory, make_client, make_env

POLICY = {"rules": [{"rulePriority": 1, "description": "keep 3", "action": {"type": "expire"},
                     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3}}]}


def module(endpoint: str, name: str, check: bool = False, ok: bool = True, **args) -> dict:
    args = dict({"region": REGION, "endpoint_url": endpoint}, **args)
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-i", inventory(), "-m", name, "-a", json.dumps(args), "-o"]
    proc = subprocess.run(cmd + (["--check"] if check else []), cwd=ROOT, env=make_env(endpoint),
                          capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return json.loads(proc.stdout.split("=>", 1)[1])


def test_info_lists_by_prefix_with_settings_tags_and_lifecycle(moto_endpoint):
    ecr = make_client(moto_endpoint)("ecr")
    ecr.create_repository(repositoryName="ecrmod/two", imageTagMutability="IMMUTABLE",
                          imageScanningConfiguration={"scanOnPush": True},
                          tags=[{"Key": "jhs:cluster", "Value": "ecrmod"}])
    ecr.put_lifecycle_policy(repositoryName="ecrmod/two", lifecyclePolicyText=json.dumps(POLICY))
    for name in ("ecrmod/one", "ecrmod2/other", "unrelated"):
        ecr.create_repository(repositoryName=name)

    found = module(moto_endpoint, "jhs_ecr_info", name_prefix="ecrmod/")
    assert found["changed"] is False
    one, two = found["repositories"]
    assert (one["repository_name"], two["repository_name"]) == ("ecrmod/one", "ecrmod/two")
    assert one["tags"] == {} and one["lifecycle_policy"] is None and one["scan_on_push"] is False
    assert one["image_tag_mutability"] == "MUTABLE"
    assert two["tags"] == {"jhs:cluster": "ecrmod"} and two["lifecycle_policy"] == POLICY
    assert two["scan_on_push"] is True and two["image_tag_mutability"] == "IMMUTABLE"
    assert two["repository_uri"].endswith(f".dkr.ecr.{REGION}.amazonaws.com/ecrmod/two")
    assert two["repository_arn"].endswith(":repository/ecrmod/two")
    assert module(moto_endpoint, "jhs_ecr_info", name_prefix="ecrmod-none/")["repositories"] == []


def test_tag_adds_changes_keeps_and_respects_check_mode(moto_endpoint):
    ecr = make_client(moto_endpoint)("ecr")
    arn = ecr.create_repository(repositoryName="ecrtag/notebook",
                                tags=[{"Key": "owner", "Value": "someone"}])["repository"]["repositoryArn"]

    def tags() -> dict:
        return {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=arn)["tags"]}

    wanted = {"jhs:cluster": "ecrtag", "Name": "ecrtag/notebook"}
    planned = module(moto_endpoint, "jhs_ecr_tag", check=True, repository="ecrtag/notebook", tags=wanted)
    assert planned["changed"] is True and planned["added"] == ["Name", "jhs:cluster"]
    assert tags() == {"owner": "someone"}

    made = module(moto_endpoint, "jhs_ecr_tag", repository="ecrtag/notebook", tags=wanted)
    assert made["changed"] is True and made["repository_arn"] == arn
    assert tags() == dict(wanted, owner="someone")             # other tags are left alone
    assert module(moto_endpoint, "jhs_ecr_tag", repository="ecrtag/notebook", tags=wanted)["changed"] is False

    changed = module(moto_endpoint, "jhs_ecr_tag", repository="ecrtag/notebook", tags={"Name": "renamed"})
    assert changed["changed"] is True and changed["added"] == ["Name"] and tags()["Name"] == "renamed"

    # Check mode on a repository a real run would create first: a change, not a failure; for real: a failure.
    absent = module(moto_endpoint, "jhs_ecr_tag", check=True, repository="ecrtag/absent", tags=wanted)
    assert absent["changed"] is True and absent["repository_arn"] == ""
    failed = module(moto_endpoint, "jhs_ecr_tag", ok=False, repository="ecrtag/absent", tags=wanted)
    assert "ecrtag/absent not found" in failed["msg"]


def load_filters():
    spec = importlib.util.spec_from_file_location("aws_cluster_filters",
                                                  ROOT / "roles/aws_cluster/filter_plugins/aws_cluster.py")
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    return filters.FilterModule().filters()


def test_drift_names_what_a_real_run_would_do():
    drift = load_filters()["aws_cluster_ecr_drift"]
    same = {"repository_name": "c/notebook", "image_tag_mutability": "MUTABLE", "scan_on_push": True,
            "lifecycle_policy": POLICY}
    assert drift([same], ["c/notebook"], "mutable", True, POLICY) == []
    assert drift([same], ["c/notebook", "c/base"], "mutable", True, POLICY) == ["c/base: create"]
    assert drift([same], ["c/notebook"], "immutable", False, None) == [
        "c/notebook: image tag mutability MUTABLE -> IMMUTABLE", "c/notebook: scan on push True -> False",
        "c/notebook: lifecycle policy removed"]
    other = dict(POLICY, rules=[dict(POLICY["rules"][0], selection=dict(POLICY["rules"][0]["selection"], countNumber=5))])
    assert drift([same], ["c/notebook"], "mutable", True, other) == ["c/notebook: lifecycle policy changed"]
    assert drift([dict(same, lifecycle_policy=None)], ["c/notebook"], "mutable", True, POLICY) == [
        "c/notebook: lifecycle policy set"]


def test_untagged_names_the_repositories_the_tag_task_must_call_for():
    """A real run tags only these (a run with every repository tagged makes no call): a missing repository, one
    without the cluster's tag, or with a Name that is not its own."""
    untagged = load_filters()["aws_cluster_ecr_untagged"]
    tags = {"jhs:cluster": "c"}
    tagged = {"repository_name": "c/notebook", "tags": {"jhs:cluster": "c", "Name": "c/notebook", "other": "kept"}}
    assert untagged([tagged], ["c/notebook"], tags) == []
    assert untagged([tagged], ["c/notebook", "c/hub"], tags) == ["c/hub"]
    assert untagged([dict(tagged, tags={"Name": "c/notebook"})], ["c/notebook"], tags) == ["c/notebook"]
    assert untagged([dict(tagged, tags={"jhs:cluster": "c", "Name": "x"})], ["c/notebook"], tags) == ["c/notebook"]
    assert untagged([dict(tagged, tags={})], ["c/notebook"], {"jhs:cluster": "c", "jhs:n": 3}) == ["c/notebook"]
