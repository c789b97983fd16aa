"""Per pool and session: factor screen, walk-forward result, backtest, capacity and the target portfolio.

Each ``emit_*`` function yields one asset's output, its per-partition metadata and its checks for the pools of
a run (``groups``: pool, its :class:`~rotation_platform.production.pool_run.PoolRun`, sessions, partition
keys); :mod:`assets.chain` runs them in one step."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd

from assets._metadata import (
    check_evaluations,
    check_spec,
    metadata_tail,
    per_partition,
    pool_value,
)
from resources.platform import PlatformResource
from resources.stores import StoreResource
from rotation_platform.production import fuses
from rotation_platform.reports.plots import (
    drawdown_png,
    equity_png,
    ic_decay_png,
    markdown_image,
    monthly_heatmap_png,
    pool_tear_sheet,
)
from rotation_platform.production.positions import positions_provider
from rotation_platform.reports.orders import target_markdown
from rotation_platform.reports.tables import markdown_table, number_text
from rotation_platform.research import monthly_returns


def emit_factor_screen(context: dg.AssetExecutionContext, platform: PlatformResource,
                       groups: list) -> Iterator[object]:
    frames, checks = [], {}
    for pool, run, sessions, keys in groups:
        frames.append(run.screen_frame())

        def row(t, run=run):
            res = run.screens[t]
            h = res.selection_horizon
            sel = res.stats.loc[res.selected_names] if res.selected else res.stats.iloc[:0]
            return {"selected": len(res.selected), "selection_horizon": int(h),
                    "mean_abs_ic": float(sel[f"ic_mean_{h}"].abs().mean()) if len(sel) else float("nan"),
                    "mean_abs_icir": float(sel[f"icir_{h}"].abs().mean()) if len(sel) else float("nan")}

        def tables(t, run=run):
            out = {"top_factors": markdown_table(run.screens[t].summary().rename_axis("factor"))}
            clusters = run.fund_clusters(t)  # funds that count as one bet: at most one of each is held
            out["fund_clusters"] = dg.MetadataValue.md(
                "\n".join(f"- {' ~ '.join(c)}" for c in clusters) if clusters else "_no two funds alike_")
            return out

        last = run.screens[sessions[-1]]
        latest = {}
        if last.selected:
            decay = last.decay.loc[last.selected_names]
            latest["ic_decay"] = dg.MetadataValue.md(markdown_image(
                ic_decay_png(decay, f"{pool} IC decay as of {sessions[-1].date()}"), "IC decay"))
        per_partition(context, "factor_screen", pool, metadata_tail(keys, sessions), row, tables, latest)
        checks[pool] = fuses.effective_factors(run)
    yield dg.Output(pool_value(groups, frames), output_name="factor_screen")
    yield from check_evaluations(context, "factor_screen", groups, {"effective_factors": checks})


def emit_wfo_result(context: dg.AssetExecutionContext, platform: PlatformResource, groups: list) -> Iterator[object]:
    values = []
    for pool, run, sessions, keys in groups:
        records = {key: run.wfo_record(t) for key, t in zip(keys, sessions)}
        by_session = dict(zip(sessions, records.values()))

        def row(t, by_session=by_session):
            r = by_session[t]
            return {"efficiency": _num(r["efficiency"]), "pbo": _num((r["pbo"] or {}).get("pbo")),
                    "dsr": _num(r["dsr"]["dsr"]), "oos_objective": _num(r["oos_objective"]),
                    "reoptimised": bool(r["reoptimised_this_session"]),
                    "selection_is_ic": _num(r["selection_ic"]["mean_is_ic"]),
                    "selection_oos_ic": _num(r["selection_ic"]["mean_oos_ic"])}

        def tables(t, by_session=by_session):
            r = by_session[t]
            live = (r["live"] or {}).get("params")
            return {"choice": _choice_text(r), "live_params": dg.MetadataValue.text(str(live))}

        per_partition(context, "wfo_result", pool, metadata_tail(keys, sessions), row, tables)
        values.append(records if len(keys) > 1 else records[keys[-1]])
    yield dg.Output(pool_value(groups, values), output_name="wfo_result")


def _choice_text(record: dict) -> str:
    """The walk-forward choice in force at a session: the live parameter set, when and how it was chosen,
    the validation figures and the latest windows (markdown)."""
    windows = pd.DataFrame(record["windows"]).tail(8)
    live = record["live"] or {}
    dsr = record["dsr"]
    pbo = (record["pbo"] or {}).get("pbo")
    table = markdown_table(windows.set_index("oos_start")) if len(windows) else "_no walk-forward window yet_"
    return (f"**live parameter set** `{live.get('params')}` chosen at {live.get('chosen_at')} "
            f"(in-sample from {live.get('in_sample_start')}); re-optimised {record['cadence']}, "
            f"last at {record['reoptimised_at']}\n\n"
            f"out-of-sample {record['objective']} {_fmt(record['oos_objective'])}, WFO efficiency "
            f"{_fmt(record['efficiency'])}, PBO {_fmt(pbo)}, deflated Sharpe ratio {_fmt(dsr['dsr'])} "
            f"(probability; out-of-sample Sharpe {_fmt(dsr['sharpe_annualised'])} annualised, "
            f"{_fmt(dsr['sharpe_per_session'])} per session)\n\n" + table)


def emit_backtest(context: dg.AssetExecutionContext, platform: PlatformResource, groups: list) -> Iterator[object]:
    frames, monthly, thresholds, value_added = [], {}, {}, {}
    for pool, run, sessions, keys in groups:
        frame = run.backtest_frame()
        checks = fuses.backtest_thresholds(run, frame)
        value_added[pool] = fuses.beats_equal_weight(run, frame)

        def row(t, frame=frame):
            return {**{k: float(frame.loc[t, k]) for k in ("equity", "sharpe", "max_drawdown", "annual_return",
                                                             "drawdown", "monthly_win_rate", "annual_turnover",
                                                             "var_95")},
                    "params_traded": str(frame.loc[t, "params"])}

        def tables(t, checks=checks):
            day = str(pd.Timestamp(t).date())
            verdicts = pd.DataFrame([{"metric": c.name.removesuffix("_threshold"),
                                      "value": c.verdict(day).values.get("value", float("nan")),
                                      "threshold": c.details["threshold"], "rule": c.details["operator"],
                                      "verdict": "pass" if c.verdict(day).passed else "FAIL"}
                                     for c in checks]).set_index("metric")
            return {"metrics_vs_thresholds": markdown_table(verdicts, kinds={"value": "number", "threshold": "number"})}

        bt = run.backtest
        upto = int(run.rows[-1])
        first = bt.plan.first_trade_row or 0
        eq = bt.equity.iloc[first: upto + 1]
        bench = (1.0 + bt.benchmark_returns.iloc[first: upto + 1]).cumprod()
        months = monthly_returns(bt.returns.iloc[first + 1: upto + 1])
        latest = {
            "equity_curve": dg.MetadataValue.md(markdown_image(
                equity_png(eq, bench, f"{pool}: strategy vs benchmark ({bt.benchmark})"), "equity")),
            "drawdown_chart": dg.MetadataValue.md(markdown_image(drawdown_png(eq, f"{pool}: drawdown"), "drawdown")),
            "monthly_returns": dg.MetadataValue.md(markdown_image(
                monthly_heatmap_png(months, f"{pool}: monthly returns"), "monthly returns")),
            "tear_sheet": dg.MetadataValue.md(pool_tear_sheet(pool, run, frame, value_added[pool].summary)),
        }
        per_partition(context, "backtest", pool, metadata_tail(keys, sessions), row, tables, latest)
        frames.append(frame)
        monthly[pool] = fuses.monthly_returns(run, frame)
        for c in checks:
            thresholds.setdefault(c.name, {})[pool] = c
    yield dg.Output(pool_value(groups, frames), output_name="backtest")
    yield from check_evaluations(context, "backtest", groups, {"monthly_returns": monthly, **thresholds,
                                                               "beats_equal_weight": value_added})


def emit_capacity_report(context: dg.AssetExecutionContext, platform: PlatformResource,
                         groups: list) -> Iterator[object]:
    frames, checks = [], {}
    for pool, run, sessions, keys in groups:
        frame = run.capacity_frame()
        by_session = run.capacity_sessions()

        def row(t, by_session=by_session):
            rec = by_session.loc[t]
            cap = float(rec["capacity"])
            return {"max_adv_utilisation": float(rec["max_utilisation"]), "adv_breaches": int(rec["adv_breaches"]),
                    "weight_breaches": int(rec["weight_breaches"]),
                    "positions_without_adv": int(rec["positions_without_adv"]),
                    "capacity": cap if np.isfinite(cap) else float("nan"), "currency": run.currency}

        def tables(t, frame=frame, by_session=by_session, currency=run.currency):
            return {"holdings": _holdings_text(frame.xs(t, level="session"), by_session.loc[t], t, currency)}

        per_partition(context, "capacity_report", pool, metadata_tail(keys, sessions), row, tables)
        frames.append(frame)
        checks[pool] = fuses.capacity(run)
    yield dg.Output(pool_value(groups, frames), output_name="capacity_report")
    yield from check_evaluations(context, "capacity_report", groups, {"capacity": checks})


def _holdings_text(table: pd.DataFrame, rec: pd.Series, t: pd.Timestamp, currency: str) -> str:
    """The capacity line of a session and its held positions against their ADV limit (markdown)."""
    cap = float(rec["capacity"])
    head = (f"capacity **{'unbounded' if not np.isfinite(cap) else f'{cap:,.0f} {currency}'}** at {pd.Timestamp(t).date()} "
            f"(max ADV utilisation {float(rec['max_utilisation']):.1%}"
            + (f" on {rec['binding_symbol']}" if rec["binding_symbol"] else "") + "; "
            + (f"positions without ADV: {rec['without_adv']}" if int(rec["positions_without_adv"]) else
               "every position has an ADV") + ")\n\n")
    held = table[table["value"] > 0][["shares", "value", "weight", "adv", "adv_limit", "utilisation", "no_adv",
                                      "adv_breach", "weight_breach"]]
    return head + (markdown_table(held) if len(held) else "_no position held_")


def emit_target_portfolio(context: dg.AssetExecutionContext, platform: PlatformResource, groups: list,
                          storage: StoreResource) -> Iterator[object]:
    frames, scaling, completeness = [], {}, {}
    store = storage.open_store() if platform.config.positions.source == "store" else None
    try:
        provider = positions_provider(platform.config, store)
        for pool, run, sessions, keys in groups:
            frame = run.target_frame(provider)
            metas = {str(t.date()): run.run_metadata(t) for t in sessions}
            n_funds = len(run.panel.symbols)

            def block_of(t, frame=frame, n_funds=n_funds, sessions=sessions):
                i = int(sessions.get_loc(t))
                return frame.iloc[i * n_funds: (i + 1) * n_funds]

            def row(t, block_of=block_of, metas=metas):
                block = block_of(t)
                return {"orders": int((block["order_shares"] != 0).sum()),
                        "invested_after": float(block["invested_after"].iloc[0]),
                        "order_value": float(block["order_value"].sum()),
                        "rebalance": bool(block["rebalance"].iloc[0]),
                        **metas[str(pd.Timestamp(t).date())]}

            def tables(t, frame=frame):
                return {"target": target_markdown(frame.xs(t, level="session"))}

            per_partition(context, "target_portfolio", pool, metadata_tail(keys, sessions), row, tables)
            frames.append(frame)
            scaling[pool] = fuses.target_vol_scaling(run, frame)
            completeness[pool] = fuses.metadata_completeness(metas)
    finally:
        if store is not None:
            store.close()
    yield dg.Output(pool_value(groups, frames), output_name="target_portfolio")
    yield from check_evaluations(context, "target_portfolio", groups,
                                 {"target_vol_scaling": scaling, "metadata_completeness": completeness})


def _fmt(x: object) -> str:
    return number_text(x)


def _num(x: object) -> float:
    return float(x) if x is not None else float("nan")


def _out(group: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(group_name=group, code_version="1", is_required=False, description=description)


#: the outputs of the research steps (computed by assets.chain), with their checks
OUTS = {
    "factor_screen": _out("research", "Rank-IC screen of every factor as of the session (labels realised by then): IC "
                                      "mean/std, ICIR, t-stat, hit rate per horizon, coverage, turnover, clusters, "
                                      "selected factors with sign."),
    "wfo_result": _out("research", "Walk-forward optimisation in force at the session: re-optimised on wfo.reoptimise "
                                   "sessions (monthly by default), other sessions carry the latest; live parameter set, "
                                   "windows, efficiency, PBO, deflated Sharpe, stability."),
    "backtest": _out("backtest", "Backtest of the live strategy (monthly re-optimised choices) through the session in raw "
                                 "prices, board lots and corporate actions, verified by an independent ledger: equity, "
                                 "returns, exposure, cash, dividends, costs and every metric as of that session."),
    "capacity_report": _out("backtest", "Holdings at the session (real shares, raw prices) against the ADV of the sessions "
                                        "before it x capital.max_adv_pct and the single-fund weight cap (index session x "
                                        "symbol); a position without ADV is reported as such."),
    "target_portfolio": _out("portfolio", "Target portfolio decided at the close of the session for the next one, in real "
                                          "shares at raw prices: weights, whole-lot shares, orders (only on rebalance "
                                          "sessions), cash; against the actual positions when given (positions.*), else "
                                          "the simulated book (index session x symbol)."),
}
CHECKS = [
    check_spec("effective_factors", "factor_screen",
               "Fuse 3: the screen keeps at least fuses.min_effective_factors factors."),
    check_spec("monthly_returns", "backtest",
               "Fuse 5: every month's return finite and within fuses.max_abs_monthly_return; equity positive."),
    *[check_spec(f"{m}_threshold", "backtest", f"Backtest threshold on {m} (WARN).", blocking=False)
      for m, _, _ in fuses.THRESHOLDS],
    check_spec("beats_equal_weight", "backtest", "Value added (WARN): the strategy's Sharpe ratio above the "
               "equal-weight pool's (monthly, same costs and lots) at 5%, one-sided, by Jobson-Korkie with "
               "Memmel's correction.", blocking=False),
    check_spec("capacity", "capacity_report", "No held position above capital.max_adv_pct of its ADV (WARN); "
               "positions without ADV named.", blocking=False),
    check_spec("target_vol_scaling", "target_portfolio", "Fuse 4: weights finite, long-only, within the cap, "
               "exposure <= 1, cash >= 0, ex-ante volatility sane."),
    check_spec("metadata_completeness", "target_portfolio", "Fuse 8: pools_used, engine_version, price_field, "
               "generated_at, config hash and data hash present."),
]
