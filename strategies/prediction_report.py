"""How good is the predicted funding rate? ``python -m strategies.prediction_report``.

Loads symbols from a catalog, predicts each settlement's rate from information available
before it (:func:`strategies.predicted_funding.predicted_funding_rate`) and prints, per
symbol, the mean absolute error in bps and the sign accuracy, next to the naive forecast
"next rate = last settled rate". The last line is the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from data.errors import CarryError
from data.loader import DataWarning, load_market
from strategies.predicted_funding import prediction_accuracy


def accuracy_table(catalog, symbols, start=None, end=None, lead_bars: int = 0):
    """The accuracy table (a DataFrame indexed by symbol) for ``symbols`` in ``catalog``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        market = load_market(catalog, symbols, start=start, end=end)
    return prediction_accuracy(market, lead_bars=lead_bars)


def _bars(text: str) -> int:
    """An argparse type: a whole number of bars >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of bars >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strategies.prediction_report", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="catalog directory")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,XTZUSDT")
    p.add_argument("--start", default=None)
    p.add_argument("--end", default=None)
    p.add_argument("--lead-bars", type=_bars, default=0, help="predict this many bars before the settlement bar (>= 0)")
    args = p.parse_args(argv)
    try:
        table = accuracy_table(
            args.data, [s.strip() for s in args.symbols.split(",") if s.strip()], args.start, args.end, args.lead_bars
        )
    except CarryError as exc:  # one line, no traceback; exit 2 for settings, 1 for data
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(json.dumps(table.rename_axis("symbol").reset_index().to_dict(orient="records"), default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
