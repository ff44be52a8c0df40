"""The lab's local AWS endpoint: moto's server, with three defects of moto 5.2.5 mended.

- moto keeps the UserData of a launch template's *later* versions (CreateLaunchTemplateVersion) as a
  plain string while its Auto Scaling code asserts a Base64EncodedString, so any scaling of a group
  whose template was updated fails with HTTP 500. The playbooks do exactly that on a second run, so
  the lab wraps the value on read.
- A security group rule for an IP protocol other than TCP, UDP or ICMP (e.g. ESP, 50) has no ports
  on AWS; moto converts the absent ports with int() and answers HTTP 500. Such a rule is kept
  without ports here, as AWS keeps it.
- A volume not made from a snapshot has SnapshotId "" and MultiAttachEnabled false on AWS; moto leaves both
  out, and amazon.aws.ec2_vol_info fails on the missing key (playbooks/manager.yml looks up the hub state
  volume with it). Both are set here as AWS reports them.

Nothing else differs from `moto_server`; the tests' own endpoint (tests/conftest.py) runs this too.
"""
from __future__ import annotations

import sys

from moto.core.types import Base64EncodedString
from moto.ec2.models.elastic_block_store import Volume
from moto.ec2.models.launch_templates import LaunchTemplateVersion
from moto.ec2.models.security_groups import SecurityGroupRule
from moto.server import main


def _user_data(self):
    value = self.data.get("UserData")
    if isinstance(value, str):
        value = Base64EncodedString(value)
    return value


LaunchTemplateVersion.user_data = property(_user_data)

_PORTED_PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "6", "17", "1", "58", "-1", "all"}
_rule_init = SecurityGroupRule.__init__


def _rule_without_ports(self, ec2_backend, ip_protocol, group_id, from_port, to_port, *args, **kwargs):
    portless = ip_protocol and str(ip_protocol).lower() not in _PORTED_PROTOCOLS and from_port is None
    _rule_init(self, ec2_backend, "-1" if portless else ip_protocol, group_id, from_port, to_port, *args, **kwargs)
    if portless:
        self.ip_protocol = str(ip_protocol)


SecurityGroupRule.__init__ = _rule_without_ports

_volume_init = Volume.__init__


def _volume_as_aws_reports_it(self, *args, **kwargs):
    _volume_init(self, *args, **kwargs)
    if self.snapshot_id is None:
        self.snapshot_id = ""
    if self.multi_attach_enabled is None:
        self.multi_attach_enabled = False


Volume.__init__ = _volume_as_aws_reports_it

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
