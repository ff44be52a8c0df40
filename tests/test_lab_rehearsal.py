"""The rehearsal of inventories/aws (lab/rehearsal.py) without a lab: the overlay sets only what docs/lab.md lists, the
copy is inventories/aws as written, and the DNS the lab's ACME CA validates against follows the endpoint's Route53
zones with an Elastic IP as its instance's private address. The rehearsal itself runs in tests/lab/test_site.py."""
from __future__ import annotations

import re

import boto3
import pytest
import yaml

from lab import acme, rehearsal

ROOT = rehearsal.config.ROOT


def documented_overlay() -> set[str]:
    """The settings named in the first column of docs/lab.md's overlay table."""
    text = (ROOT / "docs" / "lab.md").read_text()
    section = text.split("## Rehearsing inventories/aws", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])}


def test_the_overlay_sets_exactly_what_docs_lab_md_lists():
    overlay = set(yaml.safe_load(rehearsal.OVERLAY.read_text()))
    assert overlay == documented_overlay() - {"manager_address"}   # that one goes into the plugin's file


def test_the_overlay_leaves_inventories_aws_choices_alone():
    """What the example chooses (sign-in, TLS mode, the zone and name, the registry's kind, logs, the scaler, the
    cluster) is its own: the overlay changes where things are, not what the example does."""
    overlay, written = yaml.safe_load(rehearsal.OVERLAY.read_text()), rehearsal.settings()
    for key in ("cluster_name", "aws_region", "jupyterhub_authenticator", "jupyterhub_tls_mode", "jupyterhub_domain",
                "aws_cluster_hosted_zone", "aws_cluster_dns_record", "jupyterhub_image_registry_auth",
                "docker_engine_log_driver", "jupyterhub_scaler_enabled", "jupyterhub_registry_hub_images"):
        assert key in written and key not in overlay, key
    assert written["jupyterhub_tls_mode"] == "letsencrypt" and written["jupyterhub_authenticator"] == "github"


def test_the_copy_is_inventories_aws_as_written_with_the_plugin_told_the_private_address(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    env = rehearsal.write_copy({"AWS_ACCESS_KEY_ID": "AKREHEARSAL", "LAB_REHEARSAL_ACME_CA": "-----BEGIN X\nY\n"})
    copy = tmp_path / "rehearsal" / "aws"
    source = sorted(p.relative_to(rehearsal.SOURCE) for p in rehearsal.SOURCE.rglob("*") if p.is_file())
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == source
    for rel in source:
        text, original = (copy / rel).read_text(), (rehearsal.SOURCE / rel).read_text()
        if rel.name == "cluster.swarm_ec2.yml":
            assert text.startswith(original) and yaml.safe_load(text) == {**yaml.safe_load(original),
                                                                           "manager_address": "private"}
        else:
            assert text == original, rel
    assert (tmp_path / "rehearsal" / "overlay" / "group_vars" / "all.yml").read_text() == rehearsal.OVERLAY.read_text()
    assert env["AWS_ACCESS_KEY_ID"] == "AKREHEARSAL"
    written = (tmp_path / "rehearsal" / "env").read_text()
    assert "AWS_ACCESS_KEY_ID=AKREHEARSAL\n" in written and "BEGIN" not in written   # no multi-line value in the file


@pytest.fixture
def endpoint(aws_env):
    def client(service):
        return boto3.client(service, endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name=aws_env["AWS_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


def test_dns_follows_the_zones_a_records_with_an_elastic_ip_as_its_instances_private_address(endpoint, tmp_path,
                                                                                              monkeypatch):
    ec2, route53 = endpoint("ec2"), endpoint("route53")
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    eip = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=eip["AllocationId"], InstanceId=inst["InstanceId"])
    zone = route53.create_hosted_zone(Name="rehearsal.test", CallerReference="dns-sync")["HostedZone"]["Id"]

    def put(name: str, value: str, action: str = "UPSERT") -> None:
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": action,
            "ResourceRecordSet": {"Name": name, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": value}]}}]})

    put("hub.rehearsal.test", eip["PublicIp"])
    put("other.rehearsal.test", "192.0.2.7")
    sync, posted = acme.DnsSync(endpoint), []
    monkeypatch.setattr(acme.DnsSync, "_post", staticmethod(lambda path, body: posted.append((path, body))))
    monkeypatch.setenv("LAB_DIR", str(tmp_path))
    assert sync.sync() == [] and posted == []           # no CA running (its state file absent): nothing is posted
    acme.state_file().write_text("{}")
    records = sync.records()
    assert records["hub.rehearsal.test."] == (inst["PrivateIpAddress"],)    # the Elastic IP's instance
    assert records["other.rehearsal.test."] == ("192.0.2.7",)                # any other address as it is
    sync.sync()
    assert ("add-a", {"host": "hub.rehearsal.test.", "addresses": [inst["PrivateIpAddress"]]}) in posted
    posted.clear()
    assert sync.sync() == [] and posted == []            # unchanged: nothing posted again
    put("other.rehearsal.test", "192.0.2.7", "DELETE")
    assert sync.sync() == ["other.rehearsal.test. cleared"]
    assert posted == [("clear-a", {"host": "other.rehearsal.test."})]
