"""Tables as a quant reads them: row labels kept, numbers formatted by what they are.

:func:`markdown_table` renders a frame as GitHub-flavoured markdown with its index (fund symbols,
factor names, metric names, pools, sessions) as the first column(s). :func:`format_value` formats one
cell by its column's kind, chosen from the column name (:func:`column_kind`) unless given:

=========  ===================================================================  ==============
kind       columns                                                              shown as
=========  ===================================================================  ==============
shares     ``shares``, ``*_shares``, ``lot``, ``orders``, counts (``n_*``, ...)  ``1,234,500``
order      ``order_shares``, ``shares_vs_simulated``                            ``+12,300``
pct        weights, returns, drawdowns, utilisation, rates, coverage, exposure  ``12.34%``
money      values, equity, cash, ADV, capacity, costs (``cny`` is an alias)     ``1,234,567``
price      ``price``, ``close``, ``open``                                       ``1.555``
number     anything else                                                        4 significant
=========  ===================================================================  ==============

A money column is shown in its own currency; which one it is (a pool's ``currency``, the summary's
``currency``) is stated beside the table, never assumed to be CNY.
"""

from __future__ import annotations

import math

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["markdown_table", "format_value", "column_kind", "format_frame", "number_text"]


def number_text(x: object, spec: str = "{:.3g}") -> str:
    """``x`` formatted with ``spec`` (a ``str.format`` pattern), or ``n/a`` when it is not a finite number."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return spec.format(v) if math.isfinite(v) else "n/a"

_PCT = ("weight", "return", "drawdown", "utilisation", "win_rate", "coverage", "invested", "exposure",
        "cost_drag", "volatility", "var_", "cvar", "turnover_share", "flat_share", "hit_rate", "pbo", "mode_share",
        "change_rate", "max_abs_monthly", "month_to_date", "mean_abs_ic", "share")
_SHARES = ("shares", "lot", "orders", "liquidations", "n_holdings", "sessions", "breaches", "without_adv_count",
           "rows", "count", "funds", "selected", "tail_size", "n_windows", "grid_size", "positions_without_adv")
_MONEY = ("value", "equity", "cash", "adv", "capacity", "commission", "slippage", "costs", "dividends", "amount",
        "traded", "limit", "var_cny", "cvar_cny", "capital")
_PRICE = ("price", "close", "open", "high", "low")


def column_kind(name: object) -> str:
    """The kind of a column from its name (see the module docstring)."""
    n = str(name).lower()
    if n in ("order_shares", "shares_vs_simulated", "order"):
        return "order"
    if n in ("shares", "lot") or n.endswith("_shares") or n.startswith("n_") or n.endswith("_count"):
        return "shares"
    if n in _PRICE or n.endswith("_price") or n.endswith("_close"):
        return "price"
    if any(k in n for k in ("sharpe", "sortino", "calmar", "icir", "t_stat", "dsr", "ratio", "efficiency",
                            "objective", "score", "rank", "ic_mean", "ic_std", "beta", "information")):
        return "number"
    if any(k in n for k in _PCT):
        return "pct"
    if any(n == k or n.endswith("_" + k) or n.startswith(k + "_") or n.endswith(k) for k in _SHARES):
        return "shares"
    if any(k in n for k in _MONEY):
        return "money"
    return "number"


def format_value(value: object, kind: str = "number") -> str:
    """One cell: NaN/None empty, timestamps as dates, booleans as yes/no, numbers by ``kind``."""
    if value is None:
        return ""
    if isinstance(value, pd.Timestamp):
        return "" if pd.isna(value) else (str(value.date()) if value == value.normalize() else str(value))
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if kind == "order":
            return f"{int(value):+,d}" if value else "0"
        if kind in ("pct",):
            return f"{float(value):.2%}"
        return f"{int(value):,d}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if np.isnan(v):
            return ""
        if np.isinf(v):
            return "∞" if v > 0 else "-∞"
        if kind == "shares":
            return f"{v:,.0f}" if v == round(v) else f"{v:,.2f}"
        if kind == "order":
            return "0" if v == 0 else (f"{v:+,.0f}" if v == round(v) else f"{v:+,.2f}")
        if kind == "pct":
            return f"{v:.2%}"
        if kind in ("money", "cny"):
            return "0" if v == 0 else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}")
        if kind == "price":
            return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.3f}"   # a price is shown to its tick, never rounded to units
        return f"{v:.4g}"
    if value is pd.NaT:
        return ""
    return str(value)


def format_frame(frame: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``frame`` with every cell formatted as text (index kept as it is)."""
    kinds = dict(kinds or {})
    out = {}
    for col in frame.columns:
        kind = kinds.get(str(col), column_kind(col))
        out[col] = [format_value(v, kind) for v in frame[col].tolist()]
    return pd.DataFrame(out, index=frame.index, columns=frame.columns)


def _escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, float_format: str | None = None, *, index: bool = True,
                   kinds: Mapping[str, str] | None = None, max_rows: int | None = None) -> str:
    """A GitHub-flavoured markdown table with the index as the leading column(s) (see the module
    docstring for the number formats; ``float_format`` forces one format on every float column)."""
    if frame.empty:
        return "_none_"
    shown = frame if max_rows is None else frame.head(max_rows)
    if float_format is not None:
        cells = shown.apply(lambda s: [float_format.format(v) if isinstance(v, float) and np.isfinite(v)
                                       else format_value(v) for v in s])
    else:
        cells = format_frame(shown, kinds)
    names: list[str] = []
    rows_idx: list[list[str]] = [[] for _ in range(len(shown))]
    if index:
        idx = shown.index
        names = [str(n) if n is not None else "" for n in (idx.names or [None])]
        if not any(names) and not isinstance(idx, pd.MultiIndex):
            names = [""]
        for r, key in enumerate(idx.tolist()):
            parts = key if isinstance(key, tuple) else (key,)
            rows_idx[r] = [format_value(p) if not isinstance(p, str) else p for p in parts]
    head = "| " + " | ".join([*(_escape(n) for n in names), *(_escape(c) for c in shown.columns)]) + " |"
    rule = "| " + " | ".join("---" for _ in range(len(names) + len(shown.columns))) + " |"
    body = ["| " + " | ".join([*(_escape(x) for x in rows_idx[r]), *(_escape(v) for v in row)]) + " |"
            for r, row in enumerate(cells.itertuples(index=False))]
    lines = [head, rule, *body]
    if max_rows is not None and len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more rows_")
    return "\n".join(lines)
