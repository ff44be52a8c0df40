# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The commit a branch, tag or commit id of a git repository names, read on the control node.

    lookup('jhs_repo_commit', repo_url, repo_version)   the 40-character commit id

Provisioning pins workers to it (the launch template's user-data runs ``ansible-pull -C <commit>``), and the
worker-image bake checks it out, so a branch that moves changes no running worker and no new one until the
operator provisions again.

Why a plugin of our own: ansible.builtin.git resolves a version only on the host it clones to (here: every
worker, at boot, which is what pinning must avoid), and its check mode reports the remote head of a branch but
not the commit of an annotated tag. ``git ls-remote`` lists what the repository has without cloning it; this
lookup picks from its answer what ansible.builtin.git (which ansible-pull runs) would check out: a branch before a
tag of the same name, an annotated tag peeled to its commit. It fails with the setting's name when there is
nothing to pick.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: jhs_repo_commit
short_description: the commit a branch, tag or full commit id of a git repository names
description:
  - Runs C(git ls-remote) on the control node and returns the commit C(repo_version) names in C(repo_url).
  - A full 40- or 64-character commit id is returned as it is (C(ls-remote) lists refs, not commits).
options:
  _terms:
    description: repo_url, then repo_version.
    required: true
"""

import os
import re
import subprocess

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def pick(ls_remote: str, version: str) -> str | None:
    """The commit `version` names in the output of `git ls-remote -- <url> <version> <version>^{}`, or None."""
    refs = {}
    for line in ls_remote.splitlines():
        commit, _, ref = line.partition("\t")
        refs[ref.strip()] = commit.strip()
    for ref in (f"refs/heads/{version}", f"refs/tags/{version}^{{}}", f"refs/tags/{version}", version):
        if ref in refs:
            return refs[ref]
    return None


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if len(terms) != 2:
            raise AnsibleLookupError("jhs_repo_commit takes two terms: repo_url and repo_version")
        url, version = (str(term) for term in terms)
        if _COMMIT.match(version):
            return [version]
        try:
            proc = subprocess.run(["git", "ls-remote", "--", url, version, f"{version}^{{}}"],
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        except FileNotFoundError as err:
            raise AnsibleLookupError("repo_version: git is needed on the control node to pin workers to a commit "
                                     "(git ls-remote)") from err
        except subprocess.TimeoutExpired as err:
            raise AnsibleLookupError(f"repo_url={url}: git ls-remote did not answer within 120 s") from err
        if proc.returncode != 0:
            raise AnsibleLookupError(f"repo_url={url}: git ls-remote failed (exit {proc.returncode}): "
                                     f"{proc.stderr.strip()[-500:]}")
        commit = pick(proc.stdout, version)
        if commit is None:
            raise AnsibleLookupError(
                f"repo_version={version}: {url} has no branch or tag of that name; give a branch, a tag or a full "
                "40-character commit id (workers are pinned to the commit it names)")
        return [commit]
