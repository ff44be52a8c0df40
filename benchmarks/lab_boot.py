"""Lab benchmark: time from an instance starting in the local AWS endpoint to its node container
having run its user-data (the reconciler's latency + container start + metadata + user-data).

Usage (with the lab up): .venv/bin/python benchmarks/lab_boot.py [--instances 4] [--rounds 3]
Prints one line per instance and a summary; creates and deletes its own VPC, launch template and ASG.
"""
from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
USER_DATA = "#!/bin/bash\necho booted > /var/lib/bench-marker\n"


def lab_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (ROOT / ".lab/env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def finished_at(node: str) -> float | None:
    out = subprocess.run(["docker", "exec", node, "cat", "/var/lib/cloud/instance/boot-finished"],
                         capture_output=True, text=True).stdout.split()
    return float(out[0]) if out else None


def started_at(node: str) -> float:
    iso = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", node], capture_output=True,
                         text=True, check=True).stdout.strip()
    return datetime.fromisoformat(iso[:26].rstrip("Z") + "+00:00").timestamp()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = lab_env()
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    ec2, asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
    name = "bench-" + uuid.uuid4().hex[:6]
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.249.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
        "ImageId": env["LAB_BASE_AMI"], "InstanceType": "t3.small",
        "UserData": base64.b64encode(USER_DATA.encode()).decode()})
    totals, to_container = [], []
    try:
        asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=args.instances,
                                      DesiredCapacity=0, VPCZoneIdentifier=subnet,
                                      LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"})
        for rnd in range(args.rounds):
            t0 = time.time()
            asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=args.instances)
            ids = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"]]
            done: dict[str, float] = {}
            deadline = time.time() + 180
            while len(done) < len(ids) and time.time() < deadline:
                for iid in ids:
                    if iid not in done and (t := finished_at(iid)):
                        done[iid] = t
                        to_container.append(started_at(iid) - t0)
                time.sleep(0.2)
            for iid in ids:
                total = done.get(iid, float("nan")) - t0
                totals.append(total)
                print(f"round {rnd + 1} {iid}: user-data done {total:.2f} s after the instance started")
            asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
            while subprocess.run(["docker", "ps", "-aq", "--filter", f"name={ids[0]}"],
                                 capture_output=True, text=True).stdout.strip():
                time.sleep(0.5)
    finally:
        asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateName=name)
        time.sleep(3)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
    q = statistics.quantiles(totals, n=20)
    print(f"instances: {len(totals)} ({args.rounds} rounds of {args.instances} started at once)")
    print(f"instance start -> node container running: median {statistics.median(to_container):.2f} s")
    print(f"instance start -> user-data finished:     median {statistics.median(totals):.2f} s, "
          f"p95 {q[18]:.2f} s, max {max(totals):.2f} s")


if __name__ == "__main__":
    main()
