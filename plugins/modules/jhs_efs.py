#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An EFS file system with its mount targets and lifecycle, found by creation token.

Why this module exists: community.aws.efs (10.0.0) reads tags with the EFS DescribeTags call, which AWS
has deprecated and which the local AWS endpoint (moto) does not serve, so the module fails there; it also
cannot keep a file system while removing its mount targets, which teardown needs. This module uses the
current calls only (CreateFileSystem with Encrypted/Backup/Tags, ListTagsForResource, TagResource,
Create/Delete/DescribeMountTargets, ModifyMountTargetSecurityGroups, Put/DescribeLifecycleConfiguration,
DeleteFileSystem). Every call is a real EFS API call that works unchanged on AWS.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: jhs_efs
short_description: Manage an EFS file system, its mount targets and its lifecycle policy
description:
  - Creates or deletes an EFS file system identified by its creation token, keeps its tags, its
    lifecycle (transition to Infrequent Access) and one mount target per given subnet.
  - Automatic backups are chosen at creation (C(Backup=True)); an existing file system's backup policy
    is not changed (use AWS Backup for that).
  - With I(state=present) and an empty I(mount_targets) list the file system is kept and its mount
    targets are removed, so the network around it can be deleted without touching the data.
version_added: 1.0.0
options:
  state:
    description:
      - Whether the file system should exist.
      - C(detached) keeps an existing file system and deletes its mount targets (creates nothing).
    type: str
    choices: [present, absent, detached]
    default: present
  creation_token:
    description: The idempotency token that identifies the file system (one per cluster).
    type: str
    required: true
  encrypted:
    description: Encrypt the file system at rest (only at creation).
    type: bool
    default: true
  kms_key_id:
    description: KMS key for encryption; empty means the AWS managed key.
    type: str
    default: ""
  backup:
    description: Turn on automatic backups at creation.
    type: bool
    default: true
  performance_mode:
    description: EFS performance mode (only at creation).
    type: str
    choices: [generalPurpose, maxIO]
    default: generalPurpose
  throughput_mode:
    description: EFS throughput mode (only at creation).
    type: str
    choices: [bursting, elastic, provisioned]
    default: elastic
  transition_to_ia:
    description: Lifecycle transition to Infrequent Access (for example AFTER_30_DAYS); empty means none.
    type: str
    default: ""
  mount_targets:
    description:
      - Mount targets to have, one per subnet (so one per availability zone). Others are deleted.
      - Omit to leave mount targets as they are.
    type: list
    elements: dict
    suboptions:
      subnet_id:
        description: Subnet of the mount target.
        type: str
        required: true
      security_groups:
        description: Security group ids of the mount target.
        type: list
        elements: str
        default: []
  wait:
    description: Wait until the file system and its mount targets are available (or deleted).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 600
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
author:
  - jupyterhub-swarm project
"""

EXAMPLES = r"""
- name: Home directories
  jhs_efs:
    creation_token: myhub
    tags: {Name: myhub-home, "jhs:cluster": myhub}
    transition_to_ia: AFTER_30_DAYS
    mount_targets:
      - {subnet_id: subnet-0123456789abcdef0, security_groups: [sg-0123456789abcdef0]}
"""

RETURN = r"""
file_system_id:
  description: The file system's id (empty when it does not exist).
  returned: always
  type: str
file_system_arn:
  description: The file system's ARN.
  returned: when it exists
  type: str
mount_targets:
  description: Mount targets after the change (id, subnet_id, availability_zone, ip_address, security_groups).
  returned: always
  type: list
  elements: dict
actions:
  description: What was done (or would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import time

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import ansible_dict_to_boto3_tag_list
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict


class Efs:
    def __init__(self, module: AnsibleAWSModule):
        self.module = module
        self.client = module.client("efs")
        self.actions: list[str] = []
        self.changed = False
        self.deadline = time.time() + module.params["wait_timeout"]

    def call(self, what, fn, **kwargs):
        try:
            return fn(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            self.module.fail_json_aws(exc, msg=f"EFS {what} failed")

    def act(self, text):
        self.actions.append(text)
        self.changed = True
        return not self.module.check_mode

    def find(self):
        token = self.module.params["creation_token"]
        found = self.call("DescribeFileSystems", self.client.describe_file_systems, CreationToken=token)
        systems = [fs for fs in found.get("FileSystems", []) if fs.get("LifeCycleState") not in ("deleting", "deleted")]
        return systems[0] if systems else None

    def mount_targets(self, fs_id):
        targets = []
        paginator = self.client.get_paginator("describe_mount_targets")
        try:
            for page in paginator.paginate(FileSystemId=fs_id):
                targets.extend(page.get("MountTargets", []))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            self.module.fail_json_aws(exc, msg="EFS DescribeMountTargets failed")
        for mt in targets:
            groups = self.call("DescribeMountTargetSecurityGroups", self.client.describe_mount_target_security_groups,
                               MountTargetId=mt["MountTargetId"])
            mt["SecurityGroups"] = sorted(groups.get("SecurityGroups", []))
        return [mt for mt in targets if mt.get("LifeCycleState") not in ("deleting", "deleted")]

    def wait_for(self, what, predicate):
        if not self.module.params["wait"] or self.module.check_mode:
            return
        while not predicate():
            if time.time() > self.deadline:
                self.module.fail_json(msg=f"timed out waiting for {what}")
            time.sleep(2)

    def fs_state(self, fs_id):
        try:
            found = self.client.describe_file_systems(FileSystemId=fs_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "FileSystemNotFound":
                return "deleted"
            self.module.fail_json_aws(exc, msg="EFS DescribeFileSystems failed")
        except botocore.exceptions.BotoCoreError as exc:
            self.module.fail_json_aws(exc, msg="EFS DescribeFileSystems failed")
        return found["FileSystems"][0]["LifeCycleState"] if found.get("FileSystems") else "deleted"

    def ensure_present(self):
        p = self.module.params
        fs = self.find()
        tags = dict(p["tags"] or {})
        if fs is None:
            if self.act(f"create file system (token {p['creation_token']})"):
                args = dict(CreationToken=p["creation_token"], PerformanceMode=p["performance_mode"],
                            ThroughputMode=p["throughput_mode"], Encrypted=p["encrypted"], Backup=p["backup"],
                            Tags=ansible_dict_to_boto3_tag_list(tags))
                if p["kms_key_id"]:
                    args["KmsKeyId"] = p["kms_key_id"]
                fs = self.call("CreateFileSystem", self.client.create_file_system, **args)
                self.wait_for("the file system to be available", lambda: self.fs_state(fs["FileSystemId"]) == "available")
            else:
                self.actions.append("create mount targets and lifecycle with it")
                return self.result(None, [])
        fs_id = fs["FileSystemId"]
        current = boto3_tag_list_to_ansible_dict(
            self.call("ListTagsForResource", self.client.list_tags_for_resource, ResourceId=fs_id).get("Tags", []))
        missing = {k: v for k, v in tags.items() if current.get(k) != v}
        if missing and self.act(f"tag {fs_id} with {sorted(missing)}"):
            self.call("TagResource", self.client.tag_resource, ResourceId=fs_id,
                      Tags=ansible_dict_to_boto3_tag_list(missing))
        if p["purge_tags"] and p["tags"] is not None:
            extra = [k for k in current if k not in tags and not k.startswith("aws:")]
            if extra and self.act(f"untag {fs_id}: {sorted(extra)}"):
                self.call("UntagResource", self.client.untag_resource, ResourceId=fs_id, TagKeys=extra)
        self.ensure_lifecycle(fs_id)
        targets = self.mount_targets(fs_id)
        if p["mount_targets"] is not None:
            targets = self.ensure_mount_targets(fs_id, targets)
        return self.result(fs, targets)

    def ensure_lifecycle(self, fs_id):
        want = [{"TransitionToIA": self.module.params["transition_to_ia"]}] if self.module.params["transition_to_ia"] else []
        have = self.call("DescribeLifecycleConfiguration", self.client.describe_lifecycle_configuration,
                         FileSystemId=fs_id).get("LifecyclePolicies", [])
        if have != want and self.act(f"set lifecycle of {fs_id} to {want or 'none'}"):
            self.call("PutLifecycleConfiguration", self.client.put_lifecycle_configuration,
                      FileSystemId=fs_id, LifecyclePolicies=want)

    def ensure_mount_targets(self, fs_id, targets):
        wanted = {mt["subnet_id"]: sorted(mt["security_groups"] or []) for mt in self.module.params["mount_targets"]}
        by_subnet = {mt["SubnetId"]: mt for mt in targets}
        for mt in targets:
            if mt["SubnetId"] not in wanted and self.act(f"delete mount target {mt['MountTargetId']} ({mt['SubnetId']})"):
                self.call("DeleteMountTarget", self.client.delete_mount_target, MountTargetId=mt["MountTargetId"])
        for subnet, groups in wanted.items():
            mt = by_subnet.get(subnet)
            if mt is None:
                if self.act(f"create mount target in {subnet}"):
                    args = dict(FileSystemId=fs_id, SubnetId=subnet)
                    if groups:
                        args["SecurityGroups"] = groups
                    self.call("CreateMountTarget", self.client.create_mount_target, **args)
            elif groups and mt["SecurityGroups"] != groups:
                if self.act(f"set security groups of {mt['MountTargetId']} to {groups}"):
                    self.call("ModifyMountTargetSecurityGroups", self.client.modify_mount_target_security_groups,
                              MountTargetId=mt["MountTargetId"], SecurityGroups=groups)
        if self.changed and not self.module.check_mode:
            def settled():
                current = self.mount_targets(fs_id)
                return (sorted(mt["SubnetId"] for mt in current) == sorted(wanted)
                        and all(mt["LifeCycleState"] == "available" for mt in current))
            self.wait_for("mount targets to settle", settled)
            return self.mount_targets(fs_id)
        return [mt for mt in targets if mt["SubnetId"] in wanted]

    def ensure_detached(self):
        fs = self.find()
        if fs is None:
            return self.result(None, [])
        fs_id = fs["FileSystemId"]
        for mt in self.mount_targets(fs_id):
            if self.act(f"delete mount target {mt['MountTargetId']}"):
                self.call("DeleteMountTarget", self.client.delete_mount_target, MountTargetId=mt["MountTargetId"])
        self.wait_for("mount targets to be deleted", lambda: not self.mount_targets(fs_id))
        return self.result(fs, [])

    def ensure_absent(self):
        fs = self.find()
        if fs is None:
            return self.result(None, [])
        fs_id = fs["FileSystemId"]
        targets = self.mount_targets(fs_id)
        for mt in targets:
            if self.act(f"delete mount target {mt['MountTargetId']}"):
                self.call("DeleteMountTarget", self.client.delete_mount_target, MountTargetId=mt["MountTargetId"])
        self.wait_for("mount targets to be deleted", lambda: not self.mount_targets(fs_id))
        if self.act(f"delete file system {fs_id}"):
            self.call("DeleteFileSystem", self.client.delete_file_system, FileSystemId=fs_id)
            self.wait_for("the file system to be deleted", lambda: self.fs_state(fs_id) == "deleted")
        return self.result(None, [])

    def result(self, fs, targets):
        return dict(
            changed=self.changed,
            actions=self.actions,
            file_system_id=fs["FileSystemId"] if fs else "",
            file_system_arn=fs.get("FileSystemArn", "") if fs else "",
            mount_targets=[dict(id=mt["MountTargetId"], subnet_id=mt["SubnetId"],
                                availability_zone=mt.get("AvailabilityZoneName", ""),
                                ip_address=mt.get("IpAddress", ""), security_groups=mt.get("SecurityGroups", []))
                           for mt in targets],
        )


def main():
    argument_spec = dict(
        state=dict(type="str", choices=["present", "absent", "detached"], default="present"),
        creation_token=dict(type="str", required=True, no_log=False),
        encrypted=dict(type="bool", default=True),
        kms_key_id=dict(type="str", default="", no_log=False),
        backup=dict(type="bool", default=True),
        performance_mode=dict(type="str", choices=["generalPurpose", "maxIO"], default="generalPurpose"),
        throughput_mode=dict(type="str", choices=["bursting", "elastic", "provisioned"], default="elastic"),
        transition_to_ia=dict(type="str", default=""),
        mount_targets=dict(type="list", elements="dict", options=dict(
            subnet_id=dict(type="str", required=True),
            security_groups=dict(type="list", elements="str", default=[]),
        )),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    efs = Efs(module)
    if module.params["state"] == "present":
        module.exit_json(**efs.ensure_present())
    if module.params["state"] == "detached":
        module.exit_json(**efs.ensure_detached())
    module.exit_json(**efs.ensure_absent())


if __name__ == "__main__":
    main()
