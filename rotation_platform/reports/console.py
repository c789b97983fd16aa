"""The main job's console report: the pools' summary, fuse verdicts and target portfolios.

A pool is shown with the status the session's summary gives it (``ok``, ``stale``, ``failed``,
``missing``), and as ``failed`` when this run of it failed, whatever the summary says; only ``ok``
pools show figures, and a line under the table says why each other pool is not current and what the
combined row leaves out. A second table puts each pool's strategy beside its baselines (equal weight
monthly, the benchmark bought and held, 20-session momentum top-N; same costs and lots) with the
value-added verdict against equal weight.

Money is shown in each row's currency: with every pool in one currency the legend names it (as it always
did for CNY); with several, a ``currency`` column does, each pool is in its own and a combined row in its
``currency`` (the summary's base currency, or one ``COMBINED <CUR>`` row per currency when no FX series
converts them; :mod:`rotation_platform.production.summary`). A pool whose figures are from an earlier
session than the summary's -- a pool on another exchange's calendar -- gets a line ``QDII_US as of
2021-10-04 (XNYS)`` under the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rotation_platform.config import PlatformConfig
from rotation_platform.production.summary import as_of_lines, is_combined

__all__ = ["render_run_report", "fuse_table", "baseline_view"]


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


def _current_only(s: pd.DataFrame, failed: Mapping[str, str]) -> pd.DataFrame:
    """The session's summary rows with every pool this run failed shown as failed (no figures)."""
    s = s.copy()
    if "reason" not in s.columns:
        s["reason"] = ""
    from rotation_platform.production.summary import BASELINE_FIGURES, VALUE_ADDED_FIGURES

    figures = [c for c in ("equity", "annual_return", "max_drawdown", "sharpe", "monthly_win_rate",
                           "annual_turnover", "var_95", "benchmark_annual_return", *BASELINE_FIGURES,
                           *VALUE_ADDED_FIGURES) if c in s.columns]
    for pool, why in failed.items():
        if pool in s.index and s.loc[pool, "status"] != "failed":
            if s.loc[pool, "status"] == "ok" and float(s.loc[pool, "weight"]) > 0 and "COMBINED" in s.index:
                # the combined figures counted it as current: they are not shown either
                rows = [r for r in s.index if is_combined(r) and (r == "COMBINED" or "currency" not in s.columns
                                                                  or s.loc[r, "currency"] == s.loc[pool, "currency"])]
                for row in rows:
                    s.loc[row, figures] = np.nan
                    s.loc[row, "all_thresholds_ok"] = False
                    s.loc[row, "status"] = "partial"
                    s.loc[row, "reason"] = f"counted {pool} as current, which this run failed; not shown"
            s.loc[pool, "status"], s.loc[pool, "reason"] = "failed", f"this run failed ({why})"
            s.loc[pool, figures] = np.nan
            s.loc[pool, "params"] = ""
            s.loc[pool, "all_thresholds_ok"] = False
            if "value_added" in s.columns:
                s.loc[pool, "value_added"] = "untested"
    return s


def baseline_view(s: pd.DataFrame) -> pd.DataFrame:
    """Each pool's strategy beside its baselines: annual return / Sharpe / max DD, the Sharpe difference
    against equal weight (annualised) with z and one-sided p, and the verdict (summary rows, index pool)."""
    def col(name: str) -> pd.Series:
        return s[name] if name in s.columns else pd.Series(np.nan, index=s.index)

    def trio(prefix: str) -> pd.Series:
        a, sh, dd = (col(f"{prefix}{k}") for k in ("annual_return", "sharpe", "max_drawdown"))
        return pd.Series([f"{_pct(x)} / {_num(y)} / {_pct(z)}" if np.isfinite(float(x)) else ""
                          for x, y, z in zip(a, sh, dd)], index=s.index)

    verdict = s["value_added"] if "value_added" in s.columns else pd.Series("untested", index=s.index)
    return pd.DataFrame({
        "strategy": trio(""),
        "equal weight": trio("ew_"),
        "benchmark B&H": trio("bench_"),
        "momentum": trio("mom_"),
        "Sharpe diff": col("sharpe_diff").map(lambda v: _num(v, "{:+.2f}")),
        "z": col("sharpe_diff_z").map(_num),
        "p": col("sharpe_diff_p").map(lambda v: _num(v, "{:.3f}")),
        "beats EW": verdict.map(lambda v: {"significant": "yes", "not significant": "NO", "worse": "NO (worse)"}.get(str(v), "-")),
    })


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
        s = _current_only(s, failed)
        cap = pd.Series(capacity or {}, dtype=float).reindex(s.index)
        cap[s["status"] != "ok"] = np.nan  # this run's capacity of a pool the summary does not show as current
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
        shown = [str(c) for c in s["currency"].tolist() if str(c)] if "currency" in s.columns else []
        currencies = list(dict.fromkeys(shown)) or ["CNY"]
        if len(currencies) > 1:
            view.insert(2, "currency", s["currency"])
            money = "each row's currency"
        else:
            money = currencies[0]
        f = config.fuses
        lines += ["", "Metrics (COMBINED = summary-weighted; thresholds: annual >= "
                  f"{f.min_annual_return:.0%}, max DD >= {f.max_drawdown:.0%}, Sharpe >= {f.min_sharpe}, "
                  f"win rate >= {f.min_monthly_win_rate:.0%}, turnover <= {f.max_annual_turnover}/yr; capacity: "
                  f"{money} before a holding exceeds its ADV limit)",
                  view.to_string()]
        lines += [f"  {line}" for line in as_of_lines(s, config, session)]
        lines += [f"  {pool}: {str(rec['status']).upper()} - {rec['reason']}" for pool, rec in s.iterrows()
                  if rec["status"] != "ok" and str(rec.get("reason", "") or "")]
        lines += ["", "Baselines (same costs, lots and corporate actions; annual / Sharpe / max DD) and the value "
                  "added against equal weight (Sharpe difference a year, Jobson-Korkie-Memmel z, one-sided p; "
                  "beats EW: p < 5%)", baseline_view(s).to_string()]
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
