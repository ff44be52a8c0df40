"""Spawn benchmark on the running lab hub: time from a spawn request to a ready server.

Usage (after `make lab`): .venv/bin/python benchmarks/spawn_bench.py [--single 10] [--storm 30]

1. Warm-up: one spawn, then the notebook image is pulled on every worker (the targets are for warm workers).
2. One at a time: --single spawns in sequence, each stopped before the next; p50/p95 of request -> ready.
   A spawn request the hub finishes within its slow_spawn_timeout answers 201 when the server is ready
   (route added, HTTP up), so its duration is the spawn time; one answered 202 is polled every 0.2 s.
3. The CPU floor: the machine's busy CPU-seconds during each single spawn (from /proc/stat, minus the idle
   baseline measured first) is what one server start costs; floor = storm size x that cost / cores.
   Every lab node shares this machine's cores, so no makespan can beat that floor here.
4. Storm: --storm users ask at once (one thread each, polling every 0.5 s); per-user times, p50/p95,
   makespan (first request -> last ready), failures (error answer, spawn failed, or not ready in --timeout).
5. The hub container's memory (docker stats on the manager) idle, and with the storm's servers running.
Everything it creates (users named bench*, their services and homes) is removed at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lab.hubclient import HubClient  # noqa: E402
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import jhs_names  # noqa: E402  (the cluster's resource names: plugins/module_utils/jhs_names.py, their one owner)

CLUSTER = "labhub"
NAMES = jhs_names.names(CLUSTER)


def lab_env() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (ROOT / ".lab/env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def node_exec(node: str, *cmd: str, check: bool = True, input: str | None = None) -> str:
    return subprocess.run(["docker", "exec", *(["-i"] if input is not None else []), node, *cmd], capture_output=True,
                          text=True, check=check, timeout=600, input=input).stdout


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


HZ = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def instances(env: dict) -> tuple[str, list[str]]:
    import boto3
    kw = dict(endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
              aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    ec2, asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
    mgr = ec2.describe_instances(Filters=[{"Name": "tag:jhs:cluster", "Values": [CLUSTER]},
                                          {"Name": "tag:jhs:role", "Values": ["manager"]},
                                          {"Name": "instance-state-name", "Values": ["running"]}])
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAMES["workers"]])["AutoScalingGroups"][0]
    return (mgr["Reservations"][0]["Instances"][0]["InstanceId"],
            sorted(i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"))


def hub_memory(manager: str) -> str:
    return node_exec(manager, "docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", "jupyterhub").strip()


def timed_spawn(hub: HubClient, user: str, timeout: float, interval: float) -> float:
    t0 = time.monotonic()
    r = hub.call("POST", f"/hub/api/users/{user}/server")
    if r.status_code == 202:
        hub.wait_ready(user, timeout, interval)
    elif r.status_code != 201:
        raise RuntimeError(f"{user}: spawn request answered {r.status_code}: {r.text[:200]}")
    return time.monotonic() - t0


def stop_all(hub: HubClient, users: list[str]) -> None:
    threads = [threading.Thread(target=lambda u=u: hub.call("DELETE", f"/hub/api/users/{u}/server")) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 300
    while any(hub.server(u) is not None for u in users) and time.monotonic() < deadline:
        time.sleep(2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=10, help="spawns one at a time (default 10)")
    ap.add_argument("--storm", type=int, default=30, help="users spawning at once (default 30; 0: no storm)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a spawn may take before it counts as failed")
    args = ap.parse_args()

    env = lab_env()
    hub = HubClient(env["LAB_HUB_URL"], timeout=120)
    manager, workers = instances(env)
    run = uuid.uuid4().hex[:4]
    users: list[str] = []

    def new_user(kind: str, i: int) -> str:
        user = f"bench{run}{kind}{i}"  # no dash: dockerspawner escapes it in service names
        hub.create_user(user)
        users.append(user)
        return user

    try:
        # 1. warm-up, then the image on every worker
        warm = new_user("w", 0)
        timed_spawn(hub, warm, args.timeout, 0.5)
        spec = json.loads(node_exec(manager, "docker", "service", "inspect", f"jupyter-{warm}"))[0]["Spec"]
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        # the image is in the cluster's registry (ECR, or the lab's ECR stand-in): pull it with the hub's
        # credentials in a throwaway config, so no worker keeps them
        creds = node_exec(manager, "cat", "/etc/jupyterhub/docker/config.json", check=False) or "{}"
        for w in workers:
            node_exec(w, "sh", "-c", "mkdir -p /tmp/jhs-bench-docker && cat >/tmp/jhs-bench-docker/config.json",
                      input=creds)
            node_exec(w, "env", "DOCKER_CONFIG=/tmp/jhs-bench-docker", "docker", "pull", "-q", image)
            node_exec(w, "rm", "-rf", "/tmp/jhs-bench-docker")
        stop_all(hub, [warm])
        print(f"lab: manager {manager}, workers {', '.join(workers)}; image {image}; {os.cpu_count()} cores")

        # 3. idle baseline of the machine
        b0, t0 = busy_jiffies(), time.monotonic()
        time.sleep(10)
        b1, t1 = busy_jiffies(), time.monotonic()
        idle_rate = (b1[0] - b0[0]) / HZ / (t1 - t0)
        print(f"idle baseline: {idle_rate:.2f} busy cores")
        mem_idle = hub_memory(manager)

        # 2. one at a time
        single, cpu = [], []
        for i in range(args.single):
            user = new_user("s", i)
            c0, w0 = busy_jiffies()[0], time.monotonic()
            single.append(timed_spawn(hub, user, args.timeout, 0.2))
            c1, w1 = busy_jiffies()[0], time.monotonic()
            cpu.append(max(0.0, (c1 - c0) / HZ - idle_rate * (w1 - w0)))
            stop_all(hub, [user])
            time.sleep(2)  # let the stop's work settle before the next measurement
        cores = os.cpu_count() or 1
        cpu_one = statistics.median(cpu)
        floor = args.storm * cpu_one / cores
        print(f"single: n={len(single)} p50 {pct(single, .5):.2f} s, p95 {pct(single, .95):.2f} s, "
              f"min {min(single):.2f} s, max {max(single):.2f} s")
        print(f"one server start costs {cpu_one:.2f} CPU-s (median; range {min(cpu):.2f}-{max(cpu):.2f}); "
              f"CPU floor for {args.storm}: {args.storm} x {cpu_one:.2f} / {cores} cores = {floor:.1f} s")

        if args.storm == 0:   # --storm 0: the single spawns alone
            print(f"hub memory: idle {mem_idle}")
            return 0
        # 4. the storm: every request at once (one thread each); then one list call per second finds who is
        # ready (30 pollers of their own would load the hub they measure)
        storm_users = [new_user("x", i) for i in range(args.storm)]
        results: dict[str, float | str] = {}
        gate = threading.Barrier(len(storm_users) + 1)

        def ask(user: str) -> None:
            gate.wait()
            r = hub.call("POST", f"/hub/api/users/{user}/server")
            if r.status_code == 201:
                results[user] = time.monotonic() - s0
            elif r.status_code != 202:
                results[user] = f"spawn request answered {r.status_code}: {r.text[:200]}"

        threads = [threading.Thread(target=ask, args=(u,), name=u) for u in storm_users]
        for t in threads:
            t.start()
        s0 = time.monotonic()
        gate.wait()
        deadline = s0 + args.timeout
        while len(results) < len(storm_users) and time.monotonic() < deadline:
            time.sleep(1)
            now = time.monotonic() - s0
            listed = {u["name"]: u for u in hub.call("GET", "/hub/api/users", params={"state": "active"}).json()}
            for user in storm_users:
                if user in results:
                    continue
                server = (listed.get(user) or {}).get("servers", {}).get("")
                if server and server.get("ready"):
                    results.setdefault(user, now)
                elif server is None and not any(t.is_alive() for t in threads):
                    results.setdefault(user, "spawn failed (the hub no longer lists the server)")
        for t in threads:
            t.join()
        for user in storm_users:
            results.setdefault(user, f"not ready after {args.timeout:.0f} s")
        makespan = max((v for v in results.values() if isinstance(v, float)), default=float("nan"))
        times = [v for v in results.values() if isinstance(v, float)]
        failures = [f"{u}: {v}" for u, v in results.items() if not isinstance(v, float)]
        placed = node_exec(manager, "docker", "service", "ls", "--filter", f"name=jupyter-bench{run}x",
                           "--format", "{{.Name}}").split()
        mem_storm = hub_memory(manager)
        print(f"storm: {args.storm} at once, {len(times)} ready, {len(failures)} failed; "
              + (f"p50 {pct(times, .5):.1f} s, p95 {pct(times, .95):.1f} s; " if times else "")
              + f"makespan {makespan:.1f} s = {makespan / floor:.2f} x the CPU floor ({floor:.1f} s); "
              f"{len(placed)} services")
        for f in failures:
            print("  failed:", f)
        print(f"hub memory: idle {mem_idle}; with {len(times)} servers {mem_storm}")
        return 1 if failures else 0
    finally:
        stop_all(hub, users)
        for u in users:
            hub.delete_user(u)
        node_exec(manager, "sh", "-c", f"rm -rf /mnt/efs/home/bench{run}*", check=False)


if __name__ == "__main__":
    sys.exit(main())
