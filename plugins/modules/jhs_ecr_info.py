#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ECR repositories whose names start with a prefix, with their tags, settings and lifecycle policy.

Why this module exists: no maintained collection has an ECR info module (community.aws 10.0.0 has only
ecs_ecr, which manages one repository by its exact name and reads no tags). Teardown must find every
repository under <cluster_name>/ and check each one's jhs:cluster tag before deleting it, and check mode
compares the repositories with the settings itself. Calls: DescribeRepositories, ListTagsForResource,
GetLifecyclePolicy; all real ECR API calls that work unchanged on AWS.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: jhs_ecr_info
short_description: List ECR repositories by name prefix, with tags and lifecycle policy
description:
  - Lists the repositories of the caller's registry whose names start with I(name_prefix), and for each one
    its tags, image tag mutability, scan-on-push setting and lifecycle policy.
version_added: 1.0.0
options:
  name_prefix:
    description: Only repositories whose names start with this (for example C(mycluster/)); empty lists all.
    type: str
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - jupyterhub-swarm project
"""

EXAMPLES = r"""
- name: The cluster's repositories
  jhs_ecr_info:
    name_prefix: myhub/
  register: found
"""

RETURN = r"""
repositories:
  description: The matching repositories, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    repository_name:
      description: The repository's name.
      type: str
    repository_arn:
      description: The repository's ARN.
      type: str
    repository_uri:
      description: The URI to push to and pull from (registry host and name).
      type: str
    registry_id:
      description: The account of the registry.
      type: str
    image_tag_mutability:
      description: MUTABLE or IMMUTABLE (as ECR reports it).
      type: str
    scan_on_push:
      description: Whether pushed images are scanned.
      type: bool
    lifecycle_policy:
      description: The lifecycle policy as a dict, or null when there is none.
      type: dict
    tags:
      description: The repository's tags.
      type: dict
"""

import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict


def describe(module, client, repo):
    """The repository as this module returns it; None when it was deleted meanwhile."""
    name = repo["repositoryName"]
    try:
        tags = client.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags", [])
        try:
            text = client.get_lifecycle_policy(repositoryName=name).get("lifecyclePolicyText")
            lifecycle = json.loads(text) if text else None
        except is_boto3_error_code("LifecyclePolicyNotFoundException"):
            lifecycle = None
    except is_boto3_error_code("RepositoryNotFoundException"):
        return None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:  # pylint: disable=duplicate-except
        module.fail_json_aws(exc, msg=f"ECR ListTagsForResource/GetLifecyclePolicy of {name} failed")
    return dict(
        repository_name=name,
        repository_arn=repo["repositoryArn"],
        repository_uri=repo["repositoryUri"],
        registry_id=repo["registryId"],
        image_tag_mutability=repo.get("imageTagMutability", "MUTABLE"),
        scan_on_push=bool(repo.get("imageScanningConfiguration", {}).get("scanOnPush", False)),
        lifecycle_policy=lifecycle,
        tags=boto3_tag_list_to_ansible_dict(tags),
    )


def main():
    module = AnsibleAWSModule(argument_spec=dict(name_prefix=dict(type="str", default="")), supports_check_mode=True)
    client = module.client("ecr")
    prefix = module.params["name_prefix"]
    found = []
    try:
        for page in client.get_paginator("describe_repositories").paginate():
            found.extend(r for r in page.get("repositories", []) if r["repositoryName"].startswith(prefix))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        module.fail_json_aws(exc, msg="ECR DescribeRepositories failed")
    repositories = [r for r in (describe(module, client, repo) for repo in found) if r is not None]
    module.exit_json(changed=False, repositories=sorted(repositories, key=lambda r: r["repository_name"]))


if __name__ == "__main__":
    main()
