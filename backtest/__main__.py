"""``python -m backtest`` is the ``carry`` command.

``python -m`` puts the working directory first on ``sys.path``, so a user's ``data/__init__.py``,
``data.py``, ``reports.py`` or ``strategies/`` there would be imported instead of carry's own
``data``, ``reports`` and ``strategies`` packages. Like ``python -P`` (and like the ``carry``
console script, which never has the working directory on its path), this drops that entry
before carry's modules are imported. It is kept when carry itself is imported from the working
directory (running from a source checkout), where those names are carry's.
"""

import os
import sys
from pathlib import Path


def _drop_working_directory() -> None:
    if sys.flags.safe_path or not sys.path:  # python -P: nothing was prepended
        return
    cwd = Path.cwd().resolve()
    if Path(sys.path[0] or os.curdir).resolve() != cwd:
        return
    if Path(__file__).resolve().parent.parent == cwd:  # a source checkout: the cwd is carry's root
        return
    del sys.path[0]


_drop_working_directory()

from backtest.app.cli import main  # noqa: E402  (after the path fix)

raise SystemExit(main())
