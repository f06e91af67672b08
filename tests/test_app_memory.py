"""carry turns NumPy's huge-page advice off where the kernel would stall on it, unless the user
set NumPy's own switch (backtest.app.memory)."""

from __future__ import annotations

import pytest

from backtest.app import memory


@pytest.mark.parametrize(
    "text,policy,applied",
    [
        ("always defer defer+madvise [madvise] never\n", "madvise", False),
        ("[always] defer defer+madvise madvise never\n", "always", False),
        ("always [defer] defer+madvise madvise never\n", "defer", None),
        ("always defer defer+madvise madvise [never]\n", "never", None),
    ],
)
def test_huge_pages_are_turned_off_only_where_faults_would_compact(tmp_path, monkeypatch, text, policy, applied):
    f = tmp_path / "defrag"
    f.write_text(text)
    monkeypatch.setattr(memory, "_DEFRAG", f)
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert memory.thp_defrag_policy() == policy
    assert memory.configure_hugepages() is applied
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")  # the user's choice wins
    assert memory.configure_hugepages() is None


def test_unknown_kernel_policy_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "_DEFRAG", tmp_path / "missing")
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert memory.thp_defrag_policy() is None and memory.configure_hugepages() is None
