"""Exercise the config's SwarmSpawner (jhs_spawner) in the real hub image, with Docker stubbed out.

Run inside the hub image: python3 spawner_poll.py /etc/jupyterhub/jupyterhub_config.py
The swarm cannot be made to hold a task in "rejected", a port closed, a stale DNS answer or a task half-way
through a reschedule on demand, so these edge cases use stubs for the Docker calls (get_task, tasks, and
upstream's start returning an address); the real paths run against the lab swarm in tests/lab/test_site.py. The registry credentials' reload uses a Docker client
with no daemon behind it (the X-Registry-Auth header it would send). Prints RESULT <json>.
"""
import asyncio
import json
import sys
import time

import dockerspawner
from jupyterhub import orm
from jupyterhub.objects import Server

from hubapp import hub_with_alice


async def main(path):
    app, spawner = await hub_with_alice(path)
    out = {"class_mro": [f"{k.__module__}.{k.__name__}" for k in type(spawner).__mro__][:3]}

    async def states(seq):
        calls = []

        async def get_task():
            calls.append(time.monotonic())
            state = seq[min(len(calls) - 1, len(seq) - 1)]
            state, err = state if isinstance(state, tuple) else (state, "stub")
            return {"Status": {"State": state, "Err": err}}
        spawner.get_task = get_task
        t0 = time.monotonic()
        try:
            await spawner.start_object()
            result = "ok"
        except RuntimeError as e:
            result = f"RuntimeError: {e}"
        return {"result": result, "calls": len(calls), "seconds": round(time.monotonic() - t0, 3)}

    # running after 3 waiting states: seen within a fraction of upstream's first 1 s pause
    out["running"] = await states(["pending", "preparing", "starting", "running"])
    # a rejected task is waited on (Swarm reschedules it), then a failed one stops the spawn
    out["failed"] = await states(["rejected", "rejected", "failed"])
    # no node with room: the spawn fails after no_room_timeout naming swarm's reason; room found in time: it runs
    no_room = ("pending", "no suitable node (insufficient resources on 2 nodes)")
    spawner.no_room_timeout = 0.5
    out["no_room"] = await states([no_room])
    out["room_in_time"] = await states([no_room, no_room, no_room, "assigned", "running"])
    out["other_pending"] = await states([("pending", "waiting for a volume")] * 7 + ["running"])
    # the scaler says workers are on the way (for the first 1.2 s): the spawn waits on, then fails naming the cause
    growing_until = time.monotonic() + 1.2

    async def cluster_growing():
        return time.monotonic() < growing_until
    spawner.cluster_growing = cluster_growing
    out["no_room_growing"] = await states([no_room])
    del spawner.cluster_growing
    spawner.no_room_timeout = 60.0

    # the port check after upstream's start: an answering server returns at once, a closed port times out
    async def upstream_start(self):
        self._task_addresses = set(OWN)
        return (HOST, PORT)
    dockerspawner.SwarmSpawner.start = upstream_start
    server = await asyncio.start_server(lambda r, w: w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                                        "127.0.0.1", 0)
    global PORT
    PORT = server.sockets[0].getsockname()[1]
    orm_server = orm.Server(base_url="/user/alice/")
    app.db.add(orm_server)
    app.db.commit()
    spawner.server = Server(orm_server=orm_server)
    t0 = time.monotonic()
    out["answering"] = {"result": list(await spawner.start()), "seconds": round(time.monotonic() - t0, 3)}

    # a name that still resolves to a moved server's old address too (127.0.0.2, a task shutting down that still
    # answers) is not ready until that address is gone from the name's answers (here after 1 s): the task is at
    # 127.0.0.1 only
    global HOST, OWN
    old = await asyncio.start_server(lambda r, w: w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                                     "127.0.0.2", PORT)
    OWN = {"127.0.0.1"}
    hosts = open("/etc/hosts").read()
    with open("/etc/hosts", "a") as f:
        f.write("127.0.0.1 jhs-moved\n127.0.0.2 jhs-moved\n")

    def forget_the_old_address():
        with open("/etc/hosts", "w") as f:
            f.write(hosts + "127.0.0.1 jhs-moved\n")
    HOST = "jhs-moved"
    asyncio.get_running_loop().call_later(1.0, forget_the_old_address)
    t0 = time.monotonic()
    out["stale_address"] = {"result": list(await spawner.start()), "seconds": round(time.monotonic() - t0, 3)}
    old.close()
    OWN = set()
    HOST = "127.0.0.1"
    server.close()
    await server.wait_closed()
    spawner.http_timeout = 2
    t0 = time.monotonic()
    try:
        await spawner.start()
        out["closed"] = {"result": "returned"}
    except TimeoutError as e:
        out["closed"] = {"result": f"TimeoutError: {e}", "seconds": round(time.monotonic() - t0, 3)}

    # registry credentials (DOCKER_CONFIG, rewritten by the ECR refresher): handed to the Docker client again
    # before a service is created whenever the file changed, and then sent along by create_service
    out["poll"] = await poll(spawner)
    out["pack"] = await pack(app, spawner)
    spawner.pack = False            # the credentials' case below has no swarm to read
    out["registry"] = await registry(spawner)
    print("RESULT " + json.dumps(out))


async def poll(spawner):
    """What poll says while swarm replaces the task the hub started (a worker lost), in both on_worker_loss modes."""
    result = {}
    service = {"present": True}
    removed = []

    def task(tid, desired, state, index):
        return {"ID": tid, "DesiredState": desired, "Status": {"State": state, "Message": state}, "Version": {"Index": index}}

    async def get_object():
        return {"ID": "svc"} if service["present"] else None

    async def remove_object():
        removed.append(spawner.service_name)
        service["present"] = False
    spawner.get_object = get_object
    spawner.remove_object = remove_object
    # first swarm's restart delay (the new task desired "ready" for 5 s), then the new task starting
    delayed = [task("old", "shutdown", "orphaned", 5), task("new", "ready", "new", 6)]
    rescheduled = [task("old", "shutdown", "orphaned", 5), task("new", "running", "ready", 7)]

    async def tasks_stub(method, *args, **kwargs):
        assert method == "tasks", method
        return TASKS
    spawner.docker = tasks_stub
    global TASKS
    for mode in ("keep", "stop"):
        spawner.on_worker_loss = mode
        spawner.task_id = "old"
        service["present"] = True
        removed.clear()
        TASKS = [task("old", "running", "running", 5)]
        steady = await spawner.poll()
        TASKS = delayed
        first = await spawner.poll()
        TASKS = rescheduled
        second = await spawner.poll()
        result[mode] = {"steady": steady, "rescheduled": first, "after": second, "removed": list(removed),
                        "task_id": spawner.task_id, "saved": (spawner.orm_spawner.state or {}).get("task_id")}
    # a service whose only task failed and that swarm does not restart is a stopped server
    spawner.on_worker_loss, spawner.task_id, service["present"] = "keep", "t1", True
    TASKS = [task("t1", "shutdown", "failed", 9)]
    result["failed"] = await spawner.poll()
    return result


async def pack(app, spawner):
    """Packing: the constraints create_object sends for workers in hand-made states (each 4 GiB; the config's
    reserve is 512M), two spawns at once, no room anywhere; and poll unpinning a server whose worker is lost."""
    import jhs_spawner
    G = 1024 ** 3
    created, updates = [], []
    swarm = {}

    def worker(nid, used_gib, state="ready"):
        return {"ID": nid, "Spec": {"Role": "worker", "Availability": "active"}, "Status": {"State": state},
                "Description": {"Engine": {"Labels": {"jhs.instance-id": "i-" + nid}},
                                "Resources": {"NanoCPUs": 2_000_000_000, "MemoryBytes": 4 * G}}}

    def task(nid, mem):
        return {"ServiceID": "other", "NodeID": nid, "DesiredState": "running",
                "Spec": {"Resources": {"Reservations": {"MemoryBytes": mem}}}}

    async def stub_docker(method, *args, **kwargs):
        if method == "nodes":
            return swarm["nodes"]
        if method == "tasks":
            return swarm["tasks"]
        if method == "services":
            return []
        if method == "inspect_node":
            return next(n for n in swarm["nodes"] if n["ID"] == args[0])
        if method == "update_service":
            updates.append(kwargs["task_template"]["Placement"]["Constraints"])
            return None
        raise AssertionError(method)

    async def upstream_create(self):
        created.append(list(self.extra_placement_spec["constraints"]))
        await asyncio.sleep(0.05)       # create_service's round trip: a second spawn runs meanwhile
        return {"ID": "stub"}
    saved_create = dockerspawner.SwarmSpawner.create_object
    dockerspawner.SwarmSpawner.create_object = upstream_create
    users = []
    for name in ("bob", "carol"):
        user_orm = orm.User(name=name)
        app.db.add(user_orm)
        app.db.commit()
        users.append(app.users[user_orm.id].spawners[""])
    for sp in [spawner] + users:
        sp.docker = stub_docker
        sp.mem_guarantee = 1 * G
    result = {}
    # w1 has 2 GiB reserved (1.5 GiB free of 3.5), w2 0.5 GiB: w1, the most allocated with room
    swarm.update(nodes=[worker("w1", 0), worker("w2", 0)], tasks=[task("w1", 2 * G), task("w2", G // 2)])
    await spawner.create_object()
    result["most_allocated"] = created[-1]
    # two at once: w1 has room for one 1 GiB server more (the first spawn's pin counts until swarm assigns it)
    jhs_spawner._pins.clear()
    created.clear()
    await asyncio.gather(users[0].create_object(), users[1].create_object())
    result["two_at_once"] = sorted(c[-1] for c in created)
    # no room anywhere: every current worker excluded, the task waits for a new one
    jhs_spawner._pins.clear()
    swarm["tasks"] = [task("w1", 3 * G), task("w2", 3 * G)]
    await spawner.create_object()
    result["no_room"] = created[-1]
    # poll: the server's only task is pending and pinned to w1, which is Down: the pin goes
    swarm["nodes"] = [worker("w1", 0, state="down"), worker("w2", 0)]

    async def get_object():
        return {"ID": "svc", "Version": {"Index": 3}, "Spec": {"Name": "jupyter-alice", "TaskTemplate": {
            "Placement": {"Constraints": ["node.role == worker", "node.id==w1"]}}}}
    spawner.get_object = get_object
    await spawner._unpin_from_a_lost_node([{"Status": {"State": "pending"}}])
    result["unpinned"] = updates[-1] if updates else None
    swarm["nodes"] = [worker("w1", 0), worker("w2", 0)]
    updates.clear()
    await spawner._unpin_from_a_lost_node([{"Status": {"State": "pending"}}])
    result["kept_on_a_ready_worker"] = updates
    dockerspawner.SwarmSpawner.create_object = saved_create
    return result


async def registry(spawner):
    import base64
    import os
    from pathlib import Path

    import docker
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")   # no daemon needed
    calls = []

    async def stub_docker(method, *args, **kwargs):
        calls.append(method)
        return getattr(client, method)(*args, **kwargs)

    async def upstream_create(self):
        return {"ID": "stub"}
    spawner.docker = stub_docker
    dockerspawner.SwarmSpawner.create_object = upstream_create

    def write(password):
        auth = base64.b64encode(f"AWS:{password}".encode()).decode()
        config.write_text(json.dumps({"auths": {"registry.example.test:5000": {"auth": auth}}}))

    def header_password():
        header = docker.auth.get_config_header(client, "registry.example.test:5000")
        return json.loads(base64.urlsafe_b64decode(header))["password"] if header else None

    result = {}
    await spawner.create_object()
    result["no_file"] = {"reloads": calls.count("reload_config"), "sent": header_password()}
    write("token-1")
    await spawner.create_object()
    await spawner.create_object()
    result["written"] = {"reloads": calls.count("reload_config"), "sent": header_password()}
    time.sleep(0.01)
    write("token-2")
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 1_000_000))   # a new mtime even on coarse clocks
    await spawner.create_object()
    result["refreshed"] = {"reloads": calls.count("reload_config"), "sent": header_password()}
    return result


PORT = 0
HOST = "127.0.0.1"
OWN = set()
TASKS = []
asyncio.run(main(sys.argv[1]))
