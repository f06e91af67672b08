"""``python -m backtest`` is the ``carry`` command."""

from .cli import main

raise SystemExit(main())
