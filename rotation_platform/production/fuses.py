"""The eight production fuses, as plain functions over a :class:`~.pool_run.PoolRun`.

Each returns a :class:`FuseResult` (passed, severity, a one-line summary, JSON-able details and a
markdown table) for every session of the run at once, and its verdict for each session of the run
(``FuseResult.by_session``: ISO session -> :class:`SessionVerdict`, from the same figures -- what a run
of that session alone would conclude, except where a fuse judges something that is not a session's: the
factor code (fuse 1) and the load's quality gate). The orchestration layer turns each session's verdict
into the asset check result of that pool-session partition. ``ERROR`` fuses stop the downstream steps;
``WARN`` ones only report.

1. ``t_plus_one`` -- the static source scan of the factor code and the runtime no-lookahead proof
   (every input after ``t - lag`` changed, no factor value at ``<= t`` may move);
2. ``coverage`` -- share of the factor values that should exist (fund listed, enough history) that do,
   ``>= fuses.min_coverage`` at every session, and no drop of more than ``fuses.max_coverage_drop``
   against the previous session;
3. ``effective_factors`` -- the screen keeps at least ``fuses.min_effective_factors`` factors;
4. ``target_vol_scaling`` -- the target's weights are finite, long-only, within the single-fund cap (on
   rebalance sessions; between them the target is the book as it drifted, and has no orders), add
   up to at most 1, leave non-negative cash, and its ex-ante volatility is finite and below
   ``fuses.max_target_volatility``; the pool's defensive fund is exempt from the cap, and with
   ``strategy.target_volatility`` the picks' ex-ante volatility (the strategy's estimator) stays within 5%
   of the target;
5. ``monthly_returns`` -- every month of the backtest through the session has a finite return within
   ``fuses.max_abs_monthly_return``, and equity stays positive;
6. ``index_normalisation`` -- sessions sorted, unique and on the pool's calendar; symbols exactly the
   configured pool, in order;
7. ``zero_variance`` -- no factor is constant over its whole history, and at most
   ``fuses.max_flat_factor_share`` of the factors are flat across funds at any session of the run;
8. ``metadata_completeness`` -- pools_used, engine_version, price_field, generated_at, config hash and
   data hash present and non-empty.

Plus the backtest thresholds (annual return, drawdown, Sharpe, win rate, turnover) and the capacity
check (no held position above its ADV limit) as WARN fuses, and the data-quality gate
(:func:`quality_gate`, ERROR): it fails at a session only on a FATAL finding or when fewer than
``pools[].min_funds`` funds remain tradeable there; ERROR findings exclude their fund from the universe
of the sessions whose ``data.quality.exclusion_window`` holds them, and a passing gate lists those funds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PricePanel
from rotation_platform.factors.lookahead import perturb_after, scan_source_for_lookahead
from rotation_platform.production.pool_run import PoolRun
from rotation_platform.reports.prices import quality_check_summary
from rotation_platform.reports.tables import markdown_table
from rotation_platform.research import nb

__all__ = ["FuseResult", "SessionVerdict", "FUSES", "combine", "REQUIRED_METADATA", "quality_gate", "t_plus_one",
           "coverage", "effective_factors",
           "target_vol_scaling", "monthly_returns", "index_normalisation", "zero_variance",
           "metadata_completeness", "backtest_thresholds", "capacity", "static_scan", "amount_cause"]

REQUIRED_METADATA = ("pools_used", "engine_version", "price_field", "generated_at", "config_hash", "data_hash")
FUSES = ("t_plus_one", "coverage", "effective_factors", "target_vol_scaling", "monthly_returns",
         "index_normalisation", "zero_variance", "metadata_completeness")


@dataclass(frozen=True)
class SessionVerdict:
    """A fuse's verdict for one session of the run: passed, a one-line summary (a failure starts with
    the fuse's upper-case marker, e.g. ``COVERAGE FAILED at 2024-12-31: ...``) and the session's figures
    (finite floats, e.g. its coverage)."""

    passed: bool
    summary: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FuseResult:
    name: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    summary: str
    details: dict[str, object] = field(default_factory=dict)
    table: str = ""
    #: ISO session -> the verdict for that session, for every session of the run (empty: the run's
    #: verdict holds for each, see :meth:`verdict`)
    by_session: dict[str, SessionVerdict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in ("ERROR", "WARN"):
            raise ValueError(f"severity must be ERROR or WARN, got {self.severity!r}")

    def verdict(self, session: object) -> SessionVerdict:
        """The verdict for ``session`` (an ISO date or a timestamp); the run's own when the fuse gave
        none for it."""
        found = self.by_session.get(_d(session))
        return found if found is not None else SessionVerdict(bool(self.passed), self.summary)


def combine(results: Mapping[str, FuseResult]) -> FuseResult:
    """One result for a run over several pools: passed when every pool passed; failures first."""
    if len(results) == 1:
        return next(iter(results.values()))
    items = sorted(results.items(), key=lambda kv: kv[1].passed)
    first = items[0][1]
    summary = "; ".join(f"{pool}: {r.summary}" for pool, r in items)
    if not first.passed:
        summary = f"{first.summary.split(':')[0]}: " + summary  # keeps the failure's marker first
    return FuseResult(first.name, all(r.passed for r in results.values()), first.severity, summary,
                      {pool: r.details for pool, r in results.items()},
                      "\n\n".join(f"**{pool}**\n\n{r.table}" for pool, r in items if r.table))


def _same_for_every_session(run: PoolRun, passed: bool, summary: str) -> dict[str, SessionVerdict]:
    return {_d(t): SessionVerdict(bool(passed), summary) for t in run.sessions}


def _finite(**values: object) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if np.isfinite(f):
            out[k] = f
    return out


def _md(frame: pd.DataFrame, max_rows: int = 30) -> str:
    if frame.empty:
        return "_nothing to report_"
    return markdown_table(frame, max_rows=max_rows)


def _d(t: pd.Timestamp) -> str:
    return str(pd.Timestamp(t).date())


# ------------------------------------------------------------------------------------- quality gate
def _left_out(universe: Mapping[str, object]) -> str:
    parts = [f"{s} ({why})" for s, why in {**universe["ended"], **universe["excluded"]}.items()]  # type: ignore[dict-item]
    return "; ".join(parts)


def quality_gate(run: PoolRun) -> FuseResult:
    """The data-quality gate per session: FATAL findings (the load raises on them, so a run rarely sees
    one) fail every session; otherwise a session fails only when fewer than ``pools[].min_funds`` funds
    are tradeable there (:meth:`PoolRun.universe_at`). A passing session names the funds the universe
    policy leaves out (an ERROR finding inside ``data.quality.exclusion_window``, or data ended)."""
    report = run.prices.report
    summary = quality_check_summary(report)
    fatal = [f for f in report.findings if f.severity.name == "FATAL"]
    n_funds = len(run.pool.symbols)
    per: dict[str, SessionVerdict] = {}
    failed: list[str] = []
    universes = {}
    for t in run.sessions:
        u = run.universe_at(t)
        universes[_d(t)] = u
        n = len(u["tradeable"])  # type: ignore[arg-type]
        need = int(u["min_funds"])  # type: ignore[arg-type]
        excluded = u["excluded"]
        left = _left_out(u)
        values = _finite(tradeable=n, min_funds=need, excluded=len(excluded))  # type: ignore[arg-type]
        if fatal:
            line = f"QUALITY GATE FAILED at {_d(t)}: {len(fatal)} FATAL finding(s): " + "; ".join(
                f"{f.check} {f.symbol}: {f.message}" for f in fatal[:3])
            ok = False
        elif n < need:
            line = (f"QUALITY GATE FAILED at {_d(t)}: only {n} of {n_funds} funds tradeable, pools[{run.pool.name}]."
                    f"min_funds is {need}" + (f"; left out: {left}" if left else ""))
            ok = False
        else:
            line = f"data quality gate passed at {_d(t)}: {n} of {n_funds} funds tradeable (min_funds {need})"
            if excluded:
                line += f"; WARN {len(excluded)} fund(s) excluded from the universe"  # type: ignore[arg-type]
            if left:
                line += f"; left out: {left}"
            ok = True
        if not ok:
            failed.append(_d(t))
        per[_d(t)] = SessionVerdict(ok, line, values)
    last = per[_d(run.sessions[-1])]
    passed = not failed
    head = last.summary if passed else per[failed[0]].summary
    details = {k: v for k, v in summary.items() if k != "findings"}
    u = universes[_d(run.sessions[-1])]
    details.update({"tradeable": u["tradeable"], "excluded": u["excluded"], "ended": u["ended"],
                    "min_funds": u["min_funds"], "exclusion_window": u["exclusion_window"],
                    "failed_sessions": failed[:50]})
    return FuseResult("quality_gate", passed, "ERROR", head, details, str(summary["findings"]), per)


# ------------------------------------------------------------------------------------------ 1. T+1
@lru_cache(maxsize=4)
def _scan(paths: tuple[str, ...] | None):
    return scan_source_for_lookahead(None if paths is None else [Path(p) for p in paths])


def static_scan(paths: Sequence[str | Path] | None = None):
    """The static lookahead scan of the factor sources (cached per process and path set)."""
    return _scan(None if paths is None else tuple(str(p) for p in paths))


def t_plus_one(run: PoolRun, *, scan_paths: Sequence[str | Path] | None = None, seed: int = 0) -> FuseResult:
    """Static scan + runtime proof at the run's last session ``t`` (and its first, for a range): the
    panel is extended by made-up future sessions, every input after ``t - lag`` is changed, and no
    factor value at a session ``<= t`` may move -- neither against the unchanged extended panel nor
    against the values the run computed."""
    scan = static_scan(scan_paths)
    lag = run.config.factors.lag
    violations: dict[str, float] = {}
    n_changed = 0
    checked = sorted({int(run.rows[0]), int(run.rows[-1])})  # a range: its first and its last session
    rows = [r for r in checked if r - lag >= 0]
    if rows:
        violations, n_changed = _future_rows_proof(run, rows, seed)
    row = checked[-1]
    passed = scan.passed and not violations
    findings = [str(f) for f in scan.findings]
    details = {"static_scan_passed": bool(scan.passed), "files_scanned": len(scan.files),
               "static_findings": findings[:20], "runtime_passed": not violations,
               "checked_sessions": [_d(run.panel.sessions[r]) for r in checked], "lag": lag, "inputs_changed": int(n_changed),
               "violations": dict(list(violations.items())[:20])}
    summary = ("no lookahead: static scan clean and no factor moved when data after t-lag changed"
               if passed else f"LOOKAHEAD: {len(findings)} static finding(s), {len(violations)} factor(s) moved")
    table = _md(pd.DataFrame({"factor": list(violations), "max_change": list(violations.values())}).set_index("factor")) \
        if violations else ""
    # the fuse judges the factor code, not a session's data: every session of the run gets its verdict
    checked_txt = ", ".join(details["checked_sessions"])
    per = _same_for_every_session(run, passed, f"{summary} (runtime proof at {checked_txt})")
    return FuseResult("t_plus_one", passed, "ERROR", summary, details, table, per)


def _future_rows_proof(run: PoolRun, rows: list[int], seed: int) -> tuple[dict[str, float], int]:
    """Append ``lag`` + 5 made-up sessions after the panel; for each row, perturb everything after
    ``row - lag`` and compare the factors at rows <= ``row``."""
    from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

    panel = run.panel
    extra = []
    day = panel.sessions[-1]
    for _ in range(run.config.factors.lag + 5):
        day = run.calendar.next_session(day)
        extra.append(day)
    index = panel.sessions.append(pd.DatetimeIndex(extra))
    frames = {}
    for f in PRICE_FIELDS:
        frame = panel[f].reindex(index)
        frame.iloc[len(panel.sessions):] = panel[f].iloc[-1].to_numpy()  # made-up rows: the last bar again
        frames[f] = frame
    extended = PricePanel(frames, panel.meta)
    base_all = np.asarray(run.compute_factors(extended).values)
    own_all = np.asarray(run.factors.values)
    violations: dict[str, float] = {}
    n_changed = 0
    for row in rows:
        moved, _, n = perturb_after(extended, row - run.config.factors.lag, seed)
        n_changed += n
        other = np.asarray(run.compute_factors(moved).values)[: row + 1]
        base, own = base_all[: row + 1], own_all[: row + 1]
        for k, name in enumerate(run.factors.names):
            for x in (other, own):
                a, b = base[:, :, k], x[:, :, k]
                same = (a == b) | (np.isnan(a) & np.isnan(b))
                if not same.all():
                    violations[name] = float(np.nanmax(np.abs(np.where(same, 0.0,
                                                                       np.nan_to_num(a - b, nan=np.inf)))))
    return violations, n_changed


# ------------------------------------------------------------------------------------ 2. coverage
def amount_cause(panel: PricePanel, through: object | None = None) -> str:
    """Why bars are lost to a missing amount, in one clause ("" when none is): per fund, the sessions (through
    ``through``) whose prices and volume are there but whose amount is not -- every factor needs a finite
    amount for a bar to count (unless the panel's ``amount_factors_left_out`` says otherwise) -- with the file
    and the setting that lets it run. A coverage or zero-variance failure appends it."""
    if panel.meta.get("amount_factors_left_out"):
        return ""
    sub = panel.select(end=through) if through is not None else panel
    rest = np.ones(sub.shape, dtype=bool)
    for f in ("open", "high", "low", "close", "volume"):
        rest &= np.isfinite(sub[f].to_numpy(dtype=np.float64))
    no_amount = ~np.isfinite(sub["amount"].to_numpy(dtype=np.float64))
    lost = (rest & no_amount).sum(axis=0)
    if not lost.any():
        return ""
    files = panel.meta.get("files") or {}
    whole, part = [], []
    for j, symbol in enumerate(sub.symbols):
        if not lost[j]:
            continue
        entry = files.get(symbol) if isinstance(files, Mapping) else None
        name = (entry.get("file") if isinstance(entry, Mapping) else None) or f"the records of {symbol}"
        if int(lost[j]) == int(rest[:, j].sum()):
            whole.append(f"{symbol} ({name})")
        else:
            part.append(f"{symbol} ({int(lost[j])} bar(s) in {name})")
    parts = []
    if whole:
        parts.append(f"no amount column in {', '.join(whole)}; set data.amount: estimate (or drop_factors)")
    if part:
        parts.append(f"bars without amount in {', '.join(part)}: every factor needs a finite amount; fix those rows")
    return "amount is the cause: " + "; ".join(parts)


def coverage(run: PoolRun) -> FuseResult:
    fz = run.config.fuses
    cov = run.coverage
    rows = run.rows
    now = cov.iloc[rows].to_numpy()
    prev = cov.iloc[np.maximum(rows - 1, 0)].to_numpy()
    drop = np.where(np.isfinite(prev), prev - now, 0.0)
    low = ~(now >= fz.min_coverage)
    fell = drop > fz.max_coverage_drop
    bad = low | fell
    frame = pd.DataFrame({"coverage": now, "previous": prev, "drop": drop, "below_min": low, "sudden_drop": fell},
                         index=pd.Index([_d(t) for t in run.sessions], name="session"))
    passed = not bad.any()
    last = float(now[-1])
    summary = (f"coverage {last:.1%} at {_d(run.sessions[-1])} (min {fz.min_coverage:.0%}, "
               f"largest drop {np.nanmax(drop):.1%}, allowed {fz.max_coverage_drop:.0%})")
    cause = ""
    if not passed:
        first = frame[bad].index[0]
        summary = f"COVERAGE FAILED at {first}: " + summary
        cause = amount_cause(run.panel, run.sessions[-1])
        if cause:
            summary += f"; {cause}"
    details = {"coverage": last, "min_coverage": fz.min_coverage, "max_coverage_drop": fz.max_coverage_drop,
               "failed_sessions": list(frame.index[bad])[:50], "min_in_run": float(np.nanmin(now))}
    if cause:
        details["cause"] = cause
    per = {}
    for i, day in enumerate(frame.index):
        line = (f"coverage {now[i]:.1%} at {day} (min {fz.min_coverage:.0%}, drop {drop[i]:.1%}, "
                f"allowed {fz.max_coverage_drop:.0%})")
        if bad[i]:
            why = amount_cause(run.panel, day)
            line += f"; {why}" if why else ""
        per[day] = SessionVerdict(not bool(bad[i]), line if not bad[i] else f"COVERAGE FAILED at {day}: " + line,
                                  _finite(coverage=now[i], previous=prev[i], drop=drop[i]))
    return FuseResult("coverage", passed, "ERROR", summary, details, _md(frame[bad] if not passed else frame.tail(5)),
                      per)


# ------------------------------------------------------------------------------ 3. effective factors
def effective_factors(run: PoolRun) -> FuseResult:
    need = run.config.fuses.min_effective_factors
    counts = pd.Series({_d(t): len(s.selected) for t, s in run.screens.items()}, name="selected")
    bad = counts[counts < need]
    last = run.screens[run.sessions[-1]]
    passed = bad.empty
    summary = (f"{counts.iloc[-1]} effective factors at {counts.index[-1]} (need {need})" if passed else
               f"TOO FEW FACTORS: {int(bad.iloc[0])} selected at {bad.index[0]} (need {need}); "
               f"{len(bad)} session(s) short")
    if not passed:
        why = amount_cause(run.panel, run.sessions[-1])
        summary += f"; {why}" if why else ""
    top = last.summary().reset_index().rename(columns={"index": "factor"}).set_index("factor")
    details = {"selected": int(counts.iloc[-1]), "min_effective_factors": need,
               "short_sessions": list(bad.index)[:50], "factors": last.selected_names}
    per = {}
    for day, n in counts.items():
        ok = int(n) >= need
        per[day] = SessionVerdict(ok, f"{int(n)} effective factors at {day} (need {need})" if ok else
                                  f"TOO FEW FACTORS: {int(n)} selected at {day} (need {need})",
                                  _finite(selected=n, min_effective_factors=need))
    return FuseResult("effective_factors", passed, "ERROR", summary, details, _md(top), per)


# ------------------------------------------------------------------------------ 4. target volatility
def target_vol_scaling(run: PoolRun, targets: pd.DataFrame, *, window: int = 60) -> FuseResult:
    fz = run.config.fuses
    cap = run.pool.capital.max_single_weight
    close = run.panel["close"]
    rets = close / close.shift(1) - 1.0
    # the volatility target (strategy.target_volatility): the picks' ex-ante volatility, by the strategy's own
    # estimator on the returns through the decision, may not exceed it (5% for lot rounding)
    defensive = run.pool.defensive
    target_vol = run.config.strategy.target_volatility
    vol_window = int(run.config.strategy.vol_window)
    rets_np = np.ascontiguousarray(rets.to_numpy(dtype=np.float64))
    problems = []
    rows = []
    for t, table in targets.groupby(level="session", sort=True):
        table = table.droplevel("session")
        w = table["target_weight"].astype(float)
        price = table["price"].astype(float)
        shares = table["target_shares"].astype(float)
        equity = float(table["equity"].iloc[0])
        real_w = (shares * price.fillna(0.0)) / equity if equity > 0 else w * np.nan
        hist = rets.loc[:t].iloc[-window:]
        cov = hist.cov(min_periods=max(window // 2, 2)).reindex(index=w.index, columns=w.index)
        held = real_w > 0
        sub = cov.loc[held, held].to_numpy()
        x = real_w[held].to_numpy()
        vol = float(np.sqrt(x @ sub @ x * run.config.backtest.annualisation)) if held.any() else 0.0
        issues = []
        trades = bool(table["rebalance"].iloc[0]) if "rebalance" in table.columns else True
        if not np.isfinite(w).all() or not np.isfinite(real_w).all():
            issues.append("non-finite weight")
        if (w < 0).any() or (shares < 0).any():
            issues.append("negative weight")
        # between rebalances the target is the book as it is: a rally may lift a holding above the cap
        # (the capacity table reports it); orders are sized to the cap
        # the defensive fund holds what the picks do not: it is the cash substitute, not a capped bet
        picks_w = real_w.drop(defensive) if defensive in real_w.index else real_w
        if trades and (picks_w > cap + 0.01).any():
            issues.append(f"weight above cap {cap:.0%}")
        picks_vol = float("nan")
        if target_vol is not None:
            risky = np.nan_to_num(picks_w.reindex(w.index).fillna(0.0).to_numpy(dtype=np.float64))
            row = int(run.panel.sessions.get_loc(t))
            picks_vol = float(nb.ex_ante_vol_nb(rets_np, row, vol_window, max(vol_window // 2, 2), risky,
                                                int(run.config.backtest.annualisation)))
            if trades and picks_vol > target_vol * 1.05:
                issues.append(f"picks' ex-ante volatility {picks_vol:.1%} > target {target_vol:.0%}")
        if not trades and (table["order_shares"] != 0).any():
            issues.append("orders on a session that is not a rebalance")
        if real_w.sum() > 1.0 + 1e-9:
            issues.append(f"gross exposure {real_w.sum():.3f} > 1")
        if float(table["cash_after"].iloc[0]) < -1e-6:
            issues.append("negative cash")
        if not np.isfinite(vol):
            issues.append("ex-ante volatility not finite")
        elif vol > fz.max_target_volatility:
            issues.append(f"ex-ante volatility {vol:.1%} > {fz.max_target_volatility:.0%}")
        rows.append({"session": _d(t), "exposure": float(real_w.sum()), "max_weight": float(picks_w.max()),
                     "ex_ante_vol": vol, "picks_vol": picks_vol, "issues": "; ".join(issues)})
        if issues:
            problems.append((_d(t), issues))
    frame = pd.DataFrame(rows).set_index("session")
    passed = not problems
    last = frame.iloc[-1]
    summary = (f"exposure {last['exposure']:.1%}, max weight {last['max_weight']:.1%}, ex-ante vol "
               f"{last['ex_ante_vol']:.1%} at {frame.index[-1]}")
    if not passed:
        summary = f"TARGET SCALING FAILED at {problems[0][0]}: {', '.join(problems[0][1])}"
    details = {"exposure": float(last["exposure"]), "ex_ante_volatility": float(last["ex_ante_vol"]),
               "max_target_volatility": fz.max_target_volatility, "failed_sessions": [p[0] for p in problems][:50]}
    per = {}
    for day, rec in frame.iterrows():
        values = _finite(exposure=rec["exposure"], max_weight=rec["max_weight"], ex_ante_volatility=rec["ex_ante_vol"])
        if rec["issues"]:
            per[day] = SessionVerdict(False, f"TARGET SCALING FAILED at {day}: {rec['issues'].replace('; ', ', ')}",
                                      values)
        else:
            per[day] = SessionVerdict(True, f"exposure {rec['exposure']:.1%}, max weight {rec['max_weight']:.1%}, "
                                            f"ex-ante vol {rec['ex_ante_vol']:.1%} at {day}", values)
    return FuseResult("target_vol_scaling", passed, "ERROR", summary, details,
                      _md(frame[frame["issues"] != ""] if not passed else frame.tail(5)), per)


# --------------------------------------------------------------------------------- 5. monthly returns
def monthly_returns(run: PoolRun, frame: pd.DataFrame) -> FuseResult:
    limit = run.config.fuses.max_abs_monthly_return
    bt = run.backtest
    first = bt.plan.first_trade_row or 0
    problems = []
    per = {}
    for t, row in zip(run.sessions, run.rows):
        m = float(frame.loc[t, "max_abs_monthly_return"])
        eq_ok = bool((bt.equity.iloc[: int(row) + 1] > 0).all())
        problem = None
        if int(row) > first and (not np.isfinite(m) or m > limit):
            problem = f"a month of {m:.1%} (limit {limit:.0%})"
        elif not eq_ok:
            problem = "equity not positive"
        if problem:
            problems.append((_d(t), problem))
        per[_d(t)] = SessionVerdict(problem is None, f"MONTHLY RETURN FAILED at {_d(t)}: {problem}" if problem else
                                    f"every month within ±{limit:.0%} (largest {m:.1%}) through {_d(t)}",
                                    _finite(max_abs_monthly_return=m, limit=limit))
    from rotation_platform.research import monthly_returns as months_of

    live = bt.returns.iloc[first: int(run.rows[-1]) + 1]
    months = months_of(live).tail(12)
    table = pd.DataFrame({"return": months.to_numpy()}, index=pd.Index([str(d)[:7] for d in months.index], name="month"))
    passed = not problems
    summary = (f"every month within ±{limit:.0%} (largest {float(frame['max_abs_monthly_return'].iloc[-1]):.1%})"
               if passed else f"MONTHLY RETURN FAILED at {problems[0][0]}: {problems[0][1]}")
    details = {"max_abs_monthly_return": _num(frame["max_abs_monthly_return"].iloc[-1]), "limit": limit,
               "failed_sessions": [p[0] for p in problems][:50]}
    return FuseResult("monthly_returns", passed, "ERROR", summary, details, _md(table), per)


# ---------------------------------------------------------------------------- 6. index normalisation
def index_normalisation(run: PoolRun) -> FuseResult:
    panel = run.panel
    issues = []
    s = panel.sessions
    if not s.is_monotonic_increasing:
        issues.append("sessions are not sorted")
    if s.has_duplicates:
        issues.append(f"duplicate sessions {[_d(x) for x in s[s.duplicated()][:5]]}")
    run_wide = len(issues)  # issues of the panel as a whole (and of its symbols, below): every session's
    off = [x for x in s if not run.calendar.is_session(x)]
    if off:
        issues.append(f"{len(off)} non-session date(s) of {run.pool.calendar}, first {_d(off[0])}")
    expected = list(run.pool.symbols)
    if list(panel.symbols) != expected:
        extra = sorted(set(panel.symbols) - set(expected))
        lacking = sorted(set(expected) - set(panel.symbols))
        issues.append(f"symbols differ from pool {run.pool.name}: extra {extra}, missing {lacking}"
                      + ("" if extra or lacking else ", order differs"))
    for f in ("open", "high", "low", "close", "volume", "amount"):
        fr = panel[f]
        if not fr.index.equals(s) or list(fr.columns) != list(panel.symbols):
            issues.append(f"field {f} is not aligned to the sessions x symbols index")
    panel_wide = issues[:run_wide] + issues[run_wide + (1 if off else 0):]
    missing = run.sessions.difference(s)
    if len(missing):
        issues.append(f"run sessions missing from the panel: {[_d(x) for x in missing[:5]]}")
    passed = not issues
    summary = (f"{len(s)} sorted unique {run.pool.calendar} sessions x {len(panel.symbols)} configured symbols"
               if passed else "INDEX NOT NORMALISED: " + "; ".join(issues))
    # per session: the panel's own issues, and the dates off the calendar up to the session / the session
    # itself missing from the panel (what a run of that session alone would see)
    missing_set = set(missing)
    per = {}
    for t in run.sessions:
        mine = list(panel_wide)
        off_t = [x for x in off if x <= t]
        if off_t:
            mine.append(f"{len(off_t)} non-session date(s) of {run.pool.calendar}, first {_d(off_t[0])}")
        if t in missing_set:
            mine.append(f"session {_d(t)} missing from the panel")
        n_t = int((s <= t).sum())
        per[_d(t)] = SessionVerdict(not mine, "INDEX NOT NORMALISED: " + "; ".join(mine) if mine else
                                    f"{n_t} sorted unique {run.pool.calendar} sessions x {len(panel.symbols)} "
                                    f"configured symbols through {_d(t)}", _finite(sessions=n_t))
    return FuseResult("index_normalisation", passed, "ERROR", summary,
                      {"sessions": len(s), "symbols": list(panel.symbols), "issues": issues}, "", per)


# --------------------------------------------------------------------------------- 7. zero variance
def zero_variance(run: PoolRun) -> FuseResult:
    limit = run.config.fuses.max_flat_factor_share
    fp = run.factors
    vals = np.asarray(fp.values)  # (s, f, k)
    finite = np.isfinite(vals)
    with np.errstate(invalid="ignore"):
        lo = np.where(finite, vals, np.inf).min(axis=(0, 1))
        hi = np.where(finite, vals, -np.inf).max(axis=(0, 1))
    constant = [fp.names[k] for k in range(len(fp.names)) if finite[:, :, k].sum() > 1 and lo[k] == hi[k]]
    # constant through each session: running min / max / count of the values up to that session
    with np.errstate(invalid="ignore"):
        lo_t = np.minimum.accumulate(np.where(finite, vals, np.inf).min(axis=1), axis=0)
        hi_t = np.maximum.accumulate(np.where(finite, vals, -np.inf).max(axis=1), axis=0)
    n_t = np.cumsum(finite.sum(axis=1), axis=0)
    rows = []
    for t, row in zip(run.sessions, run.rows):
        x = vals[int(row)]  # (funds, factors)
        ok = np.isfinite(x)
        n_ok = ok.sum(axis=0)
        with np.errstate(invalid="ignore"):
            xmin = np.where(ok, x, np.inf).min(axis=0)
            xmax = np.where(ok, x, -np.inf).max(axis=0)
        judged = n_ok >= 2
        flat = judged & (xmin == xmax)
        share = float(flat.sum() / judged.sum()) if judged.any() else 1.0
        const_t = np.flatnonzero((n_t[int(row)] > 1) & (lo_t[int(row)] == hi_t[int(row)]))
        rows.append({"session": _d(t), "flat_share": share, "judged": int(judged.sum()),
                     "flat": ", ".join(fp.names[k] for k in np.flatnonzero(flat)[:8]),
                     "constant": [fp.names[k] for k in const_t]})
    frame = pd.DataFrame(rows).set_index("session")
    per = {}
    for day, rec in frame.iterrows():
        const_t = rec["constant"]
        values = _finite(flat_share=rec["flat_share"], constant_factors=len(const_t))
        if const_t:
            per[day] = SessionVerdict(False, f"ZERO VARIANCE: {len(const_t)} factor(s) constant over their history "
                                             f"through {day}: {const_t[:5]}", values)
        elif rec["flat_share"] > limit:
            per[day] = SessionVerdict(False, f"ZERO VARIANCE: {rec['flat_share']:.0%} of factors flat across funds at "
                                             f"{day} (limit {limit:.0%})", values)
        else:
            per[day] = SessionVerdict(True, f"no constant factor; {rec['flat_share']:.1%} flat across funds at {day}",
                                      values)
    frame = frame.drop(columns="constant")
    bad = frame[frame["flat_share"] > limit]
    passed = not constant and bad.empty
    if passed:
        summary = f"no constant factor; {frame['flat_share'].iloc[-1]:.1%} flat across funds at {frame.index[-1]}"
    elif constant:
        summary = f"ZERO VARIANCE: {len(constant)} factor(s) constant over their whole history: {constant[:5]}"
    else:
        summary = (f"ZERO VARIANCE: {bad['flat_share'].iloc[0]:.0%} of factors flat across funds at "
                   f"{bad.index[0]} (limit {limit:.0%})")
    if not passed:
        why = amount_cause(run.panel, run.sessions[-1])
        summary += f"; {why}" if why else ""
    details = {"constant_factors": constant[:50], "flat_share": float(frame["flat_share"].iloc[-1]),
               "max_flat_factor_share": limit, "failed_sessions": list(bad.index)[:50]}
    return FuseResult("zero_variance", passed, "ERROR", summary, details, _md(bad if not passed else frame.tail(5)),
                      per)


# ---------------------------------------------------------------------------- 8. metadata completeness
def metadata_completeness(metadata: Mapping[str, Mapping[str, object]]) -> FuseResult:
    """``metadata``: per session, the run metadata of the published values."""
    missing: dict[str, list[str]] = {}
    for session, meta in metadata.items():
        lack = [k for k in REQUIRED_METADATA if k not in meta or meta[k] in (None, "", [], {})]
        if lack:
            missing[str(session)] = lack
    passed = not missing
    last = list(metadata.values())[-1] if metadata else {}
    summary = ("pools_used, engine_version, price_field, generated_at, config_hash, data_hash present"
               if passed and metadata else
               f"METADATA INCOMPLETE: {next(iter(missing.items())) if missing else 'no metadata'}")
    per = {}
    for session in metadata:
        day = str(session)
        lack = missing.get(day)
        per[day] = SessionVerdict(not lack, f"METADATA INCOMPLETE at {day}: {', '.join(lack)} missing" if lack else
                                  f"metadata complete at {day}")
    return FuseResult("metadata_completeness", passed and bool(metadata), "ERROR", summary,
                      {"required": list(REQUIRED_METADATA), "missing": dict(list(missing.items())[:20]),
                       "last": {k: last.get(k) for k in REQUIRED_METADATA}}, "", per)


# ---------------------------------------------------------------------------------------- capacity
def capacity(run: PoolRun) -> FuseResult:
    """WARN: the book of every session of the run fits its liquidity limit (no held position above
    ``capital.max_adv_pct`` of its ADV); positions without an ADV are named, not counted as breaches.
    The figures are :meth:`PoolRun.capacity_sessions` -- the same as the capacity table's."""
    frame = run.capacity_sessions()
    last = frame.iloc[-1]
    t = frame.index[-1]
    breached = frame[frame["adv_breaches"] > 0]
    no_adv = frame[frame["positions_without_adv"] > 0]
    equity = float(run.backtest.equity.loc[t])
    cap = float(last["capacity"])
    cur = run.currency
    cap_txt = "unbounded" if not np.isfinite(cap) else f"{cap:,.0f} {cur}"
    summary = (f"capacity {cap_txt} at {_d(t)} (book {equity:,.0f} {cur}, max ADV utilisation "
               f"{float(last['max_utilisation']):.1%}" + (f" on {last['binding_symbol']}" if last['binding_symbol'] else "")
               + ")")
    if int(last["positions_without_adv"]):
        summary += f"; {int(last['positions_without_adv'])} position(s) without ADV: {last['without_adv']}"
    estimated = list(run.panel.meta.get("amount_estimated") or [])
    if estimated:
        summary += (f"; ADV from estimated turnover (volume x typical price, the files have no amount) for "
                    f"{', '.join(estimated)}")
    passed = breached.empty
    if not passed:
        first = breached.index[0]
        summary = (f"ADV LIMIT EXCEEDED at {_d(first)}: {int(breached.loc[first, 'adv_breaches'])} position(s) above "
                   f"{run.pool.capital.max_adv_pct:.0%} of ADV; " + summary)
    shown = frame[["max_utilisation", "capacity", "binding_symbol", "adv_breaches", "positions_without_adv"]]
    shown = shown.set_axis(pd.Index([_d(x) for x in shown.index], name="session"))
    details = {"capacity": _num(cap), "currency": cur, "max_utilisation": float(last["max_utilisation"]), "equity": equity,
               "positions_without_adv": int(last["positions_without_adv"]),
               "failed_sessions": [_d(x) for x in breached.index][:50],
               "sessions_with_positions_without_adv": [_d(x) for x in no_adv.index][:50],
               "adv_estimated": estimated}
    per = {}
    for x, rec in frame.iterrows():
        c = float(rec["capacity"])
        binding = f" on {rec['binding_symbol']}" if rec["binding_symbol"] else ""
        line = (f"capacity {'unbounded' if not np.isfinite(c) else f'{c:,.0f} {cur}'} at {_d(x)} (max ADV utilisation "
                f"{float(rec['max_utilisation']):.1%}{binding})")
        if int(rec["positions_without_adv"]):
            line += f"; {int(rec['positions_without_adv'])} position(s) without ADV: {rec['without_adv']}"
        ok = int(rec["adv_breaches"]) == 0
        if not ok:
            line = (f"ADV LIMIT EXCEEDED at {_d(x)}: {int(rec['adv_breaches'])} position(s) above "
                    f"{run.pool.capital.max_adv_pct:.0%} of ADV; " + line)
        per[_d(x)] = SessionVerdict(ok, line, _finite(capacity=c, max_utilisation=rec["max_utilisation"],
                                                      adv_breaches=rec["adv_breaches"],
                                                      positions_without_adv=rec["positions_without_adv"]))
    return FuseResult("capacity", passed, "WARN", summary, details,
                      _md(shown.loc[[_d(x) for x in breached.index]] if not passed else shown.tail(5)), per)


# ----------------------------------------------------------------------------- backtest thresholds
THRESHOLDS = (
    ("annual_return", "min_annual_return", ">="),
    ("max_drawdown", "max_drawdown", ">="),
    ("sharpe", "min_sharpe", ">="),
    ("monthly_win_rate", "min_monthly_win_rate", ">="),
    ("annual_turnover", "max_annual_turnover", "<="),
)


def backtest_thresholds(run: PoolRun, frame: pd.DataFrame) -> list[FuseResult]:
    """One WARN fuse per threshold, judged on the metrics as of the run's last session (and, per session,
    on the metrics as of each session of ``frame``)."""
    fz = run.config.fuses
    last = frame.iloc[-1]
    out = []

    def judge(value: float, limit: float, op: str) -> bool:
        return bool(np.isfinite(value) and (value >= limit if op == ">=" else value <= limit))

    for metric, key, op in THRESHOLDS:
        value = float(last[metric])
        limit = float(getattr(fz, key))
        ok = judge(value, limit, op)
        per = {}
        for t, v in frame[metric].items():
            v = float(v)
            good = judge(v, limit, op)
            per[_d(t)] = SessionVerdict(good, f"{metric} {v:.4g} {op} {limit:.4g}: {'pass' if good else 'FAIL'} "
                                              f"as of {_d(t)}", _finite(value=v, threshold=limit))
        out.append(FuseResult(f"{metric}_threshold", ok, "WARN",
                              f"{metric} {value:.4g} {op} {limit:.4g}: {'pass' if ok else 'FAIL'} "
                              f"as of {_d(frame.index[-1])}",
                              {"value": _num(value), "threshold": limit, "operator": op,
                               "session": _d(frame.index[-1])}, "", per))
    return out


#: the value-added test's level: the strategy beats equal weight when the one-sided p-value is below it
VALUE_ADDED_ALPHA = 0.05


def beats_equal_weight(run: PoolRun, frame: pd.DataFrame) -> FuseResult:
    """WARN unless the strategy's Sharpe ratio is significantly above the equal-weight pool's (monthly,
    same costs and lots): the Jobson-Korkie test with Memmel's correction, one-sided at 5%, on the
    returns through each session (:mod:`rotation_platform.research.value_added`)."""

    def judge(rec: pd.Series, day: str) -> SessionVerdict:
        diff, z, p = (float(rec.get(k, np.nan)) for k in ("sharpe_diff", "sharpe_diff_z", "sharpe_diff_p"))
        ew, own = float(rec.get("ew_sharpe", np.nan)), float(rec.get("sharpe", np.nan))
        if not np.isfinite(p):
            return SessionVerdict(False, f"BEATS_EQUAL_WEIGHT FAILED at {day}: no Sharpe difference to test yet "
                                         "(fewer than three common live sessions or a flat curve)")
        ok = bool(p < VALUE_ADDED_ALPHA)
        text = (f"Sharpe {own:.2f} vs equal weight {ew:.2f}: difference {diff:+.2f} a year, z {z:.2f}, one-sided "
                f"p {p:.3f} as of {day}")
        summary = (f"{text}: significantly better at {VALUE_ADDED_ALPHA:.0%}" if ok else
                   f"BEATS_EQUAL_WEIGHT FAILED at {day}: {text}: "
                   + ("significantly worse" if p > 1.0 - VALUE_ADDED_ALPHA else "not significantly better")
                   + f" at {VALUE_ADDED_ALPHA:.0%}")
        return SessionVerdict(ok, summary, _finite(sharpe_diff=diff, z=z, p_value=p, sharpe=own, ew_sharpe=ew))

    per = {_d(t): judge(rec, _d(t)) for t, rec in frame.iterrows()}
    last = per[_d(frame.index[-1])]
    rec = frame.iloc[-1]
    return FuseResult("beats_equal_weight", last.passed, "WARN", last.summary,
                      {"sharpe_diff": _num(rec.get("sharpe_diff")), "z": _num(rec.get("sharpe_diff_z")),
                       "p_value": _num(rec.get("sharpe_diff_p")), "alpha": VALUE_ADDED_ALPHA,
                       "session": _d(frame.index[-1])}, "", per)


def _num(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
