"""The session's view across pools: each pool's metrics and verdicts, and the combined view weighted
by ``summary_weight`` (70/30 A-share/QDII in the shipped configs).

Contract. :func:`summarise` ``(config, date, per_pool, fx=None)`` is the one entry point: ``per_pool``
maps each pool to its latest session **on or before** the summary date on the pool's own calendar
(:func:`pool_sessions`; pools on other exchanges do not share sessions) and the stored values of that
session (:class:`PoolAsOf`, or ``(session_used, values[, judged])``). Every row carries ``as_of`` (the
session its figures are from, ``YYYY-MM-DD``; empty when the pool has none by then) and ``currency``
(the pool's, :meth:`~rotation_platform.config.models.PlatformConfig.pool_currency`; money figures such
as ``equity`` are in it). :func:`pool_metrics_summary` is the same with every pool as of the date itself.

Currencies. When every weighted pool has one currency, the combined row is computed exactly as it
always was, in that currency. With several:

* when ``summary.fx`` gives a ``date,rate`` series (:mod:`rotation_platform.data.fx`) for every currency
  but ``summary.base_currency``, ``COMBINED`` is in the base currency. For a pool as of session ``a``
  every rate is the latest on or before the date it is needed for (``a`` itself, the pool's session
  before ``a``, the close before its first live return), never a later one: ``equity`` is converted at
  the rate of ``a``; ``daily_return`` -- the session's return -- becomes ``(1 + r)(1 + f) - 1`` with
  ``f`` the currency's move over that session; the compounded-return figures (``annual_return``, the
  benchmark's and the baselines') become ``(1 + a)(X_a / X_start) ** (annualisation / n) - 1`` over the
  ``n`` live sessions. The risk figures (Sharpe, drawdown, win rate, turnover, VaR) stay each pool's
  own; the reason says so, lists the rates used and every FX finding (a rate more than five days old,
  a gap of more than five days in the file, no rate early enough);
* otherwise nothing is added across currencies: one row per currency, ``COMBINED <CUR>``
  (:func:`combined_label`; weights renormalised within the currency), and a ``COMBINED`` row of status
  ``per currency`` without figures that names the series missing (``summary.fx.<CUR>``); its
  ``all_thresholds_ok`` holds when every currency's row passes.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.config.models import PlatformConfig
from rotation_platform.data.fx import FxSeries, load_fx
from rotation_platform.production.fuses import THRESHOLDS
from rotation_platform.storage.provenance import RUN_END_ASSET, RUN_START_ASSET, provenance_of

__all__ = ["summarise", "PoolAsOf", "pool_sessions", "combined_label", "is_combined", "as_of_lines",
           "combined_result", "summary_fx", "pool_metrics_summary", "pool_currency", "value_added_verdict", "COMBINED", "STATUSES",
           "CURRENCY_ASSETS",
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
#: read from the backtest row beside the figures: the session's return and the sessions of live returns
_EXTRA_FIGURES = ("daily_return", "live_sessions")
#: the compounded-return figures converted into the base currency over the backtest period
ANNUAL_FIGURES = ("annual_return", "benchmark_annual_return", "ew_annual_return", "bench_annual_return",
                  "mom_annual_return")
#: columns after the original ones: each row's currency and session, the latest return and its span
NEW_COLUMNS = ("daily_return", "live_sessions", "currency", "as_of")
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


def combined_label(currency: str) -> str:
    """The label of the combined row of the pools in ``currency`` (``COMBINED USD``): written when the
    pools' currencies cannot be converted into one (see the module docstring)."""
    return f"{COMBINED} {currency}"


def is_combined(label: object) -> bool:
    """Whether a summary row label is a combined row (``COMBINED`` or ``COMBINED <currency>``)."""
    return str(label) == COMBINED or str(label).startswith(COMBINED + " ")


@dataclass(frozen=True)
class PoolAsOf:
    """One pool's input to the summary of a date: its latest session on or before the date (None: it
    has none), the stored backtest value(s) of that session (rows by session; None when not stored) and
    :func:`pool_currency` of that session (None: a stored backtest counts as current)."""

    session: pd.Timestamp | None
    backtest: pd.DataFrame | None
    judged: Mapping[str, Any] | None = None


def _as_pool_input(item: object) -> PoolAsOf:
    if isinstance(item, PoolAsOf):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3):
        day, values = item[0], item[1]
        judged = item[2] if len(item) == 3 else None
        frame = values.get("backtest") if isinstance(values, Mapping) else values
        return PoolAsOf(None if day is None else pd.Timestamp(day).normalize(), frame, judged)  # type: ignore[arg-type]
    raise TypeError(f"a pool's summary input is a PoolAsOf or (session_used, values[, judged]), got {type(item)}")


def pool_sessions(config: PlatformConfig, session: object) -> dict[str, pd.Timestamp | None]:
    """Each pool's latest session on or before ``session`` on the pool's own calendar (None when its
    calendar has none by then)."""
    from rotation_platform.calendars import get_calendar
    from rotation_platform.errors import CalendarError

    day = pd.Timestamp(session).normalize()
    out: dict[str, pd.Timestamp | None] = {}
    for pool in config.pools:
        try:
            out[pool.name] = pd.Timestamp(get_calendar(pool.calendar).session_on_or_before(day)).normalize()
        except (CalendarError, ValueError):
            out[pool.name] = None
    return out


def _day_text(t: pd.Timestamp | None) -> str:
    return "" if t is None or pd.isna(t) else str(pd.Timestamp(t).date())


def _pool_row(config: PlatformConfig, name: str, d: pd.Timestamp, given: PoolAsOf) -> dict[str, object]:
    pool = config.pool(name)
    a = given.session
    frame, judged = given.backtest, given.judged
    rec: dict[str, object] = {"pool": name, "weight": float(pool.summary_weight),
                              "currency": config.pool_currency(name), "as_of": _day_text(a)}
    if a is None:
        status, reason = "missing", f"no {pool.calendar} session on or before {d.date()}"
    elif frame is None or a not in frame.index:
        status = "missing"
        reason = judged["reason"] if judged is not None and judged["status"] == "missing" else \
            "no backtest for the session" + (f" {a.date()} ({pool.calendar})" if a != d else "")
    else:
        status, reason = (judged["status"], judged["reason"]) if judged is not None else ("ok", "")
    if status == "ok":
        last = frame.loc[a]  # type: ignore[union-attr]
        rec.update({k: float(last[k]) for k in FIGURES})
        # a backtest stored before the baselines existed has none: NaN, "untested"
        rec.update({k: float(last.get(k, np.nan)) for k in (*BASELINE_FIGURES, *VALUE_ADDED_FIGURES,
                                                              *_EXTRA_FIGURES)})
        rec["params"] = str(last["params"])
    else:  # a stale or failed backtest is never shown as current
        rec.update({k: float("nan") for k in (*FIGURES, *BASELINE_FIGURES, *VALUE_ADDED_FIGURES, *_EXTRA_FIGURES)})
        rec["params"] = ""
    rec["value_added"] = value_added_verdict(rec["sharpe_diff_p"])
    rec.update({"status": status, "reason": reason})
    rec.update(_verdicts(rec, config))
    return rec


def _combine(config: PlatformConfig, label: str, weighted: pd.DataFrame, values: pd.DataFrame, currency: str,
             as_of: str) -> dict[str, object]:
    """The combined row of the ``weighted`` pools (``values``: their figures, converted where needed)."""
    included = weighted[weighted["status"] == "ok"]
    excluded = weighted[weighted["status"] != "ok"]
    vals = values.loc[included.index]
    comb: dict[str, object] = {"pool": label, "weight": float(included["weight"].sum()), "currency": currency,
                               "as_of": as_of, "params": ""}
    for k in VALUE_ADDED_FIGURES:
        comb[k] = float("nan")
    comb["value_added"] = ""
    for k in (*FIGURES, *BASELINE_FIGURES, "daily_return"):
        if not len(included):
            comb[k] = float("nan")
        elif k == "equity":
            comb[k] = float(vals[k].sum())
        else:
            comb[k] = float(np.average(vals[k], weights=included["weight"]))
    if not len(excluded):
        comb["status"], comb["reason"] = "ok", ""
    else:
        comb["status"] = "missing pools" if (excluded["status"] == "missing").all() else "partial"
        comb["reason"] = ("excludes " + ", ".join(f"{p} ({s})" for p, s in zip(excluded["pool"], excluded["status"]))
                          + f"; covers {comb['weight']:.0%} of the summary weight")
    comb.update(_verdicts(comb, config))
    if len(excluded):
        comb["all_thresholds_ok"] = False  # the whole cannot be judged from a part
    return comb


def _convert(config: PlatformConfig, table: pd.DataFrame, fx: Mapping[str, FxSeries]) -> tuple[pd.DataFrame,
                                                                                              list[str], list[str]]:
    """The pools' figures in the base currency (see the module docstring), the rates used and the
    findings about them."""
    from rotation_platform.calendars import get_calendar
    from rotation_platform.errors import CalendarError

    base = config.summary.base_currency
    ann = float(config.backtest.annualisation)
    out = table.copy()
    used: list[str] = []
    findings: list[str] = []
    for i, rec in table.iterrows():
        cur = str(rec["currency"])
        if cur == base or rec["status"] != "ok":
            continue
        series = fx[cur]
        a = pd.Timestamp(rec["as_of"])
        pool = config.pool(str(rec["pool"]))
        cal = get_calendar(pool.calendar)
        x_a, on = series.rate_on_or_before(a)
        issues = series.findings_for(a)
        try:
            prev = pd.Timestamp(cal.previous_session(a))
        except CalendarError:
            prev = None
        x_p = series.rate_on_or_before(prev)[0] if prev is not None else float("nan")
        if prev is not None:
            issues += series.findings_for(prev)
        n = float(rec.get("live_sessions", np.nan))
        x_s = float("nan")
        if not np.isfinite(n):
            issues.append(f"{rec['pool']}: its stored backtest has no live_sessions (written by an older version), "
                          f"so its annual returns are not converted to {base}; rerun the session")
        if np.isfinite(n) and n >= 1:
            try:
                start = pd.Timestamp(cal.session_offset(a, -int(n)))
            except CalendarError:
                start = None
            if start is not None:
                x_s = series.rate_on_or_before(start)[0]
                issues += series.findings_for(start)
                issues += [g for g in series.gaps if _gap_within(g, start, a)]
        out.loc[i, "equity"] = float(rec["equity"]) * x_a
        out.loc[i, "daily_return"] = (1.0 + float(rec["daily_return"])) * (x_a / x_p) - 1.0
        growth = (x_a / x_s) ** (ann / n) if np.isfinite(n) and n >= 1 else float("nan")
        for k in ANNUAL_FIGURES:
            out.loc[i, k] = (1.0 + float(rec[k])) * growth - 1.0
        used.append(f"{rec['pool']} {cur} {x_a:g} {base} of {_day_text(on) or 'none'}")
        findings += [f for f in dict.fromkeys(issues) if f not in findings]
    return out, used, findings


def _gap_within(finding: str, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    """Whether a gap finding (``... from A to B ...``) overlaps ``[start, end]``."""
    import re

    m = re.search(r"from (\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})", finding)
    return bool(m) and pd.Timestamp(m.group(1)) < end and pd.Timestamp(m.group(2)) > start


def summary_fx(config: PlatformConfig) -> dict[str, FxSeries]:
    """The configured FX series (``summary.fx``), read once: pass it as ``fx=`` when summarising many
    dates. Raises one line naming the file and line of a bad row."""
    return load_fx(config.summary.fx, config.summary.base_currency)


def summarise(config: PlatformConfig, session: object, per_pool: Mapping[str, PoolAsOf | tuple],
              *, fx: Mapping[str, FxSeries] | None = None) -> pd.DataFrame:
    """The summary of date ``session``: one row per pool plus the combined row(s); index (session, pool).

    ``per_pool``: pool -> :class:`PoolAsOf` (or ``(session_used, values[, judged])`` with ``values`` the
    backtest frame or a mapping holding it under ``backtest``), where ``session_used`` is the pool's
    latest session on or before ``session`` on its own calendar (:func:`pool_sessions`); a configured pool
    not given is ``missing``. ``fx``: currency -> :class:`~rotation_platform.data.fx.FxSeries` (default:
    read from ``summary.fx`` when the pools have more than one currency). See the module docstring."""
    d = pd.Timestamp(session).normalize()
    given = {name: _as_pool_input(v) for name, v in per_pool.items()}
    rows = [_pool_row(config, p.name, d, given.get(p.name, PoolAsOf(d, None))) for p in config.pools]
    table = pd.DataFrame(rows)
    weighted = table[table["weight"] > 0]
    currencies = list(dict.fromkeys(weighted["currency"])) or [config.summary.base_currency]
    base = config.summary.base_currency
    combined: list[dict[str, object]] = []
    if len(currencies) == 1:
        combined.append(_combine(config, COMBINED, weighted, weighted, currencies[0], str(d.date())))
    else:
        available = set(fx) if fx is not None else set(config.summary.fx)
        without = [c for c in currencies if c != base and c not in available]
        if not without:
            series = dict(fx) if fx is not None else load_fx(
                {c: config.summary.fx[c] for c in currencies if c != base}, base)
            converted, used, findings = _convert(config, weighted, series)
            comb = _combine(config, COMBINED, weighted, converted, base, str(d.date()))
            others = ", ".join(c for c in currencies if c != base)
            note = (f"in {base}: {others} converted with summary.fx (latest rate on or before each pool's session: "
                    f"{'; '.join(used) or 'none used'}); equity, daily and annual returns converted, the risk "
                    f"figures (Sharpe, drawdown, win rate, turnover, VaR) are the pools' own")
            if findings:
                note += "; FX findings: " + "; ".join(findings)
            comb["reason"] = "; ".join(x for x in (str(comb["reason"]), note) if x)
            combined.append(comb)
        else:
            groups = [_combine(config, combined_label(c), weighted[weighted["currency"] == c],
                               weighted[weighted["currency"] == c], c, str(d.date())) for c in currencies]
            missing = ", ".join(f"summary.fx.{c}" for c in without)
            comb: dict[str, object] = {"pool": COMBINED, "weight": float(sum(float(g["weight"]) for g in groups)),
                                       "currency": "", "as_of": str(d.date()), "params": "", "value_added": ""}
            comb.update({k: float("nan") for k in (*FIGURES, *BASELINE_FIGURES, *VALUE_ADDED_FIGURES,
                                                   "daily_return")})
            comb["status"] = "per currency"
            comb["reason"] = (f"pools in {', '.join(currencies)} and no FX series for {', '.join(without)} "
                              f"({missing} unset: a date,rate file of {base} per unit): not added up; combined "
                              f"per currency in {', '.join(str(g['pool']) for g in groups)}")
            comb.update(_verdicts(comb, config))
            comb["all_thresholds_ok"] = bool(all(bool(g["all_thresholds_ok"]) for g in groups))
            combined += [comb, *groups]
    table = pd.concat([table, pd.DataFrame(combined)], ignore_index=True)
    table = table[[c for c in table.columns if c not in NEW_COLUMNS] + [c for c in NEW_COLUMNS if c in table.columns]]
    table.index = pd.MultiIndex.from_arrays([[d] * len(table), table.pop("pool")], names=["session", "pool"])
    return table


def pool_metrics_summary(config: PlatformConfig, session: object,
                         backtests: Mapping[str, pd.DataFrame | None],
                         currency: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """:func:`summarise` with every pool as of ``session`` itself (pools sharing the summary's sessions):
    ``backtests``: pool -> its stored backtest; ``currency``: pool -> :func:`pool_currency` (without it a
    stored backtest counts as current)."""
    t = pd.Timestamp(session).normalize()
    return summarise(config, t, {p.name: PoolAsOf(t, backtests.get(p.name), (currency or {}).get(p.name))
                                 for p in config.pools})


def as_of_lines(summary: pd.DataFrame, config: PlatformConfig, session: object | None = None) -> list[str]:
    """One line per pool shown as of another session than the summary's (``QDII_US as of 2021-10-04
    (XNYS)``), from the summary rows of one date (index (session, pool), or pool with ``session``)."""
    has_level = "session" in (summary.index.names or [])
    rows = summary.droplevel("session") if has_level else summary
    if "as_of" not in rows.columns or rows.empty:
        return []
    if session is not None:
        day = str(pd.Timestamp(session).date())
    elif has_level:
        day = str(pd.Timestamp(summary.index.get_level_values("session")[0]).date())
    else:
        raise ValueError("as_of_lines needs the summary's session: pass session= for rows indexed by pool")
    out = []
    for name, rec in rows.iterrows():
        if is_combined(name) or name not in config.pool_names:
            continue
        as_of = str(rec["as_of"] or "")
        cal = config.pool(str(name)).calendar
        if not as_of:
            out.append(f"{name}: no {cal} session on or before the summary date")
        elif as_of != day:
            out.append(f"{name} as of {as_of} ({cal})")
    return out


def combined_result(summary: pd.DataFrame) -> dict[str, object] | None:
    """The combined row of one date's summary as the run result writes it (plain values; ``as_of``: each
    pool's session; ``by_currency``: the per-currency rows when the pools could not be converted into one
    currency), or None without a combined row."""
    rows = summary.droplevel("session") if "session" in (summary.index.names or []) else summary
    if COMBINED not in rows.index:
        return None

    def plain(rec: pd.Series) -> dict[str, object]:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}

    out = plain(rows.loc[COMBINED])
    if "as_of" in rows.columns:
        out["as_of"] = {str(p): (str(r["as_of"]) or None) for p, r in rows.iterrows() if not is_combined(p)}
    groups = {str(p)[len(COMBINED) + 1:]: plain(r) for p, r in rows.iterrows() if is_combined(p) and p != COMBINED}
    if groups:
        out["by_currency"] = groups
    return out
