"""Make the lab's node containers follow the local AWS endpoint's EC2 instances.

Every running instance gets a Docker-in-Docker container named after its instance id, at the
instance's private IP on the lab network; it boots by running the instance's user-data from the
metadata stand-in (see images/node/lab-cloud-init). A stopped instance's container is stopped (its
disk is kept, as an EBS root volume is); a terminated instance's container is stopped (shutdown
hooks run), then removed with its volumes. `make lab` starts this loop in the background and
`make lab-down` stops it; `python -m lab reconcile --once` runs one pass.
"""
from __future__ import annotations

import ipaddress
import json
import sys
import time

import boto3

from . import config
from .docker import DockerError, docker, ids, inspect

AMI_IMAGE_TAG = "jhs-lab:image"   # an AMI tag naming the container image its instances boot from


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def ec2_client():
    return boto3.client("ec2", endpoint_url=config.endpoint_url(), region_name=config.region(),
                        aws_access_key_id="lab", aws_secret_access_key="lab")


class Reconciler:
    def __init__(self, default_image: str):
        self.default_image = default_image
        self.ec2 = ec2_client()
        self.ami_images: dict[str, str] = {}
        self.reported: set[str] = set()

    def image_for(self, ami: str) -> str:
        if ami not in self.ami_images:
            image = self.default_image
            try:
                for img in self.ec2.describe_images(ImageIds=[ami])["Images"]:
                    tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
                    image = tags.get(AMI_IMAGE_TAG, image)
            except Exception:  # an AMI unknown to the endpoint boots the lab's base node image
                pass
            self.ami_images[ami] = image
        return self.ami_images[ami]

    def instances(self) -> dict[str, dict]:
        found = {}
        for page in self.ec2.get_paginator("describe_instances").paginate():
            for res in page["Reservations"]:
                for inst in res["Instances"]:
                    found[inst["InstanceId"]] = inst
        return found

    def start_node(self, inst: dict) -> None:
        iid, ip = inst["InstanceId"], inst.get("PrivateIpAddress", "")
        if not ip or ipaddress.ip_address(ip) not in config.network_cidr():
            if iid not in self.reported:
                log(f"{iid}: private IP {ip or '(none)'} is outside the lab network "
                    f"{config.network_cidr()}; use a VPC with that CIDR. No node started.")
                self.reported.add(iid)
            return
        t0 = time.time()
        image = self.image_for(inst["ImageId"])
        docker(
            "run", "-d", "--init", "--name", iid, "--hostname", "ip-" + ip.replace(".", "-"),
            "--label", f"{config.LABEL}=node", "--label", f"{config.LABEL}.instance-id={iid}",
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--tmpfs", "/run",
            "--mount", f"type=volume,dst=/var/lib/docker,volume-label={config.LABEL}=node-docker",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", f"{config.efs_dir()}:{config.NODE_EFS_PATH}",
            "--network", config.NETWORK, "--ip", ip,
            "-e", f"LAB_IMDS_ADDR={config.imds_addr()}", "-e", f"LAB_REGISTRY_ADDR={config.registry_addr()}",
            image)
        log(f"{iid}: running at {ip} ({inst['ImageId']} -> {image}); node started in {time.time() - t0:.1f}s")

    def pass_once(self) -> None:
        instances = self.instances()
        nodes = {}
        for cid in ids("container", f"{config.LABEL}=node"):
            info = inspect(cid)
            if info:
                nodes[info["Name"].lstrip("/")] = info
        for iid, inst in instances.items():
            state = inst["State"]["Name"]
            node = nodes.get(iid)
            if state in ("pending", "running"):
                if node is None:
                    self.start_node(inst)
                elif not node["State"]["Running"]:
                    docker("start", iid)
                    log(f"{iid}: started again")
            elif state in ("stopping", "stopped") and node and node["State"]["Running"]:
                docker("stop", "-t", "30", iid)
                log(f"{iid}: stopped")
            elif state in ("shutting-down", "terminated") and node:
                self.remove(iid, node)
        for name, node in nodes.items():
            if name not in instances:
                self.remove(name, node, why="unknown to the endpoint")

    def remove(self, iid: str, node: dict, why: str = "terminated") -> None:
        if node["State"]["Running"]:
            docker("stop", "-t", "30", iid, check=False)
        docker("rm", "-f", "-v", iid, check=False)
        log(f"{iid}: {why}; node removed")


def run(default_image: str, once: bool = False, interval: float = 1.0) -> None:
    rec = Reconciler(default_image)
    log(f"reconciler following {config.endpoint_url()} with default image {default_image}")
    while True:
        try:
            rec.pass_once()
        except (DockerError, Exception) as exc:  # keep following; the next pass retries
            log(f"pass failed: {exc}")
            if once:
                raise
        if once:
            return
        time.sleep(interval)


if __name__ == "__main__":
    images = json.loads((config.lab_dir() / "images.json").read_text())
    run(images["node"], once="--once" in sys.argv)
