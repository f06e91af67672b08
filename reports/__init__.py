"""carry's reports: return statistics, summary keys, frames and the files a run writes.

Reads results (:class:`backtest.result.BacktestResult`) and markets, never kernels.
Modules: ``figures`` (summary figures of lean runs), ``html`` (self-contained HTML reports),
``outputs`` (atomic output directories), ``regimes`` (funding statistics and regimes for
``carry scan``).
"""
