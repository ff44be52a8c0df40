"""jhs_scaler: size the workers' Auto Scaling group from what users' servers reserve, not from CPU.

Runs on the manager as a container the jupyterhub role starts (``jupyterhub-scaler``: the hub image, the host's
network, the manager's Docker socket). Not a hub-managed service: it calls AWS with the manager's instance role,
which the instance metadata service gives only to the host's network (hop limit 1, and the notebook firewall blocks
it for containers), and the hub process itself never holds AWS credentials. It needs nothing from the hub: every
user server is a swarm service from the spawn's first moment, labelled and carrying its reservations.

Every ``--every`` seconds, from state read afresh (the group's instances from AWS, the nodes, services and tasks
from swarm, the marks it keeps as node labels), so a restart or a second copy decides the same:

- **demand**: the CPU and memory reservations of every task placed on a worker, the spawns swarm cannot place
  (pending, no node), and a headroom of ``--headroom`` free server slots of the default size;
- **capacity**: each Ready worker's resources minus a reserve for the engine and system; a node still booting, or
  an instance the group has yet to launch, counts as a whole empty node of the group's size;
- **scale out** when pending spawns or the headroom do not fit: SetDesiredCapacity to exactly what the first-fit
  packing needs, within min and max. Setting (not adding) the same figure twice changes nothing, so a spawn seen
  twice, or by two copies, launches one node;
- **scale in** one empty Ready node (no user server; a global service's task, e.g. an agent, does not count) at a
  time, empty for ``--cooldown`` seconds, while the rest still meet the
  floor (min size, the schedule's minimum) and the headroom: drain it in swarm, check it is still empty, then
  TerminateInstanceInAutoScalingGroup with ShouldDecrementDesiredCapacity;
- **protection**: a worker holding user servers is protected from scale-in (SetInstanceProtection), so a scale-in
  started elsewhere (a hand-edited desired capacity, a rebalance) cannot pick it; protection goes when it empties;
- **termination hook**: a worker in ``Terminating:Wait`` (whoever started it) gets no new server at once (swarm
  availability ``pause``: ``drain`` would restart its users' servers elsewhere, ending their kernels); once no user
  server runs there it is drained and the hook completed with CONTINUE; meanwhile it sends RecordLifecycleActionHeartbeat, for
  at most ``--drain-limit`` seconds; then ``--drain-at-limit`` decides: ``stop`` removes the remaining servers'
  services (the hub sees them stopped) and completes, ``wait`` keeps waiting for the culler (AWS ends any wait
  after 48 h or 100 heartbeat timeouts);
- **schedules**: windows (days, start, end, min_nodes) in one time zone; from ``--prewarm`` seconds before a window
  until its end the group holds at least its minimum. Outside every window the floor is the group's min size,
  which may be 0.

Each decision is one log line (demand, capacity, desired before -> after, reason); the same figures go to CloudWatch
every ``--metrics-every`` seconds (namespace ``JupyterHubSwarm``, dimension ``ClusterName``). ``--dry-run`` logs the
decisions and changes nothing.

``python -m jhs_scaler simulate --trace F`` runs the same ``decide`` against a simulated group at AWS sizes (no
lab, no AWS), and ``python -m jhs_scaler check`` validates settings (the role's preflight uses ``settings_errors``).
Why our own code: the Cluster Autoscaler and Karpenter size Kubernetes clusters; nothing maintained sizes an Auto
Scaling group from Docker Swarm reservations.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

log = logging.getLogger("jhs-scaler")

NAMESPACE = "JupyterHubSwarm"
GiB = 1024 ** 3
# Labels the scaler keeps on worker nodes (swarm node spec labels: they survive a restart of the scaler).
LABEL_EMPTY_SINCE = "jhs.scaler.empty-since"
LABEL_TERMINATING_SINCE = "jhs.scaler.terminating-since"
LABEL_HEARTBEAT = "jhs.scaler.heartbeat"
# On the manager's node while workers are on the way (desired above the Ready workers): the POSIX time of the last
# pass that saw it, refreshed every GROWING_REFRESH seconds. The spawner waits for such a worker instead of failing
# a spawn with "no room" (jhs_spawner.SwarmSpawner.cluster_growing).
LABEL_GROWING = "jhs.scaler.growing"
GROWING_REFRESH = 10
ENGINE_INSTANCE_ID = "jhs.instance-id"   # the worker's identity label (roles/swarm_worker)
USER_SERVER = ("jhs.component", "user-server")   # the label of every user service (jhs_spawner)

# vCPU and memory of instance types a worker group commonly uses (AWS's published sizes), for the simulator and
# for a node the group has not launched yet when no worker is Ready to learn the size from.
INSTANCE_TYPES = {
    "t3.medium": (2, 4 * GiB), "t3.large": (2, 8 * GiB), "t3.xlarge": (4, 16 * GiB), "t3.2xlarge": (8, 32 * GiB),
    "t3a.medium": (2, 4 * GiB), "t3a.large": (2, 8 * GiB), "t3a.xlarge": (4, 16 * GiB), "t3a.2xlarge": (8, 32 * GiB),
    "m5.large": (2, 8 * GiB), "m5.xlarge": (4, 16 * GiB), "m5.2xlarge": (8, 32 * GiB), "m5.4xlarge": (16, 64 * GiB),
    "m6i.large": (2, 8 * GiB), "m6i.xlarge": (4, 16 * GiB), "m6i.2xlarge": (8, 32 * GiB),
    "m7i.large": (2, 8 * GiB), "m7i.xlarge": (4, 16 * GiB), "m7i.2xlarge": (8, 32 * GiB),
    "c5.xlarge": (4, 8 * GiB), "c5.2xlarge": (8, 16 * GiB), "c6i.xlarge": (4, 8 * GiB), "c6i.2xlarge": (8, 16 * GiB),
    "r5.large": (2, 16 * GiB), "r5.xlarge": (4, 32 * GiB), "r6i.large": (2, 16 * GiB), "r6i.xlarge": (4, 32 * GiB),
}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_COOLDOWN = 60


# --- sizes ------------------------------------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text) -> int:
    """Bytes from 256M, 2G, 1.5GiB, 1024 (binary multiples, as Docker reads them); ValueError otherwise."""
    if isinstance(text, (int, float)):
        return int(text)
    m = _SIZE.match(str(text or "0"))
    if not m:
        raise ValueError(f"not a size: {text!r} (a number of bytes with an optional K, M, G or T suffix)")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index((m.group(2) or "_").upper()))


def fmt_size(n: float) -> str:
    return f"{n / GiB:.1f}G"


# --- schedules --------------------------------------------------------------------------------------------------
class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    days: frozenset        # weekday numbers (0 = Monday) on which the window starts
    start: int             # minutes after midnight, local time
    end: int               # minutes after midnight; end <= start: the window runs past midnight
    min_nodes: int
    name: str = ""

    def active(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


def _hhmm(value, where) -> int:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(value))
    if not m:
        raise SettingsError(f"{where}: {value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _days(value, where) -> frozenset:
    items = value if isinstance(value, list) else str(value).replace(" ", "").split(",")
    out = set()
    for item in items:
        item = str(item).lower()
        if "-" in item:
            first, _, last = item.partition("-")
            if first not in DAYS or last not in DAYS:
                raise SettingsError(f"{where}: {item!r} is not a range of days like mon-fri (days: {', '.join(DAYS)})")
            i, j = DAYS.index(first), DAYS.index(last)
            out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif item in DAYS:
            out.add(DAYS.index(item))
        else:
            raise SettingsError(f"{where}: {item!r} is not a day (one of {', '.join(DAYS)}, or a range like mon-fri)")
    if not out:
        raise SettingsError(f"{where}: no days given")
    return frozenset(out)


def parse_schedule(entries, setting="jupyterhub_scaler_schedule") -> list[Window]:
    """Windows from a list of {days, start, end, min_nodes[, name]}; SettingsError naming the entry otherwise."""
    if not isinstance(entries, list):
        raise SettingsError(f"{setting} must be a list of windows, got {type(entries).__name__}")
    windows = []
    for i, entry in enumerate(entries):
        where = f"{setting}[{i}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where} must be a mapping with days, start, end and min_nodes")
        unknown = set(entry) - {"days", "start", "end", "min_nodes", "name"}
        missing = {"days", "start", "end", "min_nodes"} - set(entry)
        if unknown or missing:
            raise SettingsError(f"{where}: " + "; ".join(
                ([f"unknown keys {sorted(unknown)}"] if unknown else []) + ([f"missing {sorted(missing)}"] if missing
                                                                            else []))
                + " (keys: days, start, end, min_nodes, name)")
        start, end = _hhmm(entry["start"], f"{where}.start"), _hhmm(entry["end"], f"{where}.end")
        if start == end:
            raise SettingsError(f"{where}: start and end are both {entry['start']}: an empty window")
        n = entry["min_nodes"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SettingsError(f"{where}.min_nodes: {n!r} is not a whole number >= 0")
        windows.append(Window(_days(entry["days"], f"{where}.days"), start, end, n, str(entry.get("name", ""))))
    return windows


def zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise SettingsError(f"jupyterhub_scaler_timezone: {name!r} is not a known IANA time zone "
                            "(e.g. Europe/London, America/New_York, UTC)") from e


def scheduled_min(windows, tz, now: float, prewarm: float) -> tuple[int, str]:
    """The schedule's floor at ``now`` (POSIX time): the largest min_nodes of a window active now, or starting
    within ``prewarm`` seconds; with the window's name (or its start) as the reason."""
    best, why = 0, ""
    for moment in (now, now + prewarm):
        local = datetime.fromtimestamp(moment, tz)
        for w in windows:
            if w.active(local) and w.min_nodes > best:
                best = w.min_nodes
                label = w.name or f"{','.join(DAYS[d] for d in sorted(w.days))} {w.start // 60:02d}:{w.start % 60:02d}"
                why = f"schedule {label}" + (" (pre-warm)" if moment != now and not w.active(
                    datetime.fromtimestamp(now, tz)) else "")
    return best, why


def settings_errors(s: dict) -> list[str]:
    """Every problem with the scaler's settings, as messages naming the setting and what is allowed ([] if none).
    Keys are the jupyterhub role's setting names; the role's preflight and ``check`` call this."""
    errors = []

    def num(key, lo=None, integer=False, why=""):
        v = s.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            errors.append(f"{key}: {v!r} is not a {'whole ' if integer else ''}number")
            return None
        if lo is not None and v < lo:
            errors.append(f"{key}: {v} is below {lo}, the least allowed{why}")
            return None
        return v

    num("jupyterhub_scaler_headroom", 0, integer=True, why=" (free server slots to keep)")
    num("jupyterhub_scaler_cooldown", MIN_COOLDOWN, why=" (seconds: a node is not removed between two users)")
    num("jupyterhub_scaler_interval", 1)
    num("jupyterhub_scaler_prewarm", 0)
    num("jupyterhub_scaler_drain_limit", 0)
    lo, hi = num("jupyterhub_scaler_min_size", 0, True), num("jupyterhub_scaler_max_size", 0, True)
    if lo is not None and hi is not None and lo > hi:
        errors.append(f"jupyterhub_scaler_min_size ({lo}) is above jupyterhub_scaler_max_size ({hi})")
    if s.get("jupyterhub_scaler_drain_at_limit") not in ("stop", "wait"):
        errors.append(f"jupyterhub_scaler_drain_at_limit: {s.get('jupyterhub_scaler_drain_at_limit')!r} is not "
                      "one of stop, wait")
    try:
        zone(str(s.get("jupyterhub_scaler_timezone")))
    except SettingsError as e:
        errors.append(str(e))
    windows = []
    try:
        windows = parse_schedule(s.get("jupyterhub_scaler_schedule", []))
    except SettingsError as e:
        errors.append(str(e))
    if hi is not None:
        for i, w in enumerate(windows):
            if w.min_nodes > hi:
                errors.append(f"jupyterhub_scaler_schedule[{i}].min_nodes ({w.min_nodes}) is above "
                              f"jupyterhub_scaler_max_size ({hi})")
    types = s.get("jupyterhub_scaler_instance_types") or []
    sizes = []
    for t in types:
        if t in INSTANCE_TYPES:
            sizes.append(INSTANCE_TYPES[t])
    if sizes:
        reserve_cpu = float(s.get("jupyterhub_scaler_reserve_cpu") or 0)
        reserve_mem = parse_size(s.get("jupyterhub_scaler_reserve_memory") or 0)
        cap_cpu = max(c for c, _ in sizes) - reserve_cpu
        cap_mem = max(m for _, m in sizes) - reserve_mem
        for name, (cpu, mem) in (s.get("jupyterhub_scaler_guarantees") or {}).items():
            try:
                mem_b = parse_size(mem)
            except ValueError as e:
                errors.append(f"{name}: {e}")
                continue
            if float(cpu or 0) > cap_cpu or mem_b > cap_mem:
                errors.append(f"{name}: a guarantee of {float(cpu or 0):g} CPU and {fmt_size(mem_b)} is larger than "
                              f"any worker instance type can hold ({cap_cpu:g} CPU, {fmt_size(cap_mem)} after the "
                              f"reserve, types {', '.join(types)})")
    return errors


# --- the decision -----------------------------------------------------------------------------------------------
@dataclass
class Node:
    """A worker: an instance of the group, its swarm node once it has one."""
    instance_id: str
    lifecycle: str = "InService"      # the group's LifecycleState ("" for a node of no instance of the group)
    protected: bool = False
    launched: float = 0.0
    node_id: str | None = None
    ready: bool = False               # swarm: Ready and availability active
    cpu: float = 0.0                  # allocatable: the node's resources minus the reserve
    mem: int = 0
    used_cpu: float = 0.0             # reservations of every task placed there
    used_mem: int = 0
    servers: int = 0                  # user servers placed there
    empty_since: float | None = None  # from the node's label

    @property
    def live(self) -> bool:
        return not self.lifecycle.startswith("Terminat") and self.lifecycle not in ("Detaching", "Detached")


@dataclass
class State:
    now: float
    desired: int
    min_size: int
    max_size: int
    nodes: list
    pending: list                     # (cpu, mem) of each spawn swarm cannot place
    node_size: tuple                  # (cpu, mem) allocatable on a new node
    slot: tuple                       # (cpu, mem) of a server of the default size (the headroom's unit)


@dataclass
class Policy:
    headroom: int = 0
    cooldown: float = 600
    floor: int = 0                    # the schedule's minimum now
    floor_reason: str = ""


@dataclass
class Decision:
    desired: int
    reason: str
    terminate: list = field(default_factory=list)     # instance ids to drain and terminate
    decrement: bool = True                            # terminating them lowers the desired capacity
    protect: dict = field(default_factory=dict)       # instance id -> protected, where that must change
    figures: dict = field(default_factory=dict)


def _fits(free, need) -> bool:
    return need[0] <= free[0] + 1e-9 and need[1] <= free[1]


def slots(free, slot) -> int:
    """How many servers of the slot's size fit in ``free``."""
    counts = [math.floor((free[i] + 1e-9) / slot[i]) for i in (0, 1) if slot[i] > 0]
    return max(0, min(counts)) if counts else 1_000_000


def pack(bins, demands):
    """First fit of the demands (largest first) into the bins, the most allocated first (the spawner's choice):
    returns (bins left, demands that fit nowhere). Bins are [cpu, mem] of free room."""
    bins = [list(b) for b in bins]
    left = []
    for need in sorted(demands, key=lambda d: (d[1], d[0]), reverse=True):
        for b in sorted(bins, key=lambda b: (b[1], b[0])):
            if _fits(b, need):
                b[0] -= need[0]
                b[1] -= need[1]
                break
        else:
            left.append(need)
    return bins, left


def nodes_for(demands, size) -> int:
    """New nodes of ``size`` the demands need (first fit decreasing)."""
    bins = []
    for need in sorted(demands, key=lambda d: (d[1], d[0]), reverse=True):
        if not _fits(size, need):
            continue                   # larger than any node: preflight refuses such a guarantee
        for b in bins:
            if _fits(b, need):
                b[0] -= need[0]
                b[1] -= need[1]
                break
        else:
            bins.append([size[0] - need[0], size[1] - need[1]])
    return len(bins)


def decide(st: State, pol: Policy) -> Decision:
    """What the group should be now. Pure: the same state gives the same decision (two scalers agree)."""
    live = [n for n in st.nodes if n.live]
    ready = [n for n in live if n.ready]
    booting = [n for n in live if not n.ready]
    on_the_way = max(0, st.desired - len(live))          # the group has yet to launch them
    total = len(live) + on_the_way
    floor = max(st.min_size, min(pol.floor, st.max_size))
    bins = [[n.cpu - n.used_cpu, n.mem - n.used_mem] for n in ready]
    bins += [list(st.node_size) for _ in range(len(booting) + on_the_way)]
    free, unplaced = pack(bins, st.pending)
    extra = nodes_for(unplaced, st.node_size)
    free_slots = sum(slots(b, st.slot) for b in free)
    per_node = max(1, slots(st.node_size, st.slot))
    short = max(0, pol.headroom - free_slots)
    extra_headroom = math.ceil(short / per_node) if short else 0
    figures = {
        "servers": sum(n.servers for n in live), "pending": len(st.pending),
        "cpu_reserved": round(sum(n.used_cpu for n in ready), 2), "cpu_allocatable": round(sum(n.cpu for n in ready), 2),
        "mem_reserved": sum(n.used_mem for n in ready), "mem_allocatable": sum(n.mem for n in ready),
        "nodes_ready": len(ready), "nodes_booting": len(booting) + on_the_way, "free_slots": free_slots,
        "desired_before": st.desired,
    }
    protect = {}
    for n in live:
        if n.lifecycle == "InService" and n.protected != (n.servers > 0):
            protect[n.instance_id] = n.servers > 0
    want = total + extra + extra_headroom
    if extra or extra_headroom or total < floor:
        target = min(st.max_size, max(want, floor, st.min_size))
        if target > st.desired:
            why = []
            if extra:
                why.append(f"{len(unplaced)} pending spawn(s) need {extra} more node(s)")
            if extra_headroom:
                why.append(f"headroom {pol.headroom} slot(s), {free_slots} free")
            if total < floor:
                why.append(f"floor {floor}" + (f" ({pol.floor_reason})" if pol.floor_reason else ""))
            if target < want:
                why.append(f"capped at max {st.max_size}")
            return Decision(target, "scale out: " + "; ".join(why), protect=protect, figures=figures)
        if extra or extra_headroom:
            return Decision(st.desired, f"at max {st.max_size}: {len(unplaced)} spawn(s) wait, no node may be added"
                            if st.desired >= st.max_size else "nodes on the way cover the demand",
                            protect=protect, figures=figures)
    # nothing to add: remove one empty node (capacity the group is still launching is left alone: another copy, or
    # this one a moment ago, asked for it; once Ready and empty past the cool-down it goes as any other)
    removable = total - floor
    candidates = sorted(
        (n for n in ready if n.servers == 0 and n.lifecycle == "InService"
         and n.empty_since is not None and st.now - n.empty_since >= pol.cooldown
         and st.now - n.launched >= pol.cooldown),
        key=lambda n: (n.empty_since, n.instance_id))
    if removable > 0 and candidates:
        node = candidates[0]
        left_slots = free_slots - slots([node.cpu - node.used_cpu, node.mem - node.used_mem], st.slot)
        if left_slots >= pol.headroom:
            # more instances than desired (protected ones kept when it was lowered): the extra one goes without
            # lowering it again; otherwise the group's desired capacity goes down with the node
            extra_instance = len(live) > st.desired
            return Decision(st.desired if extra_instance else st.desired - 1,
                            f"scale in: {node.instance_id} empty for {st.now - node.empty_since:.0f}s "
                            f"(cool-down {pol.cooldown:g}s)" + (f"; {len(live)} instances for desired {st.desired}"
                                                                if extra_instance else ""),
                            terminate=[node.instance_id], decrement=not extra_instance, protect=protect,
                            figures=figures)
        return Decision(st.desired, f"keeping empty {node.instance_id}: the headroom of {pol.headroom} needs it",
                        protect=protect, figures=figures)
    if removable <= 0 and candidates:
        return Decision(st.desired, f"keeping empty node(s): floor {floor}"
                        + (f" ({pol.floor_reason})" if pol.floor_reason else ""), protect=protect, figures=figures)
    return Decision(st.desired, "steady", protect=protect, figures=figures)


def choose_node(nodes, need):
    """The spawner's packing: the most allocated Ready node that still has room for ``need`` (cpu, mem), or None.
    Most allocated by the larger of its CPU and memory shares, as z2jh's user scheduler scores MostAllocated."""
    best, score = None, -1.0
    for n in nodes:
        if not n.ready or not _fits((n.cpu - n.used_cpu, n.mem - n.used_mem), need):
            continue
        share = max(n.used_cpu / n.cpu if n.cpu else 0.0, n.used_mem / n.mem if n.mem else 0.0)
        if share > score or (share == score and best is not None and n.node_id < best.node_id):
            best, score = n, share
    return best


def termination_actions(nodes, now, limit, at_limit, heartbeat_every):
    """For each worker in Terminating:Wait: [(instance id, action, detail)], action one of drain, heartbeat,
    stop, complete. Pure, from the nodes' labels."""
    out = []
    for n in nodes:
        if n.lifecycle != "Terminating:Wait":
            continue
        if n.servers == 0:
            if n.node_id:
                out.append((n.instance_id, "drain", "Terminating:Wait, empty"))
            out.append((n.instance_id, "complete", "no user server left"))
            continue
        if n.node_id and n.ready:
            out.append((n.instance_id, "pause", "Terminating:Wait: no new server there, the running ones stay"))
        since = getattr(n, "terminating_since", None)
        waited = now - (now if since is None else since)
        if waited >= limit and at_limit == "stop":
            out.append((n.instance_id, "stop", f"{n.servers} server(s) still there after {waited:.0f}s"))
            out.append((n.instance_id, "complete", "servers stopped at the drain limit"))
            continue
        last = getattr(n, "last_heartbeat", None)
        if last is None or now - last >= heartbeat_every:
            out.append((n.instance_id, "heartbeat", f"{n.servers} server(s) still there, waited {waited:.0f}s"))
    return out


# --- reading swarm and AWS --------------------------------------------------------------------------------------
def _labels(node):
    return node.get("Spec", {}).get("Labels") or {}


def worker_nodes(raw_nodes, raw_tasks, user_services, reserve, pinned=()):
    """Pure: Nodes from swarm's worker nodes and running tasks (the Docker API's dicts), and the pending user spawns
    [(cpu, mem)]. ``user_services``: ids of user-server services; ``pinned``: (node id, cpu, mem) of spawns just
    placed whose tasks swarm has not assigned yet. Shared by the scaler and the spawner's packing."""
    nodes, by_id = {}, {}
    for raw in raw_nodes:
        if (raw.get("Spec") or {}).get("Role") != "worker":
            continue
        iid = ((raw.get("Description") or {}).get("Engine") or {}).get("Labels", {}).get(ENGINE_INSTANCE_ID)
        res = (raw.get("Description") or {}).get("Resources") or {}
        labels = _labels(raw)
        n = Node(instance_id=iid or raw["ID"], lifecycle="", node_id=raw["ID"],
                 ready=raw["Status"].get("State") == "ready" and raw["Spec"].get("Availability") == "active",
                 cpu=max(0.0, res.get("NanoCPUs", 0) / 1e9 - reserve[0]),
                 mem=max(0, res.get("MemoryBytes", 0) - reserve[1]))
        n.empty_since = float(labels[LABEL_EMPTY_SINCE]) if LABEL_EMPTY_SINCE in labels else None
        n.terminating_since = float(labels[LABEL_TERMINATING_SINCE]) if LABEL_TERMINATING_SINCE in labels else None
        n.last_heartbeat = float(labels[LABEL_HEARTBEAT]) if LABEL_HEARTBEAT in labels else None
        n.created = _rfc3339(raw["CreatedAt"]) if raw.get("CreatedAt") else 0.0
        by_id[raw["ID"]] = n
        # an instance that left and joined again has a Down node too: the live one wins
        if raw["Status"].get("State") != "down" or n.instance_id not in nodes:
            nodes[n.instance_id] = n
    pending = []
    for task in raw_tasks:
        if task.get("DesiredState") != "running":
            continue
        r = ((task.get("Spec") or {}).get("Resources") or {}).get("Reservations") or {}
        need = (r.get("NanoCPUs", 0) / 1e9, r.get("MemoryBytes", 0))
        node = by_id.get(task.get("NodeID") or "")
        if node is not None:
            node.used_cpu += need[0]
            node.used_mem += need[1]
            node.servers += task.get("ServiceID") in user_services
        elif not task.get("NodeID") and task.get("ServiceID") in user_services:
            pending.append(need)
    for node_id, cpu, mem in pinned:
        if node_id in by_id:
            by_id[node_id].used_cpu += cpu
            by_id[node_id].used_mem += mem
    return nodes, pending, by_id


def swarm_state(client, reserve):
    """From the manager's Docker API: {instance id: Node}, pending [(cpu, mem)], and every worker node by id."""
    user_services = {s["ID"] for s in client.services(filters={"label": "=".join(USER_SERVER)})}
    return worker_nodes(client.nodes(filters={"role": "worker"}), client.tasks(filters={"desired-state": "running"}),
                        user_services, reserve)


def group_state(autoscaling, name):
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        raise RuntimeError(f"Auto Scaling group {name} not found")
    return groups[0]


def merge(group, swarm_nodes):
    """One Node per instance of the group (with its swarm node's figures, if it has one)."""
    nodes = []
    for inst in group.get("Instances", []):
        n = swarm_nodes.get(inst["InstanceId"]) or Node(instance_id=inst["InstanceId"])
        n.lifecycle = inst.get("LifecycleState", "InService")
        n.protected = bool(inst.get("ProtectedFromScaleIn"))
        nodes.append(n)
    return nodes


# --- the loop ---------------------------------------------------------------------------------------------------
class Scaler:
    def __init__(self, args, docker_client, autoscaling, cloudwatch, clock=time.time):
        self.args, self.docker, self.autoscaling, self.cloudwatch, self.clock = args, docker_client, autoscaling, \
            cloudwatch, clock
        self.windows = parse_schedule(json.loads(args.schedule))
        self.tz = zone(args.timezone)
        self.reserve = (args.reserve_cpu, parse_size(args.reserve_memory))
        self.slot = (args.slot_cpu, parse_size(args.slot_memory))
        self.last_metrics = 0.0

    def label(self, node, key, value):
        """Set (value a str) or remove (None) a label on a swarm node."""
        raw = self.docker.inspect_node(node.node_id)
        spec = raw["Spec"]
        labels = dict(spec.get("Labels") or {})
        if labels.get(key) == value or (value is None and key not in labels):
            return
        if value is None:
            labels.pop(key)
        else:
            labels[key] = value
        if not self.args.dry_run:
            self.docker.update_node(node.node_id, raw["Version"]["Index"], {**spec, "Labels": labels})

    def mark_growing(self, now, growing):
        """Tell the spawner (a label on this manager's node) whether workers are on the way."""
        if self.args.dry_run:
            return
        if not getattr(self, "_me", None):
            self._me = self.docker.info()["Swarm"]["NodeID"]
        me = self._me
        raw = self.docker.inspect_node(me)
        labels = dict(raw["Spec"].get("Labels") or {})
        if growing and now - float(labels.get(LABEL_GROWING, 0)) >= GROWING_REFRESH:
            labels[LABEL_GROWING] = f"{now:.0f}"
        elif not growing and LABEL_GROWING in labels:
            labels.pop(LABEL_GROWING)
        else:
            return
        self.docker.update_node(me, raw["Version"]["Index"], {**raw["Spec"], "Labels": labels})

    def availability(self, node, value):
        raw = self.docker.inspect_node(node.node_id)
        if raw["Spec"].get("Availability") != value and not self.args.dry_run:
            self.docker.update_node(node.node_id, raw["Version"]["Index"], {**raw["Spec"], "Availability": value})

    def read(self):
        now = self.clock()
        group = group_state(self.autoscaling, self.args.group)
        swarm_nodes, pending, _ = swarm_state(self.docker, self.reserve)
        nodes = merge(group, swarm_nodes)
        for n in nodes:
            # launched: when the node joined (swarm); an instance with no node yet is not a candidate anyway
            n.launched = getattr(n, "created", 0.0) or now
        ready_sizes = [(n.cpu, n.mem) for n in nodes if n.node_id and n.cpu]
        size = max(ready_sizes, default=None) or self.type_size()
        st = State(now=now, desired=group["DesiredCapacity"], min_size=group["MinSize"], max_size=group["MaxSize"],
                   nodes=nodes, pending=pending, node_size=size, slot=self.slot)
        return st, group

    def type_size(self):
        cpu, mem = INSTANCE_TYPES.get(self.args.instance_type, (2, 4 * GiB))
        return (cpu - self.reserve[0], mem - self.reserve[1])

    def step(self):
        st, group = self.read()
        floor, why = scheduled_min(self.windows, self.tz, st.now, self.args.prewarm)
        pol = Policy(headroom=self.args.headroom, cooldown=self.args.cooldown, floor=floor, floor_reason=why)
        # marks first: how long each node has been empty (kept in swarm, not in this process)
        for n in st.nodes:
            if not n.node_id:
                continue
            if n.servers:
                if n.empty_since is not None:
                    self.label(n, LABEL_EMPTY_SINCE, None)
                    n.empty_since = None
            elif n.empty_since is None and n.ready:
                self.label(n, LABEL_EMPTY_SINCE, f"{st.now:.0f}")
                n.empty_since = st.now
        d = decide(st, pol)
        f = d.figures
        line = (f"servers={f['servers']} pending={f['pending']} cpu={f['cpu_reserved']}/{f['cpu_allocatable']} "
                f"mem={fmt_size(f['mem_reserved'])}/{fmt_size(f['mem_allocatable'])} ready={f['nodes_ready']} "
                f"booting={f['nodes_booting']} free_slots={f['free_slots']} desired {st.desired} -> {d.desired}: "
                f"{d.reason}")
        changed = d.desired != st.desired or d.terminate or d.protect
        if changed or line != getattr(self, "_last_line", None) and d.reason != "steady":
            log.info("%s%s", "[dry-run] " if self.args.dry_run else "", line)
        self._last_line = line
        self.apply(st, d)
        self.mark_growing(st.now, d.desired > f["nodes_ready"])
        self.lifecycle(st)
        if st.now - self.last_metrics >= self.args.metrics_every:
            self.metrics(d, st)
            self.last_metrics = st.now
        return d

    def apply(self, st, d):
        dry = self.args.dry_run
        for iid, protect in sorted(d.protect.items()):
            log.info("%sprotection of %s from scale-in: %s", "[dry-run] " if dry else "", iid, protect)
            if not dry:
                self.autoscaling.set_instance_protection(InstanceIds=[iid], AutoScalingGroupName=self.args.group,
                                                         ProtectedFromScaleIn=protect)
        if d.terminate:
            for iid in d.terminate:
                node = next(n for n in st.nodes if n.instance_id == iid)
                self.scale_in(node, d.decrement)
        elif d.desired != st.desired and not dry:
            self.autoscaling.set_desired_capacity(AutoScalingGroupName=self.args.group, DesiredCapacity=d.desired,
                                                  HonorCooldown=False)

    def scale_in(self, node, decrement=True):
        """Drain, check it stayed empty (a spawn may have picked it just before), then terminate exactly it."""
        if self.args.dry_run:
            return
        self.availability(node, "drain")
        time.sleep(self.args.settle)
        _, _, by_id = swarm_state(self.docker, self.reserve)
        again = by_id.get(node.node_id)
        if again is not None and again.servers:
            log.warning("scale in of %s called off: a server was placed there meanwhile", node.instance_id)
            self.availability(node, "active")
            return
        self.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=node.instance_id,
                                                                  ShouldDecrementDesiredCapacity=decrement)
        log.info("terminated %s (node %s)", node.instance_id, node.node_id[:12])

    def lifecycle(self, st):
        dry = self.args.dry_run
        for n in st.nodes:
            if n.lifecycle == "Terminating:Wait" and n.node_id and getattr(n, "terminating_since", None) is None:
                self.label(n, LABEL_TERMINATING_SINCE, f"{st.now:.0f}")
                n.terminating_since = st.now
        for iid, action, detail in termination_actions(st.nodes, st.now, self.args.drain_limit,
                                                       self.args.drain_at_limit, self.args.heartbeat_every):
            node = next(n for n in st.nodes if n.instance_id == iid)
            log.info("%s%s %s: %s", "[dry-run] " if dry else "", action, iid, detail)
            if dry:
                continue
            try:
                if action in ("drain", "pause"):
                    self.availability(node, action)
                elif action == "heartbeat":
                    self.autoscaling.record_lifecycle_action_heartbeat(
                        LifecycleHookName=self.args.drain_hook, AutoScalingGroupName=self.args.group, InstanceId=iid)
                    self.label(node, LABEL_HEARTBEAT, f"{st.now:.0f}")
                elif action == "stop":
                    self.stop_servers(node)
                elif action == "complete":
                    self.autoscaling.complete_lifecycle_action(
                        LifecycleHookName=self.args.drain_hook, AutoScalingGroupName=self.args.group,
                        InstanceId=iid, LifecycleActionResult="CONTINUE")
            except Exception as e:   # one instance's trouble (a completed action, a node gone) stops no other
                log.error("%s %s failed: %s", action, iid, e)

    def stop_servers(self, node):
        for task in self.docker.tasks(filters={"node": node.node_id, "desired-state": "running"}):
            svc = self.docker.inspect_service(task["ServiceID"])
            if (svc["Spec"].get("Labels") or {}).get(USER_SERVER[0]) == USER_SERVER[1]:
                log.warning("removing user server %s: its worker %s is terminating", svc["Spec"]["Name"],
                            node.instance_id)
                self.docker.remove_service(task["ServiceID"])

    def metrics(self, d, st):
        f = d.figures
        values = {"UsersRunning": (f["servers"], "Count"), "SpawnsPending": (f["pending"], "Count"),
                  "CpuReserved": (f["cpu_reserved"], "None"), "CpuAllocatable": (f["cpu_allocatable"], "None"),
                  "MemoryReserved": (f["mem_reserved"], "Bytes"), "MemoryAllocatable": (f["mem_allocatable"], "Bytes"),
                  "NodesReady": (f["nodes_ready"], "Count"), "DesiredCapacity": (d.desired, "Count")}
        if self.args.dry_run or not self.cloudwatch:
            return
        try:
            self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[
                {"MetricName": k, "Value": float(v), "Unit": u,
                 "Dimensions": [{"Name": "ClusterName", "Value": self.args.cluster}]} for k, (v, u) in values.items()])
        except Exception as e:
            log.error("metrics not sent: %s", e)


def _rfc3339(text):
    head, _, frac = text.rstrip("Z").partition(".")
    when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return when + (float("0." + frac[:6]) if frac else 0.0)


def run(args):
    import boto3
    import docker
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(levelname).1s %(asctime)s %(name)s] %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from botocore.exceptions import NoCredentialsError
    kw = {"region_name": args.region} | ({"endpoint_url": args.endpoint_url} if args.endpoint_url else {})
    client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))

    def aws_clients():
        return boto3.client("autoscaling", **kw), boto3.client("cloudwatch", **kw)
    scaler = Scaler(args, client, *aws_clients())
    log.info("group %s: every %ss, headroom %s, cool-down %ss, %d schedule window(s) in %s%s", args.group, args.every,
             args.headroom, args.cooldown, len(scaler.windows), args.timezone, " (dry run)" if args.dry_run else "")
    while True:
        try:
            scaler.step()
        except NoCredentialsError as e:   # none found when the clients were made (the metadata service slow to
            log.error("pass failed: %s", e)   # answer at boot); a client never looks again, so new ones do
            scaler.autoscaling, scaler.cloudwatch = aws_clients()
        except Exception as e:            # AWS or Docker unavailable for a moment: the next pass reads afresh
            log.error("pass failed: %s: %s", type(e).__name__, e)
        if args.once:
            return
        time.sleep(args.every)


# --- the simulator ----------------------------------------------------------------------------------------------
@dataclass
class Session:
    user: str
    start: float
    end: float
    profile: str = "default"


def read_trace(path) -> list[Session]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for i, row in enumerate(rows, start=2):
        try:
            s = Session(row["user"], float(row["start_s"]), float(row["end_s"]), (row.get("profile") or "default"))
        except (KeyError, ValueError) as e:
            raise SettingsError(f"{path} line {i}: needs user,start_s,end_s[,profile] with numbers ({e})") from e
        if s.end <= s.start:
            raise SettingsError(f"{path} line {i}: end_s {s.end:g} is not after start_s {s.start:g}")
        out.append(s)
    return sorted(out, key=lambda s: s.start)


def simulate(sessions, *, node_size, profiles, min_size=0, max_size=20, initial=None, headroom=0, cooldown=300,
             every=5, boot=60, spawn=2, windows=(), tz=timezone.utc, prewarm=180, epoch=0.0, dt=1.0):
    """Replay sessions against a simulated group, deciding with ``decide`` and placing with ``choose_node``.
    Returns figures: node-seconds, the packing bound, spawn waits, servers killed by scale-in, a timeline."""
    slot = profiles["default"]
    desired = min_size if initial is None else initial
    nodes, seq = [], 0                      # [Node] with .ready_at
    running, waiting = {}, []               # user -> (node id, need); [(session, need, requested at)]
    waits_room, waits_new, killed = [], [], 0
    node_s = bound_s = 0.0
    timeline = []
    end = max((s.end for s in sessions), default=0)
    queue = list(sessions)
    t = 0.0

    def launch():
        nonlocal seq
        seq += 1
        n = Node(instance_id=f"i-{seq:04d}", node_id=f"n-{seq:04d}", launched=t, cpu=node_size[0], mem=node_size[1])
        n.ready_at = t + boot
        nodes.append(n)

    for _ in range(desired):
        launch()
        nodes[-1].ready_at = 0.0
    next_decision = 0.0
    while True:
        floor_now, _ = scheduled_min(windows, tz, epoch + t, 0)
        if t > end and not running and not waiting and not floor_now and len(nodes) <= min_size or t > end + 86400:
            break
        for n in nodes:
            if not n.ready and t >= n.ready_at:
                n.ready = True
                n.empty_since = t
        while queue and queue[0].start <= t:
            s = queue.pop(0)
            waiting.append((s, profiles.get(s.profile, slot), t))
        for item in list(waiting):
            s, need, asked = item
            n = choose_node(nodes, need)
            if n is None:
                continue
            waiting.remove(item)
            n.used_cpu += need[0]
            n.used_mem += need[1]
            n.servers += 1
            n.empty_since = None
            running[s.user + "@" + str(s.start)] = (n, need, s.end + 0.0)
            (waits_room if t - asked < dt / 2 else waits_new).append(t - asked + spawn)
        for key, (n, need, stop) in list(running.items()):
            if t >= stop:
                del running[key]
                n.used_cpu -= need[0]
                n.used_mem -= need[1]
                n.servers -= 1
                if n.servers == 0:
                    n.empty_since = t
        if t >= next_decision:
            next_decision = t + every
            floor, why = scheduled_min(windows, tz, epoch + t, prewarm)
            st = State(now=t, desired=desired, min_size=min_size, max_size=max_size, nodes=nodes,
                       pending=[need for _, need, _ in waiting], node_size=node_size, slot=slot)
            d = decide(st, Policy(headroom=headroom, cooldown=cooldown, floor=floor, floor_reason=why))
            for iid in d.terminate:
                gone = next(n for n in nodes if n.instance_id == iid)
                killed += gone.servers
                nodes.remove(gone)
            if d.desired > len(nodes):
                for _ in range(d.desired - len(nodes)):
                    launch()
            desired = d.desired
            while len(nodes) > desired:      # desired lowered below the instances: the unlaunched ones go first
                gone = max((n for n in nodes if not n.ready), key=lambda n: n.launched, default=None)
                if gone is None:
                    break
                nodes.remove(gone)
        reserved = [sum(need[i] for _, need, _ in running.values()) for i in (0, 1)]
        need_nodes = max((math.ceil(reserved[i] / node_size[i] - 1e-9) for i in (0, 1) if node_size[i]), default=0)
        bound_s += max(need_nodes, min_size, floor_now) * dt
        node_s += len(nodes) * dt
        if int(t) % 10 == 0:
            timeline.append((t, sum(n.ready for n in nodes), desired, len(running)))
        t += dt

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)] if xs else None
    return {"node_seconds": node_s, "bound_seconds": bound_s, "ratio": node_s / bound_s if bound_s else None,
            "killed": killed, "spawns": len(waits_room) + len(waits_new), "unserved": len(waiting),
            "wait_room_p50": pct(waits_room, 50), "wait_room_p95": pct(waits_room, 95), "n_room": len(waits_room),
            "wait_new_p50": pct(waits_new, 50), "wait_new_p95": pct(waits_new, 95), "n_new": len(waits_new),
            "timeline": timeline}


# Launch of a baked worker to swarm Ready on AWS, assumed (not measured here): EC2 takes about 45 s from
# launch to running user-data, then the boot measured in the lab (docs/benchmarks.md, 12 s) and a margin.
AWS_BOOT_SECONDS = 60


def simulate_main(args):
    sessions = read_trace(args.trace)
    if args.instance_type not in INSTANCE_TYPES:
        raise SettingsError(f"--instance-type {args.instance_type!r} is not one of {', '.join(sorted(INSTANCE_TYPES))}")
    cpu, mem = INSTANCE_TYPES[args.instance_type]
    node_size = (cpu - args.reserve_cpu, mem - parse_size(args.reserve_memory))
    profiles = {"default": (args.slot_cpu, parse_size(args.slot_memory))}
    if args.profiles:
        with open(args.profiles) as f:
            for name, p in json.load(f).items():
                profiles[name] = (float(p.get("cpu_guarantee", 0)), parse_size(p.get("mem_guarantee", 0)))
    windows, tz = [], timezone.utc
    epoch = 0.0
    if args.schedule:
        with open(args.schedule) as f:
            sched = json.load(f)
        windows, tz = parse_schedule(sched["windows"], "schedule windows"), zone(sched.get("timezone", "UTC"))
        epoch = datetime.fromisoformat(sched["trace_starts"]).replace(tzinfo=tz).timestamp()
    r = simulate(sessions, node_size=node_size, profiles=profiles, min_size=args.min_size, max_size=args.max_size,
                 headroom=args.headroom, cooldown=args.cooldown, every=args.every, boot=args.boot,
                 windows=windows, tz=tz, prewarm=args.prewarm, epoch=epoch)
    hours = r["node_seconds"] / 3600
    print(f"trace {args.trace}: {len(sessions)} sessions, {args.instance_type} ({cpu} vCPU, {fmt_size(mem)}), "
          f"boot {args.boot:g}s, cool-down {args.cooldown:g}s, headroom {args.headroom}")
    print(f"node-hours {hours:.2f}  bound {r['bound_seconds'] / 3600:.2f}  ratio {r['ratio']:.3f}"
          f"  cost {hours * args.price:.2f} (at {args.price:g}/hour)")
    print(f"servers killed or moved by scale-in: {r['killed']}; spawns {r['spawns']}, never served {r['unserved']}")
    print(f"spawn wait, room found: p50 {r['wait_room_p50']} s p95 {r['wait_room_p95']} s ({r['n_room']}); "
          f"waited for a node: p50 {r['wait_new_p50']} s p95 {r['wait_new_p95']} s ({r['n_new']})")
    return r


# --- the command line -------------------------------------------------------------------------------------------
def parser():
    p = argparse.ArgumentParser(prog="jhs_scaler", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--headroom", type=int, default=0, help="free server slots of the default size to keep")
    common.add_argument("--cooldown", type=float, default=300, help="seconds a node stays empty before removal")
    common.add_argument("--every", type=float, default=3, help="seconds between two decisions")
    common.add_argument("--prewarm", type=float, default=180, help="seconds before a window that it takes effect")
    common.add_argument("--reserve-cpu", type=float, default=0.1, help="CPU kept for the engine and system per node")
    common.add_argument("--reserve-memory", default="512M", help="memory kept for the engine and system per node")
    common.add_argument("--slot-cpu", type=float, default=0.0, help="CPU guarantee of a default server")
    common.add_argument("--slot-memory", default="256M", help="memory guarantee of a default server")
    common.add_argument("--instance-type", default="t3.xlarge", help="the workers' instance type")
    r = sub.add_parser("run", parents=[common], help="size the group (on the manager)")
    r.add_argument("--group", required=True, help="the workers' Auto Scaling group")
    r.add_argument("--cluster", required=True, help="the cluster's name (the metrics' ClusterName)")
    r.add_argument("--drain-hook", required=True, help="the group's termination lifecycle hook")
    r.add_argument("--region", required=True)
    r.add_argument("--endpoint-url", default="", help="an AWS endpoint other than AWS's own (the lab's)")
    r.add_argument("--schedule", default="[]", help="windows as JSON: [{days, start, end, min_nodes, name}]")
    r.add_argument("--timezone", default="UTC", help="the schedule's IANA time zone")
    r.add_argument("--drain-limit", type=float, default=3600, help="seconds a terminating node waits for servers")
    r.add_argument("--drain-at-limit", choices=("stop", "wait"), default="stop")
    r.add_argument("--heartbeat-every", type=float, default=120, help="seconds between lifecycle heartbeats")
    r.add_argument("--metrics-every", type=float, default=60, help="seconds between two CloudWatch puts")
    r.add_argument("--settle", type=float, default=2, help="seconds between draining a node and terminating it")
    r.add_argument("--dry-run", action="store_true", help="log decisions, change nothing")
    r.add_argument("--once", action="store_true", help="one pass, then exit")
    s = sub.add_parser("simulate", parents=[common], help="run the policy against a trace, without AWS or a lab")
    s.add_argument("--trace", required=True, help="CSV: user,start_s,end_s,profile")
    s.add_argument("--schedule", default="", help="JSON: {timezone, trace_starts (ISO local time), windows: [...]}")
    s.add_argument("--profiles", default="", help="JSON: {name: {cpu_guarantee, mem_guarantee}}")
    s.add_argument("--price", type=float, default=0.1664, help="price of one instance-hour")
    s.add_argument("--boot", type=float, default=AWS_BOOT_SECONDS, help="seconds from launch to a Ready node")
    s.add_argument("--min-size", type=int, default=0)
    s.add_argument("--max-size", type=int, default=20)
    c = sub.add_parser("check", help="validate settings (JSON on stdin, the role's names); exit 1 on a problem")
    c.set_defaults()
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "run":
        run(args)
    elif args.command == "simulate":
        try:
            simulate_main(args)
        except SettingsError as e:
            sys.exit(f"error: {e}")
    elif args.command == "check":
        errors = settings_errors(json.load(sys.stdin))
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
