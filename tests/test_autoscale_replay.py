"""The replay benchmark's own arithmetic (benchmarks/autoscale_replay.py): the time compression, the schedule moved
onto the replay's clock, the packing bound, the report's figures and the swarm sample it parses. The replay itself
runs against the lab (docs/benchmarks.md records its runs)."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import autoscale_replay as rp  # noqa: E402
from autoscale_replay import sc  # noqa: E402

CLASS = ROOT / "benchmarks" / "traces" / "class20.csv"
CLASS_SCHEDULE = json.loads((ROOT / "benchmarks" / "traces" / "class20.schedule.json").read_text())


def test_the_class_windows_occurrence_in_trace_seconds_and_the_speed_that_fits_both_in_the_target():
    sessions = sc.read_trace(CLASS)
    span = max(s.end for s in sessions)
    occ = rp.window_occurrences(CLASS_SCHEDULE, span)
    # trace_starts is Tuesday 09:30 in London; the window is Tuesdays 10:00 to 11:45
    assert occ == [(1800.0, 8100.0, 3, "Tuesday class")]
    assert rp.default_speed(sessions, occ) == 8100 / rp.TARGET_SECONDS     # the window ends after the last session
    assert rp.default_speed(sessions) == span / rp.TARGET_SECONDS
    assert rp.default_speed([sc.Session("a", 0, 60)]) == 1.0                 # never slower than real time


def test_a_window_across_midnight_and_one_already_open_at_the_traces_start():
    schedule = {"timezone": "Europe/London", "trace_starts": "2026-12-04T23:30:00",     # a Friday
                "windows": [{"days": "fri", "start": "23:00", "end": "01:00", "min_nodes": 2, "name": "late"},
                            {"days": "sat", "start": "00:30", "end": "00:45", "min_nodes": 4}]}
    # Friday 23:00 (half an hour before second 0) to Saturday 01:00; Saturday 00:30 to 00:45
    assert rp.window_occurrences(schedule, 3601) == [(0.0, 5400.0, 2, "late"), (3600.0, 4500.0, 4, "")]
    assert rp.window_occurrences(schedule, 3600) == [(0.0, 5400.0, 2, "late")]     # the second starts at 3600


def test_the_replay_starts_so_that_the_first_window_falls_on_a_whole_minute_and_keeps_its_place():
    occ = [(1800.0, 8100.0, 3, "Tuesday class")]
    earliest = datetime(2026, 12, 3, 1, 2, 13, tzinfo=timezone.utc).timestamp()
    start = rp.replay_start(occ, rp.Clock(10.0), earliest)
    assert earliest <= start < earliest + 60
    assert (start + 180) % 60 == 0
    (w,) = rp.replay_windows(occ, rp.Clock(10.0), start)
    assert w == {"name": "Tuesday class (replay)", "days": ["thu"], "start": "01:06", "end": "01:17", "min_nodes": 3}
    assert sc.parse_schedule([w])                  # the scaler's own syntax
    assert rp.replay_start([], rp.Clock(10.0), earliest) == earliest
    # a window shorter than a minute of replay still lasts one
    (short,) = rp.replay_windows([(0.0, 100.0, 1, "")], rp.Clock(10.0), start)
    assert short["start"] != short["end"]


def test_the_bound_counts_active_sessions_at_slots_a_node_with_the_minimum_and_the_floor():
    sessions = [sc.Session(f"u{i}", 10 * i, 100) for i in range(9)]     # u0..u8 start 0..80, all end at 100
    assert rp.bound_nodes(sessions, 0, 4, 0, 0) == 1
    assert rp.bound_nodes(sessions, 40, 4, 0, 0) == 2       # five active
    assert rp.bound_nodes(sessions, 80, 4, 0, 0) == 3       # nine
    assert rp.bound_nodes(sessions, 100, 4, 0, 0) == 0      # all ended: scale to zero
    assert rp.bound_nodes(sessions, 100, 4, 1, 0) == 1 and rp.bound_nodes(sessions, 100, 4, 0, 3) == 3


def test_the_figures_integrate_node_time_and_split_spawn_waits_by_whether_a_node_had_to_join():
    samples = [rp.Sample(t, g, g, g, 0) for t, g in ((0, 2), (10, 2), (20, 3), (30, 1), (40, 1))]
    bound = [1, 2, 2, 1, 1]
    s1 = rp.Spawn(sc.Session("a", 0, 1), "a", asked=100.0, ready=101.0, node="i-old")
    s2 = rp.Spawn(sc.Session("b", 0, 1), "b", asked=105.0, ready=130.0, node="i-new")
    s3 = rp.Spawn(sc.Session("c", 0, 1), "c", asked=106.0, error="spawn answered 500")
    s4 = rp.Spawn(sc.Session("d", 0, 1), "d", asked=107.0, ready=108.0, node="i-new", lost="stopped before its end")
    r = rp.summarise([s1, s2, s3, s4], samples, bound, {"i-new": 120.0}, t_start=100.0)
    assert r["node_seconds"] == 2 * 10 + 2 * 10 + 3 * 10 + 1 * 10        # each sample holds until the next
    assert r["bound_seconds"] == 10 + 20 + 20 + 10
    assert r["ratio"] == 80 / 60
    assert (r["n_room"], r["room_p50"], r["n_new"], r["new_p95"]) == (1, 1.0, 2, 25.0)
    assert (r["lost"], r["failed"], r["spawns"]) == (1, 1, 4)
    assert rp.pct([], 50) is None and rp.pct([3, 1, 2], 50) == 2 and rp.pct([1, 2, 3, 4], 95) == 4


def test_a_swarm_sample_reads_ready_active_workers_and_running_tasks_only():
    out = "\n".join([
        "node mgr <no value> manager ready active",
        "node ip-10-10-1-5 i-aaa worker ready active",
        "node ip-10-10-1-6 i-bbb worker ready drain",
        "node ip-10-10-1-7 i-ccc worker down active",
        "task jupyter-rpabcdu1.1 t1 ip-10-10-1-5 Running 3 seconds ago",
        "task jupyter-rpabcdu2.1 t2 ip-10-10-1-5 Preparing 1 second ago",
    ])
    ready, tasks = rp.parse_swarm(out)
    assert ready == {"ip-10-10-1-5": "i-aaa"}
    assert tasks == {"jupyter-rpabcdu1": ("t1", "ip-10-10-1-5")}


def test_the_server_cpu_leaves_room_for_exactly_the_slots_in_swarm_and_in_the_scalers_count():
    g = rp.server_cpu(2.0, 0.1, 4)
    assert g == 0.475
    assert sc.slots((2.0 - 0.1, 1), (g, 0)) == 4            # the scaler: the node's CPUs minus its reserve
    assert int(2.0 // g) == 4                               # swarm: the node's whole CPUs, no reserve
    g3 = rp.server_cpu(2.0, 0.1, 3)
    assert g3 == 0.633 and sc.slots((1.9, 1), (g3, 0)) == 3 and int(2.0 // g3) == 3


def test_a_users_sessions_share_a_hub_user_unless_compressed_they_would_overlap_a_stopping_server():
    """At speed 10 a 30 s stop is 300 trace seconds: a session that starts sooner after the same user's previous one
    ended takes the user's next hub user (b), which the hub can spawn at once; later ones come back to the first."""
    S = sc.Session
    sessions = [S("u-1", 0, 1000), S("u-1", 1200, 2000), S("u_2", 100, 500), S("u-1", 2400, 3000), S("u-1", 1100, 1150)]
    names = rp.hub_users(sessions, "7", rp.Clock(10))
    # by start: u-1 0-1000 (a); u-1 1100-1150 (b: a ends at 1000 + 300 > 1100); u-1 1200-2000 (neither a nor b is
    # free until 1300 and 1450: c); u-1 2400-3000 (a, free since 1300)
    assert names == ["rp7u1", "rp7u1c", "rp7u2", "rp7u1", "rp7u1b"]
    # real time: the whole day trace replayed at its default speed spawns no user twice at once
    day = sc.read_trace(ROOT / "benchmarks" / "traces" / "day.csv")
    speed = rp.default_speed(day)
    by_user: dict[str, list] = {}
    for s, name in zip(day, rp.hub_users(day, "1", rp.Clock(speed))):
        by_user.setdefault(name, []).append(s)
    for name, mine in by_user.items():
        mine.sort(key=lambda s: s.start)
        assert all(b.start >= a.end + rp.STOP_GAP * speed for a, b in zip(mine, mine[1:])), name


def test_a_real_time_stretch_replays_at_real_time_and_the_rest_fits_the_target():
    """--real-time A:B: the class's arrivals at real time (their spawns are physical), the rest compressed so that the
    whole still lasts the target; the map goes both ways, windows and users follow it, and node time is counted in
    trace seconds."""
    clock = rp.Clock(10.0, (1000.0, 1200.0))
    assert [clock.replay(t) for t in (0, 1000, 1100, 1200, 2200)] == [0, 100, 200, 300, 400]
    assert all(abs(clock.trace(clock.replay(t)) - t) < 1e-9 for t in (0, 500, 1000, 1150, 1200, 5000))
    assert rp.Clock(10.0).replay(1100) == 110 and rp.Clock(10.0).trace(110) == 1100
    sessions = sc.read_trace(CLASS)
    span = max(s.end for s in sessions)
    occ = rp.window_occurrences(CLASS_SCHEDULE, span)
    speed = rp.default_speed(sessions, occ, real_time=(1680.0, 1960.0))
    assert abs(rp.Clock(speed, (1680.0, 1960.0)).replay(8100) - rp.TARGET_SECONDS) < 1e-6
    assert speed == (8100 - 280) / (rp.TARGET_SECONDS - 280)
    # every arrival of the class falls in that stretch: replayed 1 s apart where the trace has them 1 s apart
    assert all(1680 <= s.start < 1960 for s in sessions)
    # the window starts where the clock puts it
    start = rp.replay_start(occ, rp.Clock(speed, (1680.0, 1960.0)), 0.0)
    (w,) = rp.replay_windows(occ, rp.Clock(speed, (1680.0, 1960.0)), start)
    assert datetime.fromtimestamp(start + 1680 / speed + 120, timezone.utc).strftime("%H:%M") == w["start"]
    # two samples 10 replay seconds apart in the stretch are 10 trace seconds; 10 outside are 10 x speed
    samples = [rp.Sample(t, 1, 1, 1, 0) for t in (clock.replay(1000), clock.replay(1000) + 10, clock.replay(2000),
                                                   clock.replay(2000) + 10)]
    r = rp.summarise([], samples, [1, 1, 1, 1], {}, t_start=0.0, clock=clock)
    assert r["node_seconds"] == r["bound_seconds"] == 10 + (2000 - 1010) + 100
    for bad in ("5", "9:3", "a:b", "-1:4"):
        with pytest.raises(Exception):
            rp.real_time_span(bad)
    assert rp.real_time_span("1680:1960") == (1680.0, 1960.0)
