"""The lab's local AWS endpoint: moto's server, with defects of moto 5.2.5 mended.

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
- A group's desired capacity outside its [MinSize, MaxSize]: moto takes it (CreateAutoScalingGroup,
  UpdateAutoScalingGroup, SetDesiredCapacity) and leaves the group in a state AWS never allows; AWS refuses
  the request with a ValidationError. It is refused here too, so a playbook that would fail on AWS fails
  in the lab. (An update that leaves DesiredCapacity out is moved into the new range, on AWS and in moto.)

Auto Scaling lifecycle hooks: moto records them (PutLifecycleHook) but has no wait states. On AWS a hook
holds each instance its group launches or removes until the hook's action is completed, a heartbeat aside,
or its HeartbeatTimeout elapses. Groups without hooks take none of the paths below.
- Launch (autoscaling:EC2_INSTANCE_LAUNCHING): moto puts a new instance InService at once. Here it is
  Pending:Wait, its EC2 instance running, until the action ends: CONTINUE makes it InService; ABANDON
  terminates it and the group launches a replacement. moto counts only InService instances toward the
  desired capacity; a Pending:Wait instance counts here, as on AWS (else the group would launch again).
- Termination (autoscaling:EC2_INSTANCE_TERMINATING): moto terminates at once whatever the group removes
  (a lower desired or max size, TerminateInstanceInAutoScalingGroup). Here the instance is Terminating:Wait,
  its EC2 instance still running, and no longer counts (so without a decrement the replacement is launched at
  once); when the action ends, CONTINUE or ABANDON alike, the EC2 instance is terminated and leaves the group.
  TerminateInstanceInAutoScalingGroup again on a waiting instance changes nothing (moto would end the wait).
  Scale-in chooses, as moto does, among unprotected instances only (ProtectedFromScaleIn), never among
  those already waiting; too few unprotected ones leave the group above its lowered desired capacity, as AWS
  does.
- CompleteLifecycleAction and RecordLifecycleActionHeartbeat are not implemented in moto (HTTP 500). Here
  they find the action by InstanceId or LifecycleActionToken, or answer AWS's ValidationError (HTTP 400)
  when no action waits on that hook; a heartbeat restarts the timeout (up to AWS's 48 hours or 100 timeouts).
- A clock (a daemon thread, once a second) applies a hook's DefaultResult when its HeartbeatTimeout passes.
  Auto Scaling requests and the clock take one lock, so they never change a group at the same time.
- moto keeps a group's hooks after DeleteAutoScalingGroup, so a new group of that name would inherit them.
  AWS deletes them with the group, whose instances go without waiting (ForceDelete; moto never refuses a
  delete); and DeleteLifecycleHook first ends the hook's waiting actions (ABANDON for a launch, CONTINUE for
  a termination) rather than leave instances waiting on a hook that is gone. Both are done here.
moto sends no lifecycle notifications (SNS, SQS, EventBridge), so no client learns a LifecycleActionToken
here: actions are completed by InstanceId.

Group metrics: moto records EnableMetricsCollection but publishes nothing. On AWS a group with metrics collection
on sends its Group* metrics to CloudWatch (namespace AWS/AutoScaling, dimension AutoScalingGroupName) each minute;
a daemon thread does that here, so the cluster's dashboard has them as on AWS.

IAM (`--enforce-iam`, which the lab passes): every request is judged by its caller's policies, as on AWS. moto
does that (INITIAL_NO_AUTH_ACTION_COUNT) but judges SSM and Auto Scaling requests against the resource "*", so
the nodes' ARN-scoped statements would allow nothing; it cannot judge a trust policy whose principal is a
service; it knows no caller for the lab's fixed keys; and it takes a condition on tags as met. Mended below
(enforce_iam).
A request an instance's role is refused after that instance is terminated is not a policy's defect: moto
terminates at once, while the lab's node goes on shutting down for some seconds (lab/reconciler.py stops its
container after it reads the state), and a teardown may delete the role meanwhile. On AWS such an instance is
off by then. The endpoint refuses it all the same, logged as `IAM refused a terminated instance: ...`, apart from
the `IAM denied: ...` lines the tests count.

Nothing else differs from `moto_server`; the tests' own endpoint (tests/conftest.py) runs this too.
"""
from __future__ import annotations

import fnmatch
import json
import os
import sys
import threading
import time
import traceback
import uuid
from urllib.parse import parse_qs, urlparse

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    TerminateInstanceActivity,
    autoscaling_backends,
)
from moto import settings
from moto.autoscaling.responses import AutoScalingResponse
from moto.cloudwatch.models import cloudwatch_backends
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import EmptyResult
from moto.core.types import Base64EncodedString
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.models.elastic_block_store import Volume
from moto.ec2.models.launch_templates import LaunchTemplateVersion
from moto.ec2.models.security_groups import SecurityGroupRule
from moto.ec2.responses import EC2Response
from moto.efs.responses import EFSResponse
from moto.iam.access_control import (
    AssumedRoleAccessKey,
    IAMPolicy,
    IAMPolicyStatement,
    IAMRequestBase,
    IAMUserAccessKey,
    PermissionResult,
)
from moto.iam.models import iam_backends
from moto.logs.responses import LogsResponse
from moto.moto_api._internal.models import moto_api_backend
from moto.server import main
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.utilities.utils import get_partition


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


# --- a desired capacity within [MinSize, MaxSize] (see the docstring) ---------------------------------------
def _refuse_out_of_range(desired, min_size, max_size):
    if None not in (desired, min_size, max_size) and not int(min_size) <= int(desired) <= int(max_size):
        raise ValidationError(f"Desired capacity:{int(desired)} must be between the specified min size:"
                              f"{int(min_size)} and max size:{int(max_size)}")


_create_group = AutoScalingBackend.create_auto_scaling_group
_update_group = AutoScalingBackend.update_auto_scaling_group
_set_desired_capacity_call = AutoScalingResponse.set_desired_capacity


def _create_group_in_range(self, *args, **kwargs):
    _refuse_out_of_range(kwargs.get("desired_capacity"), kwargs.get("min_size"), kwargs.get("max_size"))
    return _create_group(self, *args, **kwargs)


def _update_group_in_range(self, *args, **kwargs):
    group = self.autoscaling_groups.get(kwargs.get("name"))
    if group is not None:
        low = kwargs.get("min_size") if kwargs.get("min_size") is not None else group.min_size
        high = kwargs.get("max_size") if kwargs.get("max_size") is not None else group.max_size
        _refuse_out_of_range(kwargs.get("desired_capacity"), low, high)
    return _update_group(self, *args, **kwargs)


def _set_desired_capacity_in_range(self):
    """SetDesiredCapacity, the API call (moto's own scaling calls the backend's method, which is left as it is)."""
    group = self.autoscaling_backend.autoscaling_groups.get(self._get_param("AutoScalingGroupName"))
    desired = self._get_int_param("DesiredCapacity")
    if group is not None and desired is not None:
        if desired > group.max_size:
            raise ValidationError(f"New SetDesiredCapacity value {desired} is above max value {group.max_size} "
                                  "for the AutoScalingGroup.")
        if desired < group.min_size:
            raise ValidationError(f"New SetDesiredCapacity value {desired} is below min value {group.min_size} "
                                  "for the AutoScalingGroup.")
    return _set_desired_capacity_call(self)


AutoScalingBackend.create_auto_scaling_group = _create_group_in_range
AutoScalingBackend.update_auto_scaling_group = _update_group_in_range
AutoScalingResponse.set_desired_capacity = _set_desired_capacity_in_range


# --- Auto Scaling lifecycle hooks (see the docstring) ------------------------------------------------------
LAUNCHING, TERMINATING = "autoscaling:EC2_INSTANCE_LAUNCHING", "autoscaling:EC2_INSTANCE_TERMINATING"
COUNTED = {"InService", "Pending:Wait"}   # the states that count toward the desired capacity
_LOCK = threading.RLock()
_holding = threading.local()   # .on: this thread scales in a group that has a termination hook


class _Action:
    """A lifecycle action waiting on one hook for one instance."""

    def __init__(self, hook):
        self.hook, self.token = hook, str(uuid.uuid4())
        now = time.monotonic()
        self.deadline = now + hook.heartbeat_timeout
        self.limit = now + min(172800, 100 * hook.heartbeat_timeout)   # AWS's longest wait

    def heartbeat(self):
        self.deadline = min(time.monotonic() + self.hook.heartbeat_timeout, self.limit)


def _hooks(group, transition):
    if getattr(group, "_lab_deleting", False):
        return []
    return [hook for hook in group.autoscaling_backend.lifecycle_hooks.values()
            if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == transition]


def _actions(state) -> dict:
    return getattr(state, "_lab_actions", {})


def _wait(state, hooks, lifecycle_state):
    state.lifecycle_state = lifecycle_state
    state._lab_actions = {hook.name: _Action(hook) for hook in hooks}


def _leave(state):
    """The instance's EC2 instance terminated, the instance out of its group."""
    group = state.auto_scaling_group
    state._lab_actions = {}
    state.lifecycle_state = "Terminated"
    group.autoscaling_backend.ec2_backend.terminate_instances([state.instance_id])
    group.instance_states = [s for s in group.instance_states if s is not state]


def _end_action(state, hook_name, result):
    actions = _actions(state)
    actions.pop(hook_name, None)
    if result == "CONTINUE" and actions:   # another hook of the same transition still waits
        return
    if state.lifecycle_state == "Pending:Wait" and result == "CONTINUE":
        state.lifecycle_state = "InService"
        return
    launching = state.lifecycle_state == "Pending:Wait"
    _leave(state)
    if launching:   # an abandoned launch: the group launches another
        group = state.auto_scaling_group
        group.set_desired_capacity(group.desired_capacity)


def _counted_instances(self):
    return [s for s in self.instance_states if s.lifecycle_state in COUNTED]


FakeAutoScalingGroup.active_instances = _counted_instances

_launch = FakeAutoScalingGroup.replace_autoscaling_group_instances


def _launch_into_pending_wait(self, count_needed, propagated_tags):
    known = len(self.instance_states)
    _launch(self, count_needed, propagated_tags)
    hooks = _hooks(self, LAUNCHING)
    if hooks:
        for state in self.instance_states[known:]:
            _wait(state, hooks, "Pending:Wait")


FakeAutoScalingGroup.replace_autoscaling_group_instances = _launch_into_pending_wait

_set_desired_capacity = FakeAutoScalingGroup.set_desired_capacity


def _set_desired_capacity_with_hooks(self, new_capacity):
    waiting = [s for s in self.instance_states if s.lifecycle_state == "Terminating:Wait"]
    hooks = _hooks(self, TERMINATING)
    if not waiting and not hooks:
        return _set_desired_capacity(self, new_capacity)
    # moto chooses what to remove among the group's instances: not among those already waiting
    counted = [s for s in self.instance_states if s not in waiting]
    self.instance_states = list(counted)
    _holding.on = bool(hooks)   # what moto removes, it terminates: not while a termination hook holds it
    try:
        _set_desired_capacity(self, new_capacity)
    finally:
        _holding.on = False
    removed = [s for s in counted if s not in self.instance_states] if hooks else []
    for state in removed:
        _wait(state, hooks, "Terminating:Wait")
    self.instance_states = waiting + self.instance_states + removed


FakeAutoScalingGroup.set_desired_capacity = _set_desired_capacity_with_hooks

_ec2_terminate = EC2Backend.terminate_instances


def _terminate_unless_held(self, instance_ids):
    if getattr(_holding, "on", False):
        return []
    return _ec2_terminate(self, instance_ids)


EC2Backend.terminate_instances = _terminate_unless_held

_terminate_in_group = AutoScalingBackend.terminate_instance


def _terminate_in_group_with_hooks(self, instance_id, should_decrement):
    state = next((s for group in self.autoscaling_groups.values() for s in group.instance_states
                  if s.instance_id == instance_id), None)
    if state is not None and state.lifecycle_state == "Terminating:Wait":   # asked again: it keeps waiting
        return TerminateInstanceActivity(state.instance, state.auto_scaling_group.desired_capacity)
    hooks = _hooks(state.auto_scaling_group, TERMINATING) if state else []
    if not hooks:
        return _terminate_in_group(self, instance_id, should_decrement)
    group = state.auto_scaling_group
    original_capacity = group.desired_capacity
    if should_decrement:
        group.desired_capacity -= 1
    _wait(state, hooks, "Terminating:Wait")
    group.set_desired_capacity(group.desired_capacity)   # without a decrement: the replacement, at once
    return TerminateInstanceActivity(state.instance, original_capacity)


AutoScalingBackend.terminate_instance = _terminate_in_group_with_hooks

_delete_group = AutoScalingBackend.delete_auto_scaling_group


def _delete_group_with_its_hooks(self, group_name):
    group = self.autoscaling_groups.get(group_name)
    if group is None:
        return _delete_group(self, group_name)   # moto's error
    group._lab_deleting = True
    try:
        for state in [s for s in group.instance_states if s.lifecycle_state == "Terminating:Wait"]:
            _leave(state)
        _delete_group(self, group_name)
    finally:
        group._lab_deleting = False
    for key, hook in list(self.lifecycle_hooks.items()):
        if hook.auto_scaling_group_name == group_name:
            del self.lifecycle_hooks[key]


AutoScalingBackend.delete_auto_scaling_group = _delete_group_with_its_hooks

_delete_hook = AutoScalingBackend.delete_lifecycle_hook


def _delete_hook_ending_its_actions(self, as_name, name):
    _delete_hook(self, as_name, name)
    group = self.autoscaling_groups.get(as_name)
    for state in list(group.instance_states if group else []):
        if name in _actions(state):
            _end_action(state, name, "ABANDON" if state.lifecycle_state == "Pending:Wait" else "CONTINUE")


AutoScalingBackend.delete_lifecycle_hook = _delete_hook_ending_its_actions


def _waiting_action(response):
    """(instance state, hook name) of the action a CompleteLifecycleAction or RecordLifecycleActionHeartbeat
    request names by InstanceId or LifecycleActionToken."""
    group = response.autoscaling_backend.autoscaling_groups.get(response._get_param("AutoScalingGroupName"))
    hook_name = response._get_param("LifecycleHookName")
    instance_id, token = response._get_param("InstanceId"), response._get_param("LifecycleActionToken")
    for state in group.instance_states if group and (instance_id or token) else []:
        action = _actions(state).get(hook_name)
        if action and instance_id in (None, state.instance_id) and token in (None, action.token):
            return state, hook_name
    if instance_id:
        raise ValidationError(f"No active Lifecycle Action found with instance ID {instance_id}")
    raise ValidationError(f"No active Lifecycle Action found with token {token}")


def _complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("Valid values for LifecycleActionResult are: [CONTINUE, ABANDON]")
    state, hook_name = _waiting_action(self)
    _end_action(state, hook_name, result)
    return EmptyResult()


def _record_lifecycle_action_heartbeat(self):
    state, hook_name = _waiting_action(self)
    _actions(state)[hook_name].heartbeat()
    return EmptyResult()


AutoScalingResponse.complete_lifecycle_action = _complete_lifecycle_action
AutoScalingResponse.record_lifecycle_action_heartbeat = _record_lifecycle_action_heartbeat

_call_action = AutoScalingResponse.call_action
_notify_terminate = AutoScalingBackend.notify_terminate_instances


def _locked(function):
    def locked(*args, **kwargs):
        with _LOCK:
            return function(*args, **kwargs)
    return locked


AutoScalingResponse.call_action = _locked(_call_action)
AutoScalingBackend.notify_terminate_instances = _locked(_notify_terminate)   # EC2's TerminateInstances


def _expired_actions():
    now = time.monotonic()
    for _, _, backend in list(autoscaling_backends.iter_backends()):
        for group in list(backend.autoscaling_groups.values()):
            for state in list(group.instance_states):
                for name, action in list(_actions(state).items()):
                    if action.deadline <= now:
                        yield state, name, action


def _expire_lifecycle_actions():
    """Each second: every action past its timeout ends with its hook's DefaultResult."""
    while True:
        time.sleep(1)
        with _LOCK:
            try:
                expired = list(_expired_actions())
            except RuntimeError:   # a backend was being made at that moment: next second
                continue
            for state, name, action in expired:
                if name in _actions(state):   # (not ended by an earlier one)
                    try:
                        _end_action(state, name, action.hook.default_result)
                    except Exception:   # in the endpoint's log; the clock goes on without this action
                        traceback.print_exc()
                        _actions(state).pop(name, None)


# --- Auto Scaling group metrics: each minute, as AWS publishes them with metrics collection on --------------------
GROUP_METRICS_EVERY = float(os.environ.get("LAB_GROUP_METRICS_EVERY", "60"))   # seconds; tests shorten it


def _group_metrics(group) -> dict[str, int]:
    states = [s.lifecycle_state for s in group.instance_states]
    return {"GroupMinSize": group.min_size, "GroupMaxSize": group.max_size,
            "GroupDesiredCapacity": group.desired_capacity,
            "GroupInServiceInstances": states.count("InService"),
            "GroupPendingInstances": sum(s.startswith("Pending") for s in states),
            "GroupStandbyInstances": sum(s.startswith("Standby") for s in states),
            "GroupTerminatingInstances": sum(s.startswith("Terminating") for s in states),
            "GroupTotalInstances": len(states)}


def publish_group_metrics() -> None:
    """Every group with metrics collection on: the metrics it enabled, into AWS/AutoScaling."""
    with _LOCK:
        for account, region, backend in list(autoscaling_backends.iter_backends()):
            for group in list(backend.autoscaling_groups.values()):
                if not group.metrics:
                    continue
                figures = _group_metrics(group)
                cloudwatch_backends[account][region].put_metric_data("AWS/AutoScaling", [
                    {"MetricName": name, "Value": figures[name], "Unit": "None",
                     "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group.name}]}
                    for name in group.metrics if name in figures])


def _publish_group_metrics_each_minute():
    while True:
        time.sleep(GROUP_METRICS_EVERY)
        try:
            publish_group_metrics()
        except Exception:   # in the endpoint's log; the next minute tries again
            traceback.print_exc()


# --- IAM enforced (--enforce-iam): resource-level ARNs, the lab's administrator, EC2 assuming roles ------------
# moto judges each signed request against its caller's policies once settings.INITIAL_NO_AUTH_ACTION_COUNT
# requests have passed unchecked. Three things stand between that and the lab:
# - moto judges every request of these services against the resource "*", so a statement scoped to an ARN (the
#   nodes' roles: SSM parameters, the workers' group) never matches and its caller is denied what AWS allows.
#   Here SSM, Auto Scaling and CloudWatch Logs requests name the ARNs AWS authorizes (every parameter of
#   GetParameters, the group an instance id belongs to, the log group or stream), and each is judged.
# - every request must come from an IAM user's or an assumed role's keys: the lab's own fixed keys
#   (lab/config.py: the operator, the reconciler, the metadata stand-in) become those of an administrator user.
# - the metadata stand-in, which is EC2 here, assumes each instance profile's role. moto cannot judge a trust
#   policy whose principal is a service (it fails on {"Service": ...}); the administrator may assume a role
#   exactly when the role trusts ec2.amazonaws.com, as EC2 may on AWS. A role's session may assume a role whose
#   trust policy names the first role's ARN, as on AWS (moto compares the session's own ARN with it).
# - the operator's plays (`make lab`, the tests' site.yml runs) use the keys of a second user, jhs-lab-operator,
#   whose only policy is docs/aws-permissions.md's for the lab cluster (`lab up` renders it: --operator-policy), so a
#   permission missing there fails `make lab` as it would fail a first run on AWS.
# - moto names no resource for most actions of EC2, IAM (but roles), EFS, ECR and the rest: it judges them against
#   "*", which an ARN-scoped statement never matches. Such a request is judged by its action alone here: a statement
#   allows it when it names the action, whatever its Resource (docs/lab.md lists this gap).
# - moto names CloudWatch's actions monitoring:... (its signing name): here cloudwatch:..., as IAM does.
# - moto recomputes a request's signature wrongly for some REST services (EFS's DescribeFileSystems is refused
#   with SignatureDoesNotMatch), so signatures are not checked: a caller is known by its access key id.
# - Conditions: moto evaluates only StringEquals, on values it is given, and gives none for these services; an
#   absent key passes. Here the keys the nodes' roles are scoped by are given and judged as AWS judges them:
#   cloudwatch:namespace (PutMetricData's Namespace) and s3:prefix (a bucket listing's prefix), with StringEquals,
#   StringNotEquals, StringLike and StringNotLike (a value matching any of the statement's; a key the request lacks
#   fails every operator but the Not ones, as on AWS without ...IfExists; with it, an absent key holds), and Null
#   ("true": the key is absent). The
#   operator policy's aws:RequestTag/<key> and aws:ResourceTag/<key> are judged too, for the EC2 and EFS requests whose
#   resources and tags the lab reads (_tagged_resources, below). A statement's operators and keys must all hold
#   (AND). A statement whose condition does not hold does not apply (moto answers DENIED, which overrides every
#   Allow). Conditions on other keys (iam:PassedToService, iam:AWSServiceName) stay unjudged (docs/lab.md lists the
#   gaps).
LAB_ADMIN_USER = "jhs-lab-admin"
_OPERATOR_POLICY_FILE: list[str] = []   # --operator-policy: read again whenever the operator is seeded
IAM_ENFORCED = "lab endpoint: every request is judged by IAM from here on (--enforce-iam)"
_SSM_NAME_PARAMS = {"GetParameter": "Name", "PutParameter": "Name", "DeleteParameter": "Name",
                    "GetParameterHistory": "Name", "LabelParameterVersion": "Name", "GetParametersByPath": "Path"}
_SSM_NAMES_PARAMS = {"GetParameters": "Names", "DeleteParameters": "Names"}
_SSM_TAG_ACTIONS = {"AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource"}


def _ssm_parameter_arn(response, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:{get_partition(response.region)}:ssm:{response.region}:{response.current_account}:parameter/" \
           f"{name.lstrip('/')}"


def _ssm_resources(self):
    action = self._get_action()
    if action in _SSM_NAME_PARAMS and self._get_param(_SSM_NAME_PARAMS[action]):
        return [_ssm_parameter_arn(self, self._get_param(_SSM_NAME_PARAMS[action]))]
    if action in _SSM_NAMES_PARAMS:
        return [_ssm_parameter_arn(self, n) for n in self._get_param(_SSM_NAMES_PARAMS[action]) or []] or ["*"]
    if action in _SSM_TAG_ACTIONS and self._get_param("ResourceType") == "Parameter":
        return [_ssm_parameter_arn(self, self._get_param("ResourceId"))]
    return "*"


def _group_arn(self, name: str) -> str:
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is not None:
        return group.arn
    return f"arn:{get_partition(self.region)}:autoscaling:{self.region}:{self.current_account}:autoScalingGroup:" \
           f"00000000-0000-0000-0000-000000000000:autoScalingGroupName/{name}"


def _autoscaling_resources(self):
    """The group a request acts on, by its name or by its instances' (Describe* calls are on "*", as on AWS)."""
    if self._get_action().startswith("Describe"):
        return "*"
    name = self._get_param("AutoScalingGroupName")
    if name:
        return [_group_arn(self, name)]
    ids = [self._get_param("InstanceId")] if self._get_param("InstanceId") else self._get_multi_param("InstanceIds.member")
    arns = set()
    for group in self.autoscaling_backend.autoscaling_groups.values():
        if any(state.instance.id in ids for state in group.instance_states):
            arns.add(group.arn)
    return sorted(arns) or "*"


def _logs_resources(self):
    """The log group a CloudWatch Logs request acts on, or its stream for the calls that name one (CreateLogStream,
    PutLogEvents: ...:log-group:<group>:log-stream:<stream>, which a statement on <group>:* matches and one on the
    group alone does not, as on AWS). Describe* calls, which take a prefix, on "*"."""
    name = self._get_param("logGroupName")
    if self._get_action().startswith("Describe") or not name:
        return "*"
    arn = f"arn:{get_partition(self.region)}:logs:{self.region}:{self.current_account}:log-group:{name}"
    stream = self._get_param("logStreamName")
    return [f"{arn}:log-stream:{stream}"] if stream else [arn]


# The operator policy lets EC2 and EFS resources be created only when the request tags them with the cluster
# (aws:RequestTag/jhs:cluster) and changed or deleted only when they carry that tag (aws:ResourceTag/jhs:cluster).
# moto names no resource for these services and gives no tags, so both conditions passed. For the actions of those
# statements a request here names the resources AWS authorizes, each judged with its own values (all must be allowed):
# - each resource type it creates as "<type>/*" (AWS's ARN for a resource not made yet), its aws:RequestTag/<key> the
#   tags the request gives that type (TagSpecifications; EFS: Tags);
# - each existing resource it names, by its ARN, its aws:ResourceTag/<key> its tags in moto's state (a resource moto
#   does not know, or without the key, lacks it, and StringEquals on it fails, as on AWS); CreateTags and EFS's
#   TagResource with the tags they set as aws:RequestTag/<key> too.
# A request of such an action that names none of the parameters read here (e.g. a security group by its name) stays
# judged by its action on "*", its tags unjudged (docs/lab.md lists what is not judged).
_EC2_CREATES = {"CreateVpc": ["vpc"], "CreateSubnet": ["subnet"], "CreateInternetGateway": ["internet-gateway"],
                "CreateNatGateway": ["natgateway"], "CreateRouteTable": ["route-table"],
                "CreateSecurityGroup": ["security-group"], "AllocateAddress": ["elastic-ip"],
                "CreateVolume": ["volume"], "CreateLaunchTemplate": ["launch-template"],
                "RunInstances": ["instance", "volume", "network-interface"]}   # its root volume and interface too
_EC2_NAMES = {   # action: the parameters naming the existing resources it acts on, as AWS authorizes it
    "CreateSubnet": ["VpcId"], "CreateRouteTable": ["VpcId"], "CreateSecurityGroup": ["VpcId"],
    "CreateNatGateway": ["SubnetId", "AllocationId"],
    "RunInstances": ["ImageId", "SubnetId", "SecurityGroupIds", "KeyName", "LaunchTemplate"],
    "ModifyVpcAttribute": ["VpcId"], "DeleteVpc": ["VpcId"], "ModifySubnetAttribute": ["SubnetId"],
    "DeleteSubnet": ["SubnetId"], "AttachInternetGateway": ["InternetGatewayId", "VpcId"],
    "DetachInternetGateway": ["InternetGatewayId", "VpcId"], "DeleteInternetGateway": ["InternetGatewayId"],
    "DeleteNatGateway": ["NatGatewayId"], "CreateRoute": ["RouteTableId"], "ReplaceRoute": ["RouteTableId"],
    "DeleteRoute": ["RouteTableId"], "AssociateRouteTable": ["RouteTableId", "SubnetId"],
    "DisassociateRouteTable": ["AssociationId"], "DeleteRouteTable": ["RouteTableId"],
    **dict.fromkeys(["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
                     "RevokeSecurityGroupEgress", "UpdateSecurityGroupRuleDescriptionsIngress",
                     "UpdateSecurityGroupRuleDescriptionsEgress", "ModifySecurityGroupRules", "DeleteSecurityGroup"],
                    ["GroupId"]),
    "AssociateAddress": ["AllocationId", "PublicIp", "InstanceId", "NetworkInterfaceId"],
    "DisassociateAddress": ["AssociationId", "PublicIp"], "ReleaseAddress": ["AllocationId", "PublicIp"],
    "AttachVolume": ["VolumeId", "InstanceId"], "DetachVolume": ["VolumeId", "InstanceId"],
    "DeleteVolume": ["VolumeId"],
    **dict.fromkeys(["ModifyInstanceAttribute", "ModifyInstanceMetadataOptions", "CreateImage"], ["InstanceId"]),
    **dict.fromkeys(["StartInstances", "StopInstances", "TerminateInstances"], ["InstanceIds"]),
    **dict.fromkeys(["CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "DeleteLaunchTemplate",
                     "DeleteLaunchTemplateVersions"], ["LaunchTemplateId", "LaunchTemplateName"]),
    "CreateTags": ["Resources"], "DeleteTags": ["Resources"], "DeregisterImage": ["ImageId"],
    "DeleteSnapshot": ["SnapshotId"],
}
_EC2_ID_TYPES = {"vpc": "vpc", "subnet": "subnet", "igw": "internet-gateway", "nat": "natgateway", "rtb": "route-table",
                 "sg": "security-group", "eipalloc": "elastic-ip", "vol": "volume", "lt": "launch-template",
                 "i": "instance", "ami": "image", "snap": "snapshot", "eni": "network-interface"}
_EFS_NAMES = {"CreateMountTarget": "FileSystemId", "PutLifecycleConfiguration": "FileSystemId",
              "DeleteFileSystem": "FileSystemId", "TagResource": "ResourceId", "UntagResource": "ResourceId",
              "DeleteMountTarget": "MountTargetId", "ModifyMountTargetSecurityGroups": "MountTargetId"}
_EFS_ID_TYPES = {"fs": "file-system", "fsap": "access-point"}


def _tag_values(condition_key: str, tags: dict[str, str]) -> dict[str, str]:
    return {_canonical(f"{condition_key}/{key}"): value for key, value in tags.items()}


def _tagged_resources(self, named: list[tuple[str, dict]], created: list[tuple[str, dict]],
                      request_tags: dict[str, str]):
    """The ARNs a request is judged on, each with its tags as condition values (kept for _authorize_each): `named`, the
    existing resources (ARN, tags in moto's state), with `request_tags` (the tags the request sets); `created`, the
    resources it creates ("<type>/*", the tags it gives them). "*" when it names none: judged as before."""
    values = {arn: {TAGS_READ: "yes", **_tag_values("aws:RequestTag", request_tags),
                    **_tag_values("aws:ResourceTag", tags)} for arn, tags in named}
    values.update({arn: {TAGS_READ: "yes", **_tag_values("aws:RequestTag", tags)} for arn, tags in created})
    self._lab_resource_values = values
    return list(values) or "*"


def _ec2_ids(backend, param: str, value) -> list[str]:
    """The ids of the resources a parameter names (a launch template's by its name, an association's resource)."""
    if isinstance(value, list):
        return [i for v in value for i in _ec2_ids(backend, param, v)]
    if isinstance(value, dict):   # RunInstances' LaunchTemplate
        return _ec2_ids(backend, "LaunchTemplateId", value["LaunchTemplateId"]) if value.get("LaunchTemplateId") \
            else _ec2_ids(backend, "LaunchTemplateName", value.get("LaunchTemplateName"))
    if not value:
        return []
    if param == "LaunchTemplateName":
        return [backend.launch_template_name_to_ids.get(value, value)]
    if param == "PublicIp":
        return [a.allocation_id for a in backend.addresses if a.public_ip == value] or [value]
    if param == "AssociationId" and value.startswith("eipassoc-"):
        return [a.allocation_id for a in backend.addresses if a.association_id == value] or [value]
    if param == "AssociationId":   # a route table's association with a subnet or gateway
        return [t.id for t in backend.route_tables.values() if value in t._associations] or [value]
    return [value]


def _ec2_arn(self, resource_type: str, resource_id: str) -> str:
    account = "" if resource_type in ("image", "snapshot") else self.current_account   # AWS's ARNs have none
    return f"arn:{get_partition(self.region)}:ec2:{self.region}:{account}:{resource_type}/{resource_id}"


def _ec2_resources(self):
    action = self._get_action()
    if action not in _EC2_CREATES and action not in _EC2_NAMES:
        return "*"
    backend = self.ec2_backend
    named = []
    for param in _EC2_NAMES.get(action, []):
        for resource_id in _ec2_ids(backend, param, self._get_param(param)):
            prefix = resource_id.split("-")[0]
            resource_type = "key-pair" if param == "KeyName" else _EC2_ID_TYPES.get(prefix, prefix)
            named.append((_ec2_arn(self, resource_type, resource_id), dict(backend.tags.get(resource_id, {}))))
    if not named and action not in _EC2_CREATES:   # it names its resources otherwise (e.g. a group by its name)
        return "*"
    specs = {spec.get("ResourceType"): {t["Key"]: t.get("Value", "") for t in spec.get("Tags", [])}
             for spec in self._get_param("TagSpecifications") or []}
    created = [(_ec2_arn(self, t, "*"), specs.get(t, {})) for t in _EC2_CREATES.get(action, [])]
    sets = {t["Key"]: t.get("Value", "") for t in self._get_param("Tags") or []} if action == "CreateTags" else {}
    return _tagged_resources(self, named, created, sets)


def _efs_resources(self):
    action = self._get_action()
    backend = self.efs_backend
    arn = f"arn:{get_partition(self.region)}:elasticfilesystem:{self.region}:{self.current_account}:"
    request_tags = {t["Key"]: t.get("Value", "") for t in self._get_param("Tags") or []}
    if action == "CreateFileSystem":
        return _tagged_resources(self, [], [(f"{arn}file-system/*", request_tags)], {})
    resource_id = self._get_param(_EFS_NAMES[action]) if action in _EFS_NAMES else None
    if resource_id and _EFS_NAMES[action] == "MountTargetId":
        target = backend.mount_targets_by_id.get(resource_id)
        resource_id = target.file_system_id if target else None
    if not resource_id:
        return "*"
    resource_type = _EFS_ID_TYPES.get(resource_id.split("-")[0], "file-system")
    tags = backend.tagging_service.get_tag_dict_for_resource(resource_id)
    return _tagged_resources(self, [(f"{arn}{resource_type}/{resource_id}", tags)], [],
                             request_tags if action == "TagResource" else {})


_authorize_one = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action


def _authorize_each(self, resource="*"):
    """Each ARN a request acts on is judged (moto judges one), with the values of the judged condition keys: the
    request's, and each resource's own where the lab named them (its tags: see _tagged_resources)."""
    request_values = _cloudwatch_condition_values(self)
    resource_values = getattr(self, "_lab_resource_values", {})
    try:
        for arn in resource if isinstance(resource, list) else [resource]:
            _REQUEST_CONDITION_VALUES.values = {**request_values, **resource_values.get(arn, {})}
            _authorize_one(self, arn)
    finally:
        _REQUEST_CONDITION_VALUES.values = {}


# A request names its service by its signing name, which is not always the service's IAM prefix (CloudWatch signs as
# "monitoring"; its actions are cloudwatch:...). moto builds the action from the signing name. A few of moto's S3
# action names are not IAM's: a HEAD of a bucket is authorized as s3:ListBucket, a bucket's public access block as
# s3:GetBucketPublicAccessBlock and s3:PutBucketPublicAccessBlock (which deleting it takes too).
_IAM_PREFIXES = {"monitoring": "cloudwatch"}
_IAM_ACTIONS = {"s3:HeadBucket": "s3:ListBucket", "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
                "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
                "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock"}
_request_init = IAMRequestBase.__init__


def _action_with_iam_prefix(self, *args, **kwargs):
    _request_init(self, *args, **kwargs)
    service, _, action = self._action.partition(":")
    action = f"{_IAM_PREFIXES.get(service, service)}:{action}"
    self._action = _IAM_ACTIONS.get(action, action)


def _logged_denial(self, resource: str) -> None:
    """A refusal names the caller, the action and the resource in the endpoint's log (.lab/logs/moto.log), where
    the lab's reader finds which statement a role lacks. With LAB_IAM_AUDIT=1 in the endpoint's environment it is
    logged as `IAM audit: would deny ...` and let through: one run then lists everything a policy lacks."""
    try:
        _check_action_with_conditions(self, resource)
    except Exception:
        if os.environ.get("LAB_IAM_AUDIT") == "1":
            print(f"IAM audit: would deny {self._access_key.arn} {self._action} on {resource}", file=sys.stderr,
                  flush=True)
            return
        gone = "IAM refused a terminated instance" if _terminated_caller(self) else "IAM denied"
        print(f"{gone}: {self._access_key.arn} {self._action} on {resource}", file=sys.stderr, flush=True)
        raise


def _terminated_caller(self) -> bool:
    """The caller is an instance's role session (the metadata stand-in names it after the instance, see
    lab/images/imds/imds.py) and that instance is terminated in the endpoint."""
    key = self._access_key
    session = getattr(key, "_session_name", "")
    if not isinstance(key, AssumedRoleAccessKey) or not session.startswith("i-"):
        return False
    instance = ec2_backends[self.account_id][self._region].get_instance_by_id(session)
    return instance is not None and instance.state == "terminated"


JUDGED_CONDITION_KEYS = {"cloudwatch:namespace", "s3:prefix"}
JUDGED_TAG_KEYS = ("aws:requesttag/", "aws:resourcetag/")   # judged in the requests whose tags the lab reads
TAGS_READ = "lab:tags-read"   # in a request's values: the lab named the resource and read the tags (_tagged_resources)
_REQUEST_CONDITION_VALUES = threading.local()   # the values of a request being judged (one thread a request)


def _cloudwatch_condition_values(self) -> dict[str, str]:
    if isinstance(self, CloudWatchResponse) and self._get_action() == "PutMetricData":
        return {"cloudwatch:namespace": self._get_param("Namespace")}
    return {}


def _condition_values(request) -> dict[str, str]:
    """The judged keys' values of a request: set by the response object (CloudWatch), or read from an S3 request's
    query (a bucket listing's prefix)."""
    values = dict(getattr(_REQUEST_CONDITION_VALUES, "values", {}) or {})
    if request._action == "s3:ListBucket":
        prefix = parse_qs(urlparse(request._path).query).get("prefix")
        if prefix:
            values["s3:prefix"] = prefix[0]
    return {k: v for k, v in values.items() if v is not None}


def _canonical(key: str) -> str:
    """A condition key as the lab keeps its values: IAM's key names are case-insensitive, a tag's key (after "/") is
    not."""
    name, slash, tag = key.partition("/")
    return name.lower() + slash + tag


def _judged(key: str, values) -> bool:
    """The lab judges this key for a request with these values (others are left to moto, which passes them)."""
    key = _canonical(key)
    return key in JUDGED_CONDITION_KEYS or (key.startswith(JUDGED_TAG_KEYS) and TAGS_READ in (values or {}))


def _string_like(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


_OPERATORS = {"StringEquals": lambda want, got: got == want, "StringLike": _string_like}


def _condition_holds(operator: str, wanted: list, got: str | None) -> bool | None:
    """One key's condition under one operator, for the request's value of the key (None: the request lacks it); None
    when the lab does not judge the operator (left to moto, which passes it). `Null`, as on AWS: "true" holds when the
    key is absent from the request's context, "false" when it is present (a JSON true or false is taken alike).
    `<operator>IfExists` holds when the key is absent, and is the operator's test when it is present."""
    if operator == "Null":
        return any(str(w).lower() == ("true" if got is None else "false") for w in wanted)
    if operator.endswith("IfExists"):   # as on AWS: holds when the request lacks the key, else the operator's test
        return True if got is None else _condition_holds(operator[:-len("IfExists")], wanted, got)
    negated = operator.startswith("StringNot")
    match = _OPERATORS.get(operator.replace("Not", "", 1) if negated else operator)
    if match is None:
        return None
    return (got is not None and any(match(w, got) for w in wanted)) != negated


def _judged_conditions_hold(self, values) -> bool:
    """Every condition of the statement on a judged key holds for the request's values (others are left to moto): its
    operators and, under each, its keys all must hold (AND), a key holding for any of its values (OR), as on AWS."""
    for operator, keys in (self._statement.get("Condition") or {}).items():
        for key, wanted in keys.items():
            if not _judged(key, values):
                continue
            got = (values or {}).get(_canonical(key))
            if _condition_holds(operator, wanted if isinstance(wanted, list) else [wanted], got) is False:
                return False
    return True


_moto_check_conditions = IAMPolicyStatement._check_conditions


def _check_conditions(self, incoming_condition_values=None) -> bool:
    return _judged_conditions_hold(self, incoming_condition_values) and _moto_check_conditions(
        IAMPolicyStatement({**self._statement, "Condition": {
            op: {k: v for k, v in keys.items() if not _judged(k, incoming_condition_values)}
            for op, keys in (self._statement.get("Condition") or {}).items()}}), incoming_condition_values)


def _check_action_with_conditions(self, resource: str) -> None:
    """moto's check_action_permitted, with the request's values of the judged condition keys."""
    if self._action == "sts:GetCallerIdentity":
        return
    values = _condition_values(self)
    permitted = False
    for policy in self._access_key.collect_policies():
        result = IAMPolicy(policy).is_action_permitted(self._action, resource, None, values)
        if result == PermissionResult.DENIED:
            self._raise_access_denied()
        permitted = permitted or result == PermissionResult.PERMITTED
    if self._is_assuming_role_operation(resource):
        permitted = permitted and self._check_role_trust_relationship(resource)
    if not permitted:
        self._raise_access_denied()


_statement_permits = IAMPolicyStatement.is_action_permitted


def _statement_judged(self, action, resource="*", principal=None, values=None):
    """A statement whose condition does not hold does not apply, as on AWS (moto answers DENIED, which would override
    another statement that allows the request, e.g. CreateTags on a resource carrying the cluster's tag, without it in
    the request). A request moto names no resource for ("*") is judged by its action alone (see above)."""
    if self._statement.get("Condition") and not self._check_conditions(values):
        return PermissionResult.NEUTRAL
    if resource == "*" and self._statement.get("Resource") not in (None, "*"):
        return _statement_permits(IAMPolicyStatement({**self._statement, "Resource": "*"}), action, resource,
                                  principal, values)
    return _statement_permits(self, action, resource, principal, values)


_trust = IAMRequestBase._check_role_trust_relationship


def _ec2_assumes_roles_that_trust_it(self, role_arn: str) -> bool:
    key = self._access_key
    if isinstance(key, IAMUserAccessKey) and key._owner_user_name == LAB_ADMIN_USER:
        document = json.loads(self.backend.get_role_by_arn(role_arn).assume_role_policy_document)
        statements = document.get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            services = (st.get("Principal") or {}).get("Service", []) if isinstance(st.get("Principal"), dict) else []
            actions = st.get("Action", [])
            if (st.get("Effect") == "Allow" and "ec2.amazonaws.com" in ([services] if isinstance(services, str) else services)
                    and "sts:AssumeRole" in ([actions] if isinstance(actions, str) else actions)):
                return True
        return False
    if isinstance(key, AssumedRoleAccessKey):   # a role's session is the role, for the trust policy of another role
        document = IAMPolicy(self.backend.get_role_by_arn(role_arn).assume_role_policy_document)
        owner = f"arn:{key.partition}:iam::{key.account_id}:role/{key._owner_role_name}"
        return document.is_action_permitted(self._action, role_arn, owner) == PermissionResult.PERMITTED
    return _trust(self, role_arn)


def _seed_user(name: str, access_key_id: str, secret: str, policy: dict | None) -> None:
    """An IAM user of the default account with fixed keys and, when given, one inline policy."""
    backend = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    if name in backend.users:
        return
    backend.create_user("us-east-1", name)
    if policy is not None:
        from lab.config import OPERATOR_POLICY_NAME, OPERATOR_USER
        backend.put_user_policy(name, OPERATOR_POLICY_NAME if name == OPERATOR_USER else "everything",
                                json.dumps(policy))
    key = backend.create_access_key(name)
    backend.access_keys.pop(key.physical_resource_id, None)
    key.access_key_id = access_key_id
    key.secret_access_key = secret
    backend.access_keys[key.physical_resource_id] = key


def _seed_lab_users() -> None:
    """The lab's fixed keys (lab/config.py) become an administrator user's, and the operator's keys those of a user
    holding the operator policy, in the default account."""
    from lab.config import AWS_CREDENTIALS, OPERATOR_CREDENTIALS, OPERATOR_USER
    _seed_user(LAB_ADMIN_USER, AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"], AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
               {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    policy = None
    if _OPERATOR_POLICY_FILE:
        with open(_OPERATOR_POLICY_FILE[0]) as f:
            policy = json.load(f)
    _seed_user(OPERATOR_USER, OPERATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
               OPERATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], policy)


def enforce_iam() -> None:
    SimpleSystemManagerResponse._determine_resource = _ssm_resources
    AutoScalingResponse._determine_resource = _autoscaling_resources
    LogsResponse._determine_resource = _logs_resources
    EC2Response._determine_resource = _ec2_resources
    EFSResponse._determine_resource = _efs_resources
    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = _authorize_each
    IAMRequestBase._check_role_trust_relationship = _ec2_assumes_roles_that_trust_it
    IAMRequestBase.check_signature = lambda self: None
    IAMRequestBase.check_action_permitted = _logged_denial
    IAMRequestBase.__init__ = _action_with_iam_prefix
    IAMPolicyStatement.is_action_permitted = _statement_judged
    IAMPolicyStatement._check_conditions = _check_conditions
    _reset = moto_api_backend.reset

    def reset_and_seed() -> None:   # POST /moto-api/reset wipes IAM: the lab's users come back
        _reset()
        _seed_lab_users()

    moto_api_backend.reset = reset_and_seed
    _seed_lab_users()
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    print(IAM_ENFORCED, file=sys.stderr, flush=True)   # tests read the log's refusals from here on


if __name__ == "__main__":
    if "--operator-policy" in sys.argv:
        at = sys.argv.index("--operator-policy")
        _OPERATOR_POLICY_FILE.append(sys.argv[at + 1])
        del sys.argv[at:at + 2]
    if "--enforce-iam" in sys.argv:
        sys.argv.remove("--enforce-iam")
        enforce_iam()
    threading.Thread(target=_expire_lifecycle_actions, name="lifecycle-hook-clock", daemon=True).start()
    threading.Thread(target=_publish_group_metrics_each_minute, name="group-metrics", daemon=True).start()
    sys.argv[0] = "moto_server"
    sys.exit(main())
