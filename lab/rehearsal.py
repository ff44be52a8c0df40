"""Rehearse inventories/aws in the lab: a copy of it as written, with only what the lab must set put over it
(lab/rehearsal_overlay.yml), taken from an empty account to a hub that answers over HTTPS with a certificate from
an ACME CA, then torn down. docs/lab.md ("Rehearsing inventories/aws") says what differs from AWS and why.

`python -m lab rehearse` (make lab-rehearsal) needs the lab up (`python -m lab up`); it runs beside the lab's own
cluster, on the same endpoint and network, as a second cluster named as inventories/aws names it. It:
  1. starts the lab's ACME CA (lab/acme.py), the stand-in for Let's Encrypt, and copies the lab cluster's hub images
     into the rehearsal's repositories (seed_images: the same recipes, so each image is built once per lab);
  2. makes what an operator has before the first run: the Route53 zone of aws_cluster_hosted_zone, and an IAM user
     whose only policy is docs/aws-permissions.md's operator policy for this cluster and that zone;
  3. writes .lab/rehearsal/: the copy (inventories/aws's files as they are, plus `manager_address: private` in the
     inventory plugin's file), the overlay as a second inventory source, and the operator's environment;
  4. runs site.yml with both sources, as the operator (the OAuth client secret given with -e, as docs/deploy-aws.md
     says), its output in .lab/logs/rehearsal-site.log;
  5. asks the hub over HTTPS at the name the zone gives it, trusting only the ACME CA's root.
`python -m lab rehearse --down` runs teardown.yml with the same sources (user data too) and removes the zone, the
user and the CA. `--result FILE` writes what each step found as JSON (tests/lab/test_site.py reads it).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import acme, config

SOURCE = config.ROOT / "inventories" / "aws"
OVERLAY = Path(__file__).resolve().parent / "rehearsal_overlay.yml"
USER = "jhs-lab-rehearsal-operator"


class RehearsalError(RuntimeError):
    pass


def workdir() -> Path:
    return config.lab_dir() / "rehearsal"


def inventories() -> list[str]:
    return ["-i", str(workdir() / "aws"), "-i", str(workdir() / "overlay")]


def settings() -> dict:
    """inventories/aws's group_vars as written (the copy's own settings, before the overlay)."""
    return yaml.safe_load((SOURCE / "group_vars" / "all.yml").read_text())


def admin(service: str):
    from .reconciler import aws_client
    return aws_client(service)


def write_copy(extra_env: dict[str, str]) -> dict[str, str]:
    """.lab/rehearsal/{aws,overlay,env}; returns the environment the operator's runs get."""
    from .__main__ import read_env
    work = workdir()
    shutil.rmtree(work / "aws", ignore_errors=True)
    shutil.copytree(SOURCE, work / "aws")
    plugin = work / "aws" / "cluster.swarm_ec2.yml"
    plugin.write_text(plugin.read_text() + "# the rehearsal's overlay: the manager at its private address\n"
                      "manager_address: private\n")
    (work / "overlay" / "group_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy(OVERLAY, work / "overlay" / "group_vars" / "all.yml")
    (work / "overlay" / "hosts.yml").write_text("# no host: this source only carries the overlay's group_vars\nall: {}\n")
    env = {**read_env(), **extra_env}
    (work / "env").write_text("# written by `python -m lab rehearse`: the rehearsal operator's environment\n"
                              + "".join(f"{k}={v}\n" for k, v in env.items() if "\n" not in v))
    return env


def put_operator_policy(cluster: str, zone_id: str) -> None:
    """The rehearsal operator's only policy: docs/aws-permissions.md's operator policy, as it reads now, for this
    cluster and zone (put again before teardown too, so an edit of the doc takes effect, as at `lab up`)."""
    from .__main__ import operator_policy
    admin("iam").put_user_policy(UserName=USER, PolicyName=config.OPERATOR_POLICY_NAME,
                                 PolicyDocument=json.dumps(operator_policy(cluster, zone_id=zone_id)))


def operator_user(cluster: str, zone_id: str) -> dict[str, str]:
    """An IAM user whose only policy is the operator policy for this cluster and zone; its keys (new ones each time:
    the old are deleted)."""
    iam = admin("iam")
    try:
        iam.create_user(UserName=USER)
    except iam.exceptions.EntityAlreadyExistsException:
        for key in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=USER, AccessKeyId=key["AccessKeyId"])
    put_operator_policy(cluster, zone_id)
    key = iam.create_access_key(UserName=USER)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def hosted_zone(name: str, create: bool = True) -> str | None:
    route53 = admin("route53")
    for zone in route53.list_hosted_zones()["HostedZones"]:
        if zone["Name"].rstrip(".") == name:
            return zone["Id"].split("/")[-1]
    if not create:
        return None
    zone = route53.create_hosted_zone(Name=name, CallerReference=f"jhs-lab-rehearsal-{time.time()}")
    return zone["HostedZone"]["Id"].split("/")[-1]


def playbook(name: str, env: dict[str, str], log: Path, *extra: str) -> int:
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), name, *inventories(), *extra]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.run(argv, cwd=config.ROOT, env={**os.environ, **env, "JHS_RUN_LOG": str(log)},
                              stdout=fh, stderr=subprocess.STDOUT).returncode


def ask_hub(domain: str, root_pem: str, timeout: float = 120) -> dict:
    """GET /hub/login at the zone's address for the name, trusting only the ACME CA's root, with the name as SNI
    (as a browser would); the address is the record's, an Elastic IP as its instance's private address."""
    addrs = acme.DnsSync(admin).records().get(domain + ".", ())
    if not addrs:
        raise RehearsalError(f"no A record for {domain} in the endpoint's Route53 zones")
    ctx = ssl.create_default_context(cadata=root_pem)
    deadline, last = time.time() + timeout, ""
    while time.time() < deadline:
        try:
            with socket.create_connection((addrs[0], 443), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=domain) as tls:
                    cert = tls.getpeercert()
                    tls.sendall(f"GET /hub/login HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split()[1])
            if status == 200:
                return {"address": addrs[0], "status": status, "issuer": dict(x[0] for x in cert["issuer"]),
                        "subject_alt_names": [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"],
                        "body": body.decode(errors="replace")}
            last = f"HTTP {status}"
        except (OSError, ValueError, IndexError) as exc:
            last = str(exc)
        time.sleep(3)
    raise RehearsalError(f"https://{domain}/hub/login (at {addrs[0]}) did not answer 200 within {timeout:.0f} s: {last}")


def state_volume(cluster: str) -> dict:
    """The manager's hub state volume (tag jhs:data=hub-state), and what its hub's data directory is mounted from."""
    ec2 = admin("ec2")
    (vol,) = ec2.describe_volumes(Filters=[{"Name": "tag:jhs:cluster", "Values": [cluster]},
                                           {"Name": "tag:jhs:data", "Values": ["hub-state"]}])["Volumes"]
    iid = vol["Attachments"][0]["InstanceId"]
    mounted = subprocess.run(["docker", "exec", iid, "findmnt", "-no", "SOURCE", "/var/lib/jupyterhub"],
                             capture_output=True, text=True).stdout.strip()
    return {"volume_id": vol["VolumeId"], "manager": iid, "mounted_from": mounted}


MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json")


def seed_images(cluster: str) -> list[str]:
    """Copy the lab cluster's hub, proxy and notebook images into this cluster's repositories of the ECR stand-in, by
    the registry's API (cross-repository blob mounts, then the manifest): the recipes are the same, so are the tags,
    and the rehearsal's manager finds them and pulls them, as a replaced manager does, instead of building the same
    images a second time in one run (the lab's cluster has shown the build and the push). Nothing when the lab's
    cluster has not pushed them yet. Returns what it copied."""
    import base64
    import urllib.error
    import urllib.request
    from .__main__ import ecr_login
    auth = "Basic " + base64.b64encode(":".join(ecr_login()).encode()).decode()
    base = f"http://127.0.0.1:{config.ecr_host_port()}/v2"

    def call(method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(base + path, data=body, method=method,
                                     headers={"Authorization": auth, **(headers or {})})
        return urllib.request.urlopen(req, timeout=60)

    src, dst, copied = config.cluster_names()["ecr_prefix"], config.cluster_names(cluster)["ecr_prefix"], []
    for name in ("hub", "proxy", "notebook"):
        try:
            with call("GET", f"/{src}{name}/tags/list") as resp:
                tags = json.load(resp).get("tags") or []
        except urllib.error.HTTPError:
            continue   # not pushed (yet): the rehearsal's manager builds it
        for tag in tags:
            with call("GET", f"/{src}{name}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}) as resp:
                manifest, media_type = resp.read(), resp.headers["Content-Type"]
            doc = json.loads(manifest)
            for digest in [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]:
                with call("POST", f"/{dst}{name}/blobs/uploads/?mount={digest}&from={src}{name}", b"") as resp:
                    if resp.status != 201:
                        raise RehearsalError(f"the ECR stand-in did not mount {digest} into {dst}{name}")
            with call("PUT", f"/{dst}{name}/manifests/{tag}", manifest, {"Content-Type": media_type}):
                copied.append(f"{dst}{name}:{tag}")
    return copied


def up(result: dict) -> str:
    from .__main__ import read_env, say
    lab_env = read_env()
    if not lab_env.get("LAB_BASE_AMI"):
        raise RehearsalError("the lab is not up: run `python -m lab up` (or `make lab-up`) first")
    written = settings()
    if written["aws_region"] != config.region():
        raise RehearsalError(f"inventories/aws's aws_region is {written['aws_region']}, the lab's region "
                             f"{config.region()}: the lab follows one region (LAB_REGION)")
    t = time.monotonic()
    images = json.loads((config.lab_dir() / "images.json").read_text())
    ca = acme.ensure(images["acme"])
    zone_id = hosted_zone(written["aws_cluster_hosted_zone"])
    keys = operator_user(written["cluster_name"], zone_id)
    env = write_copy({**keys, "LAB_REHEARSAL_ACME_DIRECTORY": ca["directory_url"], "LAB_REHEARSAL_ACME_CA": ca["api_ca"]})
    result.update(cluster=written["cluster_name"], domain=written["jupyterhub_domain"], zone_id=zone_id,
                  images_copied=seed_images(written["cluster_name"]))
    say(f"rehearsal: inventories/aws copied to {workdir()} with the lab's overlay; site.yml as {USER} "
        f"(log: .lab/logs/rehearsal-site.log)")
    log = config.lab_dir() / "logs" / "rehearsal-site.log"
    secret = secrets.token_hex(20)
    rc = playbook("site.yml", env, log, "-e", f"aws_cluster_oauth_client_secret={secret}")
    # the client secret given with -e reaches no line of the run's output (the secret itself is not kept)
    result.update(site_rc=rc, site_seconds=round(time.monotonic() - t), secret_in_site_log=secret in log.read_text())
    if rc != 0:
        raise RehearsalError(f"site.yml failed (exit {rc}) with the copy of inventories/aws; its log: {log}")
    hub = ask_hub(written["jupyterhub_domain"], acme.issuing_root())
    result["https"] = {k: v for k, v in hub.items() if k != "body"}
    result["https"]["login_page_offers_github"] = "Sign in with GitHub" in hub["body"]
    result["state_volume"] = state_volume(written["cluster_name"])
    url = f"https://{written['jupyterhub_domain']}/ (at {hub['address']}; the CA's root: python -m lab rehearse --root)"
    say(f"rehearsal: the hub answers at {url}, certificate issued by {hub['issuer'].get('commonName')}")
    return url


def down(result: dict) -> None:
    from .__main__ import say
    written = settings()
    if (workdir() / "env").exists() and (workdir() / "aws").is_dir():
        zone_id = hosted_zone(written["aws_cluster_hosted_zone"], create=False)
        if zone_id:
            put_operator_policy(written["cluster_name"], zone_id)
        env = dict(line.split("=", 1) for line in (workdir() / "env").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
        log = config.lab_dir() / "logs" / "rehearsal-teardown.log"
        t = time.monotonic()
        rc = playbook("playbooks/teardown.yml", {**env, "LAB_REHEARSAL_ACME_CA": "", "LAB_REHEARSAL_ACME_DIRECTORY": ""},
                      log, "-e", "teardown_delete_user_data=true")
        result.update(teardown_rc=rc, teardown_seconds=round(time.monotonic() - t))
        if rc != 0:
            raise RehearsalError(f"teardown.yml failed (exit {rc}); its log: {log}")
    ec2 = admin("ec2")
    tagged = {"Name": "tag:jhs:cluster", "Values": [written["cluster_name"]]}
    result["left"] = {
        "instances": [i["InstanceId"] for r in ec2.describe_instances(Filters=[tagged])["Reservations"]
                      for i in r["Instances"] if i["State"]["Name"] != "terminated"],
        "vpcs": [v["VpcId"] for v in ec2.describe_vpcs(Filters=[tagged])["Vpcs"]],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=[tagged])["Volumes"]]}
    zone_id = hosted_zone(written["aws_cluster_hosted_zone"], create=False)
    if zone_id:
        route53 = admin("route53")
        records = [r for r in route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
                   if r["Type"] not in ("NS", "SOA")]
        result["left"]["records"] = [r["Name"] for r in records]
        for r in records:   # what teardown left (none, when it ran), so the zone can go
            route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": r}]})
        route53.delete_hosted_zone(Id=zone_id)
    iam = admin("iam")
    try:
        for key in iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=USER, AccessKeyId=key["AccessKeyId"])
        for name in iam.list_user_policies(UserName=USER)["PolicyNames"]:
            iam.delete_user_policy(UserName=USER, PolicyName=name)
        iam.delete_user(UserName=USER)
    except iam.exceptions.NoSuchEntityException:
        pass
    acme.remove()
    shutil.rmtree(workdir(), ignore_errors=True)
    say("rehearsal: torn down (its cluster, zone, operator user and ACME CA)")


def main(down_: bool, result_file: str | None, root: bool) -> int:
    result: dict = {}
    try:
        if root:
            print(acme.issuing_root(), end="")
        elif down_:
            down(result)
        else:
            up(result)
        return 0
    except Exception as exc:  # noqa: BLE001 (said, and kept in the result for the test that reads it)
        result["error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RehearsalError) else str(exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if result_file:
            Path(result_file).write_text(json.dumps(result, indent=1) + "\n")
