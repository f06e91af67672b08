"""``python -m backtest`` is the ``carry`` command."""

from backtest.app.cli import main

raise SystemExit(main())
