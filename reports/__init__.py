"""carry's reports: return statistics, summary keys, frames and the files a run writes.

Reads results (:class:`backtest.result.BacktestResult`) and markets, never kernels.
Modules: ``keys`` (the one table of summary keys: unit, meaning, label, format), ``metrics``
(every return statistic, per portfolio, per column, streamed over time chunks and over
walk-forward windows), ``frames`` (labels, summaries and the equity/components/events frames),
``report_data`` (what a run's HTML report shows), ``html`` (self-contained HTML reports),
``outputs`` (atomic output directories, summary.json), ``scan`` (``carry scan`` output),
``regimes`` (funding statistics and regimes for ``carry scan``), ``trades`` (round trips with
their PnL by component), ``periods`` (monthly and yearly returns by component),
``benchmarks`` (spot buy-and-hold and the funding of a hedge held throughout).
"""
