"""``carry demo``: build the built-in example dataset and show what is in it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .demo_data import DEMO_SYMBOLS, write_demo_catalog
from .io import write_text_atomic
from .loader import load_market


def funding_overview(market) -> list[dict]:
    """Per symbol: settlements, summed and annualized funding, share negative, mean basis."""
    rows = []
    years = (market.index[-1] - market.index[0]).total_seconds() / (365 * 86400) if market.n_bars > 1 else np.nan
    for j, sym in enumerate(market.symbols):
        mask = market.funding_count[:, j] > 0
        rates = market.funding_rate[mask, j]
        rows.append({
            "symbol": sym,
            "bars": int(market.valid[:, j].sum()),
            "settlements": int(market.funding_count[:, j].sum()),
            "funding_sum": float(rates.sum()),
            "funding_annualized": float(rates.sum() / years) if years else float("nan"),
            "share_negative": float((rates < 0).mean()) if rates.size else float("nan"),
            "mean_basis_bps": float(np.nanmean(market.basis[:, j]) * 1e4),
        })
    return rows


def run_demo(data_dir: Path = Path("data/demo"), out_dir: Path = Path("reports/demo")) -> int:
    catalog = write_demo_catalog(data_dir)
    market = load_market(catalog, list(DEMO_SYMBOLS))
    rows = funding_overview(market)
    print(f"demo dataset: {catalog.root} ({market})")
    print(f"{'symbol':<11} {'bars':>6} {'settl.':>6} {'funding sum':>12} {'annualized':>11} {'neg share':>9} {'basis bps':>9}")
    for r in rows:
        print(f"{r['symbol']:<11} {r['bars']:>6} {r['settlements']:>6} {r['funding_sum']:>12.4%} "
              f"{r['funding_annualized']:>11.2%} {r['share_negative']:>9.1%} {r['mean_basis_bps']:>9.2f}")
    out = Path(out_dir) / "funding_overview.json"
    write_text_atomic(out, json.dumps(rows, indent=2))
    print(f"wrote {out}")
    return 0
