"""Autoscaling replay on the running lab: a trace of user sessions against the hub, the scaler and the group.

Usage (after `make lab`):
  .venv/bin/python benchmarks/autoscale_replay.py --trace benchmarks/traces/class20.csv \
      --schedule benchmarks/traces/class20.schedule.json --slots 7 --prewarm 120 --real-time 1680:1960 \
      [--speed X] [--plot class20.png]
  .venv/bin/python benchmarks/autoscale_replay.py --trace benchmarks/traces/day.csv [--plot day.png]

The trace is the simulator's (python -m jhs_scaler simulate): CSV with columns user, start_s, end_s,
profile (seconds from the trace's start; end_s is when the server stops, by the user or the culler), and
an optional schedule file {timezone, trace_starts (local ISO time of second 0), windows: [...]} whose
windows have the syntax of jupyterhub_scaler_schedule. See docs/autoscaling.md.

Time compression: second s of the trace is second s / X of the replay (X = --speed, by default what
makes the trace last about 13 minutes). Everything the policy times is scaled to match: the cool-down
(--cooldown / X, the scaler's own setting is for real time), its interval between decisions (/ X, but at
least 1 s), each session's length (its server is stopped
at end_s / X; the culler does not act within such short sessions), and the schedule's windows, moved onto
the wall clock (UTC) so that the first window's start falls on a whole minute. What is physical is not
scaled: a worker's boot (the lab's, from the baked image: this bakes one first if the launch template
has none), the spawns, and the pre-warm, which is there to cover the boot (--prewarm, real seconds).
--real-time A:B replays trace seconds A to B at real time (speed 1) and the rest at X (X then chosen so the
whole still lasts about 13 minutes): a class's arrivals compressed tenfold would be a class of ten times as many
students spawning on this machine's 2 cores at once, so their spawn waits would measure the lab's CPU, not the
policy. The cool-down stays --cooldown / X (no node empties while a class arrives). Node-seconds and the bound
are counted in trace time, so the real-time stretch weighs what it lasted in the trace.

What it sets up, and puts back at the end:
- The worker group's size: MinSize --min-size (0: scale to zero), MaxSize --max-size.
- The servers' size: playbooks/manager.yml is run with jupyterhub_cpu_guarantee set so that a worker has room
  for exactly --slots servers (its CPUs minus the scaler's --reserve-cpu, divided by --slots), and again without
  it at the end. The lab's workers share this machine, so their memory is no sizing at all; their CPUs are the
  machine's, as many as a t3.large's 2 vCPU on a 2-core machine, so swarm, the spawner's packing and the
  scaler's estimate for a booting node (from the instance type) agree from a node's first moment. (A ballast
  service reserving the rest, as the lab's tests use, reaches a new worker only after the first spawns have
  landed on it.) Elsewhere the replay says how far the two differ.
- The scaler: the hub's jupyterhub-scaler container is stopped, the group is brought down to its new minimum
  (the empty workers' termination hooks completed by the replay), and a copy of the scaler with the scaled
  cool-down, pre-warm and the moved schedule runs in its place (same image, same arguments otherwise).
Run it on an idle lab: servers of other users would count as neither trace nor bound.
Users are rp<run><name>; they, their servers and their homes go at the end.

It reports, every figure over the same span (from the replay's start until the group is back at its
minimum after the last session):
- node-seconds used (every instance of the group, whatever its lifecycle state: what AWS bills) against
  the packing lower bound from the same trace: max(ceil(servers active in the trace / slots), min size,
  the schedule's floor) at each second, and their ratio;
- servers killed or moved by scale-in (a server whose swarm task changed, or that the hub stopped
  before the replay did): the target is 0;
- spawn wait (request -> ready) p50 and p95 for spawns that found room, and separately for spawns that
  waited for a new node (their server runs on a node that was not Ready when they asked);
- with --plot, a PNG of nodes Ready, desired capacity and servers running over time (matplotlib, from
  benchmarks/requirements.txt).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "roles" / "jupyterhub" / "files"))
import jhs_scaler as sc  # noqa: E402
from spawn_bench import lab_env  # noqa: E402  (this directory: the lab's .lab/env, read as the spawn benchmark does)
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import jhs_names  # noqa: E402  (the cluster's resource names: plugins/module_utils/jhs_names.py, their one owner)

CLUSTER = "labhub"
NAMES = jhs_names.names(CLUSTER)
GROUP = NAMES["workers"]
SCALER = "jupyterhub-scaler"
REPLAY_SCALER = "jupyterhub-scaler-replay"
T3_LARGE_CPUS = 2        # the lab's worker type (inventories/lab): what the scaler assumes for a booting node
MIN_EVERY = 1.0   # the replay's scaler decides at most once a second
TARGET_SECONDS = 780          # the replay's length the default speed aims at (the issue: each trace <= 15 min)


# --- the pure parts (tests/test_autoscale_replay.py) ---------------------------------------------------------------
def default_speed(sessions: list[sc.Session], occurrences=(), target: float = TARGET_SECONDS,
                  real_time: tuple[float, float] | None = None) -> float:
    """The compression that makes the trace's sessions and its schedule's windows last ``target`` seconds (never
    slower than real time), with ``real_time`` (trace seconds A to B) replayed at real time."""
    span = max([s.end for s in sessions] + [b for _, b, _, _ in occurrences] + [0.0])
    held = Clock(1.0, real_time).held(span)
    return max(1.0, (span - held) / max(target - held, 1.0))


@dataclass(frozen=True)
class Clock:
    """The replay's time map: trace second tau is replay second ``replay(tau)``; ``speed`` everywhere but in the
    ``real_time`` stretch (trace seconds A to B), which runs at real time."""
    speed: float
    real_time: tuple[float, float] | None = None

    def held(self, tau: float) -> float:
        """Trace seconds of the real-time stretch before ``tau``."""
        a, b = self.real_time or (0.0, 0.0)
        return max(0.0, min(tau, b) - a)

    def replay(self, tau: float) -> float:
        held = self.held(tau)
        return (tau - held) / self.speed + held

    def trace(self, r: float) -> float:
        """The inverse of ``replay``: compressed before the stretch, real time in it, compressed after it."""
        a, b = self.real_time or (0.0, 0.0)
        ra = a / self.speed
        return r * self.speed if r <= ra else min(a + (r - ra), b) + max(0.0, r - ra - (b - a)) * self.speed


def window_occurrences(schedule: dict, span: float) -> list[tuple[float, float, int, str]]:
    """The occurrences of each window that start within trace seconds [0, span), as (start_s, end_s, min_nodes,
    name) in trace seconds (one already open at 0 starts at 0), from the schedule file {timezone, trace_starts,
    windows}."""
    windows = sc.parse_schedule(schedule.get("windows", []), "schedule windows")
    tz = sc.zone(schedule.get("timezone", "UTC"))
    t0 = datetime.fromisoformat(schedule["trace_starts"]).replace(tzinfo=tz)
    out = []
    day = t0.date() - timedelta(days=1)         # a window that began the day before may still be open
    while datetime.combine(day, datetime.min.time(), tz) <= t0 + timedelta(seconds=span):
        midnight = datetime.combine(day, datetime.min.time(), tz)
        for w in windows:
            if midnight.weekday() not in w.days:
                continue
            start = midnight + timedelta(minutes=w.start)
            end = midnight + timedelta(minutes=w.end) + (timedelta(days=1) if w.end <= w.start else timedelta())
            a, b = (start - t0).total_seconds(), (end - t0).total_seconds()
            if b > 0 and a < span:
                out.append((max(a, 0.0), b, w.min_nodes, w.name))
        day += timedelta(days=1)
    return sorted(out)


def replay_start(occurrences, clock: Clock, earliest: float) -> float:
    """The wall-clock (POSIX) start of the replay, at or after ``earliest``: with a schedule, moved later (by
    under a minute) so that the first window's start falls on a whole minute (the schedule's resolution)."""
    if not occurrences:
        return earliest
    first = clock.replay(occurrences[0][0])
    return math.ceil((earliest + first) / 60) * 60 - first


def replay_windows(occurrences, clock: Clock, start: float) -> list[dict]:
    """The occurrences as windows of jupyterhub_scaler_schedule's syntax on the replay's wall clock (UTC)."""
    out = []
    for a, b, n, name in occurrences:
        wa = datetime.fromtimestamp(start + clock.replay(a), timezone.utc)
        wb = datetime.fromtimestamp(start + clock.replay(b), timezone.utc)
        wb = wb.replace(second=0, microsecond=0) + timedelta(minutes=1 if wb.second >= 30 else 0)
        if wb.strftime("%H:%M") == wa.strftime("%H:%M"):
            wb += timedelta(minutes=1)
        out.append({"name": f"{name or 'window'} (replay)", "days": [wa.strftime("%a").lower()],
                    "start": wa.strftime("%H:%M"), "end": wb.strftime("%H:%M"), "min_nodes": n})
    return out


def bound_nodes(sessions, tau: float, slots: int, min_size: int, floor: int) -> int:
    """The packing lower bound at trace second ``tau``: the nodes the active sessions need at ``slots`` each,
    the group's minimum and the schedule's floor included."""
    active = sum(1 for s in sessions if s.start <= tau < s.end)
    return max(math.ceil(active / slots), min_size, floor)


def server_cpu(cpus: float, reserve: float, slots: int) -> float:
    """The CPU guarantee that leaves room for exactly ``slots`` servers on a worker of ``cpus`` (minus the scaler's
    reserve): rounded down to a thousandth, as swarm and the scaler both count whole servers."""
    return math.floor((cpus - reserve) / slots * 1000) / 1000


STOP_GAP = 30.0   # real seconds a stopped server may take to go before its user can spawn again


def hub_users(sessions: list[sc.Session], run: str, clock: Clock, gap: float = STOP_GAP) -> list[str]:
    """The hub user each session is replayed as, in order. A trace user's sessions share one hub user (their home)
    unless, compressed, one would start less than ``gap`` real seconds after that hub user's previous session ended
    (its server still stopping; the hub would refuse the spawn): it then takes the user's next one (b, c, ...)."""
    lanes: dict[str, list[float]] = {}   # trace user -> the end (trace s) of each of its hub users' last session
    names = [""] * len(sessions)
    for i in sorted(range(len(sessions)), key=lambda k: sessions[k].start):
        s = sessions[i]
        ends = lanes.setdefault(s.user, [])
        lane = next((i for i, end in enumerate(ends) if clock.replay(s.start) >= clock.replay(end) + gap), len(ends))
        if lane == len(ends):
            ends.append(0.0)
        ends[lane] = max(ends[lane], s.end)
        base = f"rp{run}{s.user}".replace("-", "").replace("_", "")[:58]
        names[i] = base + ("" if lane == 0 else "abcdefghijklmnopqrstuvwxyz"[lane % 26])
    return names


def real_time_span(text: str) -> tuple[float, float]:
    """--real-time's A:B, trace seconds with A < B."""
    try:
        a, b = (float(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--real-time takes A:B in trace seconds (e.g. 1680:1960), not {text!r}")
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"--real-time A:B needs 0 <= A < B, not {text!r}")
    return a, b


def pct(xs: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank), None for no values."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)] if xs else None


@dataclass
class Spawn:
    session: sc.Session
    user: str
    asked: float = 0.0            # monotonic
    ready: float | None = None
    node: str = ""                # the instance id its server ran on
    task: str = ""                # its swarm task at ready
    error: str = ""
    lost: str = ""                # how scale-in (or anything but the replay) ended or moved it

    @property
    def wait(self) -> float | None:
        return None if self.ready is None else self.ready - self.asked


@dataclass
class Sample:
    t: float                      # replay seconds
    group: int                    # instances of the group, any lifecycle state
    desired: int
    ready: int                    # worker nodes Ready and active
    running: int                  # servers of the replay's users with a running task


@dataclass
class Figures:
    samples: list[Sample] = field(default_factory=list)
    first_ready: dict[str, float] = field(default_factory=dict)    # instance id -> monotonic time first seen Ready


def summarise(spawns: list[Spawn], samples: list[Sample], bound: list[int], first_ready: dict[str, float],
              t_start: float, clock: Clock = Clock(1.0)) -> dict:
    """The report's figures. ``bound`` holds the bound at each sample (same length); node time and the bound are
    integrated in trace seconds (``clock`` maps the samples' replay seconds back). A spawn waited for a new node
    when its server's node was first seen Ready after it asked (nodes Ready before the replay count from its start)."""
    node_s = bound_s = 0.0
    for a, b, n in zip(samples, samples[1:], bound):
        dt = clock.trace(b.t) - clock.trace(a.t)
        node_s += a.group * dt
        bound_s += n * dt
    room, new = [], []
    for s in spawns:
        if s.wait is None:
            continue
        (new if first_ready.get(s.node, t_start) > s.asked else room).append(s.wait)
    return {"node_seconds": node_s, "bound_seconds": bound_s, "ratio": node_s / bound_s if bound_s else None,
            "lost": sum(1 for s in spawns if s.lost), "failed": sum(1 for s in spawns if s.error),
            "spawns": len(spawns), "n_room": len(room), "room_p50": pct(room, 50), "room_p95": pct(room, 95),
            "n_new": len(new), "new_p50": pct(new, 50), "new_p95": pct(new, 95)}


# --- the lab ---------------------------------------------------------------------------------------------------------
def node_exec(node: str, *cmd: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", node, *cmd], capture_output=True, text=True, timeout=300)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} on {node}: {proc.stderr.strip()[:500]}")
    return proc.stdout


# one call a sample: every node (instance id, role, state, availability), then the replay users' running tasks
SWARM_SAMPLE = """
docker node ls -q | xargs docker node inspect --format \
  'node {{.Description.Hostname}} {{index .Description.Engine.Labels "jhs.instance-id"}} {{.Spec.Role}} {{.Status.State}} {{.Spec.Availability}}'
ids=$(docker service ls -q --filter name=jupyter-%s)
[ -z "$ids" ] || docker service ps --filter desired-state=running --format 'task {{.Name}} {{.ID}} {{.Node}} {{.CurrentState}}' $ids
"""


def parse_swarm(out: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(ready worker hostnames -> instance id, service name -> (task id, hostname) of running tasks)."""
    ready, tasks = {}, {}
    for line in out.splitlines():
        f = line.split()
        if f[:1] == ["node"] and len(f) == 6 and f[3:] == ["worker", "ready", "active"]:
            ready[f[1]] = f[2]
        elif f[:1] == ["task"] and len(f) >= 5 and f[4] == "Running":
            tasks[f[1].rsplit(".", 1)[0]] = (f[2], f[3])
    return ready, tasks


class Replay:
    def __init__(self, args, env):
        import boto3
        from lab.hubclient import HubClient
        kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                  aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        self.args, self.env = args, env
        self.ec2, self.asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
        self.hub = HubClient(env["LAB_HUB_URL"], timeout=120)
        mgr = self.ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                                   {"Name": "tag:jhs:role", "Values": ["manager"]},
                                                   {"Name": "instance-state-name", "Values": ["running"]}])
        self.manager = mgr["Reservations"][0]["Instances"][0]["InstanceId"]
        self.run = uuid.uuid4().hex[:4]
        self.figures = Figures()
        self.tasks: dict[str, tuple[str, str]] = {}
        self.hosts: dict[str, str] = {}
        self.stop = threading.Event()

    def group(self) -> dict:
        return self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]

    def sample(self, t0: float) -> Sample:
        ready, tasks = parse_swarm(node_exec(self.manager, "sh", "-c", SWARM_SAMPLE % f"rp{self.run}"))
        now = time.monotonic()
        self.hosts.update(ready)
        for iid in ready.values():
            self.figures.first_ready.setdefault(iid, now)
        self.tasks = tasks
        g = self.group()
        return Sample(now - t0, len(g["Instances"]), g["DesiredCapacity"], len(ready), len(tasks))

    def monitor(self, t0: float) -> None:
        while not self.stop.is_set():
            try:
                self.figures.samples.append(self.sample(t0))
            except Exception as e:     # a failed sample is a gap, not the end of the replay
                print(f"sample failed: {e}", flush=True)
            self.stop.wait(1)

    def worker_cpus(self) -> float:
        nodes = json.loads(node_exec(self.manager, "sh", "-c", "docker node inspect $(docker node ls -q)"))
        return min(n["Description"]["Resources"]["NanoCPUs"] for n in nodes if n["Spec"]["Role"] == "worker") / 1e9

    def configure_hub(self, extra: dict) -> None:
        """playbooks/manager.yml against the lab, with ``extra`` as extra vars (none: the lab's own settings)."""
        env = {**os.environ, **self.env, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
        cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "playbooks/manager.yml", "-i", "inventories/lab"]
        if extra:
            cmd += ["-e", json.dumps(extra)]
        t = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
        print(f"manager.yml {json.dumps(extra) if extra else '(the lab settings)'}: {time.monotonic() - t:.0f} s",
              flush=True)

    def settle(self, size: int) -> None:
        """The group down to ``size`` before the replay starts (the lab keeps 2 workers), so that the figures
        start from the trace's own state: its empty workers' termination hooks completed here, the scaler being
        stopped."""
        self.asg.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=size, HonorCooldown=False)
        deadline = time.monotonic() + 300
        while True:
            instances = self.group()["Instances"]
            if len(instances) <= size:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{GROUP} still has {len(instances)} instances, not {size}")
            for i in instances:
                if i["LifecycleState"] == "Terminating:Wait":
                    self.asg.complete_lifecycle_action(
                        LifecycleHookName=NAMES["drain"], AutoScalingGroupName=GROUP,
                        LifecycleActionResult="CONTINUE", InstanceId=i["InstanceId"])
            time.sleep(2)

    def replace_scaler(self, windows: list[dict], speed: float) -> list[str]:
        info = json.loads(node_exec(self.manager, "docker", "inspect", SCALER))[0]
        cmd = list(info["Config"]["Cmd"])

        def put(flag, value):
            if flag in cmd:
                cmd[cmd.index(flag) + 1] = value
            else:
                cmd.extend([flag, value])
        put("--cooldown", f"{self.args.cooldown / speed:g}")
        # its interval too, as far as the lab's CPU allows (each decision reads AWS, swarm and the hub)
        every = float(cmd[cmd.index("--every") + 1]) if "--every" in cmd else 3.0
        put("--every", f"{max(MIN_EVERY, every / speed):g}")
        put("--prewarm", f"{self.args.prewarm:g}")
        put("--schedule", json.dumps(windows))
        put("--timezone", "UTC")
        node_exec(self.manager, "docker", "rm", "-f", REPLAY_SCALER, check=False)
        mounts = [f"type={m['Type']},source={m['Source']},target={m['Destination']}" for m in info["Mounts"]]
        env = [x for e in info["Config"]["Env"] for x in ("--env", e)]
        node_exec(self.manager, "docker", "run", "--detach", "--name", REPLAY_SCALER, "--network", "host",
                  *[x for m in mounts for x in ("--mount", m)], *env, info["Config"]["Image"], *cmd)
        return cmd

    def session(self, sp: Spawn, t0: float, clock: Clock) -> None:
        s = sp.session
        self.stop.wait(max(0.0, t0 + clock.replay(s.start) - time.monotonic()))
        sp.asked = time.monotonic()
        try:
            r = self.hub.call("POST", f"/hub/api/users/{sp.user}/server")
            if r.status_code == 202:
                self.hub.wait_ready(sp.user, timeout=600, interval=0.25)
            elif r.status_code != 201:
                raise RuntimeError(f"spawn answered {r.status_code}: {r.text[:200]}")
            sp.ready = time.monotonic()
        except Exception as e:
            sp.error = str(e)
            print(f"{sp.user}: {e}", flush=True)
            return
        service = f"jupyter-{sp.user}"
        deadline = time.monotonic() + 30
        while service not in self.tasks and time.monotonic() < deadline:
            time.sleep(0.5)
        sp.task, host = self.tasks.get(service, ("", ""))
        sp.node = self.hosts.get(host, host)
        end = t0 + clock.replay(s.end)
        while not self.stop.wait(min(1.0, max(0.0, end - time.monotonic()))):
            if time.monotonic() >= end:
                break
            now_task = self.tasks.get(service)
            if now_task and sp.task and now_task[0] != sp.task and not sp.lost:
                sp.lost = f"moved: task {sp.task} -> {now_task[0]}"
        if self.hub.server(sp.user) is None:
            sp.lost = sp.lost or "stopped before its end"
        self.hub.call("DELETE", f"/hub/api/users/{sp.user}/server")


def plot(samples: list[Sample], bound: list[int], path: Path, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: .venv/bin/pip install -r benchmarks/requirements.txt")
    t = [s.t for s in samples]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.step(t, [s.ready for s in samples], where="post", label="nodes Ready")
    ax.step(t, [s.desired for s in samples], where="post", label="desired capacity", linestyle="--")
    ax.step(t, bound, where="post", label="packing bound", linestyle=":")
    ax2 = ax.twinx()
    ax2.step(t, [s.running for s in samples], where="post", color="tab:red", alpha=0.5, label="servers running")
    ax.set_xlabel("replay seconds")
    ax.set_ylabel("nodes")
    ax2.set_ylabel("servers")
    ax.set_title(title)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", required=True, type=Path, help="CSV: user,start_s,end_s,profile")
    ap.add_argument("--schedule", type=Path, help="JSON: {timezone, trace_starts, windows}")
    ap.add_argument("--speed", type=float, help="trace seconds per replay second (default: the trace in ~13 min)")
    ap.add_argument("--real-time", metavar="A:B", type=real_time_span,
                    help="replay trace seconds A to B at real time (a class's arrivals), the rest at --speed")
    ap.add_argument("--slots", type=int, default=4, help="default servers a worker has room for (default 4)")
    ap.add_argument("--min-size", type=int, default=0, help="the group's minimum during the replay (default 0)")
    ap.add_argument("--max-size", type=int, default=6, help="the group's maximum during the replay (default 6)")
    ap.add_argument("--cooldown", type=float, default=300, help="the cool-down in trace seconds (default 300)")
    ap.add_argument("--prewarm", type=float, default=30, help="the pre-warm in real seconds (default 30)")
    ap.add_argument("--reserve-cpu", type=float, default=0.1, help="the lab's jupyterhub_scaler_reserve_cpu")
    ap.add_argument("--plot", type=Path, help="write a PNG of nodes and servers over time")
    ap.add_argument("--json", type=Path, help="write the figures and samples as JSON")
    args = ap.parse_args()

    for out in (args.json, args.plot):   # made before the replay, not found missing after it
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
    sessions = sc.read_trace(args.trace)
    span = max(s.end for s in sessions)
    occurrences = window_occurrences(json.loads(args.schedule.read_text()), span) if args.schedule else []
    speed = args.speed or default_speed(sessions, occurrences, real_time=args.real_time)
    clock = Clock(speed, args.real_time)
    env = lab_env()
    lab = Replay(args, env)
    base_ami = env["LAB_BASE_AMI"]
    template = next(v for v in lab.ec2.describe_launch_template_versions(
        LaunchTemplateName=NAMES["worker"])["LaunchTemplateVersions"] if v["DefaultVersion"])
    if template["LaunchTemplateData"]["ImageId"] == base_ami:
        from worker_boot_bench import bake
        bake(env)        # kept: the group's workers boot from the baked image from now on, as they should
    before = lab.group()
    names = hub_users(sessions, lab.run, clock)
    users = {name: name for name in names}
    for user in users.values():
        lab.hub.create_user(user)
    spawns = [Spawn(s, name) for s, name in zip(sessions, names)]
    pool = concurrent.futures.ThreadPoolExecutor(len(spawns))
    scaler_cmd: list[str] = []
    windows: list[dict] = []
    configured = False
    try:
        lab.asg.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=args.min_size, MaxSize=args.max_size)
        cpus = lab.worker_cpus()
        guarantee = server_cpu(cpus, args.reserve_cpu, args.slots)
        if cpus != T3_LARGE_CPUS:
            print(f"note: the lab's workers have {cpus:g} CPUs, a t3.large {T3_LARGE_CPUS}: the scaler's estimate for "
                  f"a booting node holds {sc.slots((T3_LARGE_CPUS - args.reserve_cpu, 1), (guarantee, 0))} servers, "
                  f"a Ready one {args.slots}", flush=True)
        configured = True
        lab.configure_hub({"jupyterhub_cpu_guarantee": guarantee})
        node_exec(lab.manager, "docker", "stop", SCALER)
        lab.settle(args.min_size)
        start = replay_start(occurrences, clock, time.time() + 15)
        windows = replay_windows(occurrences, clock, start)
        scaler_cmd = lab.replace_scaler(windows, speed)
        time.sleep(max(0.0, start - time.time()))
        t0 = time.monotonic()
        wall0 = time.time()
        print(f"replay {lab.run}: {args.trace.name}, {len(sessions)} sessions over {span:.0f} s at speed {speed:.2f} "
              f"{'' if not args.real_time else f'(trace seconds {args.real_time[0]:g} to {args.real_time[1]:g} at real time) '}"
              f"(about {clock.replay(span):.0f} s), {args.slots} servers a worker ({cpus:g} CPUs, {guarantee:g} each), "
              f"min {args.min_size} max {args.max_size}, cool-down {args.cooldown / speed:.0f} s, pre-warm "
              f"{args.prewarm:g} s; windows {json.dumps(windows)}", flush=True)
        mon = threading.Thread(target=lab.monitor, args=(t0,), daemon=True)
        mon.start()
        futures = [pool.submit(lab.session, sp, t0, clock) for sp in spawns]
        concurrent.futures.wait(futures)
        for f in futures:
            f.result()
        # until the group is back at its minimum (or the last window's floor has passed and it is)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            g = lab.group()
            if len(g["Instances"]) <= args.min_size and g["DesiredCapacity"] <= args.min_size:
                break
            time.sleep(2)
        time.sleep(2)
        lab.stop.set()
        mon.join()
    finally:
        lab.stop.set()
        node_exec(lab.manager, "docker", "rm", "-f", REPLAY_SCALER, check=False)
        for user in users.values():
            lab.hub.call("DELETE", f"/hub/api/users/{user}/server")
        deadline = time.monotonic() + 300
        while any(lab.hub.server(u) for u in users.values()) and time.monotonic() < deadline:
            time.sleep(2)
        for user in users.values():
            lab.hub.delete_user(user)
        node_exec(lab.manager, "sh", "-c", f"rm -rf /mnt/efs/home/rp{lab.run}*", check=False)
        lab.asg.update_auto_scaling_group(AutoScalingGroupName=GROUP, MinSize=before["MinSize"],
                                          MaxSize=before["MaxSize"], DesiredCapacity=max(before["MinSize"], 0))
        if configured:
            lab.configure_hub({})      # the lab's own guarantee again (it recreates the scaler too)
        node_exec(lab.manager, "docker", "start", SCALER, check=False)
        print(f"put back: the scaler {SCALER}, the group's min {before['MinSize']} max {before['MaxSize']}; "
              f"the replay's scaler ran: {shlex.join(scaler_cmd)}", flush=True)

    samples = lab.figures.samples
    tz_windows = sc.parse_schedule(windows, "replay windows") if windows else []
    bound = [bound_nodes(sessions, clock.trace(s.t), args.slots, args.min_size,
                         sc.scheduled_min(tz_windows, timezone.utc, wall0 + s.t, 0)[0]) for s in samples]
    r = summarise(spawns, samples, bound, lab.figures.first_ready, t0, clock)

    def f(x):
        return "-" if x is None else f"{x:.1f}"
    ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
    print(f"node-seconds (trace time) {r['node_seconds']:.0f}  bound {r['bound_seconds']:.0f}  ratio {ratio}  "
          f"(replay {samples[-1].t:.0f} s)")
    print(f"servers killed or moved by scale-in: {r['lost']}; spawns {r['spawns']}, failed {r['failed']}")
    print(f"spawn wait, room found: p50 {f(r['room_p50'])} s p95 {f(r['room_p95'])} s ({r['n_room']}); "
          f"waited for a new node: p50 {f(r['new_p50'])} s p95 {f(r['new_p95'])} s ({r['n_new']})")
    for sp in spawns:
        if sp.lost or sp.error:
            print(f"  {sp.user}: {sp.lost or sp.error}")
    if args.json:
        args.json.write_text(json.dumps({"figures": r, "speed": speed, "real_time": args.real_time, "windows": windows,
                                         "samples": [s.__dict__ for s in samples], "bound": bound}, indent=1))
    if args.plot:
        plot(samples, bound, args.plot, f"{args.trace.name} at speed {speed:.1f}, {args.slots} servers a worker")
        print(f"plot: {args.plot}")
    return 0 if not r["lost"] and not r["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
