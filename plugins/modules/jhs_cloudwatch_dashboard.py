#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CloudWatch dashboard, present with a given body or absent.

Why this module exists: neither amazon.aws nor community.aws has a module for CloudWatch dashboards (they have
metric alarms, Logs groups and event rules only), and a dashboard must be created idempotently by provisioning and
deleted by teardown. Calls: GetDashboard, PutDashboard, DeleteDashboards.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: jhs_cloudwatch_dashboard
short_description: Create, update or delete a CloudWatch dashboard
description:
  - Makes the dashboard I(name) hold I(body), putting it only when the body differs from the one stored (the
    comparison is of the parsed JSON, so key order and spacing do not matter), or deletes it.
  - Supports check mode.
version_added: 1.0.0
options:
  name:
    description: The dashboard's name (letters, digits, '-' and '_', up to 255 characters).
    type: str
    required: true
  body:
    description:
      - The dashboard's body, as CloudWatch's dashboard body structure (a dict with C(widgets)).
      - Required with I(state=present).
    type: dict
  state:
    description: Whether the dashboard exists.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - jupyterhub-swarm project
"""

EXAMPLES = r"""
- name: The cluster's dashboard
  jhs_cloudwatch_dashboard:
    name: myhub-dashboard
    body: "{{ lookup('ansible.builtin.template', 'dashboard.json.j2') | from_json }}"
"""

RETURN = r"""
dashboard_arn:
  description: The dashboard's ARN (empty when it is absent, or in check mode before it is created).
  returned: always
  type: str
validation_messages:
  description: What CloudWatch said of the body when it was put (warnings; an invalid body fails the task).
  returned: always
  type: list
  elements: dict
"""

import json
import re

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


def current(module, client, name):
    """The stored dashboard's (ARN, parsed body), or (None, None)."""
    try:
        found = client.get_dashboard(DashboardName=name)
    except is_boto3_error_code("ResourceNotFound"):
        return None, None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:  # pylint: disable=duplicate-except
        module.fail_json_aws(exc, msg=f"CloudWatch GetDashboard of {name} failed")
    return found.get("DashboardArn", ""), json.loads(found.get("DashboardBody") or "{}")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(name=dict(type="str", required=True), body=dict(type="dict"),
                           state=dict(type="str", choices=["present", "absent"], default="present")),
        required_if=[("state", "present", ["body"])],
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    if not NAME.match(name):
        module.fail_json(msg=f"name={name}: a dashboard's name is 1-255 letters, digits, '-' and '_'")
    client = module.client("cloudwatch")
    arn, body = current(module, client, name)
    if state == "absent":
        if arn is not None and not module.check_mode:
            try:
                client.delete_dashboards(DashboardNames=[name])
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                module.fail_json_aws(exc, msg=f"CloudWatch DeleteDashboards of {name} failed")
        module.exit_json(changed=arn is not None, dashboard_arn="", validation_messages=[])
    wanted = json.loads(json.dumps(module.params["body"]))   # as it comes back from JSON
    if body == wanted:
        module.exit_json(changed=False, dashboard_arn=arn, validation_messages=[])
    messages = []
    if not module.check_mode:
        try:
            messages = client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(wanted, sort_keys=True)).get(
                "DashboardValidationMessages", [])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            module.fail_json_aws(exc, msg=f"CloudWatch PutDashboard of {name} failed")
        arn = current(module, client, name)[0]
    module.exit_json(changed=True, dashboard_arn=arn or "", validation_messages=messages)


if __name__ == "__main__":
    main()
