"""Inventory build time: swarm_ec2 against amazon.aws.aws_ec2, on the same instances, cold and cached.

Starts a moto server on a free loopback port, creates two clusters (a manager and an Auto Scaling Group of
workers each; 500 instances in all by default), then builds both clusters' inventory in this process the
way ansible-playbook does (InventoryManager), several times, cold (cache bypassed and rewritten) and cached
(jsonfile cache). It counts the HTTP requests botocore sends. Prints one table.

    .venv/bin/python benchmarks/inventory_bench.py [--instances 500] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import jhs_names  # noqa: E402  (the cluster's resource names: plugins/module_utils/jhs_names.py, their one owner)
REGION = "eu-west-1"
AMI = "ami-12c6146b"
CLUSTERS = ("bench-a", "bench-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    moto_server = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def populate(url: str, instances: int) -> None:
    import boto3

    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench")
    ec2, asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
    per_cluster = instances // len(CLUSTERS)
    for n, name in enumerate(CLUSTERS):
        names = jhs_names.names(name)
        vpc = ec2.create_vpc(CidrBlock=f"10.{40 + n}.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{40 + n}.{i}.0/22",
                                     AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
                   for i, az in ((0, "a"), (4, "b"))]
        ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnets[0], TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": names["manager"]},
                                                  {"Key": "jhs:cluster", "Value": name},
                                                  {"Key": "jhs:role", "Value": "manager"}]}])
        ec2.create_launch_template(LaunchTemplateName=names["worker"],
                                   LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
        asg.create_auto_scaling_group(
            AutoScalingGroupName=names["workers"], MinSize=0, MaxSize=per_cluster,
            DesiredCapacity=per_cluster - 1, VPCZoneIdentifier=",".join(subnets),
            LaunchTemplate={"LaunchTemplateName": names["worker"], "Version": "$Latest"},
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": names["workers"],
                   "ResourceType": "auto-scaling-group"}
                  for k, v in (("jhs:cluster", name), ("jhs:role", "worker"), ("Name", names["worker"]))])


def write_configs(directory: Path) -> dict[str, list[Path]]:
    cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_timeout": 3600}
    configs: dict[str, list[Path]] = {"swarm_ec2": [], "amazon.aws.aws_ec2": []}
    import yaml

    for name in CLUSTERS:
        ours = directory / f"{name}.swarm_ec2.yml"
        ours.write_text(yaml.safe_dump({"plugin": "swarm_ec2", "cluster_name": name, "regions": [REGION],
                                        "cache_connection": str(directory / "cache-swarm"), **cache}))
        theirs = directory / f"{name}.aws_ec2.yml"
        theirs.write_text(yaml.safe_dump({
            "plugin": "amazon.aws.aws_ec2", "regions": [REGION], "filters": {"tag:jhs:cluster": name},
            "hostnames": ["instance-id"], "compose": {"ansible_host": "private_ip_address"},
            "keyed_groups": [{"key": "tags['jhs:role']", "prefix": "role"},
                             {"key": "placement.availability_zone", "prefix": "az"}],
            "cache_connection": str(directory / "cache-aws"), **cache}))
        configs["swarm_ec2"].append(ours)
        configs["amazon.aws.aws_ec2"].append(theirs)
    return configs


class RequestCounter:
    """Counts the HTTP requests botocore sends (every API call, retries included)."""

    def __init__(self):
        import botocore.endpoint

        self.count = 0
        original = botocore.endpoint.Endpoint._send
        counter = self

        def send(endpoint, request):
            counter.count += 1
            return original(endpoint, request)

        botocore.endpoint.Endpoint._send = send


def build(configs: list[Path], cache: bool) -> tuple[float, int]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    start = time.perf_counter()
    inventory = InventoryManager(loader=DataLoader(), sources=[str(c) for c in configs], cache=cache)
    elapsed = time.perf_counter() - start
    return elapsed, len(inventory.hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500,
                        help="instances in all, split over two clusters")
    parser.add_argument("--rounds", type=int, default=5, help="builds per plugin and path (median reported)")
    args = parser.parse_args()

    moto, url = start_moto()
    try:
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
                          ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
        os.chdir(ROOT)   # ansible.cfg's relative inventory_plugins path
        t0 = time.perf_counter()
        populate(url, args.instances)
        print(f"populated {args.instances} instances in {time.perf_counter() - t0:.1f} s (moto on loopback)")

        from ansible.plugins.loader import init_plugin_loader
        init_plugin_loader()
        counter = RequestCounter()
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            configs = write_configs(Path(tmp))
            for plugin, files in configs.items():
                build(files, cache=False)   # warm-up: imports, plugin loading
                for path, cache in (("cold", False), ("cached", True)):
                    times, calls, hosts = [], [], 0
                    for _ in range(args.rounds):
                        before = counter.count
                        elapsed, hosts = build(files, cache=cache)
                        times.append(elapsed)
                        calls.append(counter.count - before)
                    rows.append((plugin, path, hosts, statistics.median(times), min(times), max(times),
                                 statistics.median(calls)))
        print(f"\n{'plugin':<20} {'path':<7} {'hosts':>5} {'median s':>9} {'min s':>7} {'max s':>7} "
              f"{'API calls':>9}")
        for plugin, path, hosts, med, low, high, calls in rows:
            print(f"{plugin:<20} {path:<7} {hosts:>5} {med:>9.3f} {low:>7.3f} {high:>7.3f} {calls:>9.0f}")
        print(f"\n{args.rounds} rounds each; both clusters' config files per build; "
              f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
