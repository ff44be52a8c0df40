"""The lab's private ACME CA and the DNS it validates against: the rehearsal's stand-ins for Let's Encrypt and for
the internet's resolution of a Route53 zone (docs/lab.md, "Rehearsing inventories/aws").

`ensure(image)` runs `jhs-lab-acme` (pebble and pebble-challtestsrv, lab/images/acme) at config.acme_addr() on the lab
network. pebble's HTTP-01 validation asks challtestsrv's DNS server for the hub's name, and the reconciler keeps that
server's A records equal to the endpoint's Route53 zones (`DnsSync`), with an Elastic IP given as its instance's
private address: an Elastic IP is a one-to-one NAT to that address on AWS, and the lab's traffic never targets a
public address. So pebble reaches the manager by the name the operator's zone gives it, as Let's Encrypt does.
"""
from __future__ import annotations

import json
import ssl
import time
import urllib.request
from pathlib import Path

from . import config
from .docker import docker, inspect

ACME_PORT = 14000        # pebble's ACME directory: https://<addr>:14000/dir
ROOTS_PORT = 15000       # pebble's management API: /roots/0 is the root its certificates chain to
DNS_API_PORT = 8055      # challtestsrv's management API: /add-a, /clear-a


def state_file() -> Path:
    """Written once the CA answers; the reconciler syncs DNS only while it exists (`lab down` removes .lab)."""
    return config.lab_dir() / "acme.json"


def directory_url() -> str:
    return f"https://{config.acme_addr()}:{ACME_PORT}/dir"


def ensure(image: str) -> dict:
    """The CA running (started if needed); returns {directory_url, api_ca}: the PEM of the throwaway CA of its HTTPS
    API (what certbot must trust: the hub role's jupyterhub_letsencrypt_server_ca)."""
    addr = config.acme_addr()
    cur = inspect(config.ACME_CONTAINER)
    if not (cur and cur["Config"]["Image"] == image and cur["State"]["Running"]):
        if cur:
            docker("rm", "-f", "-v", config.ACME_CONTAINER)
        docker("run", "-d", "--name", config.ACME_CONTAINER, "--label", f"{config.LABEL}=acme",
               "--network", config.NETWORK, "--ip", addr, "-e", f"LAB_ACME_ADDR={addr}",
               "--restart", "unless-stopped", image)
    api_ca = ""
    deadline = time.time() + 60
    while time.time() < deadline:
        api_ca = docker("exec", config.ACME_CONTAINER, "cat", "/pebble/api-ca.pem", check=False)
        if api_ca.startswith("-----BEGIN") and _answers(api_ca):
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the lab's ACME CA ({config.ACME_CONTAINER}) did not answer on {directory_url()} within "
                           f"60 s: docker logs {config.ACME_CONTAINER}")
    info = {"directory_url": directory_url(), "api_ca": api_ca + "\n"}
    state_file().write_text(json.dumps(info, indent=1) + "\n")
    return info


def _context(api_ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=api_ca)


def _answers(api_ca: str) -> bool:
    try:
        with urllib.request.urlopen(directory_url(), timeout=3, context=_context(api_ca)) as resp:
            return resp.status == 200
    except OSError:
        return False


def issuing_root() -> str:
    """The root of the certificates the CA issues (pebble makes a new one at each start)."""
    info = json.loads(state_file().read_text())
    url = f"https://{config.acme_addr()}:{ROOTS_PORT}/roots/0"
    with urllib.request.urlopen(url, timeout=10, context=_context(info["api_ca"])) as resp:
        return resp.read().decode()


def remove() -> None:
    docker("rm", "-f", "-v", config.ACME_CONTAINER, check=False)
    state_file().unlink(missing_ok=True)


class DnsSync:
    """The endpoint's Route53 A records into challtestsrv's DNS server, an Elastic IP as its instance's private
    address (see the module's docstring); what is already there is not posted again, and a record gone is cleared."""

    def __init__(self, client) -> None:
        self.client = client          # a client factory: client("route53"), client("ec2")
        self.posted: dict[str, tuple[str, ...]] = {}
        self.started = 0.0            # the state file's time: a CA started again has none of the records

    def records(self) -> dict[str, tuple[str, ...]]:
        route53, ec2 = self.client("route53"), self.client("ec2")
        nat = {a["PublicIp"]: a["PrivateIpAddress"] for a in ec2.describe_addresses()["Addresses"]
               if a.get("PrivateIpAddress")}
        found: dict[str, tuple[str, ...]] = {}
        for zone in route53.list_hosted_zones()["HostedZones"]:
            for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
                for rrset in page["ResourceRecordSets"]:
                    if rrset["Type"] == "A" and rrset.get("ResourceRecords"):
                        name = rrset["Name"] if rrset["Name"].endswith(".") else rrset["Name"] + "."
                        found[name] = tuple(sorted(nat.get(r["Value"], r["Value"])
                                                   for r in rrset["ResourceRecords"]))
        return found

    def sync(self) -> list[str]:
        """One pass while the CA runs; returns what changed, for the reconciler's log."""
        if not state_file().exists():
            self.posted = {}
            return []
        if state_file().stat().st_mtime != self.started:
            self.posted, self.started = {}, state_file().stat().st_mtime
        wanted, changes = self.records(), []
        for name in set(self.posted) - set(wanted):
            self._post("clear-a", {"host": name})
            changes.append(f"{name} cleared")
        for name, addrs in wanted.items():
            if self.posted.get(name) != addrs:
                self._post("add-a", {"host": name, "addresses": list(addrs)})
                changes.append(f"{name} A {' '.join(addrs)}")
        self.posted = wanted
        return changes

    @staticmethod
    def _post(path: str, body: dict) -> None:
        req = urllib.request.Request(f"http://{config.acme_addr()}:{DNS_API_PORT}/{path}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
