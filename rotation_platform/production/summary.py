"""The session's view across pools: each pool's metrics and verdicts, and the combined view weighted
by ``summary_weight`` (70/30 A-share/QDII in the shipped configs).

The combined figures are the summary-weighted averages of the pools' figures as of the session
(pools of weight 0 are shown but not combined); the verdicts apply the backtest thresholds to each
pool and to the combined row. A pool without a backtest for the session is listed as ``missing`` and
fails every verdict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from rotation_platform.config.models import PlatformConfig
from rotation_platform.production.fuses import THRESHOLDS

__all__ = ["pool_metrics_summary", "COMBINED"]

COMBINED = "COMBINED"
FIGURES = ("equity", "annual_return", "max_drawdown", "sharpe", "monthly_win_rate", "annual_turnover", "var_95",
           "benchmark_annual_return")


def _verdicts(row: Mapping[str, float], config: PlatformConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    passed = True
    for metric, key, op in THRESHOLDS:
        v = float(row.get(metric, np.nan))
        lim = float(getattr(config.fuses, key))
        ok = bool(np.isfinite(v) and (v >= lim if op == ">=" else v <= lim))
        out[f"{metric}_ok"] = ok
        passed &= ok
    out["all_thresholds_ok"] = passed
    return out


def pool_metrics_summary(config: PlatformConfig, session: object,
                         backtests: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    """One row per pool plus ``COMBINED``; index (session, pool)."""
    t = pd.Timestamp(session)
    rows = []
    for pool in config.pools:
        frame = backtests.get(pool.name)
        rec: dict[str, object] = {"pool": pool.name, "weight": float(pool.summary_weight)}
        if frame is None or t not in frame.index:
            rec.update({k: float("nan") for k in FIGURES})
            rec.update({"status": "missing", "params": ""})
        else:
            last = frame.loc[t]
            rec.update({k: float(last[k]) for k in FIGURES})
            rec.update({"status": "ok", "params": str(last["params"])})
        rec.update(_verdicts(rec, config))
        rows.append(rec)
    table = pd.DataFrame(rows)
    weighted = table[table["weight"] > 0]
    comb: dict[str, object] = {"pool": COMBINED, "weight": float(weighted["weight"].sum()), "params": ""}
    missing = (weighted["status"] != "ok").any()
    for k in FIGURES:
        if k == "equity":
            comb[k] = float(weighted[k].sum()) if not missing else float("nan")
        else:
            comb[k] = float(np.average(weighted[k], weights=weighted["weight"])) if not missing else float("nan")
    comb["status"] = "missing pools" if missing else "ok"
    comb.update(_verdicts(comb, config))
    table = pd.concat([table, pd.DataFrame([comb])], ignore_index=True)
    table.index = pd.MultiIndex.from_arrays([[t] * len(table), table.pop("pool")], names=["session", "pool"])
    return table
