"""The swarm_ec2 inventory plugin against the local AWS endpoint (moto server), through ansible-inventory."""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import yaml

from conftest import REGION, ROOT, VENV_BIN, jhs_names

CLUSTER_A = "invt-alpha"
CLUSTER_B = "invt-beta"
CLUSTER_C = "invt-gamma"   # its ASG carries no jhs:* tags: found by the conventional name
WORKERS_A = jhs_names(CLUSTER_A)["workers"]   # cluster A's Auto Scaling group
AMI = "ami-12c6146b"   # one of the images moto knows


def _clients(url):
    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
              aws_secret_access_key="testing")
    return boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)


def _make_cluster(url, name, octet, workers=2, tag_asg=True):
    """A manager with a public IP, a builder, and the cluster's ASG (jhs_names' workers) across two AZs."""
    names = jhs_names(name)
    ec2, asg = _clients(url)
    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{octet}.{i + 1}.0/24",
                                 AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]

    def tags(role, name_tag):
        return [{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": name_tag}, {"Key": "jhs:cluster", "Value": name},
            {"Key": "jhs:role", "Value": role}]}]

    manager = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.small",
                                NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets[0],
                                                    "AssociatePublicIpAddress": True}],
                                TagSpecifications=tags("manager", names["manager"]))["Instances"][0]["InstanceId"]
    builder = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnets[0],   # Name: the test's own
                                TagSpecifications=tags("builder", f"{name}-builder"))["Instances"][0]["InstanceId"]
    ec2.create_launch_template(LaunchTemplateName=names["worker"],
                               LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    asg.create_auto_scaling_group(
        AutoScalingGroupName=names["workers"], MinSize=0, MaxSize=10, DesiredCapacity=workers,
        LaunchTemplate={"LaunchTemplateName": names["worker"], "Version": "$Latest"},
        VPCZoneIdentifier=",".join(subnets),
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": names["workers"],
               "ResourceType": "auto-scaling-group"}
              for k, v in (("Name", names["worker"]), ("jhs:cluster", name), ("jhs:role", "worker"),
                           ("jhs:node-pool", "default")) if tag_asg or k == "Name"])
    return {"manager": manager, "builder": builder}


def _describe(url, ids):
    ec2, _ = _clients(url)
    reservations = ec2.describe_instances(InstanceIds=list(ids))["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def _asg_members(url, name):
    _, asg = _clients(url)
    groups = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[jhs_names(name)["workers"]])["AutoScalingGroups"]
    group = groups[0]
    return {i["InstanceId"]: i for i in group["Instances"]}


@pytest.fixture(scope="module")
def clusters(moto_endpoint):
    """Cluster A: manager, builder, 3 workers of which one is put in Standby. Cluster B: manager, 2 workers.
    An untagged instance stands for everything else in the account."""
    a = _make_cluster(moto_endpoint, CLUSTER_A, 31, workers=3)
    b = _make_cluster(moto_endpoint, CLUSTER_B, 32, workers=2)
    c = _make_cluster(moto_endpoint, CLUSTER_C, 33, workers=2, tag_asg=False)
    ec2, asg = _clients(moto_endpoint)
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1)
    # A launch lifecycle hook as the project sets it up; moto does not hold instances in Pending:Wait for it
    # (see test_lifecycle_wait_states_with_stubbed_autoscaling for that path).
    asg.put_lifecycle_hook(LifecycleHookName="join-swarm", AutoScalingGroupName=WORKERS_A,
                           LifecycleTransition="autoscaling:EC2_INSTANCE_LAUNCHING", HeartbeatTimeout=300,
                           DefaultResult="ABANDON")
    standby = sorted(_asg_members(moto_endpoint, CLUSTER_A))[0]
    asg.enter_standby(AutoScalingGroupName=WORKERS_A, InstanceIds=[standby],
                      ShouldDecrementDesiredCapacity=True)
    for cluster, name in ((a, CLUSTER_A), (b, CLUSTER_B), (c, CLUSTER_C)):
        cluster["members"] = _asg_members(moto_endpoint, name)
        cluster["instances"] = _describe(moto_endpoint, [cluster["manager"], *cluster["members"]])
    a["standby"] = standby
    return {CLUSTER_A: a, CLUSTER_B: b, CLUSTER_C: c}


_loader_ready = []


def load_plugin(kind="inventory", name="swarm_ec2", *args):
    """The plugin as Ansible loads it, in this process (for what a subprocess cannot show)."""
    from ansible.plugins.loader import connection_loader, init_plugin_loader, inventory_loader

    if not _loader_ready:
        init_plugin_loader()
        inventory_loader.add_directory(str(ROOT / "plugins" / "inventory"))
        _loader_ready.append(True)
    return (inventory_loader if kind == "inventory" else connection_loader).get(name, *args)


def write_config(tmp_path, name="cluster", **options):
    path = tmp_path / f"{name}.swarm_ec2.yml"
    path.write_text(yaml.safe_dump({"plugin": "swarm_ec2", "regions": [REGION], **options}))
    return path


def ansible_inventory(env, config, *args, check=True):
    proc = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(config), *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def inventory_list(env, config, *args):
    data = json.loads(ansible_inventory(env, config, "--list", *args).stdout)
    groups = {g: set(v.get("hosts", [])) for g, v in data.items() if g != "_meta"}
    return groups, data["_meta"]["hostvars"]


def plain(value):
    """ansible-inventory marks values from the API as unsafe: {"__ansible_unsafe": "x"} -> "x"."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# ---- grouping ------------------------------------------------------------------------------------------


def test_groups_of_one_cluster(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    groups, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A))
    in_service = {i for i, m in a["members"].items() if m["LifecycleState"] == "InService"}
    assert len(in_service) == 2
    assert groups["swarm_managers"] == {a["manager"]}
    assert groups["swarm_workers"] == in_service
    assert groups["swarm_workers_leaving"] == {a["standby"]}
    assert groups.get("swarm_workers_joining", set()) == set()
    assert groups[f"asg_{CLUSTER_A.replace('-', '_')}_workers"] == set(a["members"])
    by_az = {}
    for iid, inst in a["instances"].items():
        by_az.setdefault("az_" + inst["Placement"]["AvailabilityZone"].replace("-", "_"), set()).add(iid)
    for group, hosts in by_az.items():
        assert groups[group] == hosts
    # the builder is no swarm node; the untagged instance and cluster B are not ours
    assert set(hostvars) == {a["manager"], *a["members"]}


def test_host_variables(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A))
    manager_ip = a["instances"][a["manager"]]["PrivateIpAddress"]
    for iid, inst in a["instances"].items():
        hv = plain(hostvars[iid])
        assert hv["instance_id"] == iid
        assert hv["private_ip_address"] == inst["PrivateIpAddress"]
        assert hv["ansible_host"] == inst["PrivateIpAddress"]
        assert hv["instance_type"] == inst["InstanceType"]
        assert hv["swarm_availability_zone"] == inst["Placement"]["AvailabilityZone"]
        assert hv["swarm_manager_addr"] == manager_ip
        assert hv["swarm_cluster_name"] == CLUSTER_A
    for iid, member in a["members"].items():
        hv = plain(hostvars[iid])
        assert hv["swarm_role"] == "worker"
        assert hv["swarm_lifecycle_state"] == member["LifecycleState"]
        assert hv["swarm_launch_template_version"] == member["LaunchTemplate"]["Version"] == "1"
        assert hv["swarm_asg_name"] == WORKERS_A
        assert hv["swarm_node_pool"] == "default"
    manager = plain(hostvars[a["manager"]])
    assert manager["swarm_role"] == "manager" and manager["swarm_lifecycle_state"] is None


def test_two_clusters_in_one_account_stay_apart(clusters, aws_env, tmp_path):
    a, b = clusters[CLUSTER_A], clusters[CLUSTER_B]
    groups_a, hv_a = inventory_list(aws_env, write_config(tmp_path, "a", cluster_name=CLUSTER_A))
    groups_b, hv_b = inventory_list(aws_env, write_config(tmp_path, "b", cluster_name=CLUSTER_B))
    assert set(hv_b) == {b["manager"], *b["members"]}
    assert not set(hv_a) & set(hv_b)
    assert groups_b["swarm_managers"] == {b["manager"]}
    assert groups_b["swarm_workers"] == set(b["members"])
    b_manager_ip = b["instances"][b["manager"]]["PrivateIpAddress"]
    assert {plain(v)["swarm_manager_addr"] for v in hv_b.values()} == {b_manager_ip}


def test_workers_of_an_untagged_asg_found_by_its_name(clusters, aws_env, tmp_path):
    c = clusters[CLUSTER_C]
    for iid in c["members"]:
        assert "jhs:cluster" not in {t["Key"] for t in c["instances"][iid].get("Tags", [])}
    groups, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_C))
    assert groups["swarm_managers"] == {c["manager"]}
    assert groups["swarm_workers"] == set(c["members"])
    assert groups[f"asg_{CLUSTER_C.replace('-', '_')}_workers"] == set(c["members"])
    assert {plain(hostvars[i])["swarm_node_pool"] for i in c["members"]} == {"default"}


def test_member_of_a_group_not_configured_gets_its_state_from_describe_auto_scaling_instances(
        clusters, aws_env, tmp_path, counting_proxy):
    """worker_asg_names names another group: the cluster's workers still carry their own group's tag, and their
    lifecycle comes from DescribeAutoScalingInstances."""
    a = clusters[CLUSTER_A]
    config = write_config(tmp_path, cluster_name=CLUSTER_A, worker_asg_names=[f"{CLUSTER_A}-other"])
    groups, hostvars = inventory_list(dict(aws_env, AWS_ENDPOINT_URL=counting_proxy.url), config)
    assert any(b"DescribeAutoScalingInstances" in body for _, _, body in counting_proxy.requests)
    assert groups["swarm_workers_leaving"] == {a["standby"]}
    assert groups["swarm_workers"] == set(a["members"]) - {a["standby"]}
    for iid, member in a["members"].items():
        assert plain(hostvars[iid])["swarm_lifecycle_state"] == member["LifecycleState"]


def test_graph_output(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    out = ansible_inventory(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A), "--graph").stdout
    lines = [line.strip() for line in out.splitlines()]
    managers = lines.index("|--@swarm_managers:")
    assert lines[managers + 1] == f"|  |--{a['manager']}"
    workers = lines.index("|--@swarm_workers:")
    shown = {line.removeprefix("|  |--") for line in lines[workers + 1:workers + 3]}
    assert shown == {i for i, m in a["members"].items() if m["LifecycleState"] == "InService"}
    assert "|--@swarm_workers_leaving:" in lines and f"|  |--{a['standby']}" in lines


def test_lab_config_reads_the_endpoint_from_the_environment(clusters, aws_env, tmp_path):
    """The committed lab file, cluster name changed: endpoint from AWS_ENDPOINT_URL, SSH as on AWS (jump), with the
    manager at its private address (the lab's traffic never targets a public one)."""
    a = clusters[CLUSTER_A]
    manager = a["instances"][a["manager"]]
    lab = yaml.safe_load((ROOT / "inventories/lab/cluster.swarm_ec2.yml").read_text())
    assert "endpoint_url" not in lab and lab["connection"] == "jump" and lab["cluster_name"] == "labhub"
    assert lab["manager_address"] == "private"
    lab["cluster_name"] = CLUSTER_A
    config = tmp_path / "cluster.swarm_ec2.yml"
    config.write_text(yaml.safe_dump(lab))
    groups, hostvars = inventory_list(aws_env, config)
    assert groups["swarm_managers"] == {a["manager"]}
    assert groups["pool_default"] == set(a["members"])
    assert manager.get("PublicIpAddress") and manager["PublicIpAddress"] != manager["PrivateIpAddress"]
    hv = plain(hostvars[a["manager"]])
    assert hv["ansible_host"] == manager["PrivateIpAddress"] and "ansible_ssh_common_args" not in hv
    assert hv["swarm_ec2_jump_host"] == manager["PrivateIpAddress"] and hv["swarm_ec2_jump_user"] == "admin"
    for iid in a["members"]:
        hv = plain(hostvars[iid])
        assert "ansible_connection" not in hv   # ssh, Ansible's default
        assert hv["ansible_host"] == a["instances"][iid]["PrivateIpAddress"]
        assert hv["ansible_ssh_common_args"] == f"-o ProxyJump=admin@{manager['PrivateIpAddress']}"


def test_connection_docker_remains_an_option(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A, connection="docker"))
    for iid in a["instances"]:
        hv = plain(hostvars[iid])
        assert hv["ansible_connection"] == "community.docker.docker"
        assert hv["ansible_docker_host"] == iid


def test_aws_config_parses(aws_env):
    """The committed AWS example, verbatim: valid for the plugin (here its cluster has no instance)."""
    proc = ansible_inventory(aws_env, ROOT / "inventories/aws/cluster.swarm_ec2.yml", "--graph")
    assert "no instance of cluster 'myhub' found" in " ".join(proc.stderr.split())
    assert "@swarm_workers:" in proc.stdout


def test_aws_example_tells_every_host_how_the_instances_are_reached(aws_env):
    """The whole AWS example directory: the plugin puts its connection on the group all, so the control node's
    provisioning play (aws_cluster's preflight) sees it; the example reaches nodes as admin with sudo."""
    proc = ansible_inventory(aws_env, ROOT / "inventories/aws", "--host", "localhost")
    hv = plain(json.loads(proc.stdout))
    assert hv["swarm_ec2_connection"] == "jump"
    assert hv["aws_cluster_key_name"] and hv["aws_cluster_ssh_admin_cidrs"]
    assert hv["ansible_user"] == "admin" and hv["ansible_become"] == "{{ inventory_hostname != 'localhost' }}"


# ---- connection styles ---------------------------------------------------------------------------------


def test_connection_jump_through_the_manager(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    manager = a["instances"][a["manager"]]
    assert manager.get("PublicIpAddress")
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A, connection="jump",
                                                       jump_user="admin"))
    assert plain(hostvars[a["manager"]])["ansible_host"] == manager["PublicIpAddress"]
    assert "ansible_ssh_common_args" not in hostvars[a["manager"]]
    for iid in a["members"]:
        hv = plain(hostvars[iid])
        assert hv["ansible_host"] == a["instances"][iid]["PrivateIpAddress"]
        assert hv["ansible_ssh_common_args"] == f"-o ProxyJump=admin@{manager['PublicIpAddress']}"
        assert hv["swarm_ec2_jump_host"] == manager["PublicIpAddress"] and hv["swarm_ec2_jump_user"] == "admin"
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A, connection="jump",
                                                       jump_host="bastion.example.org"))
    assert {plain(hostvars[i])["ansible_ssh_common_args"] for i in a["instances"]} == {
        "-o ProxyJump=bastion.example.org"}


def test_connection_ssm(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A, connection="ssm",
                                                       ssm_bucket_name="invt-ssm-transfer"))
    for iid in a["instances"]:
        hv = plain(hostvars[iid])
        assert hv["ansible_connection"] == "amazon.aws.aws_ssm"
        assert hv["ansible_aws_ssm_instance_id"] == iid
        assert hv["ansible_aws_ssm_region"] == REGION
        assert hv["ansible_aws_ssm_bucket_name"] == "invt-ssm-transfer"


def test_connection_direct_is_the_default(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    _, hostvars = inventory_list(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A))
    for iid, inst in a["instances"].items():
        hv = plain(hostvars[iid])
        assert hv["ansible_host"] == inst["PrivateIpAddress"]
        assert "ansible_connection" not in hv and "ansible_ssh_common_args" not in hv


def test_docker_connection_reaches_the_container_named_after_the_instance():
    """community.docker.docker reads remote_addr from inventory_hostname, ansible_host, ansible_docker_host;
    the last one set wins, so ansible_docker_host (the instance id) beats ansible_host (the private IP)."""
    from ansible.playbook.play_context import PlayContext

    conn = load_plugin("connection", "community.docker.docker", PlayContext(), None)
    conn.set_options(var_options={"inventory_hostname": "i-0123456789abcdef0", "ansible_host": "10.10.1.5",
                                  "ansible_docker_host": "i-0123456789abcdef0"})
    assert conn.get_option("remote_addr") == "i-0123456789abcdef0"


# ---- constructed ---------------------------------------------------------------------------------------


def test_compose_groups_keyed_groups(clusters, aws_env, tmp_path):
    a = clusters[CLUSTER_A]
    config = write_config(tmp_path, cluster_name=CLUSTER_A,
                          compose={"ansible_user": "'admin'", "swarm_label_az": "swarm_availability_zone"},
                          groups={"big_nodes": "instance_type == 't3.small'"},
                          keyed_groups=[{"key": "swarm_lifecycle_state", "prefix": "lifecycle"}])
    groups, hostvars = inventory_list(aws_env, config)
    assert groups["big_nodes"] == {a["manager"]}
    assert groups["lifecycle_Standby"] == {a["standby"]}
    assert len(groups["lifecycle_InService"]) == 2
    for iid, inst in a["instances"].items():
        hv = plain(hostvars[iid])
        assert hv["ansible_user"] == "admin"
        assert hv["swarm_label_az"] == inst["Placement"]["AvailabilityZone"]


def test_strict_fails_on_an_undefined_variable(clusters, aws_env, tmp_path):
    config = write_config(tmp_path, cluster_name=CLUSTER_A, strict=True, compose={"x": "no_such_variable.y"})
    env = dict(aws_env, ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    proc = ansible_inventory(env, config, "--list", check=False)
    assert proc.returncode != 0
    assert "no_such_variable" in proc.stderr


# ---- cache ---------------------------------------------------------------------------------------------


class CountingProxy:
    """A loopback HTTP proxy in front of the moto server that counts the API requests it forwards."""

    def __init__(self, target):
        self.target = urlsplit(target)
        self.requests = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path, body[:200]))
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=30)
                upstream.request(self.command, self.path, body=body,
                                 headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                resp = upstream.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counting_proxy(moto_endpoint):
    proxy = CountingProxy(moto_endpoint)
    yield proxy
    proxy.close()


def test_cached_second_parse_makes_no_api_call(clusters, aws_env, tmp_path, counting_proxy):
    cache_dir = tmp_path / "cache"
    config = write_config(tmp_path, cluster_name=CLUSTER_A, cache=True,
                          cache_plugin="ansible.builtin.jsonfile", cache_connection=str(cache_dir),
                          cache_timeout=600)
    env = dict(aws_env, AWS_ENDPOINT_URL=counting_proxy.url)
    cold = ansible_inventory(env, config, "--list").stdout
    cold_calls = len(counting_proxy.requests)
    assert cold_calls >= 2     # DescribeAutoScalingGroups by tag, DescribeInstances by tag
    assert any(b"DescribeAutoScalingGroups" in body for _, _, body in counting_proxy.requests)
    assert any(b"DescribeInstances" in body for _, _, body in counting_proxy.requests)
    assert list(cache_dir.iterdir())

    counting_proxy.requests.clear()
    cached = ansible_inventory(env, config, "--list").stdout
    assert counting_proxy.requests == []
    assert json.loads(cached) == json.loads(cold)

    ansible_inventory(env, config, "--list", "--flush-cache")
    assert len(counting_proxy.requests) == cold_calls


# ---- errors --------------------------------------------------------------------------------------------


def failing(env, config):
    env = dict(env, ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    proc = ansible_inventory(env, config, "--graph", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


def test_error_no_credentials(aws_env, tmp_path):
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    # nowhere else to find credentials: no files, no profile, and never the instance metadata endpoint
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"))
    err = failing(env, write_config(tmp_path, cluster_name=CLUSTER_A))
    assert "swarm_ec2: no AWS credentials found" in err


def test_error_unknown_region(aws_env, tmp_path):
    err = failing(aws_env, write_config(tmp_path, cluster_name=CLUSTER_A, regions=["mars-north-7"]))
    assert "swarm_ec2: unknown region(s) 'mars-north-7' in regions" in err


def test_no_instance_found_is_an_empty_inventory_with_a_warning(clusters, aws_env, tmp_path):
    proc = ansible_inventory(aws_env, write_config(tmp_path, cluster_name="invt-nothing-here"), "--list")
    stderr = " ".join(proc.stderr.split())
    assert "swarm_ec2: no instance of cluster 'invt-nothing-here' found in eu-west-1" in stderr
    data = json.loads(proc.stdout)
    assert not data["_meta"]["hostvars"]
    # the swarm groups exist, so plays aimed at them match nothing instead of failing on an unknown pattern
    assert {"swarm_managers", "swarm_workers", "swarm_workers_joining", "swarm_workers_leaving"} <= set(
        data["all"]["children"])


@pytest.mark.parametrize("options, message", [
    ({}, "Required config 'cluster_name' for 'swarm_ec2' inventory plugin not provided"),
    ({"cluster_name": CLUSTER_A, "connection": "telepathy"},
     "Invalid value 'telepathy' for config 'connection'"),
    ({"cluster_name": "not a name"}, "swarm_ec2: cluster_name=not a name: use 3-28 characters of a-z, 0-9 and '-'"),
    ({"cluster_name": "Invt-Alpha"}, "swarm_ec2: cluster_name=Invt-Alpha: use 3-28 characters"),   # jhs_names.py's rule
    ({"cluster_name": CLUSTER_A, "connection": "ssm"}, "swarm_ec2: connection: ssm needs ssm_bucket_name"),
    ({"cluster_name": CLUSTER_A, "connection": "jump", "manager_address": "elastic"},
     "Invalid value 'elastic' for config 'manager_address'"),
])
def test_error_malformed_config(aws_env, tmp_path, options, message):
    assert message in failing(aws_env, write_config(tmp_path, **options))


def test_error_unparsable_yaml(aws_env, tmp_path):
    config = tmp_path / "broken.swarm_ec2.yml"
    config.write_text("plugin: swarm_ec2\ncluster_name: [unclosed\n")
    assert "YAML parsing failed" in failing(aws_env, config)


def test_only_files_named_for_the_plugin(aws_env, tmp_path):
    plugin = load_plugin()
    body = yaml.safe_dump({"plugin": "swarm_ec2", "cluster_name": CLUSTER_A, "regions": [REGION]})
    for name, accepted in (("c.swarm_ec2.yml", True), ("c.swarm_ec2.yaml", True), ("cluster.yml", False),
                           ("c.aws_ec2.yml", False), ("swarm_ec2.yml", False)):
        (tmp_path / name).write_text(body)
        assert plugin.verify_file(str(tmp_path / name)) is accepted, name
    env = dict(aws_env, ANSIBLE_INVENTORY_ENABLED="swarm_ec2", ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    proc = ansible_inventory(env, tmp_path / "cluster.yml", "--graph", check=False)
    assert proc.returncode != 0 and "as an inventory source" in proc.stderr


# ---- lifecycle wait states (moto does not simulate them) -----------------------------------------------


@pytest.mark.parametrize("group_tagged", [True, False], ids=["asg-tagged", "asg-found-by-name"])
def test_lifecycle_wait_states_with_stubbed_autoscaling(clusters, moto_endpoint, tmp_path, monkeypatch,
                                                        group_tagged):
    """EC2 from the local endpoint; the Auto Scaling answers stubbed with Pending:Wait, Terminating:Wait and
    Pending, which moto never reports. The Stubber also pins the exact requests: the cluster's tag first, and
    the conventional name (jhs_names' workers) only when no tagged group has it."""
    from botocore.stub import Stubber
    from ansible.inventory.data import InventoryData
    from ansible.parsing.dataloader import DataLoader

    a = clusters[CLUSTER_A]
    for key, value in dict(AWS_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="testing",
                           AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION).items():
        monkeypatch.setenv(key, value)
    _, real_asg = _clients(moto_endpoint)
    group = real_asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[WORKERS_A])["AutoScalingGroups"][0]
    ids = sorted(i["InstanceId"] for i in group["Instances"])
    states = dict(zip(ids, ["Pending:Wait", "Terminating:Wait", "Pending"]))
    for member in group["Instances"]:
        member["LifecycleState"] = states[member["InstanceId"]]
    answer = {"AutoScalingGroups": [group]}

    plugin = load_plugin()
    real_client = plugin.client
    stubbers = []

    def client(service, **kwargs):
        conn = real_client(service, **kwargs)
        if service == "autoscaling" and not stubbers:
            stubber = Stubber(conn)
            stubber.add_response("describe_auto_scaling_groups",
                                 answer if group_tagged else {"AutoScalingGroups": []},
                                 {"Filters": [{"Name": "tag:jhs:cluster", "Values": [CLUSTER_A]}]})
            if not group_tagged:
                stubber.add_response("describe_auto_scaling_groups", answer,
                                     {"AutoScalingGroupNames": [WORKERS_A]})
            stubber.activate()
            stubbers.append(stubber)
        return conn

    monkeypatch.setattr(plugin, "client", client)
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(write_config(tmp_path, cluster_name=CLUSTER_A)), cache=False)

    assert len(stubbers) == 1
    stubbers[0].assert_no_pending_responses()

    def hosts(name):
        return {h.name for h in inventory.groups[name].get_hosts()}

    assert hosts("swarm_workers_joining") == {ids[0], ids[2]}
    assert hosts("swarm_workers_leaving") == {ids[1]}
    assert hosts("swarm_workers") == set()
    assert hosts("swarm_managers") == {a["manager"]}
    assert inventory.get_host(ids[0]).vars["swarm_lifecycle_state"] == "Pending:Wait"
    assert inventory.get_host(ids[1]).vars["swarm_lifecycle_state"] == "Terminating:Wait"
