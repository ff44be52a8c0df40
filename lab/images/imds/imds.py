#!/usr/bin/python3
"""Instance metadata stand-in for the lab (IMDSv2 only, like an instance with HttpTokens=required).

It owns 169.254.169.254 in its own container; nodes route that address to it, so traffic from a
container inside a node is forwarded (and can be blocked by DOCKER-USER) exactly as on EC2. A caller
is identified by its source address, looked up among the local AWS endpoint's running instances,
the way AWS identifies it by network interface. Answers what boot code reads: instance id, region,
availability zone, private IP, instance type, AMI, user-data, the identity document, the public key
of the instance's key pair (public-keys/0/openssh-key, which the cloud-init stand-in installs for
SSH) and the temporary credentials of the instance profile's role, which it gets from the endpoint's STS
(AssumeRole, one session per instance named after it, renewed well before it expires), as EC2 does: a
node's calls are made as its role (sts get-caller-identity names the assumed role).
"""
import base64
import json
import os
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

ENDPOINT = os.environ["LAB_AWS_ENDPOINT_URL"]
REGION = os.environ.get("LAB_REGION", "eu-west-1")
TOKENS = {}  # token -> (client address, expiry)
SESSIONS = {}  # (role ARN, instance id) -> the credentials AssumeRole gave
SESSION_SECONDS = 3600
RENEW_BEFORE = timedelta(minutes=15)   # EC2 renews at least 5 minutes before; clients refresh from 15 minutes


CLIENTS = {}
CLIENTS_LOCK = threading.Lock()


def client(service):
    """The stand-in's own calls (what EC2's control plane knows), with the lab endpoint's root credentials: one
    client per service, made once (making one is slow, and not thread-safe; using one is). A slow answer here is a
    node's SDK finding no credentials (botocore waits 1 s for the metadata service by default)."""
    with CLIENTS_LOCK:
        if service not in CLIENTS:
            CLIENTS[service] = boto3.session.Session().client(
                service, endpoint_url=ENDPOINT, region_name=REGION,
                aws_access_key_id=os.environ.get("LAB_AWS_ACCESS_KEY_ID", "lab"),
                aws_secret_access_key=os.environ.get("LAB_AWS_SECRET_ACCESS_KEY", "lab"))
        return CLIENTS[service]


def ec2():
    return client("ec2")


def instance_for(addr):
    resp = ec2().describe_instances(Filters=[
        {"Name": "private-ip-address", "Values": [addr]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping"]}])
    for res in resp["Reservations"]:
        for inst in res["Instances"]:
            return inst
    return None


def template_data(inst):
    """The launch template data an instance was launched from ({} if none)."""
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    lt_id = tags.get("aws:ec2launchtemplate:id")
    if not lt_id:
        return {}
    vers = ec2().describe_launch_template_versions(
        LaunchTemplateId=lt_id, Versions=[tags.get("aws:ec2launchtemplate:version", "$Latest")])
    for v in vers["LaunchTemplateVersions"]:
        return v["LaunchTemplateData"]
    return {}


def profile_name(inst):
    arn = (inst.get("IamInstanceProfile") or {}).get("Arn", "")
    if not arn:
        # moto does not copy a launch template's instance profile onto ASG instances: read it there.
        prof = template_data(inst).get("IamInstanceProfile", {})
        arn = prof.get("Arn") or prof.get("Name", "")
    return arn.rsplit("/", 1)[-1] if arn else ""


def profile_role(inst):
    """(instance profile ARN and id, role name, role ARN) of the instance's profile, or None without a profile or
    role."""
    name = profile_name(inst)
    if not name:
        return None
    try:
        prof = client("iam").get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except Exception as exc:  # a profile deleted since the launch: no credentials, as on EC2
        print(f"instance profile {name}: {exc}", flush=True)
        return None
    roles = prof.get("Roles") or []
    return (prof["Arn"], prof["InstanceProfileId"], roles[0]["RoleName"], roles[0]["Arn"]) if roles else None


def role_credentials(inst, role_arn):
    key = (role_arn, inst["InstanceId"])
    creds = SESSIONS.get(key)
    if creds is None or creds["Expiration"] - datetime.now(timezone.utc) < RENEW_BEFORE:
        creds = client("sts").assume_role(RoleArn=role_arn, RoleSessionName=inst["InstanceId"],
                                          DurationSeconds=SESSION_SECONDS)["Credentials"]
        creds["LastUpdated"] = datetime.now(timezone.utc)
        SESSIONS[key] = creds
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": creds["AccessKeyId"],
                       "SecretAccessKey": creds["SecretAccessKey"], "Token": creds["SessionToken"],
                       "Expiration": creds["Expiration"].astimezone(timezone.utc).strftime(stamp),
                       "LastUpdated": creds["LastUpdated"].strftime(stamp)})


def public_key(inst):
    """The OpenSSH public key of the instance's key pair (its own KeyName, else its launch template's), or None."""
    name = inst.get("KeyName") or template_data(inst).get("KeyName")
    if not name:
        return None
    try:
        pairs = ec2().describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
    except Exception as exc:  # a key pair deleted since the launch: no key, as on EC2
        print(f"key pair {name}: {exc}", flush=True)
        return None
    key = pairs[0].get("PublicKey") if pairs else None
    return f"{key.strip()} {name}\n" if key else None


def meta(inst, path):
    az = inst["Placement"]["AvailabilityZone"]
    simple = {
        "instance-id": inst["InstanceId"],
        "ami-id": inst["ImageId"],
        "instance-type": inst["InstanceType"],
        "local-ipv4": inst["PrivateIpAddress"],
        "local-hostname": inst.get("PrivateDnsName", ""),
        "hostname": inst.get("PrivateDnsName", ""),
        "placement/availability-zone": az,
        "placement/region": az[:-1],
        "mac": "02:00:00:00:00:01",
    }
    if path in simple:
        return simple[path]
    if path in ("placement", "placement/"):
        return "availability-zone\nregion"
    if path in ("iam", "iam/"):
        return "info\nsecurity-credentials/"
    if path.startswith("public-keys"):   # public-keys/ lists "0=<key name>", public-keys/0/ lists "openssh-key"
        key = public_key(inst)
        listing = {"public-keys": f"0={key.split()[-1]}" if key else None, "public-keys/0": "openssh-key",
                   "public-keys/0/openssh-key": key}
        return listing.get(path.rstrip("/")) if key else None
    if path == "":
        return "\n".join(["ami-id", "hostname", "iam/", "instance-id", "instance-type", "local-hostname",
                          "local-ipv4", "mac", "placement/", "public-keys/"])
    if not path.startswith("iam/"):
        return None
    found = profile_role(inst)
    if found is None:
        return None
    profile_arn, profile_id, role, role_arn = found
    if path in ("iam/security-credentials/", "iam/security-credentials"):
        return role
    if path == f"iam/security-credentials/{role}":
        return role_credentials(inst, role_arn)
    if path == "iam/info":
        return json.dumps({"Code": "Success", "LastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "InstanceProfileArn": profile_arn, "InstanceProfileId": profile_id})
    return None


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body=b"", ctype="text/plain", headers=()):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        if self.path != "/latest/api/token":
            return self._send(404)
        ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "0") or 0)
        if not 1 <= ttl <= 21600:
            return self._send(400, "invalid TTL")
        token = secrets.token_urlsafe(32)
        TOKENS[token] = (self.client_address[0], time.time() + ttl)
        # AWS answers with the token's TTL too; aws-sdk-go v1 (dockerd's awslogs driver) reads it and gives up
        # on the instance's credentials without it.
        self._send(200, token, headers=[("X-aws-ec2-metadata-token-ttl-seconds", str(ttl))])

    def do_GET(self):
        token = self.headers.get("X-aws-ec2-metadata-token", "")
        owner = TOKENS.get(token)
        if not owner or owner[0] != self.client_address[0] or owner[1] < time.time():
            return self._send(401)  # IMDSv2 required
        inst = instance_for(self.client_address[0])
        if inst is None:
            return self._send(404, "no instance has this address")
        path = self.path
        if path == "/latest/user-data":
            data = ec2().describe_instance_attribute(
                InstanceId=inst["InstanceId"], Attribute="userData").get("UserData", {}).get("Value")
            return self._send(200, base64.b64decode(data)) if data else self._send(404)
        if path == "/latest/dynamic/instance-identity/document":
            az = inst["Placement"]["AvailabilityZone"]
            doc = {"instanceId": inst["InstanceId"], "region": az[:-1], "availabilityZone": az,
                   "privateIp": inst["PrivateIpAddress"], "instanceType": inst["InstanceType"],
                   "imageId": inst["ImageId"], "accountId": "123456789012", "architecture": "x86_64"}
            return self._send(200, json.dumps(doc), "application/json")
        if path.startswith("/latest/meta-data/"):
            value = meta(inst, path[len("/latest/meta-data/"):])
            return self._send(200, value) if value is not None else self._send(404)
        self._send(404)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.client_address[0], fmt % args), flush=True)


if __name__ == "__main__":
    ThreadingHTTPServer(("169.254.169.254", 80), Handler).serve_forever()
