"""The main job's console report: the pools' summary, fuse verdicts and target portfolios."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rotation_platform.config import PlatformConfig

__all__ = ["render_run_report", "fuse_table"]


def _pct(x: object) -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    return "" if not np.isfinite(v) else f"{v:.1%}"


def _num(x: object, fmt: str = "{:.2f}") -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    return "" if not np.isfinite(v) else fmt.format(v)


def fuse_table(checks: Mapping[str, Sequence[tuple]]) -> pd.DataFrame:
    """``checks``: pool -> [(asset, check, passed, severity[, description])]; a pool x check grid of
    pass/FAIL/WARN."""
    rows = {}
    for pool, items in checks.items():
        rows[pool] = {f"{item[0]}:{item[1]}": ("pass" if item[2] else ("WARN" if item[3] == "WARN" else "FAIL"))
                      for item in items}
    return pd.DataFrame(rows).fillna("-")


def render_run_report(config: PlatformConfig, session: pd.Timestamp, summary: pd.DataFrame | None,
                      checks: Mapping[str, Sequence[tuple]],
                      targets: Mapping[str, pd.DataFrame], failed: Mapping[str, str],
                      capacity: Mapping[str, float] | None = None) -> str:
    """The console report: metrics with the combined view, fuse verdicts, failures and each pool's target
    (the same numbers as the result file and the UI; see :mod:`rotation_platform.reports.orders`)."""
    from rotation_platform.reports.orders import target_lines

    lines = [f"Session {session.date()}"]
    if summary is not None and not summary.empty:
        s = summary.xs(session, level="session") if "session" in summary.index.names else summary
        cap = pd.Series(capacity or {}, dtype=float).reindex(s.index)
        view = pd.DataFrame({
            "weight": s["weight"].map(lambda v: f"{v:.0%}"),
            "status": s["status"],
            "equity": s["equity"].map(lambda v: _num(v, "{:,.0f}")),
            "annual": s["annual_return"].map(_pct),
            "max DD": s["max_drawdown"].map(_pct),
            "Sharpe": s["sharpe"].map(_num),
            "win rate": s["monthly_win_rate"].map(_pct),
            "turnover": s["annual_turnover"].map(_num),
            "capacity": cap.map(lambda v: _num(v, "{:,.0f}")),
            "thresholds": s["all_thresholds_ok"].map(lambda v: "pass" if v else "FAIL"),
            "params traded": s["params"],
        })
        f = config.fuses
        lines += ["", "Metrics (COMBINED = summary-weighted; thresholds: annual >= "
                  f"{f.min_annual_return:.0%}, max DD >= {f.max_drawdown:.0%}, Sharpe >= {f.min_sharpe}, "
                  f"win rate >= {f.min_monthly_win_rate:.0%}, turnover <= {f.max_annual_turnover}/yr; capacity: CNY "
                  f"before a holding exceeds its ADV limit)",
                  view.to_string()]
    if checks:
        grid = fuse_table(checks)
        lines += ["", "Fuses (ERROR fuses stop the pool's later steps; WARN only report)",
                  grid.to_string() if not grid.empty else "  (no check ran)"]
    for pool, reason in failed.items():
        lines += ["", f"{pool}: FAILED - {reason}"]
    for pool, table in targets.items():
        block = table.xs(session, level="session") if "session" in table.index.names else table
        lines += [""] + target_lines(pool, block)
    return "\n".join(lines)
