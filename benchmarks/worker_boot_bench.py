"""Worker boot benchmark on the running lab: time from an instance starting to its swarm node being Ready.

Usage (after `make lab`): .venv/bin/python benchmarks/worker_boot_bench.py [--rounds 3] [--only a|b]

(a) base image: an instance of (b)'s launch template version with the base AMI given in RunInstances
    (the same user-data) runs the whole
    user-data: apt packages, the pinned Ansible virtual environment from the package index, then
    ansible-pull of playbooks/worker_boot.yml (engine, EFS, join).
(b) baked image: the same launch template at the version playbooks/worker_image.yml added (Ansible, the
    repository and the engine are in the image); the same user-data finds Ansible and the checkout at its commit,
    and runs the playbook from it (ansible-playbook, without ansible-pull's checkout step).
If the cluster has no baked image yet, the benchmark bakes one first (playbooks/worker_image.yml) and
afterwards puts the launch template's default version back and removes the image it made.

Each round starts one instance of (a) and then one of (b) with RunInstances, in the workers' subnet with
the Auto Scaling Group's tags, and polls `docker node ls` on the manager every 0.25 s until the node of
that instance's private address is Ready. The boot log's timestamps split the time into user-data
start, ansible-pull's (or the playbook's) start and the end. Each instance is terminated and its node removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import jhs_names  # noqa: E402  (the cluster's resource names: plugins/module_utils/jhs_names.py, their one owner)
sys.path.insert(0, str(ROOT))
from lab.config import AWS_CREDENTIALS  # noqa: E402  (the lab administrator's keys)

CLUSTER = "labhub"
NAMES = jhs_names.names(CLUSTER)


def lab_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (ROOT / ".lab/env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def sh(*cmd: str, check: bool = False) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=600).stdout


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def boot_marks(node: str) -> dict[str, float]:
    log = sh("docker", "exec", node, "cat", "/var/log/jhs-boot.log")
    marks = {}
    if m := re.search(r"jhs-boot: user-data start (\S+)", log):
        marks["user-data start"] = stamp(m.group(1))
    if m := re.search(r"jhs-boot: /opt/jhs/repo is at \S+: ansible-playbook from it (\S+)", log):
        marks["playbook start"] = stamp(m.group(1))
    if m := re.search(r"Starting Ansible Pull at (\S+ \S+)", log):
        marks["ansible-pull start"] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    if m := re.search(r"jhs-boot: user-data done (\S+)", log):
        marks["user-data done"] = stamp(m.group(1))
    return marks


class Lab:
    def __init__(self, env: dict[str, str]):
        # The benchmark starts instances as the group would, which the operator's policy does not allow: it calls
        # the endpoint as the lab's administrator.
        kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                  aws_access_key_id=AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                  aws_secret_access_key=AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        self.env = env
        self.ec2, self.asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"][0]
        self.subnet = group["VPCZoneIdentifier"].split(",")[0]
        self.tags = [{"Key": t["Key"], "Value": t["Value"]} for t in group.get("Tags", []) if t.get("PropagateAtLaunch")]
        mgr = self.ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                                   {"Name": "tag:jhs:role", "Values": ["manager"]},
                                                   {"Name": "instance-state-name", "Values": ["running"]}])
        self.manager = mgr["Reservations"][0]["Instances"][0]["InstanceId"]

    def template_versions(self) -> list[dict]:
        return self.ec2.describe_launch_template_versions(LaunchTemplateName=NAMES["worker"])["LaunchTemplateVersions"]

    def node_states(self) -> dict[str, str]:
        out = sh("docker", "exec", self.manager, "docker", "node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Status}}")
        rows = [line.split() for line in out.splitlines()]
        return {row[1]: f"{row[0]} {row[2]}" for row in rows if len(row) == 3}

    def boot(self, version: str, log_to: Path | None = None, image_id: str | None = None) -> dict[str, float]:
        # The lab restores a baked AMI's disk ahead of its next node (lab/reconciler.py); measure nothing while
        # it copies one, so neither boot shares the disk with that copy.
        deadline = time.time() + 600
        while json.loads((ROOT / ".lab/ami-disks.json").read_text())["filling"] and time.time() < deadline:
            time.sleep(1)
        t0 = time.time()
        inst = self.ec2.run_instances(
            LaunchTemplate={"LaunchTemplateName": NAMES["worker"], "Version": version}, MinCount=1, MaxCount=1,
            SubnetId=self.subnet, TagSpecifications=[{"ResourceType": "instance", "Tags": self.tags}],
            **({"ImageId": image_id} if image_id else {}))["Instances"][0]
        iid, host = inst["InstanceId"], "ip-" + inst["PrivateIpAddress"].replace(".", "-")
        try:
            deadline = t0 + 900
            while not self.node_states().get(host, "").endswith(" Ready"):
                if time.time() > deadline:
                    raise TimeoutError(f"{iid} not Ready after 900 s:\n" + sh("docker", "exec", iid, "tail", "-20",
                                                                              "/var/log/jhs-boot.log"))
                time.sleep(0.25)
            ready = time.time() - t0
            started = sh("docker", "inspect", "-f", "{{.State.StartedAt}}", iid).strip()
            result = {"ready": ready, "container running": stamp(started[:26].rstrip("Z") + "Z") - t0}
            result.update({k: v - t0 for k, v in boot_marks(iid).items()})
            if log_to:
                log_to.write_text(sh("docker", "exec", iid, "cat", "/var/log/jhs-boot.log"))
            return result
        finally:
            self.ec2.terminate_instances(InstanceIds=[iid])
            deadline = time.time() + 120
            while sh("docker", "ps", "-aq", "--filter", f"name=^{iid}$").strip() and time.time() < deadline:
                time.sleep(0.5)
            node = self.node_states().get(host)
            if node:
                sh("docker", "exec", self.manager, "docker", "node", "rm", "--force", node.split()[0])


def bake(env: dict[str, str]) -> None:
    run_env = {**os.environ, **env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    t0 = time.time()
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/worker_image.yml", "-i", "inventories/lab"],
                          cwd=ROOT, env=run_env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit("the bake failed:\n" + proc.stdout[-4000:])
    print(f"baked the worker image in {time.time() - t0:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--logs", type=Path, help="keep each instance's boot log in this directory")
    ap.add_argument("--keep-image", action="store_true", help="keep an image baked here (and its template version)")
    ap.add_argument("--only", choices=("a", "b"), help="boot only the base image (a) or only the baked one (b)")
    args = ap.parse_args()
    env = lab_env()
    lab = Lab(env)
    base_ami = env["LAB_BASE_AMI"]

    def usable_versions() -> list[dict]:
        """Template versions whose image still exists (a deregistered image's versions stay behind)."""
        versions = lab.template_versions()
        images = {i["ImageId"] for i in lab.ec2.describe_images(
            ImageIds=sorted({v["LaunchTemplateData"]["ImageId"] for v in versions}))["Images"]}
        return [v for v in versions if v["LaunchTemplateData"]["ImageId"] in images]

    versions = usable_versions()
    default_before = next(v["VersionNumber"] for v in lab.template_versions() if v["DefaultVersion"])
    baked_here = None
    if not any(v["LaunchTemplateData"]["ImageId"] != base_ami for v in versions):
        bake(env)
        versions = usable_versions()
        baked_here = next(v["LaunchTemplateData"]["ImageId"] for v in versions if v["DefaultVersion"])
    baked = max((v for v in versions if v["LaunchTemplateData"]["ImageId"] != base_ami), key=lambda v: v["VersionNumber"])
    baked_v = str(baked["VersionNumber"])
    base_v = baked_v   # (a) boots the same version (user-data and all) with the base AMI given instead
    print(f"launch template {NAMES['worker']} version {baked_v}: (a) with the base AMI {base_ami}, "
          f"(b) version {baked_v} = baked AMI {baked['LaunchTemplateData']['ImageId']}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
    try:
        for rnd in range(args.rounds):
            for kind, version, image in (("a", base_v, base_ami), ("b", baked_v, None)):
                if args.only and kind != args.only:
                    continue
                log = args.logs / f"{kind}-{rnd + 1}.log" if args.logs else None
                if log:
                    log.parent.mkdir(parents=True, exist_ok=True)
                r = lab.boot(version, log, image)
                results[kind].append(r)
                print(f"round {rnd + 1} ({kind}): " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(r.items(), key=lambda kv: kv[1])))
    finally:
        if baked_here and not args.keep_image:
            lab.ec2.modify_launch_template(LaunchTemplateName=NAMES["worker"], DefaultVersion=str(default_before))
            image = lab.ec2.describe_images(ImageIds=[baked_here])["Images"][0]
            lab.ec2.deregister_image(ImageId=baked_here)
            lab_image = {t["Key"]: t["Value"] for t in image.get("Tags", [])}.get("jhs-lab:image")
            if lab_image:
                sh("docker", "rmi", lab_image)
    med = {k: statistics.median(r["ready"] for r in v) for k, v in results.items() if v}
    print(json.dumps({k: [round(r["ready"], 1) for r in v] for k, v in results.items() if v}))
    figures = [f"({k}) {'base' if k == 'a' else 'baked'} image {m:.1f} s" for k, m in sorted(med.items())]
    ratio = f" = {med['b'] / med['a']:.2f} of (a)" if len(med) == 2 else ""
    print(f"instance start -> node Ready, median of {args.rounds}: {', '.join(figures)}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
