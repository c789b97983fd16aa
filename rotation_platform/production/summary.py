"""The session's view across pools: each pool's metrics and verdicts, and the combined view weighted
by ``summary_weight`` (70/30 A-share/QDII in the shipped configs).

Every pool row has a ``status`` and a ``reason``:

* ``ok`` -- the stored backtest and target were computed from the session's current data (the data hash
  the pool's stored ``prices`` carry, written by its latest run) and the current config (its
  ``results_config_hash``: every section but storage and notifications);
* ``stale`` -- a stored value was computed from other data or another config (e.g. the config changed
  and the pool was not rerun); its figures are not shown as current;
* ``failed`` -- the pool's latest run stopped before its target portfolio (its run record is still
  ``started``, or the orchestrator says so); what the store holds after that run's last step is from
  an earlier run;
* ``missing`` -- no backtest for the session.

:func:`pool_currency` decides it from the stored values' provenance
(:mod:`rotation_platform.storage.provenance`) and the pool's run record. Only ``ok`` pools show figures;
the combined figures are the summary-weighted averages (equity: the sum) over the ``ok`` pools of
positive weight (pools of weight 0 are shown but not combined). When a weighted pool is not ``ok`` the
combined row leaves it out and says so (status ``missing pools`` when every excluded pool is missing,
``partial`` otherwise; its ``weight`` is the weight it covers) and its thresholds are not all passed.
The verdicts apply the backtest thresholds to each pool and to the combined row.

Beside the strategy each pool row shows its baselines (same costs and lots, see
:mod:`rotation_platform.research.baselines`): ``ew_*`` (equal weight, monthly), ``bench_*`` (the
benchmark bought and held) and ``mom_*`` (20-session momentum top-N) annual return, Sharpe ratio and
maximum drawdown, and the value-added test against equal weight: ``sharpe_diff`` (annualised),
``sharpe_diff_z``, ``sharpe_diff_p`` (one-sided) and ``value_added`` (``significant`` when p < 5%,
``not significant``, or ``untested``). The combined row averages the baselines' figures by weight like
the strategy's; a Sharpe-difference test belongs to one pool, so its figures there are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.config.models import PlatformConfig
from rotation_platform.production.fuses import THRESHOLDS
from rotation_platform.storage.provenance import RUN_END_ASSET, RUN_START_ASSET, provenance_of

__all__ = ["pool_metrics_summary", "pool_currency", "value_added_verdict", "COMBINED", "STATUSES", "CURRENCY_ASSETS",
           "BASELINE_FIGURES", "VALUE_ADDED_FIGURES"]

COMBINED = "COMBINED"
STATUSES = ("ok", "stale", "failed", "missing")
#: what the summary reads per pool to judge it: the current data hash, the figures shown, the decision
CURRENCY_ASSETS = (RUN_START_ASSET, "backtest", RUN_END_ASSET)
FIGURES = ("equity", "annual_return", "max_drawdown", "sharpe", "monthly_win_rate", "annual_turnover", "var_95",
           "benchmark_annual_return")
#: the baselines' figures (averaged by weight in the combined row) and the value-added test's (per pool only)
BASELINE_FIGURES = tuple(f"{p}_{m}" for p in ("ew", "bench", "mom") for m in ("annual_return", "sharpe", "max_drawdown"))
VALUE_ADDED_FIGURES = ("sharpe_diff", "sharpe_diff_z", "sharpe_diff_p")
VALUE_ADDED_ALPHA = 0.05


def value_added_verdict(p_value: object) -> str:
    """``significant`` (one-sided p below 5%: the strategy's Sharpe ratio is higher), ``worse`` (p above
    95%: the strategy's is significantly lower), ``not significant`` or ``untested`` (no p-value)."""
    try:
        p = float(p_value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "untested"
    if not np.isfinite(p):
        return "untested"
    if p < VALUE_ADDED_ALPHA:
        return "significant"
    return "worse" if p > 1.0 - VALUE_ADDED_ALPHA else "not significant"


def _short(h: object) -> str:
    return str(h)[:12] if h else "none"


def pool_currency(config_hash: str, values: Mapping[str, Any | None], run: Mapping[str, Any] | None = None,
                  failure: str | None = None) -> dict[str, Any]:
    """Whether one pool's stored values of a session are current.

    ``values``: asset -> the stored value of the pool's partition (None when absent; ``prices`` gives the
    current data hash); ``run``: the partition's run record; ``failure``: why the latest run failed when
    the orchestrator knows it and the store may not (a run that stopped before writing anything).
    Returns ``{"status", "reason", "data_hash", "config_hash", "assets": {asset: {"status": current |
    superseded | missing, "reason", "data_hash", "config_hash"}}}``.
    """
    prices = values.get(RUN_START_ASSET)
    current = provenance_of(prices) if prices is not None else None
    data_hash = (current or {}).get("data_hash")
    assets: dict[str, dict[str, Any]] = {}
    for asset, value in values.items():
        if value is None:
            assets[asset] = {"status": "missing", "reason": "not stored", "data_hash": None, "config_hash": None}
            continue
        prov = provenance_of(value)
        entry: dict[str, Any] = {"status": "current", "reason": "", "data_hash": (prov or {}).get("data_hash"),
                                 "config_hash": (prov or {}).get("config_hash")}
        if prov is None:
            entry.update(status="superseded", reason="no data/config hash recorded with the value (written by an "
                                                     "older version); rerun the session")
        elif prov.get("config_hash") != config_hash:
            entry.update(status="superseded", reason=f"computed with config {_short(prov.get('config_hash'))}, the "
                                                     f"current config is {_short(config_hash)}")
        elif data_hash is None:
            entry.update(status="superseded", reason="no current data hash (the prices of the session are "
                                                     "missing or carry none) to check it against")
        elif prov.get("data_hash") != data_hash:
            entry.update(status="superseded", reason=f"computed from data {_short(prov.get('data_hash'))}, the "
                                                     f"session's prices are now {_short(data_hash)}")
        assets[asset] = entry

    reasons = []
    if failure:
        reasons.append(failure)
    elif run is not None and run.get("state") == "started":
        reasons.append(f"the latest run of the session stopped before {RUN_END_ASSET} (its run record is still "
                       "'started')")
    superseded = [a for a, e in assets.items() if e["status"] == "superseded"]
    by_reason: dict[str, list[str]] = {}
    for a in superseded:
        by_reason.setdefault(assets[a]["reason"], []).append(a)
    stale_text = "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items())
    if values.get("backtest") is None:
        status, reason = "missing", "no backtest for the session" + (f" ({'; '.join(reasons)})" if reasons else "")
    elif reasons:
        status = "failed"
        reason = "; ".join(reasons) + (f"; stored from an earlier run, superseded: {stale_text}" if superseded else
                                       "; the stored values are from an earlier run on the same data and config")
    elif superseded:
        status, reason = "stale", stale_text
    else:
        status, reason = "ok", ""
    return {"status": status, "reason": reason, "data_hash": data_hash, "config_hash": config_hash,
            "assets": assets}


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
                         backtests: Mapping[str, pd.DataFrame | None],
                         currency: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per pool plus ``COMBINED``; index (session, pool).

    ``currency``: pool -> :func:`pool_currency` (without it a stored backtest counts as current)."""
    t = pd.Timestamp(session)
    rows = []
    for pool in config.pools:
        frame = backtests.get(pool.name)
        judged = (currency or {}).get(pool.name)
        rec: dict[str, object] = {"pool": pool.name, "weight": float(pool.summary_weight)}
        if frame is None or t not in frame.index:
            status = "missing"
            reason = judged["reason"] if judged is not None and judged["status"] == "missing" else \
                "no backtest for the session"
        else:
            status, reason = (judged["status"], judged["reason"]) if judged is not None else ("ok", "")
        if status == "ok":
            last = frame.loc[t]
            rec.update({k: float(last[k]) for k in FIGURES})
            # a backtest stored before the baselines existed has none: NaN, "untested"
            rec.update({k: float(last.get(k, np.nan)) for k in (*BASELINE_FIGURES, *VALUE_ADDED_FIGURES)})
            rec["params"] = str(last["params"])
        else:  # a stale or failed backtest is never shown as current
            rec.update({k: float("nan") for k in (*FIGURES, *BASELINE_FIGURES, *VALUE_ADDED_FIGURES)})
            rec["params"] = ""
        rec["value_added"] = value_added_verdict(rec["sharpe_diff_p"])
        rec.update({"status": status, "reason": reason})
        rec.update(_verdicts(rec, config))
        rows.append(rec)
    table = pd.DataFrame(rows)
    weighted = table[table["weight"] > 0]
    included = weighted[weighted["status"] == "ok"]
    excluded = weighted[weighted["status"] != "ok"]
    comb: dict[str, object] = {"pool": COMBINED, "weight": float(included["weight"].sum()), "params": ""}
    for k in VALUE_ADDED_FIGURES:
        comb[k] = float("nan")
    comb["value_added"] = ""
    for k in (*FIGURES, *BASELINE_FIGURES):
        if not len(included):
            comb[k] = float("nan")
        elif k == "equity":
            comb[k] = float(included[k].sum())
        else:
            comb[k] = float(np.average(included[k], weights=included["weight"]))
    if not len(excluded):
        comb["status"], comb["reason"] = "ok", ""
    else:
        comb["status"] = "missing pools" if (excluded["status"] == "missing").all() else "partial"
        comb["reason"] = ("excludes " + ", ".join(f"{p} ({s})" for p, s in zip(excluded["pool"], excluded["status"]))
                          + f"; covers {comb['weight']:.0%} of the summary weight")
    comb.update(_verdicts(comb, config))
    if len(excluded):
        comb["all_thresholds_ok"] = False  # the whole cannot be judged from a part
    table = pd.concat([table, pd.DataFrame([comb])], ignore_index=True)
    table.index = pd.MultiIndex.from_arrays([[t] * len(table), table.pop("pool")], names=["session", "pool"])
    return table
