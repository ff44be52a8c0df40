"""The lab's endpoint (lab/motoserver.py) holds Auto Scaling instances in lifecycle wait states, as AWS does.

A launch hook keeps each new instance Pending:Wait (its EC2 instance running) until CompleteLifecycleAction
(CONTINUE: InService; ABANDON: terminated and replaced) or the hook's timeout (its DefaultResult); a heartbeat
restarts the timeout. A termination hook keeps whatever the group removes Terminating:Wait, still running,
until the action ends, then terminates it. Scale-in spares protected instances. A group without hooks is
moto's as before.
"""
from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import REGION

AMI = "ami-12c6146b"   # one of the images moto knows
LAUNCHING, TERMINATING = "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"
TIMEOUT = 30   # AWS's shortest HeartbeatTimeout


@pytest.fixture(scope="module")
def clients(moto_endpoint):
    """EC2 and Auto Scaling clients of the session's endpoint (conftest's `boto`, module-scoped)."""
    import boto3

    def client(service):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client("ec2"), client("autoscaling")


@pytest.fixture(scope="module")
def template(clients):
    """A subnet and a launch template for the module's groups, named apart from other modules'."""
    ec2, _ = clients
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    ec2.create_launch_template(LaunchTemplateName=name,
                               LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    return {"subnet": subnet["SubnetId"], "template": name}


def create_group(asg, template, desired=0, *hooks, max_size=10) -> str:
    """A group of `desired` instances, launched before its hooks are put; each hook is (transition, heartbeat
    timeout, default result), named hook0, hook1, ... Returns the group's (unique) name."""
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": template["template"], "Version": "$Latest"},
        VPCZoneIdentifier=template["subnet"])
    for i, (transition, timeout, result) in enumerate(hooks):
        asg.put_lifecycle_hook(LifecycleHookName=f"hook{i}", AutoScalingGroupName=name,
                               LifecycleTransition=transition, HeartbeatTimeout=timeout, DefaultResult=result)
    return name


def delete_groups(asg, names):
    """Gone with their instances, so no hook goes on launching or terminating under later tests."""
    for name in names:
        if asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]:
            asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


@pytest.fixture
def make_group(clients, template):
    made = []

    def make(desired=0, *hooks, **kw):
        made.append(create_group(clients[1], template, desired, *hooks, **kw))
        return made[-1]
    yield make
    delete_groups(clients[1], made)


def members(asg, name) -> dict[str, str]:
    """Instance id -> LifecycleState, as DescribeAutoScalingGroups reports them."""
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}


def desired(asg, name) -> int:
    (group,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return group["DesiredCapacity"]


def ec2_states(ec2, ids) -> dict[str, str]:
    reservations = ec2.describe_instances(InstanceIds=list(ids))["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def complete(asg, name, iid, result="CONTINUE", hook="hook0"):
    asg.complete_lifecycle_action(AutoScalingGroupName=name, LifecycleHookName=hook, InstanceId=iid,
                                  LifecycleActionResult=result)


# --- launch ------------------------------------------------------------------------------------------------

def test_a_launch_waits_in_pending_wait_running_until_continue_puts_it_in_service(clients, make_group):
    ec2, asg = clients
    name = make_group(0, (LAUNCHING, 300, "ABANDON"))
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    launched = members(asg, name)
    assert sorted(launched.values()) == ["Pending:Wait", "Pending:Wait"], launched
    assert set(ec2_states(ec2, launched).values()) == {"running"}            # the lab boots a node for it
    details = asg.describe_auto_scaling_instances(InstanceIds=list(launched))["AutoScalingInstances"]
    assert {d["InstanceId"]: d["LifecycleState"] for d in details} == launched
    # waiting instances count toward the desired capacity: asking again launches nothing more
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    assert members(asg, name) == launched

    first, second = sorted(launched)
    complete(asg, name, first)
    assert members(asg, name) == {first: "InService", second: "Pending:Wait"}
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=name, LifecycleHookName="hook0",
                                          InstanceId=second)
    complete(asg, name, second)
    assert members(asg, name) == {first: "InService", second: "InService"}
    assert set(ec2_states(ec2, launched).values()) == {"running"}


def test_an_abandoned_launch_is_terminated_and_replaced(clients, make_group):
    ec2, asg = clients
    name = make_group(0, (LAUNCHING, 300, "CONTINUE"))
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
    (abandoned,) = members(asg, name)
    complete(asg, name, abandoned, "ABANDON")
    after = members(asg, name)
    assert abandoned not in after
    assert ec2_states(ec2, [abandoned]) == {abandoned: "terminated"}
    assert list(after.values()) == ["Pending:Wait"], after                    # the replacement waits in turn
    assert desired(asg, name) == 1
    assert set(ec2_states(ec2, after).values()) == {"running"}


# --- termination -------------------------------------------------------------------------------------------

def test_scale_in_waits_in_terminating_wait_running_until_the_action_completes(clients, make_group):
    ec2, asg = clients
    name = make_group(3, (TERMINATING, 300, "CONTINUE"))
    before = members(asg, name)
    assert set(before.values()) == {"InService"}

    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    during = members(asg, name)
    leaving = [i for i, state in during.items() if state == "Terminating:Wait"]
    assert len(leaving) == 1 and len(during) == 3, during     # no replacement launched: it no longer counts
    assert desired(asg, name) == 2
    assert set(ec2_states(ec2, before).values()) == {"running"}
    complete(asg, name, leaving[0])
    assert leaving[0] not in members(asg, name)
    assert ec2_states(ec2, leaving)[leaving[0]] == "terminated"

    # a lower max size (UpdateAutoScalingGroup) removes through the hook too; ABANDON terminates as well
    asg.update_auto_scaling_group(AutoScalingGroupName=name, MaxSize=1)
    during = members(asg, name)
    (second,) = [i for i, state in during.items() if state == "Terminating:Wait"]
    assert len(during) == 2 and ec2_states(ec2, [second])[second] == "running"
    complete(asg, name, second, "ABANDON")
    (kept,) = members(asg, name)
    assert members(asg, name) == {kept: "InService"}
    assert ec2_states(ec2, [second])[second] == "terminated"
    assert ec2_states(ec2, [kept])[kept] == "running"


@pytest.mark.parametrize("decrement", [True, False], ids=["with-decrement", "without-decrement"])
def test_terminate_instance_in_group_waits_in_terminating_wait(clients, make_group, decrement):
    ec2, asg = clients
    name = make_group(2, (TERMINATING, 300, "CONTINUE"))
    before = members(asg, name)
    target = sorted(before)[0]
    # as the lab's reconciler does with an Unhealthy worker (without a decrement): the group replaces it
    asg.set_instance_health(InstanceId=target, HealthStatus="Unhealthy")
    for _ in range(2):   # asked again while it waits: nothing more happens
        activity = asg.terminate_instance_in_auto_scaling_group(
            InstanceId=target, ShouldDecrementDesiredCapacity=decrement)["Activity"]
        assert target in activity["Description"]
        during = members(asg, name)
        assert during[target] == "Terminating:Wait"
        assert ec2_states(ec2, [target])[target] == "running"
        replacements = set(during) - set(before)
        if decrement:
            assert desired(asg, name) == 1 and not replacements, during
        else:
            assert desired(asg, name) == 2 and len(replacements) == 1, during   # launched at once, as on AWS
            assert during[next(iter(replacements))] == "InService"
    complete(asg, name, target)
    assert target not in members(asg, name)
    assert ec2_states(ec2, [target])[target] == "terminated"


# --- scale-in protection -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hooked", [True, False], ids=["termination-hook", "no-hooks"])
def test_scale_in_spares_protected_instances(clients, make_group, hooked):
    ec2, asg = clients
    name = make_group(3, *([(TERMINATING, 300, "CONTINUE")] if hooked else []))
    ids = sorted(members(asg, name))
    protected = ids[1:]
    asg.set_instance_protection(AutoScalingGroupName=name, InstanceIds=protected, ProtectedFromScaleIn=True)
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    after = members(asg, name)
    assert desired(asg, name) == 0                                           # AWS keeps the lowered capacity
    assert {i: after[i] for i in protected} == {i: "InService" for i in protected}
    assert after.get(ids[0]) == ("Terminating:Wait" if hooked else None), after
    assert ec2_states(ec2, [ids[0]])[ids[0]] == ("running" if hooked else "terminated")
    # asked for by name, a protected instance still goes
    asg.terminate_instance_in_auto_scaling_group(InstanceId=protected[0],
                                                 ShouldDecrementDesiredCapacity=False)
    assert members(asg, name).get(protected[0]) == ("Terminating:Wait" if hooked else None)


# --- errors ------------------------------------------------------------------------------------------------

def test_no_waiting_action_is_a_validation_error(clients, make_group):
    _, asg = clients
    name = make_group(1, (LAUNCHING, 300, "ABANDON"), (TERMINATING, 300, "CONTINUE"))
    (in_service,) = members(asg, name)                        # launched before the hooks: InService
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    (pending,) = set(members(asg, name)) - {in_service}
    token = str(uuid.uuid4())

    def heartbeat(**which):
        asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=name, LifecycleHookName="hook0", **which)

    calls = [
        ("complete, InService instance", lambda: complete(asg, name, in_service), in_service),
        ("heartbeat, InService instance", lambda: heartbeat(InstanceId=in_service), in_service),
        ("complete, the termination hook", lambda: complete(asg, name, pending, hook="hook1"), pending),
        ("complete, unknown hook", lambda: complete(asg, name, pending, hook="nope"), pending),
        ("complete, unknown token", lambda: asg.complete_lifecycle_action(
            AutoScalingGroupName=name, LifecycleHookName="hook0", LifecycleActionToken=token,
            LifecycleActionResult="CONTINUE"), None),
        ("heartbeat, unknown token", lambda: heartbeat(LifecycleActionToken=token), None),
    ]
    for what, call, iid in calls:
        with pytest.raises(ClientError) as error:
            call()
        response = error.value.response
        assert response["Error"]["Code"] == "ValidationError", what
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, what
        expected = f"No active Lifecycle Action found with instance ID {iid}" if iid else \
            "No active Lifecycle Action found with token"
        assert response["Error"]["Message"].startswith(expected), (what, response["Error"])
    assert members(asg, name) == {in_service: "InService", pending: "Pending:Wait"}
    complete(asg, name, pending)
    with pytest.raises(ClientError, match="No active Lifecycle Action found"):
        complete(asg, name, pending)                                         # once only


# --- hooks go with their group, and a deleted hook ends its actions -----------------------------------------

def test_deleting_a_hook_abandons_its_launches_and_a_group_takes_its_hooks_along(clients, make_group):
    ec2, asg = clients
    name = make_group(0, (LAUNCHING, 300, "CONTINUE"))
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
    (pending,) = members(asg, name)
    asg.delete_lifecycle_hook(AutoScalingGroupName=name, LifecycleHookName="hook0")
    after = members(asg, name)
    assert pending not in after and ec2_states(ec2, [pending])[pending] == "terminated"
    assert list(after.values()) == ["InService"]                             # the replacement: no hook left

    asg.put_lifecycle_hook(LifecycleHookName="hook0", AutoScalingGroupName=name,
                           LifecycleTransition=TERMINATING, HeartbeatTimeout=300, DefaultResult="CONTINUE")
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0)
    (leaving,) = members(asg, name)
    assert members(asg, name)[leaving] == "Terminating:Wait"
    asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    assert ec2_states(ec2, [leaving])[leaving] == "terminated"
    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"] == []
    assert asg.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"] == []


# --- a group without hooks ---------------------------------------------------------------------------------

def test_a_group_without_hooks_is_unchanged(clients, make_group):
    ec2, asg = clients
    name = make_group(2)
    first = members(asg, name)
    assert list(first.values()) == ["InService", "InService"]
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=3)
    grown = members(asg, name)
    assert set(grown.values()) == {"InService"} and len(grown) == 3
    asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=1)
    shrunk = members(asg, name)
    assert list(shrunk.values()) == ["InService"]
    gone = set(grown) - set(shrunk)
    assert set(ec2_states(ec2, gone).values()) == {"terminated"}
    (last,) = shrunk
    asg.terminate_instance_in_auto_scaling_group(InstanceId=last, ShouldDecrementDesiredCapacity=True)
    assert members(asg, name) == {} and ec2_states(ec2, [last])[last] == "terminated"
    with pytest.raises(ClientError, match="No active Lifecycle Action found with instance ID"):
        complete(asg, name, last)


# --- timeouts: four groups on one clock --------------------------------------------------------------------

@pytest.fixture(scope="module")
def timeline(clients, template):
    """Four groups whose actions start together, each hook's HeartbeatTimeout 30 s (AWS's shortest): a launch
    timing out to ABANDON, one to CONTINUE, one (ABANDON) given a heartbeat after 20 s, a scale-in timing out.
    Polled every half second until each first instance has left its wait state: when, and what then."""
    ec2, asg = clients
    groups = {key: create_group(asg, template, before, (transition, TIMEOUT, result), max_size=2)
              for key, before, transition, result in (("abandon", 0, LAUNCHING, "ABANDON"),
                                                      ("continue", 0, LAUNCHING, "CONTINUE"),
                                                      ("heartbeat", 0, LAUNCHING, "ABANDON"),
                                                      ("terminate", 1, TERMINATING, "CONTINUE"))}
    starts, first = {}, {}
    for key, name in groups.items():
        starts[key] = time.monotonic()
        asg.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=0 if key == "terminate" else 1)
        (first[key],) = members(asg, name)
    story = {"first": first, "moved": {}, "then": {},
             "waiting": {key: members(asg, name) for key, name in groups.items()}}
    heartbeat_at = None
    give_up = time.monotonic() + 2 * TIMEOUT + 10
    try:
        while len(story["moved"]) < len(groups) and time.monotonic() < give_up:
            if heartbeat_at is None and time.monotonic() - starts["heartbeat"] >= 20:
                heartbeat_at = time.monotonic()
                asg.record_lifecycle_action_heartbeat(AutoScalingGroupName=groups["heartbeat"],
                                                      LifecycleHookName="hook0",
                                                      InstanceId=first["heartbeat"])
            for key, name in groups.items():
                now = members(asg, name)
                if key not in story["moved"] and now.get(first[key]) != story["waiting"][key][first[key]]:
                    story["moved"][key] = time.monotonic() - starts[key]
                    story["then"][key] = now
            time.sleep(0.5)
        story["heartbeat_after"] = heartbeat_at - starts["heartbeat"]
        story["ec2"] = ec2_states(ec2, first.values())
    finally:
        delete_groups(asg, groups.values())
    return story


@pytest.mark.slow
def test_a_launch_times_out_to_the_hooks_default_result(timeline):
    abandoned, continued = timeline["first"]["abandon"], timeline["first"]["continue"]
    assert timeline["waiting"]["abandon"] == {abandoned: "Pending:Wait"}
    assert timeline["waiting"]["continue"] == {continued: "Pending:Wait"}
    for key in ("abandon", "continue"):
        assert TIMEOUT <= timeline["moved"][key] < TIMEOUT + 4, timeline["moved"]
    # ABANDON: terminated, and a replacement launched (waiting in its turn)
    (replacement,) = timeline["then"]["abandon"]
    assert replacement != abandoned and timeline["then"]["abandon"][replacement] == "Pending:Wait"
    assert timeline["ec2"][abandoned] == "terminated"
    assert timeline["then"]["continue"] == {continued: "InService"}
    assert timeline["ec2"][continued] == "running"


@pytest.mark.slow
def test_a_heartbeat_restarts_the_timeout(timeline):
    iid, moved = timeline["first"]["heartbeat"], timeline["moved"]["heartbeat"]
    beat = timeline["heartbeat_after"]
    assert timeline["waiting"]["heartbeat"] == {iid: "Pending:Wait"}
    assert 20 <= beat < 25
    assert beat + TIMEOUT <= moved < beat + TIMEOUT + 4, (beat, moved)   # after the heartbeat, not the launch
    assert iid not in timeline["then"]["heartbeat"]                       # then the default result: ABANDON
    assert timeline["ec2"][iid] == "terminated"


@pytest.mark.slow
def test_a_termination_wait_times_out_and_the_instance_is_terminated(timeline):
    iid = timeline["first"]["terminate"]
    assert timeline["waiting"]["terminate"] == {iid: "Terminating:Wait"}
    assert TIMEOUT <= timeline["moved"]["terminate"] < TIMEOUT + 4, timeline["moved"]
    assert timeline["then"]["terminate"] == {}
    assert timeline["ec2"][iid] == "terminated"


# --- group metrics ---------------------------------------------------------------------------------------------
def test_a_group_with_metrics_collection_publishes_its_group_metrics_each_period(monkeypatch):
    """As AWS does each minute (here each second, LAB_GROUP_METRICS_EVERY): the metrics the group enabled, in
    AWS/AutoScaling with its name as dimension; a group without metrics collection publishes none."""
    import datetime as dt

    import boto3
    from conftest import local_endpoint
    monkeypatch.setenv("LAB_GROUP_METRICS_EVERY", "1")
    with local_endpoint() as url:
        def client(service):
            return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                                aws_secret_access_key="testing")
        ec2, asg, cw = client("ec2"), client("autoscaling"), client("cloudwatch")
        vpc = ec2.create_vpc(CidrBlock="10.78.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.78.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
        ec2.create_launch_template(LaunchTemplateName="metrics", LaunchTemplateData={"ImageId": AMI,
                                                                                      "InstanceType": "t3.micro"})
        template = {"subnet": subnet["SubnetId"], "template": "metrics"}
        collected, quiet = create_group(asg, template, 2, max_size=5), create_group(asg, template, 1)
        asg.enable_metrics_collection(AutoScalingGroupName=collected, Granularity="1Minute",
                                      Metrics=["GroupDesiredCapacity", "GroupInServiceInstances", "GroupMaxSize"])

        def latest(group, metric):
            end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)
            points = cw.get_metric_statistics(
                Namespace="AWS/AutoScaling", MetricName=metric, StartTime=end - dt.timedelta(minutes=10),
                EndTime=end, Period=60, Statistics=["Maximum"],
                Dimensions=[{"Name": "AutoScalingGroupName", "Value": group}])["Datapoints"]
            return max((p["Maximum"] for p in points), default=None)
        deadline = time.monotonic() + 20
        while latest(collected, "GroupInServiceInstances") is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert latest(collected, "GroupInServiceInstances") == 2
        assert latest(collected, "GroupDesiredCapacity") == 2 and latest(collected, "GroupMaxSize") == 5
        assert latest(collected, "GroupPendingInstances") is None   # not enabled
        assert cw.list_metrics(Namespace="AWS/AutoScaling", Dimensions=[
            {"Name": "AutoScalingGroupName", "Value": quiet}])["Metrics"] == []
