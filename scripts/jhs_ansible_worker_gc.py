"""No cyclic garbage collection in the worker processes that ansible-playbook forks, on the control node.

Why this exists: ansible-playbook runs each task of each host in a worker process forked from itself, so the worker
starts with the whole controller's heap: the playbook, its roles, the inventory and every result kept so far.
When Python's cyclic garbage collector runs in that worker (it does, after a few hundred allocations of the task's
own templating), a full collection walks every object inherited from the parent and writes to each one's header,
so the kernel copies the parent's memory pages into the worker one by one. The cost grows with the controller's
heap: after provisioning's hundred tasks it was about 0.2 s of every task that followed, a `debug` task included
(docs/benchmarks.md, session 32: a `debug` task 0.23 to 0.33 s after provisioning, 0.03 to 0.05 s without the
collector in the worker; provisioning then a short play, 58 s against 39 s). Neither
ansible-core nor a maintained package offers a setting for this; Python's answer (gc.freeze before a fork, or no
collection in a short-lived child) has to be applied by the forking program.

What it does: `make venv` copies this file into the project's virtualenv with a `.pth` line that imports it, and in
a process started as an Ansible command (`ansible`, `ansible-playbook`, ...) it registers an at-fork hook that
disables the collector in each forked child. A worker runs one task and exits, so the cycles it leaves are freed
with it; reference counting frees everything else as usual. The controller itself, the modules it starts
(fork and exec start a new interpreter) and every other program of the venv are left alone.
JHS_ANSIBLE_WORKER_GC=on leaves the collector on, for a comparison.
"""
from __future__ import annotations

import gc
import os
import sys


def is_ansible_command(argv0: str) -> bool:
    return os.path.basename(argv0).startswith("ansible")


def install() -> None:
    if os.environ.get("JHS_ANSIBLE_WORKER_GC", "off") == "on":
        return
    if sys.argv and is_ansible_command(sys.argv[0]):
        os.register_at_fork(after_in_child=gc.disable)


install()
