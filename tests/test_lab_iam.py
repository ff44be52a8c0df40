"""The lab's endpoint judges requests by IAM as AWS does (lab/motoserver.py, `--enforce-iam`).

moto alone judges SSM and Auto Scaling requests against the resource "*", so a statement scoped to a parameter or
to a group never allows anything; and it cannot judge a trust policy whose principal is a service. These tests run
an endpoint of their own with enforcement on, and show: the lab's keys are an administrator's, unknown keys are
refused (signatures are not checked: moto computes some wrongly), a role is judged by its ARN-scoped statements (each
parameter of GetParameters, the group an instance id belongs to, the log group or stream), the administrator (EC2's stand-in) assumes only roles that trust EC2, and a reset keeps it. The
operator's keys (.lab/env: `make lab` and the tests' site.yml runs) hold exactly docs/aws-permissions.md's policy,
rendered for the lab's cluster; what moto names no resource for is judged by its action. The policy's conditions on
tags are judged: EC2 and EFS resources are created only tagged with the lab's cluster (aws:RequestTag/jhs:cluster), and
changed or deleted only when they carry that tag on the endpoint (aws:ResourceTag/jhs:cluster).
"""
from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import REGION, local_endpoint, reset_moto
from lab.__main__ import operator_policy
from lab.config import AWS_CREDENTIALS, CLUSTER, OPERATOR_CREDENTIALS
from labutil import EC2_TRUST_POLICY

AMI = "ami-12c6146b"   # one of the images moto knows
ACCOUNT = "123456789012"   # moto's default account, where the lab's keys are


ENDPOINT_LOG = []   # the module's endpoint's output


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    here = tmp_path_factory.mktemp("iam")
    policy = here / "operator-policy.json"
    policy.write_text(json.dumps(operator_policy()))
    ENDPOINT_LOG.append(here / "moto.log")
    with local_endpoint("--enforce-iam", "--operator-policy", str(policy), log=ENDPOINT_LOG[0]) as url:
        yield url


def client(url, service, key=AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"], secret=AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
           token=None):
    import boto3
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token)


def denied(call, *args, **kwargs) -> bool:
    """The call is refused with HTTP 403 (moto's error code varies by protocol: "AccessDenied", "403", ...)."""
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def make_role(url, name, policy, trust=EC2_TRUST_POLICY):
    iam = client(url, "iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def as_role(url, arn, session="i-test"):
    creds = client(url, "sts").assume_role(RoleArn=arn, RoleSessionName=session)["Credentials"]
    return lambda service: client(url, service, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])


@pytest.fixture(scope="module")
def cluster(endpoint):
    """Two groups of one instance each, parameters of two clusters, and a role scoped to cluster c's."""
    ec2, asg, ssm = client(endpoint, "ec2"), client(endpoint, "autoscaling"), client(endpoint, "ssm")
    vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="iam-test", LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    instances = {}
    for group in ("c-workers", "d-workers"):
        asg.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=3, DesiredCapacity=1,
                                      LaunchTemplate={"LaunchTemplateName": "iam-test", "Version": "$Latest"},
                                      VPCZoneIdentifier=subnet)
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        instances[group] = found["Instances"][0]["InstanceId"]
    for name in ("/c/join", "/c/secret", "/d/join"):
        ssm.put_parameter(Name=name, Value="v", Type="SecureString")
    group_arn = f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/c-workers"
    role = make_role(endpoint, f"c-worker-{uuid.uuid4().hex[:6]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"],
         "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/c/join"},
        {"Effect": "Allow", "Action": ["autoscaling:SetInstanceHealth", "autoscaling:SetDesiredCapacity"],
         "Resource": group_arn},
        {"Effect": "Allow", "Action": ["autoscaling:DescribeAutoScalingGroups"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*"}]})
    return {"role": role, "instances": instances}


def test_the_labs_keys_are_an_administrators_and_unknown_keys_are_refused(endpoint, cluster):
    assert client(endpoint, "sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/jhs-lab-admin"
    assert client(endpoint, "ssm").get_parameter(Name="/d/join", WithDecryption=True)["Parameter"]["Value"] == "v"
    assert denied(client(endpoint, "ssm", "testing", "testing").get_parameter, Name="/c/join")


def test_a_role_gets_exactly_the_parameters_its_statements_name(endpoint, cluster):
    ssm = as_role(endpoint, cluster["role"])("ssm")
    assert ssm.get_parameter(Name="/c/join", WithDecryption=True)["Parameter"]["Value"] == "v"
    assert ssm.get_parameters(Names=["/c/join"])["Parameters"][0]["Name"] == "/c/join"
    assert denied(ssm.get_parameter, Name="/c/secret")
    assert denied(ssm.get_parameter, Name="/d/join")
    # every name of GetParameters is judged, not only the first
    assert denied(ssm.get_parameters, Names=["/c/join", "/c/secret"])
    assert denied(ssm.put_parameter, Name="/c/join", Value="w", Type="SecureString", Overwrite=True)


def test_a_role_acts_only_on_its_own_group_named_or_found_by_instance(endpoint, cluster):
    asg = as_role(endpoint, cluster["role"])("autoscaling")
    assert len(asg.describe_auto_scaling_groups()["AutoScalingGroups"]) >= 2   # Describe* is on "*"
    asg.set_desired_capacity(AutoScalingGroupName="c-workers", DesiredCapacity=1)
    assert denied(asg.set_desired_capacity, AutoScalingGroupName="d-workers", DesiredCapacity=1)
    asg.set_instance_health(InstanceId=cluster["instances"]["c-workers"], HealthStatus="Healthy")
    assert denied(asg.set_instance_health, InstanceId=cluster["instances"]["d-workers"],
                  HealthStatus="Unhealthy")
    assert denied(asg.terminate_instance_in_auto_scaling_group, InstanceId=cluster["instances"]["c-workers"],
                  ShouldDecrementDesiredCapacity=False)   # an action it was not given
    assert denied(as_role(endpoint, cluster["role"])("ec2").describe_instances)


def test_ec2s_stand_in_assumes_only_roles_that_trust_ec2(endpoint, cluster):
    lambda_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = make_role(endpoint, f"not-for-ec2-{uuid.uuid4().hex[:6]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"}]}, trust=json.dumps(lambda_only))
    assert denied(client(endpoint, "sts").assume_role, RoleArn=arn, RoleSessionName="i-test")
    assert as_role(endpoint, cluster["role"])("sts").get_caller_identity()["Arn"].endswith(
        f":assumed-role/{cluster['role'].split('/')[-1]}/i-test")


def test_a_roles_session_assumes_a_role_that_trusts_that_role_and_no_other(endpoint, cluster):
    """The manager's session assumes the cluster's registry-pull role, whose trust policy names the manager's role."""
    assume_any = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}
    trusted = make_role(endpoint, f"trusted-{uuid.uuid4().hex[:6]}", assume_any)
    other = make_role(endpoint, f"other-{uuid.uuid4().hex[:6]}", assume_any)
    pull = make_role(endpoint, f"pull-{uuid.uuid4().hex[:6]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}, trust=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": trusted},
                                                  "Action": "sts:AssumeRole"}]}))
    creds = as_role(endpoint, trusted)("sts").assume_role(RoleArn=pull, RoleSessionName="session")["Credentials"]
    ecr = client(endpoint, "ecr", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert ecr.get_authorization_token()["authorizationData"]
    assert denied(as_role(endpoint, other)("sts").assume_role, RoleArn=pull, RoleSessionName="session")


def test_cloudwatch_actions_are_judged_by_their_iam_name(endpoint, cluster):
    """CloudWatch signs as "monitoring"; IAM names its actions cloudwatch:..., as the role's statement does."""
    cloudwatch = as_role(endpoint, cluster["role"])("cloudwatch")
    cloudwatch.put_metric_data(Namespace="c", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert denied(cloudwatch.list_metrics)


def test_a_statements_condition_on_the_metrics_namespace_or_the_listed_prefix_is_judged(endpoint, cluster):
    """The nodes' roles are scoped by conditions where the resource cannot be: the manager puts metrics in its
    namespace only (cloudwatch:namespace, StringEquals) and lists the backups bucket under its prefix only (s3:prefix,
    StringLike). The endpoint judges both as AWS does: another namespace, another prefix or none is refused."""
    bucket = f"c-hub-backups-{uuid.uuid4().hex[:6]}"
    s3 = client(endpoint, "s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key="hub-backups/jupyterhub-1.sqlite", Body=b"db")
    s3.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"x")
    role = as_role(endpoint, make_role(endpoint, f"c-manager-{uuid.uuid4().hex[:6]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": "JupyterHubSwarm"}}},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": ["hub-backups/*"]}}}]}))
    metric = [{"MetricName": "UsersRunning", "Value": 1.0}]
    role("cloudwatch").put_metric_data(Namespace="JupyterHubSwarm", MetricData=metric)
    assert denied(role("cloudwatch").put_metric_data, Namespace="SomethingElse", MetricData=metric)
    listed = role("s3").list_objects_v2(Bucket=bucket, Prefix="hub-backups/")["Contents"]
    assert [o["Key"] for o in listed] == ["hub-backups/jupyterhub-1.sqlite"]
    assert denied(role("s3").list_objects_v2, Bucket=bucket, Prefix="elsewhere/")
    assert denied(role("s3").list_objects_v2, Bucket=bucket)          # no prefix: the key is absent, as on AWS


def test_a_role_writes_logs_only_where_its_statements_name_the_group_or_its_streams(endpoint, cluster):
    """CloudWatch Logs requests are judged by the log group they name, or by its stream for CreateLogStream and
    PutLogEvents (...:log-group:<group>:log-stream:<stream>), as on AWS: a statement on <group>:* allows both in that
    group only; one on the group alone allows neither (the stream's ARN is not the group's)."""
    logs = client(endpoint, "logs")
    for group in ("/c/containers", "/d/containers", "/e/containers"):
        logs.create_log_group(logGroupName=group)
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"
    writer = as_role(endpoint, make_role(endpoint, f"c-logs-{uuid.uuid4().hex[:6]}", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [f"{arn}/c/containers", f"{arn}/c/containers:*", f"{arn}/e/containers"]}]}))("logs")
    event = [{"timestamp": 1, "message": "hello"}]
    writer.create_log_stream(logGroupName="/c/containers", logStreamName="s")
    writer.put_log_events(logGroupName="/c/containers", logStreamName="s", logEvents=event)
    assert denied(writer.create_log_stream, logGroupName="/d/containers", logStreamName="s")
    assert denied(writer.create_log_stream, logGroupName="/e/containers", logStreamName="s")   # the group alone
    logs.create_log_stream(logGroupName="/d/containers", logStreamName="s")
    assert denied(writer.put_log_events, logGroupName="/d/containers", logStreamName="s", logEvents=event)
    assert denied(writer.get_log_events, logGroupName="/c/containers", logStreamName="s")   # writes, never reads


def test_a_refusal_after_the_callers_instance_terminated_is_logged_apart(endpoint, cluster):
    """An instance's role session (named after the instance, as the metadata stand-in names it) refused after the
    instance is terminated: on AWS the instance would be off by then; the lab's node may still be shutting down while
    a teardown deletes its role. It is refused all the same, but logged as `IAM refused a terminated instance`, not
    among the `IAM denied` lines that show a policy's defect; a running instance's refusal stays one of those."""
    ec2, logs, iam = client(endpoint, "ec2"), client(endpoint, "logs"), client(endpoint, "iam")
    group = f"/t{uuid.uuid4().hex[:6]}/containers"
    logs.create_log_group(logGroupName=group)
    gone, running = (i["InstanceId"] for i in ec2.run_instances(ImageId=AMI, MinCount=2, MaxCount=2)["Instances"])
    role = f"t-logs-{uuid.uuid4().hex[:6]}"
    arn = make_role(endpoint, role, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"}]})
    writers = {iid: as_role(endpoint, arn, session=iid)("logs") for iid in (gone, running)}
    event = [{"timestamp": 1, "message": "hello"}]
    for iid, writer in writers.items():
        writer.create_log_stream(logGroupName=group, logStreamName=iid)
        writer.put_log_events(logGroupName=group, logStreamName=iid, logEvents=event)
    ec2.terminate_instances(InstanceIds=[gone])
    iam.delete_role_policy(RoleName=role, PolicyName="p")   # a teardown deleting the role's policy
    for iid, writer in writers.items():
        assert denied(writer.put_log_events, logGroupName=group, logStreamName=iid, logEvents=event)
    lines = [line for line in ENDPOINT_LOG[0].read_text().splitlines() if f"assumed-role/{role}/" in line]
    assert lines == [
        f"IAM refused a terminated instance: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{gone} logs:PutLogEvents on "
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:{gone}",
        f"IAM denied: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{running} logs:PutLogEvents on "
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:{running}"], lines


def operator(url, service):
    return client(url, service, OPERATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"], OPERATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def test_the_operator_policy_is_the_docs_for_the_labs_cluster():
    text = json.dumps(operator_policy())
    for placeholder in ("CLUSTER", "REGION", "ACCOUNT", "ZONE_ID"):
        assert placeholder not in text
    assert f"parameter/{CLUSTER}/*" in text and f":{REGION}:{ACCOUNT}:" in text
    assert len(operator_policy()["Statement"]) >= 10


def test_the_operator_may_do_what_its_policy_names_and_nothing_else(endpoint, cluster):
    assert operator(endpoint, "sts").get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/jhs-lab-operator"
    ssm = operator(endpoint, "ssm")
    ssm.put_parameter(Name=f"/{CLUSTER}/hub/x", Value="v", Type="SecureString", Overwrite=True)   # ARN-scoped: judged
    assert denied(ssm.put_parameter, Name="/c/join", Value="w", Type="SecureString", Overwrite=True)
    assert denied(operator(endpoint, "autoscaling").set_desired_capacity, AutoScalingGroupName="c-workers",
                  DesiredCapacity=1)
    # moto names no resource for these: judged by the action (a statement naming it allows it, whatever its Resource)
    ec2 = operator(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.79.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "jhs:cluster", "Value": CLUSTER}]}])["Vpc"]["VpcId"]
    ec2.delete_vpc(VpcId=vpc)
    assert denied(operator(endpoint, "iam").create_user, UserName="jhs-not-allowed")
    assert denied(ec2.create_vpn_gateway, Type="ipsec.1")
    assert denied(operator(endpoint, "ssm").get_parameter, Name="/d/join")


def cluster_tag(cluster=CLUSTER):
    return [{"Key": "jhs:cluster", "Value": cluster}]


def tagged(resource_type, cluster=CLUSTER):
    """A TagSpecifications that tags what the request creates with the cluster."""
    return [{"ResourceType": resource_type, "Tags": cluster_tag(cluster)}]


@pytest.fixture(scope="module")
def operators_vpc(endpoint):
    return client(endpoint, "ec2").create_vpc(CidrBlock="10.77.0.0/16", TagSpecifications=tagged("vpc"))["Vpc"]["VpcId"]


def test_the_operator_creates_ec2_resources_only_tagged_with_its_cluster(endpoint, cluster, operators_vpc):
    """aws:RequestTag/jhs:cluster (CreateTaggedNetworkComputeAndStorage): a create is allowed when the request tags what
    it creates with the lab's cluster; untagged or tagged with another cluster it is refused. RunInstances creates the
    instance and its root volume: both must be tagged."""
    ec2 = operator(endpoint, "ec2")
    zone = f"{REGION}a"
    ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume"))
    assert denied(ec2.create_volume, AvailabilityZone=zone, Size=1)
    assert denied(ec2.create_volume, AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume", "another"))
    ec2.create_route_table(VpcId=operators_vpc, TagSpecifications=tagged("route-table"))
    assert denied(ec2.create_route_table, VpcId=operators_vpc)
    assert denied(ec2.create_route_table, VpcId=operators_vpc, TagSpecifications=tagged("route-table", "another"))
    ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=tagged("instance") + tagged("volume"))
    assert denied(ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1)
    assert denied(ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1,
                  TagSpecifications=tagged("instance", "another") + tagged("volume", "another"))


def test_the_operator_changes_and_deletes_only_what_carries_its_clusters_tag(endpoint, cluster, operators_vpc):
    """aws:ResourceTag/jhs:cluster (ChangeAndDeleteOnlyWhatCarriesTheClusterTag), from each resource's tags on the
    endpoint: the operator's own resources may be changed and deleted, those of another cluster (made by the
    administrator) may not; a request naming several resources is refused if any one lacks the tag."""
    admin, ec2 = client(endpoint, "ec2"), operator(endpoint, "ec2")
    zone = f"{REGION}a"
    own = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume"))["VolumeId"]
    foreign = admin.create_volume(AvailabilityZone=zone, Size=1,
                                  TagSpecifications=tagged("volume", "another"))["VolumeId"]
    untagged = admin.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    assert denied(ec2.delete_volume, VolumeId=foreign)
    assert denied(ec2.delete_volume, VolumeId=untagged)
    ec2.delete_volume(VolumeId=own)
    admin_group = admin.create_security_group(GroupName="another-nodes", Description="d", VpcId=operators_vpc,
                                              TagSpecifications=tagged("security-group", "another"))["GroupId"]
    own_group = ec2.create_security_group(GroupName="nodes", Description="d", VpcId=operators_vpc,
                                          TagSpecifications=tagged("security-group"))["GroupId"]
    rule = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.77.0.0/16"}]}]
    ec2.authorize_security_group_ingress(GroupId=own_group, IpPermissions=rule)
    assert denied(ec2.authorize_security_group_ingress, GroupId=admin_group, IpPermissions=rule)
    assert denied(ec2.delete_security_group, GroupId=admin_group)
    ec2.delete_security_group(GroupId=own_group)
    mine = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                             TagSpecifications=tagged("instance") + tagged("volume"))["Instances"][0]["InstanceId"]
    theirs = admin.run_instances(ImageId=AMI, MinCount=1, MaxCount=1,
                                 TagSpecifications=tagged("instance", "another"))["Instances"][0]["InstanceId"]
    assert denied(ec2.stop_instances, InstanceIds=[mine, theirs])   # each instance is judged
    assert denied(ec2.terminate_instances, InstanceIds=[theirs])
    ec2.stop_instances(InstanceIds=[mine])
    ec2.terminate_instances(InstanceIds=[mine])
    # Tags: the operator tags its own resources with anything (the resource carries the cluster's tag: one statement
    # allows it, the other's condition, on the request's tags, does not hold and does not refuse it), and never adds
    # a tag to another cluster's resource, alone or among its own.
    vpc = ec2.create_vpc(CidrBlock="10.76.0.0/16", TagSpecifications=tagged("vpc"))["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "mine"}])
    assert denied(ec2.create_tags, Resources=[theirs], Tags=[{"Key": "Name", "Value": "mine"}])
    assert denied(ec2.create_tags, Resources=[vpc, theirs], Tags=[{"Key": "Name", "Value": "mine"}])
    assert denied(ec2.delete_tags, Resources=[theirs], Tags=[{"Key": "jhs:cluster"}])


def test_the_operator_creates_and_changes_only_its_clusters_file_systems(endpoint, cluster):
    """EFS (a REST API: the tags in CreateFileSystem's body, the file system's id in the path): a file system is created
    only tagged with the lab's cluster (EfsCreateTheClusterFileSystem), and changed or deleted only when it carries
    that tag (EfsChangesOnlyOnTheClusterFileSystem), whether named by its id or by one of its mount targets."""
    admin, efs = client(endpoint, "efs"), operator(endpoint, "efs")
    assert denied(efs.create_file_system, CreationToken=f"untagged-{uuid.uuid4().hex[:6]}")
    assert denied(efs.create_file_system, CreationToken=f"another-{uuid.uuid4().hex[:6]}", Tags=cluster_tag("another"))
    own = efs.create_file_system(CreationToken=f"own-{uuid.uuid4().hex[:6]}", Tags=cluster_tag())["FileSystemId"]
    foreign = admin.create_file_system(CreationToken=f"foreign-{uuid.uuid4().hex[:6]}",
                                       Tags=cluster_tag("another"))["FileSystemId"]
    efs.tag_resource(ResourceId=own, Tags=[{"Key": "Name", "Value": "home"}])
    assert denied(efs.tag_resource, ResourceId=foreign, Tags=[{"Key": "Name", "Value": "home"}])
    assert denied(efs.put_lifecycle_configuration, FileSystemId=foreign,
                  LifecyclePolicies=[{"TransitionToIA": "AFTER_30_DAYS"}])
    ec2 = client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.75.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.75.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    target = admin.create_mount_target(FileSystemId=foreign, SubnetId=subnet)["MountTargetId"]
    assert denied(efs.delete_mount_target, MountTargetId=target)
    assert denied(efs.delete_file_system, FileSystemId=foreign)
    efs.delete_file_system(FileSystemId=own)


def test_the_operator_never_tags_another_clusters_resource_as_its_own(endpoint, cluster):
    """The operator tags with its cluster's tag only what carries that tag already or no jhs:cluster tag at all
    (TagForTheClusterWhatCarriesNoClusterTag, EfsTagForTheClusterWhatCarriesNoClusterTag: aws:RequestTag and the
    `Null` operator on aws:ResourceTag, both required): a resource of another cluster (made by the administrator) is
    never re-tagged as the lab cluster's, which would let the operator change or delete it through the statements
    scoped by aws:ResourceTag. Tagging at creation, an untagged resource (the Elastic IPs, the launch template, the
    images the role tags right after making them) and its own resources still work; its own are never re-tagged as
    another cluster's (StringEqualsIfExists on aws:RequestTag)."""
    admin, ec2 = client(endpoint, "ec2"), operator(endpoint, "ec2")
    zone, name = f"{REGION}a", [{"Key": "Name", "Value": "mine"}]
    theirs = admin.create_volume(AvailabilityZone=zone, Size=1,
                                 TagSpecifications=tagged("volume", "another"))["VolumeId"]
    untagged = admin.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
    own = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=tagged("volume"))["VolumeId"]   # on create
    assert denied(ec2.create_tags, Resources=[theirs], Tags=cluster_tag())
    assert denied(ec2.create_tags, Resources=[theirs], Tags=cluster_tag() + name)
    assert denied(ec2.create_tags, Resources=[untagged, theirs], Tags=cluster_tag())   # each resource is judged
    assert denied(ec2.create_tags, Resources=[untagged], Tags=name)   # untagged, but the request sets no cluster tag
    assert denied(ec2.delete_volume, VolumeId=theirs)
    ec2.create_tags(Resources=[untagged], Tags=cluster_tag() + name)
    ec2.create_tags(Resources=[own], Tags=cluster_tag() + name)
    ec2.create_tags(Resources=[own], Tags=name)   # no cluster tag in the request: StringEqualsIfExists holds
    assert denied(ec2.create_tags, Resources=[own], Tags=cluster_tag("another"))   # nor given away to another cluster
    ec2.delete_volume(VolumeId=untagged)   # now the cluster's
    ec2.delete_volume(VolumeId=own)
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]   # as the role does: allocated untagged, tagged after
    ec2.create_tags(Resources=[address], Tags=cluster_tag())
    ec2.release_address(AllocationId=address)
    their_address = admin.allocate_address(Domain="vpc", TagSpecifications=tagged("elastic-ip", "another"))
    assert denied(ec2.create_tags, Resources=[their_address["AllocationId"]], Tags=cluster_tag())
    their_instance = admin.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=tagged(
        "instance", "another"))["Instances"][0]["InstanceId"]
    assert denied(ec2.create_tags, Resources=[their_instance], Tags=cluster_tag())
    assert denied(ec2.terminate_instances, InstanceIds=[their_instance])

    admin_efs, efs = client(endpoint, "efs"), operator(endpoint, "efs")
    foreign = admin_efs.create_file_system(CreationToken=f"foreign-{uuid.uuid4().hex[:6]}",
                                           Tags=cluster_tag("another"))["FileSystemId"]
    bare = admin_efs.create_file_system(CreationToken=f"bare-{uuid.uuid4().hex[:6]}")["FileSystemId"]
    mine = efs.create_file_system(CreationToken=f"mine-{uuid.uuid4().hex[:6]}", Tags=cluster_tag())["FileSystemId"]
    assert denied(efs.tag_resource, ResourceId=foreign, Tags=cluster_tag())
    assert denied(efs.tag_resource, ResourceId=bare, Tags=name)
    assert denied(efs.delete_file_system, FileSystemId=foreign)
    efs.tag_resource(ResourceId=bare, Tags=cluster_tag())
    efs.tag_resource(ResourceId=mine, Tags=cluster_tag() + name)
    assert denied(efs.tag_resource, ResourceId=mine, Tags=cluster_tag("another"))
    efs.delete_file_system(FileSystemId=bare)
    efs.delete_file_system(FileSystemId=mine)


def test_a_reset_keeps_the_administrator_and_the_operator(endpoint, cluster):
    """Last: the reset wipes the module's roles too."""
    reset_moto(endpoint)
    assert client(endpoint, "sts").get_caller_identity()["Arn"].endswith(":user/jhs-lab-admin")
    assert client(endpoint, "ssm").describe_parameters()["Parameters"] == []
    operator(endpoint, "ssm").put_parameter(Name=f"/{CLUSTER}/hub/x", Value="v", Type="SecureString")
    assert denied(operator(endpoint, "ssm").put_parameter, Name="/c/join", Value="w", Type="SecureString")

