"""roles/efs_mount/files/jhs-migrate-home.py, which the entry point `migrate` runs once per user (the lab's migration
test runs it through docs/migrating-from-chef.md's command): what it copies, what it never overwrites, and owners.
It gives files another owner, so it runs as root, as CI and the lab do."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "roles" / "efs_mount" / "files" / "jhs-migrate-home.py"
UID = GID = 1000


def run(source, home) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), str(source), str(home), str(UID), str(GID)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_copies_what_is_missing_keeps_what_is_there_and_gives_everything_the_homes_owner(tmp_path):
    source, home = tmp_path / "staging" / "alice", tmp_path / "home" / "alice"
    (source / "data").mkdir(parents=True)
    (source / "notes.txt").write_text("old")
    (source / "data" / "results.csv").write_text("1,2")
    (source / "data" / "latest.csv").symlink_to("results.csv")
    (source / "report").write_text("a file in the old copy")
    os.mkfifo(source / "pipe")
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("new")            # written on the new hub: kept
    (home / "report").mkdir()                          # a directory of the user's where the old copy has a file: kept
    assert run(source, home) == "changed: 3 copied, 6 given the owner, 2 kept"
    assert (home / "notes.txt").read_text() == "new" and (home / "report").is_dir()
    assert (home / "data" / "results.csv").read_text() == "1,2"
    assert os.readlink(home / "data" / "latest.csv") == "results.csv"
    assert not (home / "pipe").exists()               # no FIFO, socket or device in a home
    for path in [home, *home.rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (UID, GID), path
    assert (source / "notes.txt").read_text() == "old" and source.stat().st_uid == 0   # the staging copy untouched
    assert run(source, home) == "unchanged (4 kept)"


def test_a_tree_where_the_user_has_a_file_is_skipped_whole(tmp_path):
    source, home = tmp_path / "s", tmp_path / "h"
    (source / "project").mkdir(parents=True)
    (source / "project" / "main.py").write_text("old")
    home.mkdir()
    (home / "project").write_text("the user's file")
    os.chown(home, UID, GID)
    os.chown(home / "project", UID, GID)
    assert run(source, home) == "unchanged (1 kept)"
    assert (home / "project").read_text() == "the user's file"


def test_refuses_what_is_not_a_directory(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing"), str(tmp_path), "1000", "1000"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "must both be directories" in proc.stderr
