"""Make the lab's node containers follow the local AWS endpoint's EC2 instances.

Every running instance gets a Docker-in-Docker container named after its instance id, at the
instance's private IP on the lab network; systemd is its init, as on an instance, and it boots by running the
instance's user-data from the metadata stand-in (see images/node/lab-cloud-init). A stopped instance's container is stopped (its
disk is kept, as an EBS root volume is); a terminated instance's container is stopped (shutdown
hooks run), its boot log kept in the lab's logs/instances/<id>.boot.log (as EC2 keeps a terminated
instance's console output for a while), then removed with its volumes. While the lab's ACME CA runs, the
Route53 zones' A records go to its DNS server (lab/acme.py), and a volume attached to an instance is a block device in
its node (lab/ebs.py). An Auto Scaling group's instance
marked Unhealthy is replaced, as the group does on AWS (moto only records the mark); one still in
Pending:Wait is left to its launch lifecycle hook, as AWS health checks begin only once an instance is
InService. `make lab` starts this loop in the background and
`make lab-down` stops it; `python -m lab reconcile --once` runs one pass.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import threading
import time
import uuid

import boto3

from . import acme, config, ebs, sgfilter
from .docker import DockerError, docker, ids, inspect, inspect_labelled

AMI_IMAGE_TAG = "jhs-lab:image"   # an AMI tag naming the container image its instances boot from
AMI_DOCKER_TAR = "/var/lib/jhs-lab/ami-docker.tar"  # in a baked AMI's image: its builder's /var/lib/docker
# Entry point of a baked AMI's image: restore the builder's /var/lib/docker into the node's own (empty)
# volume on first boot (docker commit leaves volumes out, and pre-pulled images live there), then boot.
AMI_INIT = f"""#!/bin/sh
if [ -f {AMI_DOCKER_TAR} ] && [ -z "$(ls -A /var/lib/docker 2>/dev/null)" ]; then
  tar --xattrs --xattrs-include='*' -xpf {AMI_DOCKER_TAR} -C /var/lib/docker
fi
exec /sbin/init
"""


# A volume already holding a baked AMI's /var/lib/docker, for the next node of that AMI: the lab's stand-in for
# an EBS volume made from the AMI's snapshot, which AWS hands an instance at launch (its blocks load lazily)
# instead of copying the whole disk first, as the tar restore above does on a node's first boot.
DISK_LABEL = f"{config.LABEL}.ami-disk"
DISK_PREFIX = f"{config.IMAGE_PREFIX.replace('/', '-')}-disk-"   # the volumes' names: <prefix><ami>-<random>
BOOT_LOG = "/var/log/jhs-boot.log"   # the worker boot's log, kept when its node goes (see remove)
SLOW_EVERY = 5.0   # seconds between the checks of what changes seldom: Unhealthy marks, new AMIs, the groups' rules
DISK_STATE = "ami-disks.json"   # in the lab dir: {"filling": [ami, ...]}, so benchmarks can wait for quiet


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def aws_client(service: str = "ec2"):
    """A client of the lab's endpoint (EC2 by default)."""
    return boto3.client(service, endpoint_url=config.endpoint_url(), region_name=config.region(),
                        aws_access_key_id=config.AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=config.AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


class Reconciler:
    def __init__(self, default_image: str):
        self.default_image = default_image
        self.ec2 = aws_client()
        self.autoscaling = aws_client("autoscaling")
        self.ami_images: dict[str, str] = {}
        self.reported: set[str] = set()
        self.failures: dict[str, str] = {}   # instance id -> last error (logged once per new error)
        self.spares: dict[str, list[str]] = {}   # AMI -> volumes holding its disk, ready for a node
        self.filling: set[str] = set()           # AMIs whose next disk is being restored
        self.refills: dict[str, tuple[str, str, float]] = {}   # node -> (AMI, image, since): refill once it booted
        self.lock = threading.Lock()
        self.last_cleanup = 0.0
        self.sg_applied: list[str] | None = None   # the security group rules last put in place (sgfilter)
        self.live: list[tuple] = []   # (id, state, address) of the instances the groups' rules were last made for
        self.last_slow = 0.0          # when the checks of what changes seldom last ran
        self.dns = acme.DnsSync(aws_client)   # the Route53 zones' A records, for the lab's ACME CA (lab/acme.py)
        self.ebs = ebs.EbsStandIn()           # attached volumes as block devices in the nodes (lab/ebs.py)
        self.side_errors: dict[str, str] = {}   # the last failure of each stand-in's pass (side_pass)
        # a disk left by an earlier reconciler may be half restored: start over
        for vol in ids("volume", DISK_LABEL):
            docker("volume", "rm", vol, check=False)
        self.write_disk_state()

    def image_for(self, ami: str) -> str | None:
        """The container image instances of `ami` boot from; None while an AMI made from a lab node
        (CreateImage) is not committed yet: its instances wait, as they would for a pending AMI."""
        if ami not in self.ami_images:
            image = self.default_image
            try:
                for img in self.ec2.describe_images(ImageIds=[ami])["Images"]:
                    tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
                    if AMI_IMAGE_TAG not in tags and img.get("SourceInstanceId"):
                        return None
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

    # ---- disks of baked AMIs, restored ahead of the nodes that use them ---------------------------------
    def write_disk_state(self) -> None:
        with self.lock:
            state = {"filling": sorted(self.filling | {ami for ami, _, _ in list(self.refills.values())})}
        (config.lab_dir() / DISK_STATE).write_text(json.dumps(state) + "\n")

    def fill_disk(self, ami: str, image: str) -> None:
        """Restore a new volume from the AMI's image (its builder's /var/lib/docker) and keep it as a spare."""
        name = f"{DISK_PREFIX}{ami}-{uuid.uuid4().hex[:6]}"
        t0 = time.time()
        try:
            docker("volume", "create", "--label", f"{config.LABEL}=ami-disk", "--label", f"{DISK_LABEL}={ami}", name)
            docker("run", "--rm", "--label", f"{config.LABEL}=copy", "-v", f"{name}:/var/lib/docker",
                   "--entrypoint", "sh", image, "-c",
                   f"tar --xattrs --xattrs-include='*' -xpf {AMI_DOCKER_TAR} -C /var/lib/docker", timeout=900)
        except DockerError as exc:
            docker("volume", "rm", name, check=False)
            log(f"{ami}: restoring a disk failed ({exc}); its next node restores its own")
            return
        with self.lock:
            self.spares.setdefault(ami, []).append(name)
        log(f"{ami}: a disk for its next node restored in {time.time() - t0:.1f}s")

    def refill_later(self, ami: str, image: str) -> None:
        with self.lock:
            if ami in self.filling:
                return
            self.filling.add(ami)
        self.write_disk_state()

        def work() -> None:
            try:
                self.fill_disk(ami, image)
            finally:
                with self.lock:
                    self.filling.discard(ami)
                self.write_disk_state()
        threading.Thread(target=work, daemon=True).start()

    def refill_booted(self) -> None:
        """Restore the next disk of an AMI once the node that took the last one has booted (or after 2 min), so the
        copy never competes with that boot. A node removed before that restores it at once (remove)."""
        for iid, (ami, image, since) in list(self.refills.items()):
            if not (booted_at(iid) >= since or time.time() - since > 120):
                continue
            with self.lock:
                self.refills.pop(iid, None)
            self.refill_later(ami, image)

    def take_disk(self, ami: str) -> str | None:
        with self.lock:
            disks = self.spares.get(ami) or []
            return disks.pop(0) if disks else None

    def clean_disks(self) -> None:
        """Every 30 s: remove spare disks of AMIs that are gone (deregistered, or their image removed)."""
        if time.time() - self.last_cleanup < 30:
            return
        self.last_cleanup = time.time()
        owned = {i["ImageId"] for i in self.ec2.describe_images(Owners=["self"])["Images"]}
        with self.lock:
            gone = {ami: vols for ami, vols in self.spares.items() if ami not in owned}
            for ami in gone:
                self.spares.pop(ami)
        for vols in gone.values():
            for vol in vols:
                docker("volume", "rm", vol, check=False)

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
        if image is None:
            if iid not in self.reported:
                log(f"{iid}: waiting for {inst['ImageId']} (an AMI being made from a node) to be committed")
                self.reported.add(iid)
            return
        disk = self.take_disk(inst["ImageId"])
        docker(
            "run", "-d", "--name", iid, "--hostname", "ip-" + ip.replace(".", "-"),
            "--label", f"{config.LABEL}=node", "--label", f"{config.LABEL}.instance-id={iid}",
            "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
            "--device-cgroup-rule", f"b {ebs.LOOP_MAJOR}:* rwm",   # its attached volumes are loop devices (lab/ebs.py)
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",   # systemd's clean shutdown
            "--mount", (f"type=volume,src={disk},dst=/var/lib/docker" if disk else
                        f"type=volume,dst=/var/lib/docker,volume-label={config.LABEL}=node-docker"),
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v", f"{config.efs_dir()}:{config.NODE_EFS_PATH}",
            "--network", config.NETWORK, "--ip", ip,
            "-e", f"LAB_IMDS_ADDR={config.imds_addr()}", "-e", f"LAB_REGISTRY_ADDR={config.registry_addr()}",
            image)
        log(f"{iid}: running at {ip} ({inst['ImageId']} -> {image}{', a disk restored ahead' if disk else ''}); "
            f"node started in {time.time() - t0:.1f}s")
        if image.startswith(f"{config.IMAGE_PREFIX}/ami:"):   # a baked AMI: its next node gets a disk ready
            with self.lock:
                self.refills[iid] = (inst["ImageId"], image, time.time())
            self.write_disk_state()

    # ---- AMIs made from lab nodes (CreateImage): the lab's stand-in for an EBS snapshot ---------------
    def bake_amis(self) -> None:
        """Commit every AMI created from a stopped lab node into a container image, so instances of it
        boot from what its builder made, then tag the AMI jhs-lab:image=<image>; until then its
        instances wait (image_for). The endpoint marks the AMI available at once, so callers that need
        the image (the bake play in lab_mode) wait for that tag."""
        for img in self.ec2.describe_images(Owners=["self"])["Images"]:
            tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
            iid = img.get("SourceInstanceId")
            if not iid or AMI_IMAGE_TAG in tags:
                continue
            node = inspect(iid)
            if node is None or (node["Config"].get("Labels") or {}).get(config.LABEL) != "node":
                continue
            if node["State"]["Running"]:   # the bake stops its builder first; a running node waits
                key = f"bake:{img['ImageId']}"
                if key not in self.reported:
                    log(f"{img['ImageId']}: made from {iid}, which still runs; committing once it is stopped")
                    self.reported.add(key)
                continue
            self.commit_ami(img["ImageId"], iid, node)

    def commit_ami(self, ami: str, iid: str, node: dict) -> None:
        """docker commit of the node, plus its /var/lib/docker volume (which docker commit leaves out)
        as a tar file in the image that the image's entry point restores on a new node's first boot."""
        t0 = time.time()
        tag, stage, helper = f"{config.IMAGE_PREFIX}/ami:{ami}", f"{config.IMAGE_PREFIX}/ami-stage:{ami}", f"{ami}-commit"
        labels = ["--change", f"LABEL {config.LABEL}.image=ami", "--change", f"LABEL {config.LABEL}.ami={ami}"]
        docker("commit", *labels, iid, stage, timeout=600)
        src = [m["Name"] for m in node.get("Mounts", []) if m.get("Destination") == "/var/lib/docker"
               and m.get("Type") == "volume"]
        script = (f"mkdir -p {AMI_DOCKER_TAR.rsplit('/', 1)[0]} && "
                  + (f"tar --xattrs --xattrs-include='*' -cpf {AMI_DOCKER_TAR} -C /from . && " if src else "")
                  + "cat >/usr/local/sbin/lab-ami-init && chmod 0755 /usr/local/sbin/lab-ami-init")
        docker("rm", "-f", helper, check=False)
        subprocess.run(["docker", "run", "-i", "--name", helper, "--label", f"{config.LABEL}=copy",
                        *(["-v", f"{src[0]}:/from:ro"] if src else []), "--entrypoint", "sh", stage, "-c", script],
                       input=AMI_INIT, text=True, capture_output=True, check=True, timeout=600)
        docker("commit", *labels, "--change", "ENTRYPOINT []",
               "--change", 'CMD ["/usr/local/sbin/lab-ami-init"]', helper, tag, timeout=600)
        docker("rm", "-f", helper, check=False)
        docker("rmi", stage, check=False)
        log(f"{ami}: committed {iid} as {tag} (with its /var/lib/docker) in {time.time() - t0:.1f}s")
        if src:
            self.fill_disk(ami, tag)   # before the AMI counts as made: its first node gets a ready disk
        self.ec2.create_tags(Resources=[ami], Tags=[{"Key": AMI_IMAGE_TAG, "Value": tag}])
        self.ami_images.pop(ami, None)

    def pass_once(self) -> None:
        instances = self.instances()
        nodes = inspect_labelled(f"{config.LABEL}=node")
        for iid, inst in instances.items():
            # One instance that cannot become a node (its AMI's image gone, ...) must not hold up the others.
            try:
                self.reconcile(iid, inst, nodes.get(iid))
                self.failures.pop(iid, None)
            except Exception as exc:  # noqa: BLE001 (logged; the next pass retries)
                self.ami_images.pop(inst.get("ImageId"), None)   # look the AMI up again next time
                if self.failures.get(iid) != str(exc):
                    log(f"{iid}: {exc}")
                    self.failures[iid] = str(exc)
        for name, node in nodes.items():
            if name not in instances:
                self.remove(name, node, why="unknown to the endpoint")
        # The instances every second (a launch becomes a node at once); what changes seldom every few seconds (each
        # of these calls costs the endpoint 15 to 25 ms, docs/benchmarks.md), the groups' rules also at once when
        # the live instances change.
        live = sorted((i, inst["State"]["Name"], inst.get("PrivateIpAddress")) for i, inst in instances.items())
        slow_due = time.time() - self.last_slow >= SLOW_EVERY
        if slow_due or live != self.live:
            self.enforce_security_groups(instances)
            self.live = live
        if slow_due:
            self.last_slow = time.time()
            self.replace_unhealthy()
            self.bake_amis()
            self.clean_disks()
            self.side_pass("dns", self.dns.sync)
            self.side_pass("ebs", lambda: self.ebs.sync(self.ec2, instances, nodes))
        self.refill_booted()

    def side_pass(self, what: str, work) -> None:
        """The DNS and EBS stand-ins' passes: what they change is logged; a failure (no loop device on this machine,
        the ACME CA gone) is logged once while it lasts and holds up nothing else of the pass."""
        try:
            for change in work():
                log(f"{what}: {change}")
            self.side_errors.pop(what, None)
        except Exception as exc:  # noqa: BLE001 (logged; the next pass retries)
            if self.side_errors.get(what) != str(exc):
                log(f"{what}: {exc}")
                self.side_errors[what] = str(exc)

    def enforce_security_groups(self, instances: dict[str, dict]) -> None:
        """The endpoint's security groups as packet filtering between the nodes (lab/sgfilter.py), refreshed when
        the groups' rules or the instances change."""
        if not sgfilter.enabled():
            return
        live = [i for i in instances.values() if i["State"]["Name"] in ("pending", "running")
                and i.get("PrivateIpAddress")]
        groups = [g for page in self.ec2.get_paginator("describe_security_groups").paginate()
                  for g in page["SecurityGroups"]]
        lines = sgfilter.rules(live, groups)
        if lines == self.sg_applied:
            return
        sgfilter.apply(config.BRIDGE, lines)
        if self.sg_applied is None or len(lines) != len(self.sg_applied):
            log(f"security groups: {len(lines) - 1} rules for {len(live)} instance(s) in {sgfilter.CHAIN}")
        self.sg_applied = lines

    def replace_unhealthy(self) -> None:
        """What a group does with an instance marked Unhealthy (SetInstanceHealth): terminate it and launch a
        replacement, the desired capacity unchanged. moto records the mark and nothing more."""
        for page in self.autoscaling.get_paginator("describe_auto_scaling_instances").paginate():
            for inst in page["AutoScalingInstances"]:
                # one already leaving (Terminating:Wait for the drain hook) is not asked again, and one still
                # launching (Pending:Wait) ends with its launch hook (the boot abandons it, or it times out)
                if inst["HealthStatus"].upper() == "UNHEALTHY" and inst["LifecycleState"] == "InService":
                    self.autoscaling.terminate_instance_in_auto_scaling_group(
                        InstanceId=inst["InstanceId"], ShouldDecrementDesiredCapacity=False)
                    log(f"{inst['InstanceId']}: Unhealthy in {inst['AutoScalingGroupName']}; terminated for the group "
                        "to replace it")

    def reconcile(self, iid: str, inst: dict, node: dict | None) -> None:
        state = inst["State"]["Name"]
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

    def remove(self, iid: str, node: dict, why: str = "terminated") -> None:
        if node["State"]["Running"]:
            docker("stop", "-t", "30", iid, check=False)
        kept = config.lab_dir() / "logs" / "instances"
        kept.mkdir(parents=True, exist_ok=True)
        docker("cp", f"{iid}:{BOOT_LOG}", str(kept / f"{iid}.boot.log"), check=False)
        docker("rm", "-f", "-v", iid, check=False)
        for m in node.get("Mounts", []):   # a disk restored ahead is a named volume, which rm -v keeps
            if m.get("Destination") == "/var/lib/docker" and m.get("Name", "").startswith(DISK_PREFIX):
                docker("volume", "rm", m["Name"], check=False)
        log(f"{iid}: {why}; node removed")
        with self.lock:
            refill = self.refills.pop(iid, None)
        if refill:   # it took its AMI's spare disk and is gone before its boot ended: no boot to wait for
            self.refill_later(*refill[:2])


def booted_at(iid: str) -> float:
    """When the node's user-data ended (the time the cloud-init stand-in writes into boot-finished), 0 before. A node
    of a baked AMI may still show its builder's mark for a moment after it starts, until the stand-in links the
    instance's own directory: that mark is older than the node."""
    out = subprocess.run(["docker", "exec", iid, "cat", "/var/lib/cloud/instance/boot-finished"],
                         capture_output=True, text=True).stdout.split()
    try:
        return float(out[0]) if out else 0.0
    except ValueError:
        return 0.0


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
    run(images["cloud"], once="--once" in sys.argv)
