"""Per pool and session: the adjusted prices of the session, quality-gated as of that session."""

from collections.abc import Iterator

import dagster as dg

from assets._metadata import (
    add_partition_metadata,
    asset_key_of,
    check_evaluations,
    check_spec,
    metadata_tail,
    per_partition,
    pool_value,
    retry_on_service_errors,
    to_dagster_metadata,
)
from resources.platform import PlatformResource
from rotation_platform.production import fuses
from rotation_platform.reports.prices import price_summary, quality_check_summary

QUALITY_CHECK = "quality_gate"


#: the outputs of the prices step (assets.chain), with their checks
OUTS = {
    "prices": dg.AssetOut(
        group_name="data",
        description="Adjusted daily OHLCV + amount of the pool's funds for the session (funds x fields; "
                    "shares, in the pool's currency), loaded and checked as of that session.",
        code_version="2",
        is_required=False,
    ),
    "price_quarantine": dg.AssetOut(
        group_name="data",
        description="Rows the data-quality gate had taken out by the session, with the reason; nothing is "
                    "dropped silently.",
        code_version="2",
        is_required=False,
    ),
}
CHECKS = [
    check_spec(QUALITY_CHECK, "prices", "Data-quality gate: schema, sessions, OHLC, stale prices, gaps, "
                                        "unexplained jumps, future dates. A fund with an ERROR finding inside "
                                        "data.quality.exclusion_window is excluded from the session's "
                                        "universe (listed); the gate fails on a FATAL finding or when fewer "
                                        "than pools[].min_funds funds remain tradeable."),
    check_spec("index_normalisation", "prices", "Fuse 6: sessions sorted, unique and on the pool's calendar; "
                                                "symbols exactly the configured pool."),
]


def emit_prices(context: dg.AssetExecutionContext, platform: PlatformResource, groups: list) -> Iterator[object]:
    """The prices and the quarantine of every partition of the run, their metadata and checks."""
    panels, quarantines, gates, indexes, findings = [], {}, {}, {}, {}
    quarantine_selected = asset_key_of(context, "price_quarantine") in context.selected_asset_keys
    prices_selected = asset_key_of(context, "prices") in context.selected_asset_keys
    for pool, run, sessions, keys in groups:
        with retry_on_service_errors():
            result = run.prices
        panels.append(run.price_rows().with_meta(config_hash=platform.config_hash))
        by_session = run.quarantine_by_session()
        quarantines.update({key: by_session[t] for key, t in zip(keys, sessions)})
        close = run.panel["close"]

        def row(t, close=close, run=run):
            bar = close.loc[t]
            universe = run.universe_at(t)
            return {"funds_with_bar": int(bar.notna().sum()), "tradeable_funds": len(universe["tradeable"])}

        # the load's summary (funds table, quality findings) describes the panel loaded as of the run's
        # latest session -- what a run of that session alone shows -- so it goes on that partition only
        summary = to_dagster_metadata(price_summary(result, config_hash=platform.config_hash),
                                      markdown_keys=("funds_table", "quality_table"))
        load_tables = {k: summary.pop(k) for k in ("funds_table", "quality_table")}
        latest = {**summary, "pools_in_run": dg.MetadataValue.json([g[0] for g in groups]),
                  "sessions_in_run": dg.MetadataValue.int(sum(len(g[3]) for g in groups))}

        def tables(t, run=run, last=sessions[-1], load_tables=load_tables):
            # the funds the universe policy leaves out of the session's decision, with the reason
            universe = run.universe_at(t)
            out = {"excluded_funds": dg.MetadataValue.json({**universe["ended"], **universe["excluded"]})}
            return {**out, **(load_tables if t == last else {})}

        if prices_selected:
            per_partition(context, "prices", pool, metadata_tail(keys, sessions), row, tables, latest)
        if quarantine_selected:
            per_partition(context, "price_quarantine", pool, metadata_tail(keys, sessions),
                          lambda t, by_session=by_session: {"quarantined_rows": len(by_session[t])})
        if prices_selected:  # what each partition was computed from
            add_partition_metadata(context, asset_key_of(context, "prices"), {
                key: {"session": dg.MetadataValue.text(str(t.date())),
                      "data_hash": dg.MetadataValue.text(run.data_hash(t))} for key, t in zip(keys, sessions)})
        gates[pool] = fuses.quality_gate(run)
        findings[pool] = {k: v for k, v in to_dagster_metadata(quality_check_summary(result.report)).items()
                          if k != "findings"}  # the findings are the fuse's table
        indexes[pool] = fuses.index_normalisation(run)
    if prices_selected:
        yield dg.Output(pool_value(groups, panels), output_name="prices")
    if quarantine_selected:
        last_key = groups[-1][3][-1]
        yield dg.Output(quarantines if len(quarantines) > 1 else quarantines[last_key], output_name="price_quarantine")
    yield from check_evaluations(context, "prices", groups,
                                 {QUALITY_CHECK: gates, "index_normalisation": indexes},
                                 extra={QUALITY_CHECK: lambda pool, _: findings[pool]})

