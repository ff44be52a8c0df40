# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one owner of the names and rules the project's parts share.

Every AWS resource, SSM parameter and ECR repository of a cluster is named here from its cluster_name; the rule a
cluster_name follows, the AWS regions the project accepts, and the owner and mode of a user's home directory are
defined here too. Nothing else in roles/, plugins/, playbooks/, lab/, benchmarks/ or inventories/ spells them out
(tests/test_names.py checks):

- roles, playbooks and inventories' group_vars read them through the filters of plugins/filter/jhs_names.py
  (ansible.cfg's filter_plugins);
- the inventory plugin (plugins/inventory/swarm_ec2.py) loads this file by its path;
- modules may import it as ansible.module_utils.jhs_names (ansible.cfg's module_utils);
- the benchmarks (benchmarks/*.py) import it with plugins/module_utils on sys.path.

A setting that lets an operator rename something (swarm_manager_token_parameter, jupyterhub_scaler_group, ...)
keeps its place in its role; only its default comes from here. Standard library only: botocore, whose data lists
the regions, is imported when the regions are first asked for.
"""
from __future__ import annotations

import re

# ---- cluster_name -----------------------------------------------------------------------------------------
# The strictest rule any use of the name needs, so one rule serves every role, playbook and plugin:
# - lower case letters, digits and '-': S3 bucket and ECR repository names take no upper case;
# - starting with a letter, ending with a letter or digit, no '--': the name is the first component of the ECR
#   repositories (<cluster_name>/<name>), where ECR allows single separators only;
# - 3 to 28 characters: the longest name built from it, the backups bucket <cluster_name>-hub-backups-<account id>,
#   stays at most 53 of S3's 63 characters, and the IAM role names well inside IAM's 64.
CLUSTER_NAME_MIN = 3
CLUSTER_NAME_MAX = 28
CLUSTER_NAME_PATTERN = r"^(?=.{3,28}$)[a-z][a-z0-9]*(-[a-z0-9]+)*$"
CLUSTER_NAME_RULE = (f"{CLUSTER_NAME_MIN}-{CLUSTER_NAME_MAX} characters of a-z, 0-9 and '-', starting with a "
                     "letter, ending with a letter or digit, no '--'")
_CLUSTER_NAME_RE = re.compile(CLUSTER_NAME_PATTERN)


def cluster_name_valid(value) -> bool:
    """Whether value is a cluster_name every part of the project accepts."""
    return isinstance(value, str) and _CLUSTER_NAME_RE.match(value) is not None


def cluster_name_error(value) -> str:
    """'' for a valid cluster_name, else the message a preflight shows: the setting, the value, what is allowed."""
    if cluster_name_valid(value):
        return ""
    return (f"cluster_name={value}: use {CLUSTER_NAME_RULE} (it names the cluster's AWS resources, SSM parameters "
            "and ECR repositories)")


# ---- SSM parameters: /<cluster_name>/<path> ----------------------------------------------------------------
# In the order provisioning lists them (plan) and teardown deletes them.
SSM_PARAMETERS = {
    "join_token": "swarm/worker-join-token",       # SecureString, written by swarm_manager, read by workers
    "manager_addr": "swarm/manager-addr",          # SecureString, seeded by aws_cluster, owned by swarm_manager
    "oauth_client_secret": "hub/oauth-client-secret",   # SecureString, aws_cluster (when given)
    "cookie_secret": "hub/cookie-secret",          # SecureString, generated once by aws_cluster
    "proxy_token": "hub/proxy-token",              # SecureString, generated once by aws_cluster
    "efs_id": "efs/file-system-id",                # SecureString, aws_cluster; read by the manager and workers
    "notebook_images": "hub/notebook-images",      # String, written by jupyterhub, read by the worker image bake
    "backup_bucket": "hub/backup-bucket",          # String, aws_cluster; read by the manager's play
}
# The Name tag of each parameter: <cluster_name><this>.
SSM_NAME_TAGS = {
    "join_token": "-swarm-worker-join-token",
    "manager_addr": "-swarm-manager-addr",
    "oauth_client_secret": "-oauth-client-secret",
    "cookie_secret": "-cookie-secret",
    "proxy_token": "-proxy-token",
    "efs_id": "-efs-file-system-id",
    "notebook_images": "-hub-notebook-images",
    "backup_bucket": "-backup-bucket",
}

# ---- AWS resources: <cluster_name><suffix> -------------------------------------------------------------------
RESOURCE_SUFFIXES = {
    "vpc": "-vpc",
    "igw": "-igw",
    "nat": "-nat",                    # the NAT gateway and its Elastic IP
    "public": "-public",              # route table of the public subnets
    "private": "-private",            # route table of the private subnets
    "hub": "-hub",                    # security group of the manager (80/443, SSH from admins)
    "nodes": "-nodes",                # security group of every swarm node
    "efs": "-efs",                    # security group of the EFS mount targets
    "home": "-home",                  # the EFS file system (users' homes)
    "manager": "-manager",            # the manager instance, its Elastic IP, its IAM role and instance profile
    "hub_state": "-hub-state",        # the manager's EBS volume of the hub's state
    "worker": "-worker",              # the workers' launch template, IAM role and instance profile; workers' Name
    "workers": "-workers",            # the workers' Auto Scaling group
    "launch": "-launch",              # its launch lifecycle hook (completed by a worker's boot)
    "drain": "-drain",                # its termination lifecycle hook (completed by the hub's scaler)
    "cpu_target": "-cpu-target",      # its opt-in CPU target-tracking policy
    "worker_builder": "-worker-builder",   # the worker image's builder instance
    "registry_pull": "-registry-pull",     # IAM role, pull only, the manager assumes for the spawns' ECR token
    "dashboard": "-dashboard",        # the CloudWatch dashboard of the cluster
}
# Names that continue after the prefix: <prefix><zone letter>, <prefix><content hash>, <prefix><account id>.
RESOURCE_PREFIXES = {
    "public_subnet_prefix": "-public-",
    "private_subnet_prefix": "-private-",
    "worker_image_prefix": "-worker-",
    "backup_bucket_prefix": "-hub-backups-",
}
# CloudWatch namespace of the scaler's and the hub-metrics exporter's metrics (the manager may put metrics only
# there). Both run alone in a container and keep their own copy (jhs_scaler.NAMESPACE, jhs_hub_metrics.NAMESPACE);
# tests/test_names.py checks they agree.
METRICS_NAMESPACE = "JupyterHubSwarm"


def names(cluster) -> dict:
    """Every name of the cluster: resources by RESOURCE_SUFFIXES' and RESOURCE_PREFIXES' keys, and
    ssm_prefix (/<cluster_name>), ssm (the parameters' paths), ssm_tags (their Name tags), ecr_prefix
    (<cluster_name>/, the start of every ECR repository name), log_group (the CloudWatch Logs group of the
    containers' logs with docker_engine's awslogs driver) and metrics_namespace.

    The name is not checked here (a preflight does, with cluster_name_error), so a message can still be built.
    """
    cluster = str(cluster)
    found = {key: cluster + suffix for key, suffix in RESOURCE_SUFFIXES.items()}
    found.update({key: cluster + prefix for key, prefix in RESOURCE_PREFIXES.items()})
    found.update(
        ssm_prefix=f"/{cluster}",
        ssm={key: f"/{cluster}/{path}" for key, path in SSM_PARAMETERS.items()},
        ssm_tags={key: cluster + tag for key, tag in SSM_NAME_TAGS.items()},
        ecr_prefix=f"{cluster}/",
        log_group=f"/{cluster}/containers",
        metrics_namespace=METRICS_NAMESPACE,
    )
    return found


# ---- AWS regions ---------------------------------------------------------------------------------------------
# The partitions whose ARNs and endpoints the roles build (aws_cluster's partition and ECR registry host).
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
_regions = None


def regions() -> tuple:
    """The regions of PARTITIONS that botocore knows, sorted (its small partitions file, not the endpoint data)."""
    global _regions
    if _regions is None:
        import botocore.loaders     # here, not at the top: only region checks need it

        partitions = botocore.loaders.Loader().load_data("partitions")["partitions"]
        _regions = tuple(sorted(region for partition in partitions if partition.get("id") in PARTITIONS
                                for region in partition.get("regions", {}) if not region.endswith("-global")))
    return _regions


def region_known(value) -> bool:
    return isinstance(value, str) and value in regions()


def region_error(value) -> str:
    """'' for a known region, else the message a preflight shows."""
    if region_known(value):
        return ""
    return f"aws_region={value} is not a known AWS region; allowed: {', '.join(regions())}."


# ---- users' home directories ---------------------------------------------------------------------------------
# Owner and mode of each user's home on EFS, whoever creates it: efs_mount ahead of a first login
# (efs_mount_users) or the hub just before a server starts. The owner is the user the notebook image makes
# (roles/jupyterhub/templates/notebook.Dockerfile.j2: jovyan, uid 1000 in its own group 1000; gid 100 was
# the 'users' group of Jupyter's docker-stacks images, which this image does not have). The mode is 0700:
# every user's server runs as that one uid and the hub creates the directory as root, so no one needs the
# group's or others' bits; 0750 would only open the homes to the group.
HOME_UID = 1000
HOME_GID = 1000
HOME_MODE = "0700"


def home() -> dict:
    """{uid, gid, mode} of a user's home directory (mode as the octal string Ansible's file module takes)."""
    return {"uid": HOME_UID, "gid": HOME_GID, "mode": HOME_MODE}


# ---- the AWS SDK on an instance ---------------------------------------------------------------------------------
# An instance's AWS calls take its role's credentials from the metadata service, which botocore asks once with a
# 1 s timeout by default; just after launch, or on a loaded host, the answer can come later and a call then finds no
# credentials. Every process on an instance that calls AWS (the manager's and the builder's plays, the worker's boot)
# gets a longer wait and retries.
SDK_ON_INSTANCE_ENV = {"AWS_METADATA_SERVICE_TIMEOUT": "5", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "3"}


def sdk_env(field) -> dict:
    """The environment of AWS SDK calls made on an instance ("instance")."""
    if field != "instance":
        raise ValueError(f"sdk_env: ask for 'instance', not {field!r}")
    return dict(SDK_ON_INSTANCE_ENV)


# ---- an outbound (corporate) proxy --------------------------------------------------------------------------
# The shared setting outbound_proxy: {http: URL, https: URL (default: http), no_proxy: [host, .domain, CIDR, ...]}.
# Whatever goes through it (apt, the Docker engine's pulls, image builds, users' servers, the workers' boot) gets
# the same environment from proxy_env. These always go direct: the instance metadata service (a proxy would answer
# with its own address's credentials, or not at all) and the host itself.
PROXY_ALWAYS_DIRECT = ("localhost", "127.0.0.1", "169.254.169.254")


def proxy_error(value) -> str:
    """'' for a valid outbound_proxy (empty or unset included), else the message a preflight shows."""
    if value in (None, "", {}):
        return ""
    if not isinstance(value, dict) or set(value) - {"http", "https", "no_proxy"}:
        return ("outbound_proxy must be a dict of http, https (URLs) and no_proxy (a list of hosts, .domains and "
                f"CIDRs), got {value!r}")
    for key in ("http", "https"):
        url = value.get(key) or ""
        if url and not re.match(r"^https?://[^/\s:]+(:\d{1,5})?/?$", url):
            return f"outbound_proxy.{key}={url}: a proxy URL http://host:port (or https://host:port)"
    if (value.get("https") or "") and not (value.get("http") or ""):
        return "outbound_proxy: set http (https defaults to it); https alone leaves apt's and pulls' HTTP direct"
    no_proxy = value.get("no_proxy") or []
    if not isinstance(no_proxy, list) or not all(isinstance(h, str) and h and "," not in h and " " not in h
                                                 for h in no_proxy):
        return f"outbound_proxy.no_proxy must be a list of hosts, .domains or CIDRs (no commas), got {no_proxy!r}"
    return ""


def proxy_env(value, *direct) -> dict:
    """The environment of a process behind outbound_proxy: HTTP_PROXY, HTTPS_PROXY and NO_PROXY, and their lower-case
    spellings (curl, apt and Python read one or the other); NO_PROXY is PROXY_ALWAYS_DIRECT, the setting's no_proxy
    and `direct` (what the caller knows must not go through it). {} without a proxy."""
    if not isinstance(value, dict) or not value.get("http"):
        return {}
    http, https = value["http"], value.get("https") or value["http"]
    no_proxy = ",".join(dict.fromkeys([*PROXY_ALWAYS_DIRECT, *(value.get("no_proxy") or []),
                                       *[d for group in direct for d in ([group] if isinstance(group, str) else group)
                                         if d]]))
    env = {"HTTP_PROXY": http, "HTTPS_PROXY": https, "NO_PROXY": no_proxy}
    return {**env, **{k.lower(): v for k, v in env.items()}}
