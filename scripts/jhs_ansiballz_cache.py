"""A bytecode cache for the Python that Ansible's modules import from their AnsiballZ zip, on the control node.

Why this exists: Ansible sends each module run its module and module utilities as a zip (AnsiballZ) in a new
temporary directory, and Python's zipimport compiles every module it imports from a zip from source, each time:
it writes no bytecode into a zip. So each run of an AWS module compiles ansible.module_utils.basic and the
collection's module utilities again, about 0.1 s of CPU of its 0.5 to 0.6 s (docs/benchmarks.md, session 30).
Provisioning runs about 150 modules on the control node, and `make test` thousands. Neither ansible-core nor a
maintained package offers a bytecode cache for AnsiballZ (Mitogen, which keeps one interpreter per host, was
tried and left out: docs/benchmarks.md, session 27).

What it does: `make venv` copies this file into the project's virtualenv with a `.pth` line that imports it, so
every Python of the venv (the control node's modules run on it: `ansible_python_interpreter` is
`ansible_playbook_python` for localhost) replaces zipimport's compile step with one that keeps the compiled code
of a source it compiled under $XDG_CACHE_HOME/jhs-ansiballz/<interpreter tag>/, keyed by the source's SHA-256
(and the optimization level). Only sources inside an AnsiballZ payload (`ansible_*_payload.zip`) are cached: any
other zip import is left to zipimport. A cache entry that cannot be read is compiled again; an entry is written
to a temporary name and renamed, so that modules running side by side never read half an entry. The code's file
names are set to the zip the module runs from, so that tracebacks name the current payload.

The manager play gives the same file to the manager's own Python (playbooks/tasks/module_cache.yml), where the
modules run as root: their cache is root's (/root/.cache/jhs-ansiballz), so no other user can put code in it.

PYTHONDONTWRITEBYTECODE does not turn it off (some machines set it for every process, which would leave the cache
empty); JHS_ANSIBALLZ_CACHE=off does.
"""
from __future__ import annotations

import marshal
import os
import sys
import zipimport

_compile = zipimport._compile_source   # (pathname, source bytes) -> code; the step zipimport runs for a .py
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jhs-ansiballz",
                         sys.implementation.cache_tag or "python")
PAYLOAD_MARK = "_payload.zip" + os.sep          # AnsiballZ writes ansible_<module>_payload.zip


def _entry(source: bytes) -> str:
    import hashlib
    key = hashlib.sha256(b"%d\0" % sys.flags.optimize + source).hexdigest()
    return os.path.join(CACHE_DIR, key[:2], key)


def compile_source(pathname: str, source: bytes):
    """zipimport's _compile_source with a cache for AnsiballZ payloads (see the module's docstring)."""
    if PAYLOAD_MARK not in pathname:
        return _compile(pathname, source)
    entry = _entry(source)
    try:
        with open(entry, "rb") as f:
            code = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        code = _compile(pathname, source)
        if code is not None:
            try:
                os.makedirs(os.path.dirname(entry), exist_ok=True)
                partial = f"{entry}.{os.getpid()}"
                with open(partial, "wb") as f:
                    marshal.dump(code, f)
                os.replace(partial, entry)
            except OSError:
                pass                    # a read-only or full cache costs the compile, nothing else
        return code
    import _imp
    _imp._fix_co_filename(code, pathname)
    return code


def install() -> None:
    if os.environ.get("JHS_ANSIBALLZ_CACHE", "on") == "off":
        return
    if getattr(zipimport._compile_source, "__module__", None) != __name__:
        zipimport._compile_source = compile_source


install()
