"""``carry demo``: build the built-in example dataset, compare the main strategies, write a report.

The dataset is generated and deterministic (see :mod:`data.synthetic`): a BTC-like coin,
an alt with months of negative funding while its price holds, and a coin that rallies ~90% in
two days. The comparison runs with 3x perp leverage in isolated margin so that the rally
shows what it does to an unprotected short perp.
"""

from __future__ import annotations

from pathlib import Path

from backtest.app import runs as app
from backtest.app.commands import execute, print_table
from backtest.app.verbosity import flagged, stage
from backtest.config import BacktestConfig
from data.synthetic import DEMO_SYMBOLS, write_demo_catalog
from reports.outputs import check_output_dir

DEMO_STRATEGIES = (
    app.StrategySpec("always_carry"),
    app.StrategySpec("always_reverse"),
    app.StrategySpec("funding_threshold", {"entry_annualized": 0.10, "exit_annualized": 0.02}),
    app.StrategySpec("funding_sign", {"entry_annualized": 0.10}),
    app.StrategySpec("rotation", {"top_k": 1}),
)


def demo_config(data_dir: Path) -> app.RunConfig:
    """The demo's run config: three demo symbols, five strategies, 3x isolated, taker fees."""
    return app.RunConfig(
        data=app.DataSpec(catalog=str(data_dir), symbols=DEMO_SYMBOLS),
        engine=BacktestConfig(initial_capital_quote=10_000.0, perp_leverage=3.0, slippage_bps=2.0),
        strategies=DEMO_STRATEGIES,
    )


def run_demo(
    data_dir: Path = Path("data/demo"),
    out_dir: Path = Path("reports/demo"),
    progress: bool = False,
    overwrite: bool = False,
) -> int:
    """Write the demo dataset to ``data_dir`` and the comparison report to ``out_dir``.

    An existing ``out_dir`` is refused (an ``OutputExistsError`` naming it and ``--overwrite``,
    raised before any work) unless ``overwrite`` is true, like every other command's output.
    The dataset itself is rewritten idempotently: the same rows every time.
    """
    check_output_dir(Path(out_dir), overwrite)
    with stage("write the demo dataset"):
        catalog = write_demo_catalog(data_dir)
    cfg = demo_config(catalog.root)
    run = execute(cfg, progress=progress)
    market, targets, result = run.market, run.targets, run.result
    title = "carry demo: five strategies on the built-in example dataset"
    with stage("write outputs"):
        report = app.report_data(title, cfg, market, targets, result, run.portfolios, run.columns, ranking_by="sharpe")
        app.write_run(
            out_dir,
            cfg=cfg,
            market=market,
            targets=targets,
            result=result,
            portfolios=run.portfolios,
            columns=run.columns,
            report=report,
            overwrite=overwrite,
        )
    print(f"demo dataset: {catalog.root} ({market.n_bars} hourly bars x {market.n_symbols} symbols)")
    print_table(run.portfolios.sort_values("sharpe", ascending=False), title)
    print(f"report: {Path(out_dir) / 'report.html'}")
    flagged(Path(out_dir) / "summary.json", result.flags, run.warnings)
    return 0
