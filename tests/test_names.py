"""plugins/module_utils/jhs_names.py, the one owner of the shared names and rules (issue 16, item 1): the names of
a cluster, the cluster_name rule, the regions, a home's owner and mode, the filters that hand them to roles; and a
scan of roles/, plugins/, playbooks/, lab/, benchmarks/ and inventories/ that fails when any of them is written out
anywhere else again."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from conftest import ROOT

OWNER = ROOT / "plugins" / "module_utils" / "jhs_names.py"
OWNER_REL = "plugins/module_utils/jhs_names.py"
SCANNED = ("roles", "plugins", "playbooks", "lab", "benchmarks", "inventories")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


names = load("jhs_names_under_test", OWNER)


# ---- the names of a cluster ---------------------------------------------------------------------------------

def test_resource_names_of_a_cluster():
    n = names.names("myhub")
    assert {k: n[k] for k in ("workers", "worker", "nodes", "hub", "efs", "launch", "drain", "manager", "vpc",
                              "igw", "nat", "public", "private", "home", "hub_state", "cpu_target",
                              "worker_builder")} == {
        "workers": "myhub-workers", "worker": "myhub-worker", "nodes": "myhub-nodes", "hub": "myhub-hub",
        "efs": "myhub-efs", "launch": "myhub-launch", "drain": "myhub-drain", "manager": "myhub-manager",
        "vpc": "myhub-vpc", "igw": "myhub-igw", "nat": "myhub-nat", "public": "myhub-public",
        "private": "myhub-private", "home": "myhub-home", "hub_state": "myhub-hub-state",
        "cpu_target": "myhub-cpu-target", "worker_builder": "myhub-worker-builder"}
    assert n["public_subnet_prefix"] == "myhub-public-" and n["private_subnet_prefix"] == "myhub-private-"
    assert n["worker_image_prefix"] == "myhub-worker-" and n["backup_bucket_prefix"] == "myhub-hub-backups-"
    assert n["ecr_prefix"] == "myhub/" and n["metrics_namespace"] == "JupyterHubSwarm"
    assert n["log_group"] == "/myhub/containers"


def test_ssm_parameters_of_a_cluster():
    n = names.names("myhub")
    assert n["ssm_prefix"] == "/myhub"
    # the order provisioning lists them in and teardown deletes them in
    assert list(n["ssm"].items()) == [
        ("join_token", "/myhub/swarm/worker-join-token"), ("manager_addr", "/myhub/swarm/manager-addr"),
        ("oauth_client_secret", "/myhub/hub/oauth-client-secret"), ("cookie_secret", "/myhub/hub/cookie-secret"),
        ("proxy_token", "/myhub/hub/proxy-token"), ("efs_id", "/myhub/efs/file-system-id"),
        ("notebook_images", "/myhub/hub/notebook-images"), ("backup_bucket", "/myhub/hub/backup-bucket")]
    assert n["ssm_tags"] == {
        "join_token": "myhub-swarm-worker-join-token", "manager_addr": "myhub-swarm-manager-addr",
        "oauth_client_secret": "myhub-oauth-client-secret", "cookie_secret": "myhub-cookie-secret",
        "proxy_token": "myhub-proxy-token", "efs_id": "myhub-efs-file-system-id",
        "notebook_images": "myhub-hub-notebook-images", "backup_bucket": "myhub-backup-bucket"}


@pytest.mark.parametrize("module", ["jhs_scaler", "jhs_hub_metrics"])
def test_the_metrics_namespace_of_the_scaler_and_the_hub_metrics_exporter_is_the_owners(module):
    copy = load(f"{module}_for_names", ROOT / "roles" / "jupyterhub" / "files" / f"{module}.py")
    assert copy.NAMESPACE == names.METRICS_NAMESPACE


# ---- cluster_name --------------------------------------------------------------------------------------------

def test_the_rule_and_its_text_agree():
    assert "{%d,%d}" % (names.CLUSTER_NAME_MIN, names.CLUSTER_NAME_MAX) in names.CLUSTER_NAME_PATTERN
    assert names.CLUSTER_NAME_RULE.startswith(f"{names.CLUSTER_NAME_MIN}-{names.CLUSTER_NAME_MAX} characters")


@pytest.mark.parametrize("name", ["hub", "myhub", "lab-hub-2", "a1b", "labhub", "x" * 28, "a-b-c", "invt-nothing-here"])
def test_cluster_name_accepted(name):
    assert names.cluster_name_valid(name) and names.cluster_name_error(name) == ""


@pytest.mark.parametrize("name", ["", "ab", "x" * 29, "MyHub", "my_hub", "1hub", "-hub", "hub-", "my--hub",
                                  "my.hub", "my hub", "my/hub", "xn--hub", None, 42, ["hub"]])
def test_cluster_name_refused(name):
    assert not names.cluster_name_valid(name)
    error = names.cluster_name_error(name)
    assert error.startswith(f"cluster_name={name}: use 3-28 characters of a-z, 0-9 and '-'")


# ---- regions --------------------------------------------------------------------------------------------------

def test_regions_come_from_botocore():
    regions = names.regions()
    assert {"eu-west-1", "us-east-1", "ap-northeast-3", "us-gov-west-1", "cn-north-1"} <= set(regions)
    assert list(regions) == sorted(regions) and len(regions) >= 37
    # only the partitions whose ARNs the roles build; no pseudo-region
    assert not [r for r in regions if r.startswith(("us-iso", "eu-isoe", "eusc-")) or r.endswith("-global")]


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-2", "ap-southeast-2", "us-gov-east-1", "cn-northwest-1"])
def test_region_accepted(region):
    assert names.region_known(region) and names.region_error(region) == ""


@pytest.mark.parametrize("region", ["mars-north-1", "eu-west-9", "EU-WEST-1", "eu-west-1a", "", "aws-global", None])
def test_region_refused(region):
    assert not names.region_known(region)
    assert names.region_error(region).startswith(f"aws_region={region} is not a known AWS region; allowed: ")


# ---- a user's home ---------------------------------------------------------------------------------------------

def test_home_owner_and_mode():
    assert names.home() == {"uid": 1000, "gid": 1000, "mode": "0700"}


# ---- the filters roles and playbooks use -------------------------------------------------------------------------

def test_filters_hand_out_the_owners_values():
    filters = load("jhs_names_filter_under_test", ROOT / "plugins" / "filter" / "jhs_names.py").FilterModule().filters()
    assert filters["jhs_names"]("myhub") == names.names("myhub")
    assert filters["jhs_cluster_name_error"]("myhub") == "" and filters["jhs_cluster_name_error"]("My_Hub")
    assert filters["jhs_region_error"]("eu-west-1") == "" and filters["jhs_region_error"]("mars-north-1")
    assert [filters["jhs_home"](f) for f in ("uid", "gid", "mode")] == [1000, 1000, "0700"]
    with pytest.raises(Exception, match="ask for one of uid, gid, mode"):
        filters["jhs_home"]("owner")


def test_ansible_cfg_finds_the_filters_and_module_utils():
    cfg = (ROOT / "ansible.cfg").read_text()
    assert re.search(r"^filter_plugins = plugins/filter$", cfg, re.M)
    assert re.search(r"^module_utils = plugins/module_utils$", cfg, re.M)


# ---- one owner: nothing in roles/, plugins/, playbooks/, lab/, benchmarks/ or inventories/ writes one out again ---

def scanned_texts() -> dict:
    """Every text file under SCANNED, by its path relative to the repository."""
    texts = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                data = path.read_bytes()
                if b"\0" not in data:
                    texts[path.relative_to(ROOT).as_posix()] = data.decode("utf-8", "replace")
    return texts


TEXTS = scanned_texts()


def files_matching(pattern: str) -> set:
    regex = re.compile(pattern)
    return {path for path, text in TEXTS.items() if regex.search(text)}


# SSM paths as <section>/<leaf>, and the leaves that name nothing but a parameter (cookie-secret, proxy-token and
# oauth-client-secret are also the hub's secret files, so only their paths count).
SSM_FRAGMENTS = [re.escape(path) for path in names.SSM_PARAMETERS.values()] + [
    rf"(?<![\w-]){leaf}(?![\w-])" for leaf in
    ("worker-join-token", "manager-addr", "file-system-id", "notebook-images", "backup-bucket")]


@pytest.mark.parametrize("pattern", SSM_FRAGMENTS)
def test_each_ssm_path_has_one_owner(pattern):
    assert files_matching(pattern) == {OWNER_REL}


TEST_TEXTS = {path.relative_to(ROOT).as_posix(): path.read_text() for path in sorted((ROOT / "tests").rglob("*.py"))
              if path != Path(__file__)}


@pytest.mark.parametrize("pattern", SSM_FRAGMENTS)
def test_no_test_keeps_a_copy_of_an_ssm_path(pattern):
    """Tests take the paths from the owner (conftest.jhs_names); this file alone pins them (above)."""
    assert [path for path, text in TEST_TEXTS.items() if re.search(pattern, text)] == []


# A name built on cluster_name: '<cluster_name>' ~ '-workers', {{ cluster_name }}-workers, f"{cluster}-workers",
# <cluster>-workers in a description: each suffix appears after a quote, a brace or '>' in the owner alone.
RESOURCE_SUFFIXES = sorted({*names.RESOURCE_SUFFIXES.values(), *names.RESOURCE_PREFIXES.values(),
                            *names.SSM_NAME_TAGS.values()})


def resource_name_pattern(suffix: str) -> str:
    return rf"[}}>'\"]{re.escape(suffix.rstrip('-'))}(?![a-z0-9])"


@pytest.mark.parametrize("suffix", RESOURCE_SUFFIXES)
def test_each_resource_name_has_one_owner(suffix):
    assert files_matching(resource_name_pattern(suffix)) == {OWNER_REL}


@pytest.mark.parametrize("suffix", RESOURCE_SUFFIXES)
def test_no_test_builds_a_resource_name_by_hand(suffix):
    """f"{CLUSTER}-workers", f"Auto Scaling Group {name}-workers", `<cluster>-workers`: tests take resource names from
    the owner (conftest.jhs_names(cluster)["workers"]); this file alone pins them (above)."""
    assert [path for path, text in TEST_TEXTS.items() if re.search(resource_name_pattern(suffix), text)] == []


ROOTED_IN_CLUSTER_NAME = r"|".join((
    r"(?:\{\{\s*cluster_name\s*\}\}|\bcluster_name\s*~\s*['\"]|\{cluster(?:_name)?\})[-/]",   # {{ cluster_name }}/, {cluster}-
    r"/\{\{\s*cluster_name", r"['\"]/['\"]\s*~\s*cluster_name", r"/\{cluster\}"))


def test_names_rooted_in_cluster_name_have_one_owner():
    """'/' ~ cluster_name (SSM, log group), cluster_name ~ '/' (ECR): only the owner builds them."""
    assert files_matching(ROOTED_IN_CLUSTER_NAME) == {OWNER_REL}
    assert files_matching(r"<cluster(?:_name)?>-[a-z]") <= {OWNER_REL}   # names in descriptions too


def test_no_test_builds_a_name_rooted_in_cluster_name_by_hand():
    """Tests take /<cluster> (ssm_prefix), <cluster>/ (ecr_prefix) and the rest from the owner too."""
    assert {path for path, text in TEST_TEXTS.items()
            if re.search(ROOTED_IN_CLUSTER_NAME, text)} == set()


def test_the_cluster_name_rule_has_one_owner():
    assert files_matching(r"cluster_name\s+is\s+(?:not\s+)?(?:match|regex|search)\b|CLUSTER_NAME_(?:RE|PATTERN)\s*=") == {
        OWNER_REL}
    assert files_matching(re.escape(names.CLUSTER_NAME_PATTERN)) == {OWNER_REL}
    # every preflight that checks cluster_name asks the owner
    assert files_matching(r"jhs_cluster_name_error") == {
        "plugins/filter/jhs_names.py", "roles/aws_cluster/tasks/preflight.yml",
        "roles/aws_cluster/tasks/preflight_teardown.yml", "roles/swarm_manager/tasks/preflight.yml",
        "roles/swarm_worker/tasks/preflight.yml", "roles/worker_image/tasks/preflight.yml"}


def test_the_regions_have_one_owner():
    assert files_matching(r"load_data\(\s*['\"]partitions") == {OWNER_REL}
    region = re.compile(r"\b(?:us|eu|ap|sa|ca|me|af|il|mx|cn)(?:-gov)?-[a-z]+-\d\b")
    listing = {path for path, text in TEXTS.items() if len(set(region.findall(text))) >= 3}
    assert listing == set(), "a list of regions outside the owner"


def test_homes_owner_and_mode_come_from_the_owner():
    import yaml
    efs = yaml.safe_load((ROOT / "roles/efs_mount/defaults/main.yml").read_text())
    hub = yaml.safe_load((ROOT / "roles/jupyterhub/defaults/main.yml").read_text())
    assert (efs["efs_mount_home_uid"], efs["efs_mount_home_gid"], efs["efs_mount_user_dir_mode"]) == (
        "{{ 'uid' | jhs_home }}", "{{ 'gid' | jhs_home }}", "{{ 'mode' | jhs_home }}")
    assert (hub["jupyterhub_notebook_uid"], hub["jupyterhub_notebook_gid"]) == (
        "{{ 'uid' | jhs_home }}", "{{ 'gid' | jhs_home }}")
    assert "'mode' | jhs_home" in (ROOT / "roles/jupyterhub/templates/jupyterhub_config.py.j2").read_text()


# ---- the AWS SDK on an instance ------------------------------------------------------------------------------

def test_the_sdk_environment_on_an_instance_has_one_owner():
    """The metadata service's wait and retries for every process on an instance that calls AWS (the manager's and
    the builder's plays, the worker's boot): written out in the owner alone, handed out by the filter jhs_sdk_env."""
    assert names.sdk_env("instance") == {"AWS_METADATA_SERVICE_TIMEOUT": "5", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "3"}
    assert files_matching(r"AWS_METADATA_SERVICE_(TIMEOUT|NUM_ATTEMPTS)") == {OWNER_REL}
    users = files_matching(r"'instance' \| jhs_sdk_env")
    assert users == {"playbooks/manager.yml", "playbooks/rotate_swarm_token.yml", "playbooks/worker_image.yml",
                     "plugins/filter/jhs_names.py",   # its docstring
                     "roles/aws_cluster/templates/worker-user-data.sh.j2"}
    filters = load("jhs_names_filter_sdk", ROOT / "plugins" / "filter" / "jhs_names.py").FilterModule().filters()
    assert filters["jhs_sdk_env"]("instance") == names.sdk_env("instance")
    with pytest.raises(Exception, match="ask for 'instance'"):
        filters["jhs_sdk_env"]("control")


# ---- the outbound proxy -------------------------------------------------------------------------------------

def test_the_proxys_environment_in_both_spellings_with_what_always_goes_direct():
    env = names.proxy_env({"http": "http://proxy.corp:3128", "no_proxy": [".corp", "10.0.0.0/8"]}, ["jupyterhub"])
    direct = "localhost,127.0.0.1,169.254.169.254,.corp,10.0.0.0/8,jupyterhub"
    assert env == {"HTTP_PROXY": "http://proxy.corp:3128", "HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": direct,
                   "http_proxy": "http://proxy.corp:3128", "https_proxy": "http://proxy.corp:3128", "no_proxy": direct}
    assert names.proxy_env({"http": "http://a:1", "https": "http://b:2"})["HTTPS_PROXY"] == "http://b:2"
    assert names.proxy_env({}) == names.proxy_env(None) == names.proxy_env({"no_proxy": [".corp"]}) == {}


@pytest.mark.parametrize("value", [{}, None, "", {"http": "http://proxy:3128"},
                                   {"http": "https://proxy.corp:443/", "https": "http://p2:8080", "no_proxy": [".a"]}])
def test_outbound_proxy_accepted(value):
    assert names.proxy_error(value) == ""


@pytest.mark.parametrize("value,message", [
    ({"http": "proxy:3128"}, "outbound_proxy.http=proxy:3128: a proxy URL"),
    ({"https": "http://proxy:3128"}, "set http (https defaults to it)"),
    ({"http": "http://p:1", "no_proxy": "a,b"}, "no_proxy must be a list"),
    ({"http": "http://p:1", "no_proxy": ["a,b"]}, "no_proxy must be a list"),
    ({"http_proxy": "http://p:1"}, "outbound_proxy must be a dict of http, https"),
    ("http://p:1", "outbound_proxy must be a dict of http, https")])
def test_outbound_proxy_refused_naming_what_is_allowed(value, message):
    assert message in names.proxy_error(value)
