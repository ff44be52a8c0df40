"""Filters of the aws_cluster role: CIDR checks for the preflight (standard library only, no netaddr), ASG tags,
teardown's ownership re-check, check mode's comparison of ECR repositories with the settings."""
from __future__ import annotations

import ipaddress


def _net(value):
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError:
        return None


def cidr_invalid(values):
    """The entries that are not IPv4 networks in CIDR form with no host bits set."""
    return [v for v in values if _net(v) is None or "/" not in str(v)]


def cidr_outside(values, parent):
    """The entries that are not inside the parent network."""
    outer = _net(parent)
    return [v for v in values if outer is None or _net(v) is None or not _net(v).subnet_of(outer)]


def cidr_overlapping(values, others=None):
    """Entries overlapping each other (others=None) or overlapping any of others, as 'a/b' strings."""
    nets = [(v, _net(v)) for v in values if _net(v) is not None]
    found = []
    if others is None:
        for i, (a, na) in enumerate(nets):
            for b, nb in nets[i + 1:]:
                if na.overlaps(nb):
                    found.append(f"{a}/{b}")
    else:
        outer = [(o, _net(o)) for o in others if _net(o) is not None]
        for a, na in nets:
            for b, nb in outer:
                if na.overlaps(nb):
                    found.append(f"{a}/{b}")
    return found


def asg_tags(tags):
    """A tag dict as the list autoscaling_group wants, each tag propagated to the instances at launch."""
    return [{key: value, "propagate_at_launch": True} for key, value in sorted(tags.items())]


def owned(resources, cluster):
    """The resources whose tags (a dict, or a boto3 Key/Value list) say jhs:cluster == cluster.

    Teardown asks the API for tagged resources and checks again here, so an endpoint that ignores a tag
    filter (the local one does for NAT gateways) can never make it delete another cluster's resources.
    """
    kept = []
    for resource in resources or []:
        tags = resource.get("tags", resource.get("Tags")) or {}
        if isinstance(tags, list):
            tags = {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags}
        if tags.get("jhs:cluster") == cluster:
            kept.append(resource)
    return kept


def ecr_drift(existing, names, image_tag_mutability, scan_on_push, lifecycle_policy):
    """What a real run would create or change in the repositories `names`, as 'name: what' strings.

    existing: jhs_ecr_info's repositories; lifecycle_policy: the wanted policy (a dict), or None for none.
    """
    by_name = {repo["repository_name"]: repo for repo in existing or []}
    mutability = str(image_tag_mutability).upper()
    found = []
    for name in names or []:
        repo = by_name.get(name)
        if repo is None:
            found.append(f"{name}: create")
            continue
        if repo["image_tag_mutability"] != mutability:
            found.append(f"{name}: image tag mutability {repo['image_tag_mutability']} -> {mutability}")
        if repo["scan_on_push"] != bool(scan_on_push):
            found.append(f"{name}: scan on push {repo['scan_on_push']} -> {bool(scan_on_push)}")
        if repo["lifecycle_policy"] != (lifecycle_policy or None):
            what = "removed" if not lifecycle_policy else ("changed" if repo["lifecycle_policy"] else "set")
            found.append(f"{name}: lifecycle policy {what}")
    return found


def ecr_untagged(existing, names, tags):
    """The repositories of `names` that do not exist or lack one of `tags` (each also tagged Name: its name)."""
    by_name = {repo["repository_name"]: repo.get("tags") or {} for repo in existing or []}
    return [name for name in names or []
            if name not in by_name or any(by_name[name].get(k) != str(v) for k, v in dict(tags, Name=name).items())]


class FilterModule:
    def filters(self):
        return {
            "aws_cluster_cidr_invalid": cidr_invalid,
            "aws_cluster_cidr_outside": cidr_outside,
            "aws_cluster_cidr_overlapping": cidr_overlapping,
            "aws_cluster_asg_tags": asg_tags,
            "aws_cluster_owned": owned,
            "aws_cluster_ecr_drift": ecr_drift,
            "aws_cluster_ecr_untagged": ecr_untagged,
        }
