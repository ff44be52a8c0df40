"""The scaler's policy (roles/jupyterhub/files/jhs_scaler.py) on hand-made states: decide, the schedule, the
termination hook's actions, the spawner's packing, the settings' validation and the simulator. The scaler's real
calls run in the lab (tests/lab/test_site.py, the autoscaling tests)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import credentials_later, jhs_names

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "roles" / "jupyterhub" / "files"
sys.path.insert(0, str(FILES))

import jhs_scaler as sc  # noqa: E402

G = sc.GiB
SIZE = (4.0, 16 * G)          # a new node: 4 CPU, 16 GiB allocatable
SLOT = (0.0, 2 * G)           # a default server reserves 2 GiB


def node(i, servers=0, used=0, ready=True, lifecycle="InService", empty_since=None, launched=0.0, protected=False):
    return sc.Node(instance_id=f"i-{i}", node_id=f"n-{i}", lifecycle=lifecycle, ready=ready, cpu=SIZE[0], mem=SIZE[1],
                   used_mem=used, servers=servers, empty_since=empty_since, launched=launched, protected=protected)


def state(nodes, desired=None, pending=(), min_size=0, max_size=10, now=10_000.0):
    return sc.State(now=now, desired=len(nodes) if desired is None else desired, min_size=min_size, max_size=max_size,
                    nodes=list(nodes), pending=list(pending), node_size=SIZE, slot=SLOT)


# --- scale out ---------------------------------------------------------------------------------------------------
def test_pending_spawns_without_room_scale_out_by_exactly_the_nodes_needed():
    full = [node(1, servers=8, used=16 * G, protected=True), node(2, servers=8, used=16 * G, protected=True)]
    # 9 spawns of 2 GiB: 8 fit a new node, the ninth needs another
    d = sc.decide(state(full, pending=[(0, 2 * G)] * 9), sc.Policy())
    assert d.desired == 4 and d.reason.startswith("scale out") and not d.terminate
    d = sc.decide(state(full, pending=[(0, 2 * G)]), sc.Policy())
    assert d.desired == 3


def test_a_pending_spawn_that_fits_a_ready_node_adds_nothing():
    d = sc.decide(state([node(1, servers=7, used=14 * G, protected=True)], pending=[(0, 2 * G)]), sc.Policy())
    assert d.desired == 1 and "steady" in d.reason


def test_one_pending_spawn_never_launches_two_nodes_booting_nodes_count():
    full = [node(1, servers=8, used=16 * G, protected=True)]
    first = sc.decide(state(full, pending=[(0, 2 * G)]), sc.Policy())
    assert first.desired == 2
    # the next pass: the group has not launched it yet (desired 2, one instance), then it boots (not Ready)
    assert sc.decide(state(full, desired=2, pending=[(0, 2 * G)]), sc.Policy()).desired == 2
    booting = full + [node(2, ready=False, lifecycle="Pending:Wait")]
    assert sc.decide(state(booting, pending=[(0, 2 * G)]), sc.Policy()).desired == 2


def test_two_scalers_deciding_at_once_do_not_double_a_scale_out():
    st = state([node(1, servers=8, used=16 * G, protected=True)], pending=[(0, 2 * G)] * 3)
    a, b = sc.decide(st, sc.Policy()), sc.decide(st, sc.Policy())
    # both set (not add) the same desired capacity: applied twice, still one new node
    assert a.desired == b.desired == 2


def test_scale_out_stops_at_max_and_says_so():
    full = [node(i, servers=8, used=16 * G, protected=True) for i in range(3)]
    d = sc.decide(state(full, pending=[(0, 2 * G)] * 20, max_size=4), sc.Policy())
    assert d.desired == 4 and "capped at max 4" in d.reason
    d = sc.decide(state(full + [node(9, servers=8, used=16 * G, protected=True)], pending=[(0, 2 * G)], max_size=4),
                  sc.Policy())
    assert d.desired == 4 and "at max 4" in d.reason


# --- headroom, min, schedule floor --------------------------------------------------------------------------------
def test_headroom_adds_nodes_for_the_missing_free_slots():
    # one node with room for 1 more server; headroom 10 -> 9 short, 8 per new node -> 2 nodes
    d = sc.decide(state([node(1, servers=7, used=14 * G, protected=True)]), sc.Policy(headroom=10))
    assert d.desired == 3 and "headroom 10" in d.reason
    assert sc.decide(state([node(1, servers=7, used=14 * G, protected=True)]), sc.Policy(headroom=1)).desired == 1


def test_floor_from_min_size_and_schedule():
    assert sc.decide(state([], min_size=2), sc.Policy()).desired == 2
    d = sc.decide(state([]), sc.Policy(floor=6, floor_reason="schedule tue 09:45"))
    assert d.desired == 6 and "schedule tue 09:45" in d.reason
    assert sc.decide(state([], max_size=4), sc.Policy(floor=6)).desired == 4


# --- scale in -----------------------------------------------------------------------------------------------------
def test_an_empty_node_past_its_cooldown_is_chosen_and_terminated():
    busy = node(1, servers=2, used=4 * G, protected=True)
    empty = node(2, empty_since=10_000 - 301)
    d = sc.decide(state([busy, empty]), sc.Policy(cooldown=300))
    assert d.terminate == ["i-2"] and d.desired == 1 and d.reason.startswith("scale in")


def test_an_empty_node_within_its_cooldown_stays():
    d = sc.decide(state([node(1, servers=1, used=2 * G, protected=True), node(2, empty_since=10_000 - 100)]),
                  sc.Policy(cooldown=300))
    assert not d.terminate and d.desired == 2


def test_a_node_with_a_server_is_never_chosen():
    # stale empty-since marks, no floor, long past the cool-down: still nothing with a server goes
    nodes = [node(i, servers=1, used=2 * G, empty_since=0.0, protected=True) for i in range(3)]
    d = sc.decide(state(nodes), sc.Policy(cooldown=60))
    assert not d.terminate and d.desired == 3
    # a node that holds only another service's reservation (a global agent, say) is empty of users: it may go
    other = node(4, used=1 * G, empty_since=0.0)
    assert sc.decide(state([other]), sc.Policy(cooldown=60)).terminate == ["i-4"]


def test_scale_in_keeps_the_floor_and_the_headroom():
    empties = [node(i, empty_since=0.0) for i in range(2)]
    assert not sc.decide(state(empties, min_size=2), sc.Policy()).terminate
    d = sc.decide(state(empties), sc.Policy(floor=2, floor_reason="schedule x"))
    assert not d.terminate and "floor 2" in d.reason
    # headroom 10: two empty nodes give 16 slots; one alone gives 8, too few
    d = sc.decide(state(empties), sc.Policy(headroom=10))
    assert not d.terminate and "headroom" in d.reason
    assert sc.decide(state(empties), sc.Policy(headroom=8)).terminate == ["i-0"]


def test_scale_in_removes_one_node_per_pass_the_longest_empty_first():
    nodes = [node(1, empty_since=500.0), node(2, empty_since=100.0), node(3, empty_since=100.0)]
    assert sc.decide(state(nodes), sc.Policy(cooldown=60)).terminate == ["i-2"]


def test_a_node_not_in_service_is_not_scaled_in():
    nodes = [node(1, empty_since=0.0, lifecycle="Pending:Wait"), node(2, empty_since=0.0, lifecycle="Terminating:Wait")]
    assert not sc.decide(state(nodes, desired=1), sc.Policy(cooldown=60)).terminate


def test_instances_kept_above_desired_go_without_lowering_it_again():
    # desired lowered by hand to 1 (min 1) while 3 nodes were busy and protected; two emptied since
    nodes = [node(1, servers=1, used=2 * G, protected=True), node(2, empty_since=0.0), node(3, empty_since=5.0)]
    d = sc.decide(state(nodes, desired=1, min_size=1), sc.Policy(cooldown=60))
    assert d.terminate == ["i-2"] and d.desired == 1 and d.decrement is False
    # a group at its desired size: the node goes with one less desired
    d = sc.decide(state(nodes[:2], min_size=1), sc.Policy(cooldown=60))
    assert d.terminate == ["i-2"] and d.desired == 1 and d.decrement is True


def test_capacity_still_launching_is_not_taken_back():
    # another copy (or this one a moment ago) asked for it; it goes after the cool-down like any empty node
    d = sc.decide(state([node(1, servers=1, used=2 * G, protected=True)], desired=3), sc.Policy())
    assert d.desired == 3 and not d.terminate


# --- protection ---------------------------------------------------------------------------------------------------
def test_busy_nodes_are_protected_and_empty_ones_released():
    nodes = [node(1, servers=1, used=2 * G, protected=False), node(2, protected=True, empty_since=10_000.0),
             node(3, servers=2, used=4 * G, protected=True), node(4, protected=False, empty_since=10_000.0)]
    assert sc.decide(state(nodes), sc.Policy()).protect == {"i-1": True, "i-2": False}


# --- the termination hook -----------------------------------------------------------------------------------------
def hooked(servers, since=None, heartbeat=None):
    n = node(1, servers=servers, used=2 * G * servers, lifecycle="Terminating:Wait")
    n.terminating_since, n.last_heartbeat = since, heartbeat
    return [n]


def test_a_terminating_node_with_servers_is_drained_and_kept_alive():
    # paused (no new server), not drained (which would restart its servers elsewhere), and heartbeats sent
    acts = sc.termination_actions(hooked(2, since=1000.0), 1100.0, limit=3600, at_limit="stop", heartbeat_every=60)
    assert [a for _, a, _ in acts] == ["pause", "heartbeat"]
    acts = sc.termination_actions(hooked(2, since=1000.0, heartbeat=1080.0), 1100.0, 3600, "stop", 60)
    assert [a for _, a, _ in acts] == ["pause"]


def test_a_terminating_node_is_completed_once_empty():
    acts = sc.termination_actions(hooked(0, since=1000.0), 1100.0, 3600, "stop", 60)
    assert [a for _, a, _ in acts] == ["drain", "complete"]


def test_the_drain_limit_stops_or_waits_as_set():
    stop = sc.termination_actions(hooked(1, since=0.0, heartbeat=3599.0), 3600.0, 3600, "stop", 60)
    assert [a for _, a, _ in stop] == ["pause", "stop", "complete"]
    wait = sc.termination_actions(hooked(1, since=0.0, heartbeat=3000.0), 3700.0, 3600, "wait", 60)
    assert [a for _, a, _ in wait] == ["pause", "heartbeat"]


# --- packing ------------------------------------------------------------------------------------------------------
def test_packing_picks_the_most_allocated_node_with_room():
    nodes = [node(1, used=2 * G), node(2, used=14 * G), node(3, used=15 * G), node(4, used=10 * G, ready=False)]
    assert sc.choose_node(nodes, (0, 2 * G)).instance_id == "i-2"    # i-3 has 1 GiB left, i-4 is not Ready
    assert sc.choose_node(nodes, (0, 1 * G)).instance_id == "i-3"
    assert sc.choose_node(nodes, (0, 15 * G)) is None


def test_worker_nodes_reads_swarms_nodes_and_tasks():
    raw_nodes = [
        {"ID": "n1", "CreatedAt": "2026-12-02T10:00:00.5Z", "Spec": {"Role": "worker", "Availability": "active",
                                                                      "Labels": {sc.LABEL_EMPTY_SINCE: "123"}},
         "Status": {"State": "ready"}, "Description": {"Engine": {"Labels": {"jhs.instance-id": "i-1"}},
                                                       "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 8 * G}}},
        {"ID": "n2", "Spec": {"Role": "worker", "Availability": "drain"}, "Status": {"State": "ready"},
         "Description": {"Engine": {"Labels": {"jhs.instance-id": "i-2"}}, "Resources": {}}},
        {"ID": "m", "Spec": {"Role": "manager", "Availability": "active"}, "Status": {"State": "ready"}},
    ]
    res = {"Resources": {"Reservations": {"MemoryBytes": 2 * G, "NanoCPUs": 500_000_000}}}
    tasks = [{"DesiredState": "running", "NodeID": "n1", "ServiceID": "user-a", "Spec": res},
             {"DesiredState": "running", "NodeID": "n1", "ServiceID": "ballast", "Spec": res},
             {"DesiredState": "shutdown", "NodeID": "n1", "ServiceID": "user-b", "Spec": res},
             {"DesiredState": "running", "ServiceID": "user-c", "Spec": res}]
    nodes, pending, by_id = sc.worker_nodes(raw_nodes, tasks, {"user-a", "user-b", "user-c"}, (0.5, 1 * G),
                                            pinned=[("n1", 0.0, 1 * G)])
    n1 = nodes["i-1"]
    assert (n1.cpu, n1.mem, n1.ready, n1.servers, n1.empty_since) == (1.5, 7 * G, True, 1, 123.0)
    assert (n1.used_cpu, n1.used_mem) == (1.0, 5 * G)
    assert not nodes["i-2"].ready and set(by_id) == {"n1", "n2"}
    assert pending == [(0.5, 2 * G)]


# --- schedules ----------------------------------------------------------------------------------------------------
LONDON = ZoneInfo("Europe/London")


def at(text, tz=LONDON):
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_a_window_pre_warms_and_holds_its_minimum():
    w = sc.parse_schedule([{"days": "tue", "start": "09:45", "end": "12:00", "min_nodes": 6, "name": "class"}])
    assert sc.scheduled_min(w, LONDON, at("2026-12-01T09:30"), prewarm=0) == (0, "")   # Tuesday, before
    n, why = sc.scheduled_min(w, LONDON, at("2026-12-01T09:40"), prewarm=600)
    assert n == 6 and "pre-warm" in why
    assert sc.scheduled_min(w, LONDON, at("2026-12-01T11:59"), prewarm=0)[0] == 6
    assert sc.scheduled_min(w, LONDON, at("2026-12-01T12:00"), prewarm=0)[0] == 0
    assert sc.scheduled_min(w, LONDON, at("2026-12-02T10:00"), prewarm=0)[0] == 0      # Wednesday


def test_a_window_across_midnight_belongs_to_the_day_it_starts():
    w = sc.parse_schedule([{"days": ["fri"], "start": "22:00", "end": "02:00", "min_nodes": 2}])
    assert sc.scheduled_min(w, LONDON, at("2026-12-04T23:00"), 0)[0] == 2     # Friday night
    assert sc.scheduled_min(w, LONDON, at("2026-12-05T01:59"), 0)[0] == 2     # Saturday, early
    assert sc.scheduled_min(w, LONDON, at("2026-12-05T02:00"), 0)[0] == 0
    assert sc.scheduled_min(w, LONDON, at("2026-12-04T01:00"), 0)[0] == 0     # Friday early: Thursday's is none


def test_a_window_follows_local_time_across_a_dst_change():
    # London moves to BST on Sunday 29 March 2026: 09:45 local is 09:45 UTC on Saturday, 08:45 UTC on Monday
    w = sc.parse_schedule([{"days": "mon-sat", "start": "09:45", "end": "10:45", "min_nodes": 3}])
    utc = ZoneInfo("UTC")
    assert sc.scheduled_min(w, LONDON, at("2026-03-28T09:50", utc), 0)[0] == 3
    assert sc.scheduled_min(w, LONDON, at("2026-03-30T08:50", utc), 0)[0] == 3
    assert sc.scheduled_min(w, LONDON, at("2026-03-30T10:50", utc), 0)[0] == 0    # 11:50 local
    assert sc.scheduled_min(w, LONDON, at("2026-03-29T09:50", utc), 0)[0] == 0    # Sunday


def test_overlapping_windows_take_the_largest_minimum():
    w = sc.parse_schedule([{"days": "mon-fri", "start": "08:00", "end": "18:00", "min_nodes": 1},
                           {"days": "wed", "start": "14:00", "end": "16:00", "min_nodes": 5}])
    assert sc.scheduled_min(w, LONDON, at("2026-12-02T15:00"), 0)[0] == 5
    assert sc.scheduled_min(w, LONDON, at("2026-12-02T17:00"), 0)[0] == 1


# --- settings -----------------------------------------------------------------------------------------------------
GOOD = {"jupyterhub_scaler_headroom": 2, "jupyterhub_scaler_cooldown": 300, "jupyterhub_scaler_interval": 3,
        "jupyterhub_scaler_prewarm": 180, "jupyterhub_scaler_drain_limit": 3600,
        "jupyterhub_scaler_drain_at_limit": "stop", "jupyterhub_scaler_min_size": 0,
        "jupyterhub_scaler_max_size": 10, "jupyterhub_scaler_timezone": "Europe/London",
        "jupyterhub_scaler_schedule": [{"days": "tue", "start": "09:45", "end": "12:00", "min_nodes": 6}],
        "jupyterhub_scaler_instance_types": ["t3.xlarge"], "jupyterhub_scaler_reserve_cpu": 0.1,
        "jupyterhub_scaler_reserve_memory": "512M", "jupyterhub_scaler_guarantees": {"default": [0.5, "2G"]}}


@pytest.mark.parametrize("change, message", [
    ({"jupyterhub_scaler_schedule": [{"days": "tue", "start": "9.45", "end": "12:00", "min_nodes": 6}]},
     "jupyterhub_scaler_schedule[0].start: '9.45' is not a time of day as HH:MM"),
    ({"jupyterhub_scaler_schedule": [{"days": "tues", "start": "09:45", "end": "12:00", "min_nodes": 6}]},
     "jupyterhub_scaler_schedule[0].days: 'tues' is not a day"),
    ({"jupyterhub_scaler_schedule": [{"days": "tue", "start": "09:45", "end": "12:00"}]},
     "jupyterhub_scaler_schedule[0]: missing ['min_nodes']"),
    ({"jupyterhub_scaler_schedule": [{"days": "tue", "start": "09:45", "end": "12:00", "min_nodes": 11}]},
     "jupyterhub_scaler_schedule[0].min_nodes (11) is above jupyterhub_scaler_max_size (10)"),
    ({"jupyterhub_scaler_timezone": "Europe/Londres"}, "jupyterhub_scaler_timezone: 'Europe/Londres' is not a known"),
    ({"jupyterhub_scaler_headroom": -1}, "jupyterhub_scaler_headroom: -1 is below 0"),
    ({"jupyterhub_scaler_min_size": 9, "jupyterhub_scaler_max_size": 8},
     "jupyterhub_scaler_min_size (9) is above jupyterhub_scaler_max_size (8)"),
    ({"jupyterhub_scaler_cooldown": 30}, "jupyterhub_scaler_cooldown: 30 is below 60"),
    ({"jupyterhub_scaler_drain_at_limit": "kill"}, "jupyterhub_scaler_drain_at_limit: 'kill' is not one of stop, wait"),
    ({"jupyterhub_scaler_guarantees": {"big": [2, "20G"]}},
     "big: a guarantee of 2 CPU and 20.0G is larger than any worker instance type can hold"),
])
def test_bad_settings_are_named(change, message):
    errors = sc.settings_errors({**GOOD, **change})
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_good_settings_pass_and_the_check_command_agrees():
    assert sc.settings_errors(GOOD) == []
    run = subprocess.run([sys.executable, str(FILES / "jhs_scaler.py"), "check"], input=json.dumps(
        {**GOOD, "jupyterhub_scaler_cooldown": 10}), capture_output=True, text=True)
    assert run.returncode == 1 and "jupyterhub_scaler_cooldown: 10 is below 60" in run.stderr


def test_sizes():
    assert sc.parse_size("256M") == 256 * 1024 ** 2 and sc.parse_size("1.5G") == 3 * G // 2
    assert sc.parse_size(1024) == 1024 and sc.parse_size("2GiB") == 2 * G
    with pytest.raises(ValueError):
        sc.parse_size("lots")


def test_the_running_scaler_uses_credentials_that_come_late(aws_env, tmp_path):
    """On a manager that has just booted, the metadata service can be slow to hand out the role's credentials and the
    first clients find none (a client never looks again): the scaler makes new ones and goes on once they are there
    (here its next AWS answer is that the group does not exist)."""
    env, write_credentials = credentials_later(aws_env, tmp_path)   # Docker: the test run's engine
    names = jhs_names("late-creds")
    proc = subprocess.Popen([sys.executable, str(FILES / "jhs_scaler.py"), "run", "--group", names["workers"],
                             "--cluster", "late-creds", "--drain-hook", names["drain"], "--region", "eu-west-1",
                             "--endpoint-url", aws_env["AWS_ENDPOINT_URL"], "--every", "0.5", "--dry-run"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None
        write_credentials()
        time.sleep(5)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    before, found, after = out.partition(f"Auto Scaling group {names['workers']} not found")
    assert "Unable to locate credentials" in before and found, out


# --- the simulator ------------------------------------------------------------------------------------------------
def test_the_simulator_serves_every_session_without_killing_one(tmp_path):
    trace = tmp_path / "t.csv"
    # 10 servers of 2 GiB at once on nodes of 16 GiB (8 each): 2 nodes; then a lone late user
    trace.write_text("user,start_s,end_s,profile\n" + "".join(f"u{i},60,1260,default\n" for i in range(10))
                     + "late,3000,3600,default\n")
    r = sc.simulate(sc.read_trace(trace), node_size=SIZE, profiles={"default": SLOT}, cooldown=120, boot=60)
    assert r["killed"] == 0 and r["unserved"] == 0 and r["spawns"] == 11
    assert r["n_new"] == 11 and 60 <= r["wait_new_p95"] <= 70          # from zero nodes: each waited for a boot
    assert 1.0 <= r["ratio"] <= 1.4
    assert max(nodes for _, nodes, _, _ in r["timeline"]) == 2            # packing: never a third node


def test_the_simulator_command_prints_the_figures():
    out = subprocess.run([sys.executable, "-m", "jhs_scaler", "simulate", "--trace",
                          str(ROOT / "benchmarks/traces/class20.csv"), "--schedule",
                          str(ROOT / "benchmarks/traces/class20.schedule.json"), "--instance-type", "t3.xlarge",
                          "--slot-cpu", "0.5", "--slot-memory", "2G", "--price", "0.1664"],
                         cwd=FILES, capture_output=True, text=True, check=True).stdout
    assert "node-hours" in out and "ratio" in out and "servers killed or moved by scale-in: 0" in out


def test_a_bad_trace_is_refused(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("user,start_s,end_s\nu,100,50\n")
    with pytest.raises(sc.SettingsError, match="line 2: end_s 50 is not after start_s 100"):
        sc.read_trace(trace)


# --- one pass of the scaler against the local endpoint (Auto Scaling, CloudWatch), swarm stubbed ----------------
class FakeSwarm:
    """The manager's Docker API as the scaler reads and writes it: worker nodes, a manager node, tasks, services."""

    def __init__(self, workers, tasks):
        self.nodes_ = {"mgr": {"ID": "mgr", "Version": {"Index": 1}, "Spec": {"Role": "manager", "Availability": "active"},
                               "Status": {"State": "ready"}, "Description": {}}}
        for nid, iid in workers:
            self.nodes_[nid] = {
                "ID": nid, "Version": {"Index": 1}, "CreatedAt": "2026-01-01T00:00:00Z",
                "Spec": {"Role": "worker", "Availability": "active", "Labels": {}}, "Status": {"State": "ready"},
                "Description": {"Engine": {"Labels": {"jhs.instance-id": iid}},
                                "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 16 * G}}}
        self.tasks_ = tasks

    def nodes(self, filters=None):
        role = (filters or {}).get("role")
        return [n for n in self.nodes_.values() if role in (None, n["Spec"]["Role"])]

    def tasks(self, filters=None):
        return self.tasks_

    def services(self, filters=None):
        return [{"ID": "user-svc"}, {"ID": "pending-svc"}]

    def info(self):
        return {"Swarm": {"NodeID": "mgr"}}

    def inspect_node(self, nid):
        return self.nodes_[nid]

    def update_node(self, nid, version, spec):
        assert version == self.nodes_[nid]["Version"]["Index"]
        self.nodes_[nid] = {**self.nodes_[nid], "Spec": spec, "Version": {"Index": version + 1}}


def test_a_pass_scales_out_protects_marks_and_sends_its_figures_to_cloudwatch(boto):
    asg, cw = boto("autoscaling"), boto("cloudwatch")
    name = "scaler-pass-" + str(abs(hash(str(FILES))) % 10_000)
    asg.create_launch_configuration(LaunchConfigurationName=name, ImageId="ami-12c6146b", InstanceType="t3.xlarge")
    asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0, MaxSize=5,
                                  DesiredCapacity=2, AvailabilityZones=["eu-west-1a"])
    try:
        ids = sorted(i["InstanceId"] for i in asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["Instances"])
        reservation = {"Resources": {"Reservations": {"MemoryBytes": 15 * G}}}
        swarm = FakeSwarm([("n1", ids[0]), ("n2", ids[1])], [
            {"DesiredState": "running", "NodeID": "n1", "ServiceID": "user-svc", "Spec": reservation},
            {"DesiredState": "running", "NodeID": "n2", "ServiceID": "other", "Spec": reservation},
            {"DesiredState": "running", "ServiceID": "pending-svc", "Spec": reservation}])
        args = sc.parser().parse_args(["run", "--group", name, "--cluster", name,
                                       "--drain-hook", jhs_names(name)["drain"], "--region", "eu-west-1",
                                       "--metrics-every", "0", "--reserve-memory", "0"])
        d = sc.Scaler(args, swarm, asg, cw).step()
        assert d.desired == 3 and "1 pending spawn(s) need 1 more node(s)" in d.reason
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        assert group["DesiredCapacity"] == 3
        protected = {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group["Instances"]}
        assert protected[ids[0]] is True and protected[ids[1]] is False        # only the node with a user server
        # marks kept in swarm: n2 empty (of users) since now; workers on the way, for the spawner
        assert sc.LABEL_EMPTY_SINCE in swarm.nodes_["n2"]["Spec"]["Labels"]
        assert sc.LABEL_EMPTY_SINCE not in swarm.nodes_["n1"]["Spec"]["Labels"]
        assert sc.LABEL_GROWING in swarm.nodes_["mgr"]["Spec"]["Labels"]
        metrics = cw.list_metrics(Namespace=sc.NAMESPACE, Dimensions=[{"Name": "ClusterName", "Value": name}])["Metrics"]
        assert {m["MetricName"] for m in metrics} == {
            "UsersRunning", "SpawnsPending", "CpuReserved", "CpuAllocatable", "MemoryReserved", "MemoryAllocatable",
            "NodesReady", "DesiredCapacity"}
        # a second copy deciding on the state the first left: no second node
        d2 = sc.Scaler(args, swarm, asg, cw).step()
        assert d2.desired == 3
        assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "DesiredCapacity"] == 3
    finally:
        asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        asg.delete_launch_configuration(LaunchConfigurationName=name)
