"""``carry compile`` (issue 17, first run): its runs are valid ``carry`` commands, it runs them in
parallel processes on the demo dataset, and a failing run is a clear error, not a traceback."""

from __future__ import annotations

import pytest

from backtest.app import compile as comp
from backtest.app.cli import build_parser, main
from data.errors import CarryError


@pytest.mark.parametrize("name", list(comp.JOBS))
def test_every_job_is_a_valid_carry_command(name, tmp_path):
    args = [a.format(cat=tmp_path / "cat", out=tmp_path / "out") for a in comp.JOBS[name]]
    parsed = build_parser().parse_args(args)
    assert callable(parsed.func)


def test_jobs_cover_the_kernels_real_runs_compile():
    text = " ".join(" ".join(argv) for argv in comp.JOBS.values())
    assert "--per-symbol" in text  # one-column portfolios: the fast kernel
    assert "margin_mode=cross" in text  # the general kernel's cross margin
    sweep = comp.JOBS["sweep on every core (multi-threaded driver)"]
    entries = next(a for a in sweep if a.startswith("entry=")).split("=")[1].split(",")
    exits = next(a for a in sweep if a.startswith("exit=")).split("=")[1].split(",")
    from backtest.app.commands import PARALLEL_BAR_COLUMNS

    # the demo's 8,760 hourly bars x 3 symbols x the sets: enough to run on every core
    assert 8760 * 3 * len(entries) * len(exits) >= PARALLEL_BAR_COLUMNS


def test_runs_jobs_in_processes_and_reports_their_times():
    took = comp.run_compile(workers=2, jobs={"a": ["strategies"], "b": ["strategies", "--json"]})
    assert set(took) == {"a", "b"} and all(t > 0 for t in took.values())


def test_a_failing_run_is_a_clear_error():
    with pytest.raises(CarryError, match=r"the broken run of carry compile failed \(2\).*unknown strategy"):
        comp.run_compile(jobs={"broken": ["backtest", "--data", "{cat}", "--strategy", "nope", "--out", "{out}"]})


def test_cli_reports_a_failing_run_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(
        comp, "JOBS", {"broken": ["backtest", "--data", "{cat}", "--strategy", "nope", "--out", "{out}"]}
    )
    assert main(["compile", "--workers", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("carry: error: the broken run of carry compile failed")
