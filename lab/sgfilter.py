"""The local endpoint's security groups, enforced between the lab's nodes as AWS enforces them between instances.

moto stores security groups and never filters a packet, so without this the lab lets every node reach every port
of every other one, and a rule missing from provisioning (a swarm port, ESP) cannot fail there. The lab's nodes
share one Docker bridge network, and the host passes bridged traffic through iptables (bridge-nf-call-iptables),
so the host's `DOCKER-USER` chain sees every packet from one node to another. The reconciler keeps one chain,
`JHS-LAB-SG`, jumped to from `DOCKER-USER` for traffic that enters and leaves the lab's bridge, holding what the
groups allow, as AWS does:
- ingress only: a packet to an instance's private address is accepted when one ingress rule of one of that
  instance's groups matches its protocol, port and source (a CIDR, or the private address of an instance in the
  source group); every other new connection to an instance is dropped (AWS drops, it does not refuse);
- stateful: replies of an accepted connection pass (conntrack);
- egress is open (the groups' default), and addresses that are no instance (the metadata, registry and ECR
  stand-ins, the host, which is the endpoint) are not filtered.
Not modelled: network ACLs, prefix lists, IPv6, and security groups of interfaces other than the primary one.
LAB_SECURITY_GROUPS=off (in the environment of `python -m lab up`) leaves the lab unfiltered.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess

CHAIN = "JHS-LAB-SG"
# IpProtocol (a name or a number, "-1" for all) -> iptables' -p (ESP by number: /etc/protocols may be missing)
PROTOCOLS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp", "50": "50",
             "esp": "50", "-1": None}


def enabled() -> bool:
    return os.environ.get("LAB_SECURITY_GROUPS", "enforce") != "off"


def _sources(perm: dict, members: dict[str, list[str]]) -> list[str]:
    out = [r["CidrIp"] for r in perm.get("IpRanges", []) if r.get("CidrIp")]
    for pair in perm.get("UserIdGroupPairs", []):
        out += [f"{ip}/32" for ip in members.get(pair.get("GroupId", ""), [])]
    return sorted(set(out), key=lambda c: (ipaddress.ip_network(c, strict=False), c))


def _match(perm: dict) -> list[str] | None:
    """iptables match arguments for a permission's protocol and ports; None for a protocol not modelled."""
    proto = str(perm.get("IpProtocol", "-1")).lower()
    if proto not in PROTOCOLS:
        return None
    name = PROTOCOLS[proto]
    if name is None:
        return []
    args = ["-p", name]
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    if name in ("tcp", "udp") and lo not in (None, -1):
        args += ["--dport", f"{lo}:{hi}" if hi not in (None, lo) else str(lo)]
    elif name == "icmp" and lo not in (None, -1):
        args += ["--icmp-type", str(lo) if hi in (None, -1) else f"{lo}/{hi}"]
    return args


def rules(instances: list[dict], groups: list[dict]) -> list[str]:
    """The chain's rules (iptables-restore lines) for these instances (describe_instances' dicts: running or
    pending ones with a private address) and groups (describe_security_groups' dicts)."""
    members: dict[str, list[str]] = {}
    for inst in instances:
        for g in inst.get("SecurityGroups", []):
            members.setdefault(g["GroupId"], []).append(inst["PrivateIpAddress"])
    by_id = {g["GroupId"]: g for g in groups}
    lines = [f"-A {CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    for inst in sorted(instances, key=lambda i: ipaddress.ip_address(i["PrivateIpAddress"])):
        dst = inst["PrivateIpAddress"]
        for gid in sorted({g["GroupId"] for g in inst.get("SecurityGroups", [])}):
            for perm in by_id.get(gid, {}).get("IpPermissions", []):
                match = _match(perm)
                if match is None:
                    continue
                for src in _sources(perm, members):
                    lines.append(" ".join([f"-A {CHAIN}", "-d", f"{dst}/32", "-s", src, *match,
                                           "-m", "comment", "--comment", gid, "-j", "RETURN"]))
        lines.append(f"-A {CHAIN} -d {dst}/32 -m comment --comment {inst['InstanceId']} -j DROP")
    return lines


def _iptables(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["iptables-restore", "--noflush"] if stdin is not None else ["iptables", *args]
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]} is not installed")


def apply(bridge: str, lines: list[str]) -> None:
    """Replace the chain's rules in one iptables-restore (atomic), then make sure DOCKER-USER jumps to it first for
    traffic that enters and leaves the bridge. Raises RuntimeError with iptables' message."""
    text = "*filter\n" + f":{CHAIN} - [0:0]\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"
    proc = _iptables(stdin=text)
    if proc.returncode != 0:
        raise RuntimeError(f"iptables-restore of {CHAIN} failed: {proc.stderr.strip()}")
    jump = ["DOCKER-USER", "-i", bridge, "-o", bridge, "-j", CHAIN]
    if _iptables("-C", *jump).returncode != 0:
        proc = _iptables("-I", *jump[:1], "1", *jump[1:])
        if proc.returncode != 0:
            raise RuntimeError(f"iptables -I DOCKER-USER failed: {proc.stderr.strip()}")


def remove(bridge: str | None) -> None:
    """Take the chain and its jumps away (make lab-down); nothing to do when they are absent."""
    if bridge:
        while _iptables("-D", "DOCKER-USER", "-i", bridge, "-o", bridge, "-j", CHAIN).returncode == 0:
            pass
    listing = _iptables("-S", "DOCKER-USER").stdout
    for line in listing.splitlines():   # a jump left by a lab whose bridge is gone
        if line.startswith("-A DOCKER-USER") and line.endswith(f"-j {CHAIN}"):
            _iptables(*(["-D"] + line.split()[1:]))
    _iptables("-F", CHAIN)
    _iptables("-X", CHAIN)
