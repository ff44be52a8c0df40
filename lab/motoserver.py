"""The lab's local AWS endpoint: moto's server, with one defect of moto 5.2.5 mended.

moto keeps the UserData of a launch template's *later* versions (CreateLaunchTemplateVersion) as a
plain string while its Auto Scaling code asserts a Base64EncodedString, so any scaling of a group
whose template was updated fails with HTTP 500. The playbooks do exactly that on a second run, so
the lab wraps the value on read. Nothing else differs from `moto_server`.
"""
from __future__ import annotations

import sys

from moto.core.types import Base64EncodedString
from moto.ec2.models.launch_templates import LaunchTemplateVersion
from moto.server import main


def _user_data(self):
    value = self.data.get("UserData")
    if isinstance(value, str):
        value = Base64EncodedString(value)
    return value


LaunchTemplateVersion.user_data = property(_user_data)

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
