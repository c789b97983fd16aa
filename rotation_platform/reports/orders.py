"""Tomorrow's orders as an execution desk reads them: the run result (JSON) and its markdown/console views.

:func:`pool_result` turns one pool's outputs for a session -- the target portfolio, the backtest row,
the capacity table and the fuse verdicts -- into a JSON-able dict; :func:`run_result` wraps the pools of
a run. The schema is ``docs/run-result.schema.json`` (described in ``docs/orders.md``); the console
report and the UI's target table show the same numbers.

Every money figure of a pool (prices, values, equity, cash, commissions, capacity) is in the pool's
currency, which the pool's entry names (``currency``, from the target table's ``currency`` column: the
pool's :meth:`~rotation_platform.config.models.PlatformConfig.pool_currency`; a table stored before pools
had one is CNY). ``metrics.capacity`` is the capacity in that currency; ``metrics.capacity_cny``, its
historical name, is written for a CNY pool only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.reports.tables import markdown_table

__all__ = ["SCHEMA_ID", "SCHEMA_VERSION", "SCHEMA_FILE", "DEFAULT_CURRENCY", "currency_of", "pool_result",
           "run_result", "failed_pool_result",
           "target_markdown", "target_lines", "write_result", "shown_rows", "excluded_funds", "baselines_of",
           "value_added_of"]

SCHEMA_ID = "rotation-platform/run-result"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "run-result.schema.json"

METRICS = ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
           "monthly_win_rate", "annual_turnover", "cost_drag", "var_95", "cvar_95", "benchmark_annual_return",
           "benchmark_sharpe", "benchmark_max_drawdown", "live_sessions", "mean_invested")
#: the currency of a target table stored before pools had one (every pool was an A-share pool then)
DEFAULT_CURRENCY = "CNY"
TARGET_COLUMNS = ("target_weight", "price", "lot", "current_shares", "target_shares", "order_shares", "side",
                  "target_value", "order_value", "est_commission", "simulated_shares", "adv_utilisation", "tradeable")


def _num(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _int(x: object) -> int:
    v = _num(x)
    return int(round(v)) if v is not None else 0


def _money(x: object) -> float:
    """A money figure to the cent (of the pool's currency)."""
    return round(float(x), 2)


def currency_of(block: pd.DataFrame) -> str:
    """The currency of a target table (its ``currency`` column; :data:`DEFAULT_CURRENCY` without one)."""
    if "currency" in block.columns and len(block):
        value = block["currency"].iloc[0]
        if isinstance(value, str) and value:
            return value
    return DEFAULT_CURRENCY


def _day(x: object) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NaT:
        return None
    ts = pd.Timestamp(x)
    return None if pd.isna(ts) else str(ts.date())


def shown_rows(block: pd.DataFrame) -> pd.DataFrame:
    """The funds a desk needs to see: targeted, held (actual or simulated) or ordered."""
    keep = (block["target_weight"] > 0) | (block["target_shares"] != 0) | (block["current_shares"] != 0) \
        | (block["order_shares"] != 0)
    return block[keep]


def excluded_funds(block: pd.DataFrame) -> list[dict[str, str]]:
    """The funds left out of the session's universe (data ended, or an ERROR finding inside the exclusion
    window), with why, from a target table of one session (index symbol)."""
    if "excluded" not in block.columns:
        return []
    rows = block[block["excluded"].astype(bool)]
    reasons = rows["excluded_reason"] if "excluded_reason" in rows.columns else pd.Series("", index=rows.index)
    return [{"symbol": str(s), "reason": str(r or "")} for s, r in reasons.items()]


def pool_result(pool: str, session: object, target: pd.DataFrame, backtest_row: Mapping[str, object] | None,
                checks: Sequence[tuple[str, str, bool, str, str]] = (), *, capacity: Mapping[str, object] | None = None,
                wfo: Mapping[str, object] | None = None) -> dict[str, object]:
    """One pool's result for ``session`` (``target``: the target table of that session, index symbol;
    ``checks``: (asset, check, passed, severity, description))."""
    t = pd.Timestamp(session)
    block = target.xs(t, level="session") if "session" in (target.index.names or []) else target
    first = block.iloc[0]
    equity = float(first["equity"])
    cash_after = float(first["cash_after"])
    rows = shown_rows(block)
    targets = []
    for symbol, rec in rows.iterrows():
        targets.append({
            "symbol": str(symbol),
            "weight": float(rec["target_weight"]),
            "price": _num(rec["price"]),
            "lot": _int(rec["lot"]),
            "current_shares": _int(rec["current_shares"]),
            "target_shares": _int(rec["target_shares"]),
            "order_shares": _int(rec["order_shares"]),
            "side": str(rec["side"]) or None,
            "value": _money(rec["target_value"]),
            "order_value": _money(rec["order_value"]),
            "est_commission": _money(rec["est_commission"]),
            "simulated_shares": _int(rec["simulated_shares"]),
            "adv_utilisation": _num(rec["adv_utilisation"]),
            "tradeable": bool(rec["tradeable"]),
        })
    orders = [{"symbol": o["symbol"], "side": o["side"], "shares": abs(o["order_shares"]), "price": o["price"],
               "value": o["order_value"]} for o in sorted(targets, key=lambda o: o["order_shares"]) if o["order_shares"]]
    metrics = {k: _num(backtest_row.get(k)) for k in METRICS} if backtest_row is not None else {}
    currency = currency_of(block)
    if capacity is not None:
        cap = _num(capacity.get("capacity", capacity.get("capacity_cny")))
        metrics["capacity"] = cap
        if currency == "CNY":
            metrics["capacity_cny"] = cap
        metrics["max_adv_utilisation"] = _num(capacity.get("max_utilisation"))
        metrics["positions_without_adv"] = _int(capacity.get("positions_without_adv"))
    params = str(first["params"])
    out: dict[str, object] = {
        "pool": pool,
        "status": None,  # with_checks, below
        "reason": None,
        "session": _day(t),
        "currency": currency,
        "trade_session": _day(first["trade_session"]),
        "rebalance": bool(first["rebalance"]),
        "scheduled_rebalance": bool(first["scheduled_rebalance"]),
        "next_rebalance": _day(first.get("next_rebalance")),
        "params": {"label": params, **_params_of(params)},
        "book": {"kind": str(first["book"]), "source": str(first["book_source"])},
        "equity": _money(equity),
        "cash": _money(first["cash"]),
        "cash_after": _money(cash_after),
        "invested_after": float(first["invested_after"]),
        "cash_fraction_after": cash_after / equity if equity > 0 else None,
        "targets": targets,
        "orders": orders,
        "excluded": excluded_funds(block),
        "metrics": metrics,
        "baselines": baselines_of(backtest_row),
        "value_added": value_added_of(backtest_row),
        "fuses": None,
    }
    if wfo is not None:
        dsr = wfo.get("dsr") or {}
        out["validation"] = {"oos_objective": _num(wfo.get("oos_objective")), "efficiency": _num(wfo.get("efficiency")),
                             "pbo": _num((wfo.get("pbo") or {}).get("pbo")), "deflated_sharpe": _num(dsr.get("dsr")),
                             "oos_sharpe_annualised": _num(dsr.get("sharpe_annualised"))}
    return with_checks(out, checks)


def with_checks(result: Mapping[str, object], checks: Sequence[tuple[str, str, bool, str, str]]) -> dict[str, object]:
    """A copy of :func:`pool_result`'s ``result`` judged by ``checks`` instead: ``blocked`` with the failed
    ERROR checks as the reason, else ``ok``, and the fuse verdicts (everything else is the stored values')."""
    failed = [c for c in checks if not c[2] and c[3] == "ERROR"]
    out = dict(result)
    out["status"] = "blocked" if failed else "ok"
    out["reason"] = "; ".join(f"{a}:{n}: {d}" for a, n, _, _, d in failed) or None
    out["fuses"] = _fuses(checks)
    return out


BASELINE_KEYS = {"equal_weight": "ew", "benchmark": "bench", "momentum": "mom"}
BASELINE_METRICS = ("total_return", "annual_return", "volatility", "sharpe", "max_drawdown", "annual_turnover")


def baselines_of(backtest_row: Mapping[str, object] | None) -> dict[str, dict[str, object]] | None:
    """The baselines' equity (the pool's currency) and metrics of the session from the backtest row (None
    without one, or for a row stored before the baselines existed)."""
    if backtest_row is None or "ew_equity" not in backtest_row:
        return None
    return {name: {"equity": _num(backtest_row.get(f"{px}_equity")),
                   **{k: _num(backtest_row.get(f"{px}_{k}")) for k in BASELINE_METRICS}}
            for name, px in BASELINE_KEYS.items()}


def value_added_of(backtest_row: Mapping[str, object] | None) -> dict[str, object] | None:
    """The Sharpe-difference test of the strategy against equal weight from the backtest row."""
    if backtest_row is None or "sharpe_diff_p" not in backtest_row:
        return None
    from rotation_platform.production.summary import VALUE_ADDED_ALPHA, value_added_verdict

    p = _num(backtest_row.get("sharpe_diff_p"))
    return {"against": "equal_weight", "test": "jobson_korkie_memmel",
            "sharpe_diff": _num(backtest_row.get("sharpe_diff")), "z": _num(backtest_row.get("sharpe_diff_z")),
            "p_value": p, "alpha": VALUE_ADDED_ALPHA, "beats": bool(p is not None and p < VALUE_ADDED_ALPHA),
            "verdict": value_added_verdict(p)}


def _params_of(label: str) -> dict[str, object]:
    """``top3_reb20_lb252_ic_buf1`` -> its parameters."""
    out: dict[str, object] = {}
    for part in label.split("_"):
        for key, name in (("top", "top_n"), ("reb", "rebalance_sessions"), ("lb", "ic_lookback"), ("buf", "buffer")):
            if part.startswith(key) and part[len(key):].isdigit():
                out[name] = int(part[len(key):])
        if part in ("equal", "ic"):
            out["weighting"] = part
    return out


def failed_pool_result(pool: str, session: object, reason: str,
                       checks: Sequence[tuple[str, str, bool, str, str]] = (), *,
                       currency: str | None = None) -> dict[str, object]:
    """A pool whose run failed or was stopped by a fuse before its target: no orders (``currency``: the
    pool's, when the caller knows it)."""
    return {"pool": pool, "status": "failed", "reason": reason, "session": _day(session), "currency": currency,
            "trade_session": None,
            "rebalance": False, "scheduled_rebalance": False, "next_rebalance": None, "params": None, "book": None,
            "equity": None, "cash": None, "cash_after": None, "invested_after": None, "cash_fraction_after": None,
            "targets": [], "orders": [], "excluded": [], "metrics": {}, "baselines": None, "value_added": None,
            "fuses": _fuses(checks)}


def _fuses(checks: Sequence[tuple[str, str, bool, str, str]]) -> list[dict[str, object]]:
    return [{"asset": a, "check": n, "passed": bool(p), "severity": s, "description": d} for a, n, p, s, d in checks]


def run_result(config_name: str, config_hash: str, sessions: Iterable[object], pools: Sequence[dict[str, object]],
               summary: Mapping[str, object] | None = None, *, generated_at: dt.datetime | None = None,
               config_file: str | None = None,
               currency: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, object]:
    """The run's result. ``summary``: the session summary's combined row (over the pools current for the
    session; its ``reason`` names the pools left out); ``currency``: pool -> the summary's ``status`` and
    ``reason`` for every configured pool (``ok``, ``stale``, ``failed``, ``missing``), written as
    ``currency`` when given. A pool this run failed is ``failed`` there whatever the summary said."""
    days = [_day(s) for s in sessions]
    status = "ok" if pools and all(p["status"] == "ok" for p in pools) else "failed"
    extra: dict[str, object] = {}
    if currency is not None:
        run_failed = {str(p["pool"]): str(p.get("reason") or "") for p in pools if p["status"] == "failed"}
        extra["currency"] = {
            str(pool): ({"status": "failed", "reason": f"this run failed ({run_failed[str(pool)]})"}
                        if str(pool) in run_failed and rec.get("status") != "failed" else
                        {"status": str(rec.get("status")), "reason": str(rec.get("reason") or "") or None})
            for pool, rec in currency.items()}
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "generated_at": (generated_at or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
        "config": {"name": config_name, "hash": config_hash, "file": config_file},
        "session": days[-1] if days else None,
        "sessions": days,
        "status": status,
        "pools": list(pools),
        "summary": None if summary is None else _plain(summary),
        **extra,
    }


def _plain(value: object) -> object:
    """A summary value as JSON: numbers (flags too, as 1/0) finite or null, mappings and lists element-wise."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, int, np.floating, np.integer, np.bool_)):
        return _num(value)
    return value


def write_result(result: Mapping[str, object], path: str | Path) -> Path:
    """Write ``result`` as JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _header(first: pd.Series, currency: str = DEFAULT_CURRENCY) -> str:
    trade = _day(first["trade_session"])
    reb = "rebalance" if bool(first["rebalance"]) else "no rebalance (holdings kept, no orders)"
    nxt = _day(first.get("next_rebalance"))
    equity = float(first["equity"])
    cash_after = float(first["cash_after"])
    frac = cash_after / equity if equity > 0 else float("nan")
    return (f"for {trade}: {reb}" + (f"; next rebalance {nxt}" if nxt and not bool(first["rebalance"]) else "")
            + f"; params {first['params']}; book {first['book']} ({first['book_source']}); equity {equity:,.0f} "
              f"{currency}, cash {float(first['cash']):,.0f} -> {cash_after:,.0f} {currency} after the orders "
              f"({frac:.1%} cash, "
              f"{float(first['invested_after']):.1%} invested)")


def target_markdown(block: pd.DataFrame) -> str:
    """The target table of one session (index symbol) with its header line, for the UI."""
    first = block.iloc[0]
    rows = shown_rows(block)[["target_weight", "price", "lot", "current_shares", "target_shares", "order_shares",
                              "side", "target_value", "order_value", "adv_utilisation"]]
    model = "weight" if bool(first["rebalance"]) else "model_weight"
    rows = rows.rename(columns={"target_weight": model, "target_value": "value"})
    body = markdown_table(rows) if len(rows) else "_all cash_"
    out = f"**Target {_header(first, currency_of(block))}**\n\n{body}"
    excluded = excluded_funds(block)
    if excluded:
        out += "\n\n**Left out of the universe**\n\n" + "\n".join(f"- `{e['symbol']}`: {e['reason']}" for e in excluded)
    return out


def target_lines(pool: str, block: pd.DataFrame) -> list[str]:
    """The console view of one pool's target (same numbers as the JSON and the UI)."""
    from rotation_platform.reports.tables import format_frame

    first = block.iloc[0]
    lines = [f"{pool} target {_header(first, currency_of(block))}:"]
    excluded = excluded_funds(block)
    rows = shown_rows(block)
    if rows.empty:
        lines.append("  (all cash)")
    else:
        view = rows[["target_weight", "price", "current_shares", "target_shares", "order_shares", "order_value"]]
        text = format_frame(view, {"current_shares": "shares", "order_value": "money"})
        none = (view["order_shares"] == 0).to_numpy()
        text.loc[none, ["order_shares", "order_value"]] = ""
        model = "weight" if bool(first["rebalance"]) else "model weight"
        text.columns = [model, "price", "hold", "target", "order", "order value"]
        lines.append(text.to_string())
    lines += [f"  left out of the universe: {e['symbol']} -- {e['reason']}" for e in excluded]
    return lines
