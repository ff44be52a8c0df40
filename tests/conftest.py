"""Shared fixtures: a local AWS endpoint (moto server) on loopback, and the repository paths."""
from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REGION = "eu-west-1"


@functools.cache
def _names_owner():
    import importlib.util
    spec = importlib.util.spec_from_file_location("jhs_names", ROOT / "plugins" / "module_utils" / "jhs_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jhs_names(cluster: str) -> dict:
    """Every name of a cluster (SSM paths under "ssm", resources...), from their one owner,
    plugins/module_utils/jhs_names.py (tests/test_names.py pins them), so no test keeps a copy."""
    return _names_owner().names(cluster)


def home_owner() -> tuple[int, int]:
    """(uid, gid) of a user's home directory, from their one owner (plugins/module_utils/jhs_names.py)."""
    home = _names_owner().home()
    return home["uid"], home["gid"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_endpoint(*options: str, log: Path | None = None):
    """The lab's endpoint (moto_server with the lab's mends of moto's defects, lab/motoserver.py) on 127.0.0.1, with
    `options` (e.g. --enforce-iam) and its output in `log` if given; yields its URL, and stops it."""
    port = free_port()
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "lab.motoserver", *options, "-H", "127.0.0.1", "-p", str(port)],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if log:
            out.close()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server on 127.0.0.1 for the whole session; tests keep apart by cluster name or reset it."""
    with local_endpoint() as url:
        yield url


def endpoint_env(endpoint: str) -> dict:
    """Environment for a process (ansible-playbook, boto3) talking to the local endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    return env


@pytest.fixture
def aws_env(moto_endpoint):
    return endpoint_env(moto_endpoint)


def credentials_later(env: dict, directory: Path) -> tuple[dict, Callable[..., None]]:
    """`env` with no AWS credentials anywhere (none in the environment, a shared credentials file not written yet, no
    instance metadata), as a process on a just-booted instance can find them; and the function that writes them,
    for a test to call once the process has looked and found none."""
    creds = directory / "credentials"
    env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_CONFIG_FILE=str(directory / "config"),
               AWS_EC2_METADATA_DISABLED="true", PYTHONUNBUFFERED="1")

    def write(key: str = "testing") -> None:
        creds.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {key}\n")
    return env, write


@pytest.fixture
def boto(moto_endpoint):
    """boto3 client factory bound to the local endpoint."""
    import boto3

    def client(service: str, region: str = REGION):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return client


@functools.lru_cache(maxsize=1)
def git_repo() -> tuple[str, dict[str, str]]:
    """A git repository on disk standing in for repo_url (provisioning resolves repo_version with git ls-remote):
    branch main, an annotated tag v1.2.3 on its first commit, and main one commit further. Returns its file://
    URL and the commit of each name."""
    directory = Path(tempfile.mkdtemp(prefix="jhs-repo-"))
    atexit.register(shutil.rmtree, directory, True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "jhs", "GIT_AUTHOR_EMAIL": "jhs@example.test",
           "GIT_COMMITTER_NAME": "jhs", "GIT_COMMITTER_EMAIL": "jhs@example.test"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "first")
    git("tag", "-a", "v1.2.3", "-m", "a release")
    tagged = git("rev-parse", "HEAD")
    git("commit", "-q", "--allow-empty", "-m", "second")
    return directory.as_uri(), {"v1.2.3": tagged, "main": git("rev-parse", "HEAD")}


def task_sections(output: str) -> list[tuple[str, str]]:
    """A playbook run's output (the default callback's) cut into (task name, what followed its header) pairs."""
    sections = re.split(r"^TASK \[(.+?)\].*$", output, flags=re.M)
    return list(zip(sections[1::2], sections[2::2]))


_HOST_LINE = r"^(?:ok|changed|skipping|fatal|failed): \[(?P<host>[^\]]+)\]"


def host_failure(output: str, host: str) -> tuple[str, str]:
    """In a run over many hosts (one per test case), the host's failure: the name of the task that failed it, and what
    was printed of it (the default callback prints a failure's `[ERROR]` block, then the host's `fatal:` line, or its
    `failed:` item lines; the block starts after the line before it, the lines end at another host's line, a task
    or a play)."""
    for task, section in task_sections(output):
        first = re.search(rf"^(?:fatal|failed): \[{re.escape(host)}\]", section, re.M)
        if not first:
            continue
        before = [m.end() for m in re.finditer(_HOST_LINE + ".*$", section[:first.start()], re.M)]
        start = before[-1] if before else 0
        rest = section[first.start():]
        end = re.search(rf"^(?:(?:ok|changed|skipping|fatal|failed): \[(?!{re.escape(host)}\])|PLAY |\[ERROR\])",
                        rest, re.M)
        return task, section[start:first.start()] + (rest[:end.start()] if end else rest)
    raise AssertionError(f"{host} did not fail:\n" + output[-4000:])


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST"), timeout=10)


# --- the running local lab (tests under tests/lab/) -------------------------------------------------------
# One conftest for the whole suite: tests import helpers `from conftest import ...`, so a second conftest
# module would shadow this one. Lab helpers live in tests/lab/labutil.py.
sys.path.insert(0, str(ROOT / "tests" / "lab"))
sys.path.insert(0, str(ROOT))  # the lab package (lab.hubclient)
from labutil import FIRST_SITE_LOG, lab_admin_keys, lab_cmd, read_env  # noqa: E402


SESSION_STARTED = time.time()


# Each pytest-xdist worker's time (its first test's start, its last test's end, the time its tests took: setup, call
# and teardown), and each scheduling unit's (below): where it ran, from when to when. Printed at the end, so a run
# says which worker was the critical path and what the others ran while they waited.
WORKER_TIMES: dict[str, list[float]] = {}
UNIT_TIMES: dict[str, list] = {}

# And the CPU each unit's processes on this machine used: the worker's own and its children's once they ended
# (ansible-playbook, molecule, the moto servers a module starts), measured where the test runs and carried to the
# controller in the report's user_properties. Containers are not among them (they are the engine's), nor the lab's
# endpoint and reconciler (`lab up` detaches them); the run's total for the engine's containers and for the whole
# machine is printed beside it. A make test run is CPU-bound on 2 cores, so this says where to cut.
CPU_STARTED = pytest.StashKey[float]()


def process_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (user and system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)   # a wrapper: around every other implementation, before the test's fixtures start
def pytest_runtest_setup(item):
    set_niceness(item)                # (below) the other worker's processes yield to the lab's
    item.stash[CPU_STARTED] = process_cpu()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report (setup, call, teardown) carries the CPU since the previous one's, or since setup began."""
    report = yield
    if CPU_STARTED in item.stash:
        now = process_cpu()
        report.user_properties.append(("cpu_seconds", now - item.stash[CPU_STARTED]))
        item.stash[CPU_STARTED] = now
    return report


def machine_cpu() -> dict[str, float]:
    """CPU seconds used so far by the whole machine (/proc/stat) and by the Docker engine's containers (the cgroup
    v1 cpuacct of /docker, as on these machines); a figure a machine cannot give is left out."""
    found = {}
    with contextlib.suppress(OSError, ValueError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for v in fields[:8]) - int(fields[3]) - int(fields[4])   # all but idle and iowait
        found["machine"] = busy / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError):
        found["containers"] = int(Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage").read_text()) / 1e9
    return found


MACHINE_CPU_AT_START = machine_cpu()


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)   # set on the controller by xdist (the worker that ran the test)
    worker = node.gateway.id if node is not None else "main"
    first, last, busy = WORKER_TIMES.get(worker, [report.start, report.stop, 0.0])
    WORKER_TIMES[worker] = [min(first, report.start), max(last, report.stop), busy + report.duration]
    unit = scheduling_unit(report.nodeid)
    cpu = dict(report.user_properties).get("cpu_seconds", 0.0)
    _, first, last, busy, used = UNIT_TIMES.get(unit, [worker, report.start, report.stop, 0.0, 0.0])
    UNIT_TIMES[unit] = [worker, min(first, report.start), max(last, report.stop), busy + report.duration, used + cpu]


def pytest_terminal_summary(terminalreporter):
    """Each worker's and unit's time (above); then the lab's first site.yml run of this session (tests/lab/test_site.py's
    site fixture, the longest step of a test run): its recap, slowest tasks (profile_tasks) and phases (jhs_phases), so
    a slow run says where the time went."""
    if WORKER_TIMES:
        terminalreporter.section("each worker's time")
        began = min(first for first, _, _ in WORKER_TIMES.values())
        for worker, (first, last, busy) in sorted(WORKER_TIMES.items()):
            terminalreporter.write_line(f"{worker}: tests from {first - began:.0f} s to {last - began:.0f} s of the "
                                        f"run, {busy:.0f} s of test time")
        terminalreporter.write_line("units taking 60 s or more, by start (worker, from, to, test time, CPU of the "
                                    "unit's processes on this machine):")
        for unit, (worker, first, last, busy, used) in sorted(UNIT_TIMES.items(), key=lambda kv: kv[1][1]):
            if busy >= 60:
                terminalreporter.write_line(f"  {worker} {first - began:6.0f} s {last - began:6.0f} s "
                                            f"{busy:6.0f} s {used:6.0f} s  {unit}")
        others = sum(used for unit, (_, _, _, busy, used) in UNIT_TIMES.items() if busy < 60)
        terminalreporter.write_line(f"  the units under 60 s: {others:.0f} s of CPU in all")
        now = machine_cpu()
        spent = {k: now[k] - MACHINE_CPU_AT_START[k] for k in now if k in MACHINE_CPU_AT_START}
        terminalreporter.write_line("CPU over the run: " + (", ".join(
            f"{what} {seconds:.0f} s" for what, seconds in sorted(spent.items())) or "not readable here")
            + " (the machine's includes the containers'; the units' figures do not)")
    log = FIRST_SITE_LOG
    if not log.exists() or log.stat().st_mtime < SESSION_STARTED:
        return
    text = log.read_text()
    start = text.rfind("PLAY RECAP")
    terminalreporter.section("the lab's first site.yml run: where its time went")
    terminalreporter.write_line(text[start:] if start >= 0 else text[-6000:])


@pytest.fixture(scope="session")
def lab():
    """The lab, up for the session (brought up if needed; left up for the next make target)."""
    lab_cmd("up")
    return read_env()


@pytest.fixture
def lab_aws(lab):
    import boto3

    def client(service: str):
        return boto3.client(service, endpoint_url=lab["AWS_ENDPOINT_URL"], region_name=lab["AWS_DEFAULT_REGION"],
                            **lab_admin_keys())
    return client


# --- two pytest workers (pytest-xdist; see the Makefile) --------------------------------------------------
# Tests that share a running thing run in one worker, in file order: every test under tests/lab/ shares the
# one lab (and some take it down and up again); the hub tests share the images built once per session
# (jh_images). Every other module is a unit of its own, so its module-scoped fixture runs once. (xdist's
# `--dist loadgroup` cannot do this with pytest 9: it renames items through an attribute pytest no longer
# reads; a scheduler that names each test's unit is xdist's documented hook for it.)
# The molecule scenario jupyterhub loads the same images into its nodes (built by jh_images first, so it builds none).
SHARED_UNITS = {"tests/test_jupyterhub_config.py": "jupyterhub-images", "tests/test_jupyterhub_hub.py": "jupyterhub-images",
                "tests/test_molecule.py::test_molecule_scenario_passes[jupyterhub]": "jupyterhub-images"}


def scheduling_unit(nodeid: str) -> str:
    """The scheduling unit of a test: what it shares with other tests (see above)."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/lab/"):
        return "lab"
    return SHARED_UNITS.get(nodeid, SHARED_UNITS.get(path, path))


@pytest.hookimpl(optionalhook=True)   # `-p no:xdist`: the hook does not exist
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedThingsScheduling(LoadScopeScheduling):
        """xdist's loadscope with the units of scheduling_unit(): a unit runs whole in one worker, in order."""

        def _split_scope(self, nodeid: str) -> str:
            return scheduling_unit(nodeid)

    # Units go out in the order of pytest_collection_modifyitems below, not by their number of tests (loadscope's
    # default reorder), which would hand out the many quick unit tests first and the lab fourth.
    config.option.loadscopereorder = False
    return SharedThingsScheduling(config, log)


# The order units go out in, each worker taking the next when it is free. The lab's unit first: it is the run's
# critical path (its tests share one lab, one after another). Then the other long units, longest first, so that no
# long one starts near the end; the quick ones fill in after them in collection order. During the lab's first
# site.yml (its longest step: image builds and engine installs in the lab's nodes) the other worker runs teardown's
# and provisioning's playbooks, which run on this machine at a lower priority (below) and start no container; the hub
# images' unit and molecule, whose builds and nodes are containers that a niceness does not reach, come after.
# Session 25's run: teardown 480 s, provisioning 1000 s, the hub images' unit 1300 s, molecule 430 s (the scenarios
# swarm and docker_repo), preflight 140 s.
UNIT_ORDER = ("lab", "tests/test_teardown.py", "tests/test_provision.py", "jupyterhub-images", "tests/test_molecule.py",
              "tests/test_aws_cluster_preflight.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        unit = scheduling_unit(item.nodeid)
        return UNIT_ORDER.index(unit) if unit in UNIT_ORDER else len(UNIT_ORDER)
    items.sort(key=rank)   # stable: the tests of a unit, and the units after those named, keep their order


# The lab's worker is the critical path, and much of its time is CPU work on this machine and in the lab's nodes
# (site.yml, image builds). The other worker's tests run at a lower priority (nice 10), so that its processes
# (ansible-playbook, the moto servers it starts) yield to the lab's. Containers are not reached: Docker puts every
# container, the lab's nodes and molecule's alike, in one cgroup. Root can go back to 0 for the lab's tests; another
# user cannot, and the worker then stays at 10 (a unit never moves between workers).
OTHERS_NICENESS = 10


def set_niceness(item) -> None:
    """Called first in the test's setup (pytest_runtest_setup, above), before its fixtures start anything."""
    wanted = 0 if scheduling_unit(item.nodeid) == "lab" else OTHERS_NICENESS
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, 0) != wanted:
            os.setpriority(os.PRIO_PROCESS, 0, wanted)
