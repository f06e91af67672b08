"""The README stays true: its Python examples run, and CI runs its test command."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_python_examples_run(demo_catalog, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has runnable Python examples"
    for code in blocks:
        if "register(" in code:
            continue  # the strategy-file example: run through the CLI below
        code = code.replace('"data/demo"', repr(str(demo_catalog.root)))
        exec(compile(code, "README.md", "exec"), {})
    assert "sharpe" in capsys.readouterr().out


def test_quick_start_has_two_commands_and_ci_runs_the_second():
    block = README.split("## Quick start", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("carry demo")
    assert "pytest" in lines[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert "Quick start" in ci and "sed -n 2p" in ci


def test_strategy_file_example_runs_from_the_cli(demo_catalog, tmp_path, capsys, monkeypatch):
    from backtest.app.cli import main
    from strategies import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # keep calm_carry out of other tests

    code = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "register(" in b)
    path = tmp_path / "my_strategy.py"
    path.write_text(code)
    out = tmp_path / "out"
    assert (
        main(
            [
                "backtest",
                "--strategy-file",
                str(path),
                "--strategy",
                "calm_carry",
                "--param",
                "level=0.1",
                "--data",
                str(demo_catalog.root),
                "--symbols",
                "DEMOAUSDT,DEMOBUSDT",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "calm_carry" in capsys.readouterr().out
    assert (out / "summary.json").exists()


def test_summary_json_table_is_the_key_table():
    """The README's summary.json table lists exactly the keys of reports.keys, in order, with
    their units and meanings."""
    from reports.keys import KEYS

    section = README.split("### summary.json", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \| (.+) \|$", section, flags=re.M)
    assert [(key, unit.strip(), meaning.strip()) for key, unit, meaning in rows] == [
        (k.key, k.unit, k.meaning) for k in KEYS
    ]


@pytest.mark.shared_data
def test_desk_table_is_what_the_engine_prints():
    """The README's table of the desk rules on real data is the output of
    ``python -m backtest.app.desk_figures`` (every figure true)."""
    from backtest.app.desk_figures import table
    from tests.conftest import shared_data_path

    readme = (REPO / "README.md").read_text()
    assert table(shared_data_path("binance")) in readme
