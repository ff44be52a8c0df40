"""plugins/lookup/jhs_repo_commit.py: the commit repo_version names, which provisioning pins workers to.

Against real repositories on disk (git ls-remote over file://), no mock: a branch, an annotated and a lightweight
tag, a branch and a tag of the same name, a full commit id, a name the repository lacks, a URL with no repository.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess

import pytest
from ansible.errors import AnsibleLookupError
from conftest import ROOT

_SPEC = importlib.util.spec_from_file_location("jhs_repo_commit", ROOT / "plugins/lookup/jhs_repo_commit.py")
jhs_repo_commit = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(jhs_repo_commit)

ENV = {**os.environ, "GIT_AUTHOR_NAME": "jhs", "GIT_AUTHOR_EMAIL": "jhs@example.test",
       "GIT_COMMITTER_NAME": "jhs", "GIT_COMMITTER_EMAIL": "jhs@example.test"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("repo")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], env=ENV, check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q", "-b", "main")
    commits = {}
    for n in range(1, 5):
        git("commit", "-q", "--allow-empty", "-m", f"commit {n}")
        commits[n] = git("rev-parse", "HEAD")
    git("tag", "-a", "v1", "-m", "annotated", commits[1])
    git("tag", "light", commits[2])
    git("branch", "feature/x", commits[3])
    git("branch", "same", commits[3])
    git("tag", "-a", "same", "-m", "a tag named like a branch", commits[1])
    git("branch", "x", commits[2])        # a branch whose name is the tail of another (feature/x)
    return path.as_uri(), commits


def resolve(url: str, version: str) -> str:
    (commit,) = jhs_repo_commit.LookupModule().run([url, version])
    return commit


@pytest.mark.parametrize("version,n", [("main", 4), ("v1", 1), ("light", 2), ("feature/x", 3), ("x", 2), ("same", 3)],
                         ids=["branch", "annotated-tag-peeled", "lightweight-tag", "branch-with-slash",
                              "branch-not-a-longer-name", "branch-before-tag"])
def test_a_name_resolves_to_the_commit_a_fresh_checkout_would_have(repo, version, n):
    url, commits = repo
    assert resolve(url, version) == commits[n]


def test_a_full_commit_id_is_kept_as_it_is(repo):
    url, commits = repo
    assert resolve(url, commits[3]) == commits[3]


def test_a_name_the_repository_lacks_names_the_setting(repo):
    url, _ = repo
    with pytest.raises(AnsibleLookupError, match=r"^repo_version=nope: .* has no branch or tag of that name; give a branch, "
                                                 r"a tag or a full 40-character commit id"):
        resolve(url, "nope")
    with pytest.raises(AnsibleLookupError, match=r"^repo_version=abc1234: "):   # an abbreviated id is not enough
        resolve(url, "abc1234")


def test_a_url_with_no_repository_names_the_setting_and_gits_answer(tmp_path):
    with pytest.raises(AnsibleLookupError, match=r"^repo_url=file://.*: git ls-remote failed \(exit 128\): .+"):
        resolve((tmp_path / "none").as_uri(), "main")


def test_two_terms_are_required():
    with pytest.raises(AnsibleLookupError, match="two terms"):
        jhs_repo_commit.LookupModule().run(["only-a-url"])
