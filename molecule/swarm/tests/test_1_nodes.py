"""molecule verify (pytest-testinfra), on every node: the containers' firewall, the EFS mount as rendered, and the
home directories with their owner and mode."""
from __future__ import annotations

from conftest import home_owner

testinfra_hosts = ["ansible://all"]

FS = "fs-0123456789abcdef0"
OPTIONS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"


def rules(host, chain: str) -> list[str]:
    return [line for line in host.check_output(f"iptables -S {chain}").splitlines() if line.startswith("-A ")]


def test_the_containers_firewall_is_complete_and_comes_first(host):
    assert host.run("/usr/local/sbin/jhs-container-firewall --check").rc == 0
    assert rules(host, "DOCKER-USER")[0] == "-A DOCKER-USER -j JHS-CONTAINERS"
    containers = rules(host, "JHS-CONTAINERS")
    for rule in ("-A JHS-CONTAINERS -d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable",
                 "-A JHS-CONTAINERS -d 10.0.0.0/8 -i docker_gwbridge -j REJECT --reject-with icmp-port-unreachable",
                 "-A JHS-CONTAINERS -d 10.0.0.0/8 -i docker_gwbridge -p udp -m udp --dport 53 -j RETURN"):
        assert rule in containers, containers
    # to the host itself (its SSH and swarm ports): INPUT, not FORWARD
    assert rules(host, "INPUT")[0] == "-A INPUT -j JHS-CONTAINERS-INPUT"
    to_host = rules(host, "JHS-CONTAINERS-INPUT")
    for rule in ("-A JHS-CONTAINERS-INPUT -i docker_gwbridge -j REJECT --reject-with icmp-port-unreachable",
                 "-A JHS-CONTAINERS-INPUT -i docker_gwbridge -p udp -m udp --dport 53 -j RETURN"):
        assert rule in to_host, to_host


def test_efs_is_mounted_as_aws_recommends_from_the_nodes_zone(host):
    settings = host.ansible.get_variables()
    zone = settings["efs_mount_availability_zone"]
    fstab = host.file("/etc/fstab").content_string
    if settings.get("efs_mount_method", "fstab") == "fstab":
        line = f"{zone}.{FS}.efs.eu-west-1.amazonaws.com:/ /mnt/efs nfs4 {OPTIONS} 0 0"
        assert line in fstab.splitlines(), fstab
        return
    assert "/mnt/efs" not in fstab, fstab
    assert host.file("/etc/systemd/system/mnt-efs.mount").content_string == (
        "#\n# Ansible managed\n#\n[Unit]\n"
        f"Description=EFS file system {FS} (user home directories)\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n[Mount]\n"
        f"What={zone}.{FS}.efs.eu-west-1.amazonaws.com:/\nWhere=/mnt/efs\nType=nfs4\nOptions={OPTIONS}\n\n"
        "[Install]\nWantedBy=remote-fs.target\n")


def test_the_homes_belong_to_the_notebook_user(host):
    """Each home's owner and mode from their one owner (plugins/module_utils/jhs_names.py), the root 0755 and owned
    by the same user."""
    uid, gid, mode = home_owner()
    for name, want in (("", 0o755), ("alice", mode), ("bob", mode)):
        home = host.file(f"/mnt/efs/home/{name}".rstrip("/"))
        assert home.is_directory and (home.uid, home.gid, home.mode) == (uid, gid, want), (name, home.mode)
