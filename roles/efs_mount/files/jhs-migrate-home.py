"""Copy one user's directory from a staging copy into their home, never over an entry already there, and give
every entry of the home its owner. Run by roles/efs_mount/tasks/migrate.yml (docs/migrating-from-chef.md).

Usage: python3 jhs-migrate-home.py SOURCE HOME UID GID
Prints "changed: N copied, M given the owner, K kept" when it copied or changed anything, else "unchanged".

Not a module of its own: Ansible's copy module with remote_src overwrites what differs (force: true) or skips a
whole existing directory (force: false), and coreutils' `cp -n` changed its exit status between releases; a home
the user already wrote in must keep every file, so this walks the tree itself (Python's standard library only,
which every node has).
"""
from __future__ import annotations

import os
import shutil
import sys


def migrate(source: str, home: str, uid: int, gid: int) -> tuple[int, int, int]:
    copied = kept = 0
    for root, dirs, files in os.walk(source):         # symlinks to directories are not followed
        rel = os.path.relpath(root, source)
        target_root = home if rel == "." else os.path.join(home, rel)
        for name in list(dirs):
            src, dst = os.path.join(root, name), os.path.join(target_root, name)
            if os.path.lexists(dst):
                if os.path.islink(dst) or not os.path.isdir(dst):
                    dirs.remove(name)               # something else of the user's is there: keep it, skip the tree
                    kept += 1
                continue
            os.mkdir(dst)
            shutil.copystat(src, dst)
            copied += 1
        for name in files:
            src, dst = os.path.join(root, name), os.path.join(target_root, name)
            if os.path.lexists(dst):
                kept += 1
                continue
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isfile(src):
                shutil.copy2(src, dst)
            else:                                   # a socket, a FIFO, a device: nothing a home needs
                continue
            copied += 1
    owned = _own(home, uid, gid)
    for root, dirs, files in os.walk(home):
        owned += sum(_own(os.path.join(root, name), uid, gid) for name in dirs + files)
    return copied, owned, kept


def _own(path: str, uid: int, gid: int) -> int:
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) == (uid, gid):
        return 0
    os.lchown(path, uid, gid)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        sys.exit(__doc__)
    source, home, uid, gid = argv[1], argv[2], int(argv[3]), int(argv[4])
    if not os.path.isdir(source) or not os.path.isdir(home):
        sys.exit(f"jhs-migrate-home: {source} and {home} must both be directories")
    copied, owned, kept = migrate(source, home, uid, gid)
    print(f"changed: {copied} copied, {owned} given the owner, {kept} kept" if copied or owned
          else f"unchanged ({kept} kept)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
