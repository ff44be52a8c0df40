"""The test suite's own layout: pytest imports each test file by its basename (the default "prepend" import mode,
no __init__.py in tests/), so two test files with one basename in different directories stop the whole run at
collection ("import file mismatch"), as tests/test_worker_image.py beside tests/lab/test_worker_image.py did."""
from __future__ import annotations

from collections import Counter

from conftest import ROOT


def test_no_two_test_files_share_a_basename():
    names = Counter(path.name for path in (ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
