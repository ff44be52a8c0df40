#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tags on an ECR repository.

Why this module exists: community.aws.ecs_ecr (10.0.0) creates and configures a repository but has no
tags option, and no maintained module tags ECR resources (amazon.aws.ec2_tag is EC2 only,
community.aws.ecs_tag is ECS only). Teardown finds the cluster's repositories by the jhs:cluster tag, so
every repository needs it. Calls: DescribeRepositories, ListTagsForResource, TagResource.
"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: jhs_ecr_tag
short_description: Add tags to an ECR repository
description:
  - Adds the given tags to an existing repository of the caller's registry, or changes their values; other tags
    are left alone.
  - In check mode a repository that does not exist yet reports a change (it would be tagged once created).
version_added: 1.0.0
options:
  repository:
    description: Name of the repository.
    type: str
    required: true
  tags:
    description: Tags the repository must carry.
    type: dict
    required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - jupyterhub-swarm project
"""

EXAMPLES = r"""
- name: Tag the notebook repository
  jhs_ecr_tag:
    repository: myhub/notebook
    tags: {Name: myhub/notebook, "jhs:cluster": myhub}
"""

RETURN = r"""
repository_arn:
  description: The repository's ARN (empty in check mode for a repository that does not exist yet).
  returned: always
  type: str
tags:
  description: The repository's tags after the change (as they would be, in check mode).
  returned: always
  type: dict
added:
  description: Keys of the tags that were added or changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import ansible_dict_to_boto3_tag_list
from ansible_collections.amazon.aws.plugins.module_utils.tagging import boto3_tag_list_to_ansible_dict


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(repository=dict(type="str", required=True), tags=dict(type="dict", required=True)),
        supports_check_mode=True,
    )
    client = module.client("ecr")
    name = module.params["repository"]
    wanted = {str(k): str(v) for k, v in module.params["tags"].items()}
    try:
        (repo,) = client.describe_repositories(repositoryNames=[name])["repositories"]
    except is_boto3_error_code("RepositoryNotFoundException") as exc:
        if module.check_mode:
            module.exit_json(changed=True, repository_arn="", tags=wanted, added=sorted(wanted))
        module.fail_json_aws(exc, msg=f"ECR repository {name} not found")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:  # pylint: disable=duplicate-except
        module.fail_json_aws(exc, msg=f"ECR DescribeRepositories of {name} failed")
    arn = repo["repositoryArn"]
    try:
        current = boto3_tag_list_to_ansible_dict(client.list_tags_for_resource(resourceArn=arn).get("tags", []))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        module.fail_json_aws(exc, msg=f"ECR ListTagsForResource of {name} failed")
    missing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if missing and not module.check_mode:
        try:
            client.tag_resource(resourceArn=arn, tags=ansible_dict_to_boto3_tag_list(missing))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            module.fail_json_aws(exc, msg=f"ECR TagResource of {name} failed")
    module.exit_json(changed=bool(missing), repository_arn=arn, tags=dict(current, **missing), added=sorted(missing))


if __name__ == "__main__":
    main()
