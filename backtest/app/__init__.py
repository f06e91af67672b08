"""The application layer: the only code that imports ``strategies`` and ``reports`` together.

``cli`` (argument parsing, the ``carry`` command), ``commands`` (one function per command),
``runs`` (run configs, running a strategy grid, walk-forward, summaries and outputs of a run),
``demo`` (the built-in example), ``scale`` (memory-bounded sweeps on processes or Dask) and the
benchmarks (``python -m backtest.app.bench``, ``bench_load``, ``bench_scale``).
"""
