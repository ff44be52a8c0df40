"""The lab's security group filter (lab/sgfilter.py): the rules it derives from the endpoint's groups. Its effect on
packets between nodes is shown in the lab (tests/lab/test_site.py, test_security_groups_are_enforced_between_nodes)."""
from __future__ import annotations

from lab import sgfilter

NODES = {"GroupId": "sg-nodes", "IpPermissions": [
    {"IpProtocol": "tcp", "FromPort": 2377, "ToPort": 2377, "UserIdGroupPairs": [{"GroupId": "sg-nodes"}]},
    {"IpProtocol": "udp", "FromPort": 7946, "ToPort": 7946, "UserIdGroupPairs": [{"GroupId": "sg-nodes"}]},
    {"IpProtocol": "50", "UserIdGroupPairs": [{"GroupId": "sg-nodes"}]},
]}
HUB = {"GroupId": "sg-hub", "IpPermissions": [
    {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
    {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-admin"}]},
    {"IpProtocol": "gre", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},   # not modelled: left out
]}


def inst(iid, ip, *groups):
    return {"InstanceId": iid, "PrivateIpAddress": ip, "SecurityGroups": [{"GroupId": g} for g in groups]}


def test_rules_follow_ingress_permissions_with_group_members_as_sources_and_drop_the_rest():
    manager, worker = inst("i-m", "10.10.0.4", "sg-nodes", "sg-hub"), inst("i-w", "10.10.128.5", "sg-nodes")
    lines = sgfilter.rules([worker, manager], [NODES, HUB])
    c = sgfilter.CHAIN
    assert lines[0] == f"-A {c} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    # instances in address order; each one's rules end with its DROP; group members are the sources
    assert lines[1:] == [
        f"-A {c} -d 10.10.0.4/32 -s 0.0.0.0/0 -p tcp --dport 443 -m comment --comment sg-hub -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.0.0.0/8 -p icmp -m comment --comment sg-hub -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.0.4/32 -p tcp --dport 2377 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.128.5/32 -p tcp --dport 2377 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.0.4/32 -p udp --dport 7946 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.128.5/32 -p udp --dport 7946 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.0.4/32 -p 50 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -s 10.10.128.5/32 -p 50 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.0.4/32 -m comment --comment i-m -j DROP",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.0.4/32 -p tcp --dport 2377 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.128.5/32 -p tcp --dport 2377 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.0.4/32 -p udp --dport 7946 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.128.5/32 -p udp --dport 7946 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.0.4/32 -p 50 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -s 10.10.128.5/32 -p 50 -m comment --comment sg-nodes -j RETURN",
        f"-A {c} -d 10.10.128.5/32 -m comment --comment i-w -j DROP",
    ]


def test_port_ranges_all_protocols_and_an_empty_source_group():
    group = {"GroupId": "sg-x", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8100, "IpRanges": [{"CidrIp": "192.168.0.0/16"}]},
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "172.16.0.0/12"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [{"GroupId": "sg-nobody"}]},
        {"IpProtocol": "icmp", "FromPort": 8, "ToPort": 0, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
    ]}
    lines = sgfilter.rules([inst("i-a", "10.1.0.9", "sg-x")], [group])
    c = sgfilter.CHAIN
    assert lines[1:] == [
        f"-A {c} -d 10.1.0.9/32 -s 192.168.0.0/16 -p tcp --dport 8000:8100 -m comment --comment sg-x -j RETURN",
        f"-A {c} -d 10.1.0.9/32 -s 172.16.0.0/12 -m comment --comment sg-x -j RETURN",
        f"-A {c} -d 10.1.0.9/32 -s 10.0.0.0/8 -p icmp --icmp-type 8/0 -m comment --comment sg-x -j RETURN",
        f"-A {c} -d 10.1.0.9/32 -m comment --comment i-a -j DROP",
    ]


def test_no_instance_no_rule_but_replies():
    assert sgfilter.rules([], [NODES]) == [f"-A {sgfilter.CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
