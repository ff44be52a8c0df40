# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""swarm_ec2: amazon.aws.aws_ec2 taught the shape of one JupyterHub swarm cluster."""

from __future__ import annotations

DOCUMENTATION = r"""
name: swarm_ec2
short_description: EC2 instances of one swarm cluster, grouped by swarm role and Auto Scaling lifecycle
description:
  - Lists the EC2 instances of one cluster (tag C(jhs:cluster)) and the members of its worker Auto Scaling
    Groups, the way M(amazon.aws.aws_ec2) does (it reuses that plugin's query, host naming, host variables,
    caching and constructed features), and adds what the swarm playbooks need.
  - Groups C(swarm_managers) (tag C(jhs:role=manager)); C(swarm_workers) (Auto Scaling state C(InService));
    C(swarm_workers_joining) (C(Pending), C(Pending:Wait), C(Pending:Proceed), warm-pool states);
    C(swarm_workers_leaving) (C(Terminating), C(Terminating:Wait), C(Terminating:Proceed), C(Detaching),
    C(Detached), C(EnteringStandby), C(Standby), or no longer listed by its group); one group per Auto Scaling
    Group (C(asg_<name>)) and one per availability zone (C(az_<zone>)).
  - Host variables C(swarm_role), C(swarm_lifecycle_state), C(swarm_asg_name), C(swarm_node_pool),
    C(swarm_launch_template_version), C(swarm_availability_zone), C(swarm_manager_addr) (the manager's private
    IP), the connection variables of O(connection), and every variable M(amazon.aws.aws_ec2) sets
    (C(instance_id), C(private_ip_address), C(instance_type), C(placement), C(tags), ...).
  - The variables C(swarm_ec2_connection) (the value of O(connection)) and, with O(connection=jump),
    C(swarm_ec2_jump_host) and C(swarm_ec2_jump_user) (the jump host's address and O(jump_user)) on the group
    C(all), so plays on the control node know how the instances will be reached (the worker_image role reaches
    its builder the same way) (the aws_cluster role's preflight checks provisioning
    opens SSH with a key pair for V(direct) and V(jump)).
  - The configuration file name must end with C(.swarm_ec2.yml) or C(.swarm_ec2.yaml).
extends_documentation_fragment:
  - inventory_cache
  - constructed
  - amazon.aws.boto3
  - amazon.aws.common.plugins
  - amazon.aws.region.plugins
  - amazon.aws.assume_role.plugins
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [swarm_ec2]
  cluster_name:
    description:
      - The cluster whose instances to list, the value of their C(jhs:cluster) tag.
      - The one rule of every cluster name (plugins/module_utils/jhs_names.py), 3-28 characters of a-z, 0-9 and
        '-', starting with a letter, ending with a letter or digit, no '--'.
    type: str
    required: true
  regions:
    description:
      - The regions the cluster lives in.
      - Empty (the default) means the single region of O(region), C(AWS_REGION) or C(AWS_DEFAULT_REGION).
    type: list
    elements: str
    default: []
  worker_asg_names:
    description:
      - The Auto Scaling Groups whose members are the cluster's workers.
      - Empty (the default) means the group the aws_cluster role makes (its name from
        plugins/module_utils/jhs_names.py) and every group tagged C(jhs:cluster=<cluster_name>).
    type: list
    elements: str
    default: []
  connection:
    description:
      - How Ansible reaches the hosts. V(direct) is SSH to the private IP.
      - V(jump) is SSH to the private IP through the manager (or O(jump_host)) as C(ProxyJump); the manager
        itself is reached at the address O(manager_address) names.
      - V(ssm) is AWS Systems Manager Session Manager (C(amazon.aws.aws_ssm)); it needs O(ssm_bucket_name).
      - V(docker) is the local lab, where every instance is a container named after its instance id.
    type: str
    default: direct
    choices: [direct, jump, ssm, docker]
  jump_host:
    description:
      - The SSH jump host for O(connection=jump). Empty means the manager, at the address O(manager_address)
        names.
    type: str
  manager_address:
    description:
      - Which address of the manager O(connection=jump) connects to, directly and as the workers' jump host.
      - V(public) (the default) is its public IP (the Elastic IP), for a control node on the internet.
      - V(private) is its private IP, for a control node inside the VPC (a VPN, a bastion, or the local lab, whose
        traffic never targets a public address).
    type: str
    default: public
    choices: [public, private]
  jump_user:
    description:
      - The user on the jump host. Empty means the SSH default.
    type: str
  ssm_bucket_name:
    description:
      - The S3 bucket C(amazon.aws.aws_ssm) transfers files through; required with O(connection=ssm).
    type: str
  endpoint_url:
    description:
      - URL of the AWS API endpoint to use instead of the default AWS endpoints (the local lab's endpoint).
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_URL
      - name: AWS_ENDPOINT_URL
  filters:
    description:
      - Extra EC2 C(DescribeInstances) filters, added to the cluster's own (see M(amazon.aws.aws_ec2)).
    type: dict
    default: {}
  hostnames:
    description:
      - Host name preferences, as in M(amazon.aws.aws_ec2). The default is the instance id.
    type: list
    elements: raw
    default: [instance-id]
  strict_permissions:
    description:
      - Fail on a 403 (the default); V(false) skips a region the credentials may not read.
    type: bool
    default: true
  route53_enabled:
    description: Use Route53 names as host names, as in M(amazon.aws.aws_ec2).
    type: bool
    default: false
  route53_hostnames:
    description: The Route53 name suffixes to consider, as in M(amazon.aws.aws_ec2).
    type: list
    elements: str
    default: []
  route53_excluded_zones:
    description: The Route53 zones to ignore, as in M(amazon.aws.aws_ec2).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
# inventories/aws/cluster.swarm_ec2.yml: workers reached through the manager
plugin: swarm_ec2
cluster_name: myhub
regions: [eu-west-1]
connection: jump
jump_user: admin

---
# inventories/lab/cluster.swarm_ec2.yml: the local lab (endpoint from AWS_ENDPOINT_URL)
plugin: swarm_ec2
cluster_name: labhub
regions: [eu-west-1]
connection: docker
keyed_groups:
  - key: swarm_node_pool
    prefix: pool
"""

import importlib.util
import re
import sys
from datetime import date, datetime
from pathlib import Path

try:
    import botocore
    import botocore.loaders
except ImportError:
    pass  # reported by require_aws_sdk()

from ansible.errors import AnsibleParserError
from ansible_collections.amazon.aws.plugins.inventory.aws_ec2 import InventoryModule as AwsEc2InventoryModule
from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict
from ansible_collections.amazon.aws.plugins.plugin_utils.inventory import AWSInventoryBase

# The shared names and rules (cluster_name, the workers' group, regions): plugins/module_utils/jhs_names.py, loaded
# by its path as the filters of plugins/filter/jhs_names.py load it (a controller plugin cannot import it otherwise;
# why the two copies of these lines stay: the comment above the loader in plugins/filter/jhs_names.py).
_NAMES_SPEC = importlib.util.spec_from_file_location(
    "jhs_names_module_utils", Path(__file__).resolve().parent.parent / "module_utils" / "jhs_names.py")
jhs_names = sys.modules.get(_NAMES_SPEC.name)
if jhs_names is None:
    jhs_names = importlib.util.module_from_spec(_NAMES_SPEC)
    _NAMES_SPEC.loader.exec_module(jhs_names)
    sys.modules[_NAMES_SPEC.name] = jhs_names

CLUSTER_TAG = "jhs:cluster"
ROLE_TAG = "jhs:role"
POOL_TAG = "jhs:node-pool"
ASG_TAG = "aws:autoscaling:groupName"
LT_VERSION_TAG = "aws:ec2launchtemplate:version"
DEFAULT_POOL = "default"

GROUP_MANAGERS = "swarm_managers"
GROUP_WORKERS = "swarm_workers"
GROUP_JOINING = "swarm_workers_joining"
GROUP_LEAVING = "swarm_workers_leaving"
SWARM_GROUPS = (GROUP_MANAGERS, GROUP_WORKERS, GROUP_JOINING, GROUP_LEAVING)

# Auto Scaling lifecycle states on the way out of service; InService is healthy; the rest are on the way in.
LEAVING_STATES = frozenset({
    "Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached",
    "EnteringStandby", "Standby", "Warmed:Terminating", "Warmed:Terminating:Wait",
    "Warmed:Terminating:Proceed", "Warmed:Terminated",
})
# The state of an instance that carries an ASG's tag but which the ASG no longer lists.
NOT_LISTED = "NotListed"
DESCRIBE_ASG_NAMES_MAX = 100         # DescribeAutoScalingGroups: at most 100 names per call
DESCRIBE_ASG_INSTANCES_MAX = 50      # DescribeAutoScalingInstances: at most 50 ids per call
EC2_FILTER_VALUES_MAX = 200          # DescribeInstances: at most 200 values per filter
NO_CREDENTIALS = ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                  "the access_key/secret_key or profile options, or run where an instance role applies")


def _json_safe(value):
    """boto3 answers with datetimes; the JSON cache gives back strings. Use strings on both paths."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _group_safe(name):
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _chunks(items, size):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _TemplatedOptions(AWSInventoryBase.TemplatedOptions):
    """The base class's option templating, without the argument ansible-core 2.19 deprecates."""

    def _render(self, value):
        if isinstance(value, str) and self.templar.is_template(value):
            return self.templar.template(value)
        return value

    def get(self, *args):
        value = self.original_options.get(*args)
        if not value or not self.templar or args[0] not in self.TEMPLATABLE_OPTIONS:
            return value
        if isinstance(value, dict):
            return {k: self._render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v) for v in value]
        return self._render(value)


class InventoryModule(AwsEc2InventoryModule):
    NAME = "swarm_ec2"
    INVENTORY_FILE_SUFFIXES = (".swarm_ec2.yml", ".swarm_ec2.yaml")

    def get_options(self, *args):
        return _TemplatedOptions(self.templar, super(AWSInventoryBase, self).get_options(*args))

    def get_option(self, option, hostvars=None):
        value = super(AWSInventoryBase, self).get_option(option, hostvars)
        return _TemplatedOptions(self.templar, {option: value}).get(option)

    def _do_fail(self, message):
        raise AnsibleParserError(f"swarm_ec2: {message}")

    # ---- settings -------------------------------------------------------------------------------------

    def _read_settings(self):
        """Validate the configuration before any API call; every message names the setting at fault."""
        cluster = self.get_option("cluster_name")
        if not jhs_names.cluster_name_valid(cluster):
            self.fail_aws(jhs_names.cluster_name_error(cluster))
        regions = self.get_option("regions") or ([self.region] if self.region else [])
        if not regions:
            self.fail_aws("no region: set regions in the inventory file, or AWS_REGION / AWS_DEFAULT_REGION")
        unknown = [r for r in regions if not jhs_names.region_known(r)]
        if unknown:
            self.fail_aws(f"unknown region(s) {', '.join(map(repr, unknown))} in regions: "
                          f"use AWS region names such as eu-west-1 or us-east-1")
        connection = self.get_option("connection")
        if connection == "ssm" and not self.get_option("ssm_bucket_name"):
            self.fail_aws("connection: ssm needs ssm_bucket_name (the S3 bucket amazon.aws.aws_ssm transfers "
                          "files through)")
        hostnames = self.get_option("hostnames")
        if not all(isinstance(h, (dict, str)) for h in hostnames):
            self.fail_aws("hostnames must be a list of strings and dicts")
        asg_names = self.get_option("worker_asg_names")
        return {"cluster": cluster, "regions": list(dict.fromkeys(regions)), "connection": connection,
                "asg_names": list(asg_names), "discover_asgs": not asg_names}

    def _boto3_regions(self, service):
        # aws_ec2 would list every region; a cluster lives in the ones its configuration names.
        return self._settings["regions"]

    # ---- queries ---------------------------------------------------------------------------------------

    def _aws_call(self, what, region, call):
        try:
            return call()
        except botocore.exceptions.NoCredentialsError:
            self.fail_aws(NO_CREDENTIALS)
        except botocore.exceptions.EndpointConnectionError as e:
            self.fail_aws(f"cannot reach the AWS endpoint for region {region}", exception=e)
        except is_boto3_error_code(["UnauthorizedOperation", "AccessDenied", "AccessDeniedException"]) as e:
            if not self.get_option("strict_permissions"):
                self.warn(f"swarm_ec2: skipping {what} in {region}: {e}")
                return None
            self.fail_aws(f"not allowed to {what} in {region}", exception=e)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            self.fail_aws(f"failed to {what} in {region}", exception=e)

    def _describe_asgs(self, client, region, **kwargs):
        def call():
            paginator = client.get_paginator("describe_auto_scaling_groups")
            return paginator.paginate(**kwargs).build_full_result().get("AutoScalingGroups", [])
        return self._aws_call("describe Auto Scaling groups", region, call) or []

    def _fetch_asgs(self, settings):
        """{region: {asg name: {instance id: {LifecycleState, LaunchTemplate, ...}}}} of the worker groups."""
        cluster = settings["cluster"]
        found = {}
        for region in settings["regions"]:
            client = self.client("autoscaling", region=region)
            groups = []
            if settings["discover_asgs"]:
                groups = self._describe_asgs(client, region,
                                             Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}])
            names = settings["asg_names"] or [jhs_names.names(cluster)["workers"]]
            # by name only what the tag did not find: the project tags its groups, so usually nothing
            missing = [n for n in names if n not in {g["AutoScalingGroupName"] for g in groups}]
            for batch in _chunks(missing, DESCRIBE_ASG_NAMES_MAX):
                groups += self._describe_asgs(client, region, AutoScalingGroupNames=batch)
            found[region] = {
                g["AutoScalingGroupName"]: {i["InstanceId"]: _json_safe(i) for i in g.get("Instances", [])}
                for g in groups}
        return found

    def _fetch_stray_members(self, instances, asgs):
        """Lifecycle of cluster instances tagged with an Auto Scaling Group not among the worker groups."""
        strays = {}
        for inst in instances:
            tags = boto3_tag_list_to_ansible_dict(inst.get("Tags", []))
            region = inst["Placement"]["AvailabilityZone"][:-1]
            if ASG_TAG in tags and tags[ASG_TAG] not in asgs.get(region, {}):
                strays.setdefault(region, []).append(inst["InstanceId"])
        found = {}
        for region, ids in strays.items():
            client = self.client("autoscaling", region=region)
            for batch in _chunks(ids, DESCRIBE_ASG_INSTANCES_MAX):
                def call(batch=batch):
                    paginator = client.get_paginator("describe_auto_scaling_instances")
                    result = paginator.paginate(InstanceIds=batch).build_full_result()
                    return result.get("AutoScalingInstances", [])
                for member in self._aws_call("describe Auto Scaling instances", region, call) or []:
                    found[member["InstanceId"]] = _json_safe(member)
        return found

    def _describe_instances(self, settings, filters):
        """aws_ec2's query (regions, pagination, state filter, 403s), with a clear no-credentials error."""
        try:
            strict_permissions = self.get_option("strict_permissions")
            result = self._query(settings["regions"], filters, [], strict_permissions, False)
            return result["aws_ec2"]
        except AnsibleParserError as e:
            if "Unable to locate credentials" in str(e):
                self.fail_aws(NO_CREDENTIALS)
            raise

    def _fetch(self, settings):
        asgs = self._fetch_asgs(settings)
        extra = self.get_option("filters") or {}
        by_tag = dict(extra, **{f"tag:{CLUSTER_TAG}": settings["cluster"]})
        instances = self._describe_instances(settings, [by_tag])
        # members of the worker groups that lack the cluster tag (a group that does not propagate it)
        seen = {i["InstanceId"] for i in instances}
        members = {iid for groups in asgs.values() for group in groups.values() for iid in group}
        untagged = sorted(members - seen)
        for batch in _chunks(untagged, EC2_FILTER_VALUES_MAX):
            instances += self._describe_instances(settings, [dict(extra, **{"instance-id": batch})])
        instances = [_json_safe(i) for i in sorted(instances, key=lambda i: i["InstanceId"])]
        return {"instances": instances, "asgs": asgs, "strays": self._fetch_stray_members(instances, asgs)}

    def client(self, service, **kwargs):
        # one client per service and region for the whole parse: building one loads botocore's service model
        key = (service, tuple(sorted(kwargs.items())))
        if key not in self._clients:
            self._clients[key] = super().client(service, **kwargs)
        return self._clients[key]

    # ---- classification --------------------------------------------------------------------------------

    @staticmethod
    def _worker_group(lifecycle_state, ec2_state):
        if lifecycle_state in LEAVING_STATES or lifecycle_state == NOT_LISTED:
            return GROUP_LEAVING
        if ec2_state in ("stopping", "stopped"):
            return GROUP_LEAVING
        if lifecycle_state == "InService" and ec2_state == "running":
            return GROUP_WORKERS
        if lifecycle_state is None and ec2_state == "running":
            return GROUP_WORKERS      # a worker outside any Auto Scaling Group: its EC2 state is all there is
        return GROUP_JOINING

    def _classify(self, data, settings):
        """Per instance id: the swarm facts this plugin adds; nothing for an instance of another cluster."""
        cluster = settings["cluster"]
        members = {}
        for region_groups in data["asgs"].values():
            for asg_name, group_members in region_groups.items():
                for iid, member in group_members.items():
                    members[iid] = dict(member, AutoScalingGroupName=asg_name)
        members.update(data["strays"])
        worker_asgs = {name for groups in data["asgs"].values() for name in groups}

        facts = {}
        for inst in data["instances"]:
            iid = inst["InstanceId"]
            tags = boto3_tag_list_to_ansible_dict(inst.get("Tags", []))
            asg_name = tags.get(ASG_TAG)
            in_cluster = tags.get(CLUSTER_TAG) == cluster or asg_name in worker_asgs
            if not in_cluster or (tags.get(CLUSTER_TAG) not in (None, cluster)):
                continue        # another cluster's instance that matched a shared filter
            role = tags.get(ROLE_TAG) or ("worker" if asg_name else None)
            if role not in ("manager", "worker"):
                continue        # e.g. an image builder: not a swarm node
            member = members.get(iid)
            lifecycle = member["LifecycleState"] if member else (NOT_LISTED if asg_name else None)
            template = (member or {}).get("LaunchTemplate") or {}
            facts[iid] = {
                "swarm_cluster_name": cluster,
                "swarm_role": role,
                "swarm_node_pool": tags.get(POOL_TAG) or (DEFAULT_POOL if role == "worker" else None),
                "swarm_asg_name": asg_name,
                "swarm_lifecycle_state": lifecycle,
                "swarm_launch_template_version": template.get("Version") or tags.get(LT_VERSION_TAG),
                "swarm_availability_zone": inst["Placement"]["AvailabilityZone"],
                "_group": (GROUP_MANAGERS if role == "manager"
                           else self._worker_group(lifecycle, inst["State"]["Name"])),
            }
        return facts

    @staticmethod
    def _primary_manager(instances, facts):
        managers = [i for i in instances if facts.get(i["InstanceId"], {}).get("swarm_role") == "manager"]
        # the longest-running manager that is running: the one that initialised the swarm
        managers.sort(key=lambda i: (i["State"]["Name"] != "running", str(i.get("LaunchTime")),
                                     i["InstanceId"]))
        return managers[0] if managers else None

    def _connection_vars(self, inst, fact, manager, settings):
        private_ip = inst.get("PrivateIpAddress")
        conn = {"ansible_host": private_ip} if private_ip else {}
        style = settings["connection"]
        if style == "docker":
            conn.update(ansible_connection="community.docker.docker", ansible_docker_host=inst["InstanceId"])
        elif style == "ssm":
            conn.update(ansible_connection="amazon.aws.aws_ssm",
                        ansible_aws_ssm_instance_id=inst["InstanceId"],
                        ansible_aws_ssm_region=inst["Placement"]["AvailabilityZone"][:-1],
                        ansible_aws_ssm_bucket_name=self.get_option("ssm_bucket_name"))
        elif style == "jump":
            jump_host = self._jump_host(manager)
            if fact["swarm_role"] == "manager" and not self.get_option("jump_host"):
                if self.get_option("manager_address") == "public":
                    conn["ansible_host"] = inst.get("PublicIpAddress") or private_ip
            elif jump_host:
                user = self.get_option("jump_user")
                conn["ansible_ssh_common_args"] = f"-o ProxyJump={user + '@' if user else ''}{jump_host}"
        return conn

    def _jump_host(self, manager):
        """The address of connection: jump's jump host: O(jump_host), else the manager's public or private IP."""
        manager = manager or {}
        return self.get_option("jump_host") or (
            manager.get("PrivateIpAddress") if self.get_option("manager_address") == "private"
            else manager.get("PublicIpAddress")) or ""

    # ---- inventory -------------------------------------------------------------------------------------

    def _populate_cluster(self, data, settings):
        for group in SWARM_GROUPS:
            self.inventory.add_group(group)
        facts = self._classify(data, settings)
        instances = [i for i in data["instances"] if i["InstanceId"] in facts]
        if not instances:
            self.warn(f"swarm_ec2: no instance of cluster {settings['cluster']!r} found in "
                      f"{', '.join(settings['regions'])}: the inventory is empty")
            return
        manager = self._primary_manager(instances, facts)
        manager_addr = manager.get("PrivateIpAddress") if manager else None
        if settings["connection"] == "jump":
            self.inventory.set_variable("all", "swarm_ec2_jump_host", self._jump_host(manager))
            self.inventory.set_variable("all", "swarm_ec2_jump_user", self.get_option("jump_user") or "")
        if manager is None:
            self.warn(f"swarm_ec2: cluster {settings['cluster']!r} has no manager (tag {ROLE_TAG}=manager): "
                      "swarm_manager_addr is not set")
        strict = self.get_option("strict")
        hostnames = self.get_option("hostnames")
        for inst in instances:
            fact = dict(facts[inst["InstanceId"]])
            group = fact.pop("_group")
            fact["swarm_manager_addr"] = manager_addr
            for name, host_vars in self.iter_entry([inst], hostnames):
                host_vars.update(fact)
                host_vars.update(self._connection_vars(inst, fact, manager, settings))
                self.inventory.add_host(name, group=group)
                extra_groups = ["az_" + _group_safe(fact["swarm_availability_zone"])]
                if fact["swarm_asg_name"]:
                    extra_groups.append("asg_" + _group_safe(fact["swarm_asg_name"]))
                for extra in extra_groups:
                    self.inventory.add_host(name, group=self.inventory.add_group(extra))
                for key, value in host_vars.items():
                    self.inventory.set_variable(name, key, value)
                self._set_composite_vars(self.get_option("compose"), host_vars, name, strict=strict)
                self._add_host_to_composed_groups(self.get_option("groups"), host_vars, name, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, name,
                                               strict=strict)

    def parse(self, inventory, loader, path, cache=True):
        # aws_ec2's parse queries every instance its filters allow; ours reads the cluster's shape instead.
        self._clients = {}
        AWSInventoryBase.parse(self, inventory, loader, path, cache=cache)
        self._settings = self._read_settings()
        # For every host, the control node too: aws_cluster's preflight checks provisioning opens what this
        # connection needs (SSH and a key pair for direct and jump).
        self.inventory.set_variable("all", "swarm_ec2_connection", self._settings["connection"])
        result_was_cached, data = self.get_cached_result(path, cache)
        if not result_was_cached:
            data = self._fetch(self._settings)
        if self.route53_enabled:
            self.route53_resource_record_mapping = self._map_route53_records()
        self._populate_cluster(data, self._settings)
        self.update_cached_result(path, cache, data)
