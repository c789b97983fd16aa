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


def fuse_table(checks: Mapping[str, Sequence[tuple[str, str, bool, str]]]) -> pd.DataFrame:
    """``checks``: pool -> [(asset, check, passed, severity)]; a pool x check grid of PASS/FAIL/WARN."""
    rows = {}
    for pool, items in checks.items():
        rows[pool] = {f"{asset}:{name}": ("pass" if ok else ("WARN" if sev == "WARN" else "FAIL"))
                      for asset, name, ok, sev in items}
    return pd.DataFrame(rows).fillna("-")


def render_run_report(config: PlatformConfig, session: pd.Timestamp, summary: pd.DataFrame | None,
                      checks: Mapping[str, Sequence[tuple[str, str, bool, str]]],
                      targets: Mapping[str, pd.DataFrame], failed: Mapping[str, str]) -> str:
    lines = [f"Session {session.date()}"]
    if summary is not None and not summary.empty:
        s = summary.xs(session, level="session") if "session" in summary.index.names else summary
        view = pd.DataFrame({
            "weight": s["weight"].map(lambda v: f"{v:.0%}"),
            "status": s["status"],
            "equity": s["equity"].map(lambda v: _num(v, "{:,.0f}")),
            "annual": s["annual_return"].map(_pct),
            "max DD": s["max_drawdown"].map(_pct),
            "Sharpe": s["sharpe"].map(_num),
            "win rate": s["monthly_win_rate"].map(_pct),
            "turnover": s["annual_turnover"].map(_num),
            "thresholds": s["all_thresholds_ok"].map(lambda v: "pass" if v else "FAIL"),
            "params traded": s["params"],
        })
        f = config.fuses
        lines += ["", "Metrics (COMBINED = summary-weighted; thresholds: annual >= "
                  f"{f.min_annual_return:.0%}, max DD >= {f.max_drawdown:.0%}, Sharpe >= {f.min_sharpe}, "
                  f"win rate >= {f.min_monthly_win_rate:.0%}, turnover <= {f.max_annual_turnover})",
                  view.to_string()]
    if checks:
        lines += ["", "Fuses (ERROR fuses stop the pool's later steps; WARN only report)", fuse_table(checks).to_string()]
    for pool, reason in failed.items():
        lines += ["", f"{pool}: FAILED - {reason}"]
    for pool, table in targets.items():
        block = table.xs(session, level="session") if "session" in table.index.names else table
        shown = block[(block["target_weight"] > 0) | (block["order_shares"] != 0)]
        trade = pd.Timestamp(block["trade_session"].iloc[0]).date() if len(block) else ""
        lines += ["", f"{pool} target for {trade} (params {block['params'].iloc[0] if len(block) else ''}):"]
        if shown.empty:
            lines.append("  (all cash)")
            continue
        view = pd.DataFrame({
            "weight": shown["target_weight"].map(_pct),
            "price": shown["price"].map(lambda v: _num(v, "{:.3f}")),
            "hold": shown["current_shares"].map(lambda v: f"{v:,.0f}"),
            "target": shown["target_shares"].map(lambda v: f"{v:,.0f}"),
            "order": shown["order_shares"].map(lambda v: f"{v:+,.0f}" if v else ""),
            "value": shown["order_value"].map(lambda v: f"{v:,.0f}" if v else ""),
        })
        lines.append(view.to_string())
    return "\n".join(lines)
