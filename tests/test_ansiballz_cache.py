"""scripts/jhs_ansiballz_cache.py: the control node's bytecode cache for what Ansible's modules import from their
AnsiballZ zip. Each case runs a new Python of the project's venv (where `make venv` installed the cache), with its
own cache directory."""
from __future__ import annotations

import hashlib
import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SOURCE = b"VALUE = 1\n\n\ndef fail():\n    raise ValueError('from the module')\n"
PROBE = """
import sys, traceback
sys.path.insert(0, sys.argv[1])
import payload_mod
print(payload_mod.VALUE)
try:
    payload_mod.fail()
except ValueError:
    print(traceback.extract_tb(sys.exc_info()[2])[-1].filename)
"""


def make_zip(directory: Path, name: str, source: bytes = SOURCE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("payload_mod.py", source)
    return path


def run_probe(archive: Path, cache_home: Path, **env: str) -> list[str]:
    proc = subprocess.run([str(VENV_PYTHON), "-c", PROBE, str(archive)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONDONTWRITEBYTECODE": "1", **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def entries(cache_home: Path) -> list[Path]:
    return sorted(p for p in (cache_home / "jhs-ansiballz").rglob("*") if p.is_file())


def entry_for(cache_home: Path, source: bytes) -> Path:
    key = hashlib.sha256(b"0\0" + source).hexdigest()
    return cache_home / "jhs-ansiballz" / sys.implementation.cache_tag / key[:2] / key


def test_make_venv_installed_the_cache():
    proc = subprocess.run([str(VENV_PYTHON), "-c", "import zipimport; print(zipimport._compile_source.__module__)"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "jhs_ansiballz_cache"


def test_a_payloads_module_is_compiled_once_then_read_from_the_cache_with_the_current_file_name(tmp_path):
    cache = tmp_path / "cache"
    first = make_zip(tmp_path / "run1", "ansible_x_payload.zip")
    assert run_probe(first, cache) == ["1", f"{first}/payload_mod.py"]
    (entry,) = entries(cache)
    assert entry == entry_for(cache, SOURCE)            # keyed by the source, even with PYTHONDONTWRITEBYTECODE
    # What is in the cache is what runs: an entry made to say 2 is read instead of compiling the source.
    entry.write_bytes(marshal.dumps(compile("VALUE = 2\ndef fail():\n    raise ValueError\n", "elsewhere", "exec")))
    second = make_zip(tmp_path / "run2", "ansible_x_payload.zip")
    assert run_probe(second, cache) == ["2", f"{second}/payload_mod.py"]   # the traceback names this run's zip
    assert entries(cache) == [entry]


def test_an_unreadable_entry_is_compiled_again_and_replaced(tmp_path):
    cache = tmp_path / "cache"
    entry = entry_for(cache, SOURCE)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"\x00 not marshal data")
    archive = make_zip(tmp_path, "ansible_x_payload.zip")
    assert run_probe(archive, cache)[0] == "1"
    assert marshal.loads(entry.read_bytes()).co_filename == f"{archive}/payload_mod.py"
    assert not [p for p in entries(cache) if p != entry]          # no partial file left behind


def test_other_zips_and_the_off_switch_leave_the_cache_alone(tmp_path):
    cache = tmp_path / "cache"
    assert run_probe(make_zip(tmp_path / "a", "library.zip"), cache)[0] == "1"
    assert run_probe(make_zip(tmp_path / "b", "ansible_x_payload.zip"), cache, JHS_ANSIBALLZ_CACHE="off")[0] == "1"
    assert entries(cache) == []


def test_ansible_modules_on_the_control_node_fill_it_once(tmp_path):
    """A real playbook on localhost (the venv's Python, as the inventories set it): the first run caches
    ansible.module_utils.basic among the rest; the second adds nothing and still succeeds."""
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.command: 'true'\n      changed_when: false\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    counts = []
    for _ in range(2):
        proc = subprocess.run([str(VENV_PYTHON.parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               "-e", f"ansible_python_interpreter={VENV_PYTHON}", str(playbook)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        counts.append(len(entries(cache)))
    basic = Path(subprocess.run([str(VENV_PYTHON), "-c", "import ansible.module_utils.basic as b; print(b.__file__)"],
                                capture_output=True, text=True, check=True).stdout.strip()).read_bytes()
    assert entry_for(cache, basic).is_file()
    assert counts[0] > 10 and counts[1] == counts[0], counts
