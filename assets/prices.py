"""Per pool and session: the adjusted prices of the session, quality-gated as of that session."""

import dagster as dg

from assets._metadata import SINGLE_RUN, check_result, check_spec, retry_on_service_errors, to_dagster_metadata
from assets.partitions import pool_session_partitions, run_scope
from resources.platform import PlatformResource
from rotation_platform.production import fuses
from rotation_platform.reports.prices import price_summary, quality_check_summary

QUALITY_CHECK = "quality_gate"


@dg.multi_asset(
    outs={
        "prices": dg.AssetOut(
            group_name="data",
            description="Adjusted daily OHLCV + amount of the pool's funds for the session (funds x fields; "
                        "shares, CNY), loaded and checked as of that session.",
            code_version="2",
        ),
        "price_quarantine": dg.AssetOut(
            group_name="data",
            description="Rows the data-quality gate had taken out by the session, with the reason; nothing is "
                        "dropped silently.",
            code_version="2",
        ),
    },
    check_specs=[
        check_spec(QUALITY_CHECK, "prices", "Data-quality gate: schema, sessions, OHLC, stale prices, gaps, "
                                            "unexplained jumps, future dates."),
        check_spec("index_normalisation", "prices", "Fuse 6: sessions sorted, unique and on the pool's calendar; "
                                                    "symbols exactly the configured pool."),
    ],
    partitions_def=pool_session_partitions,
    backfill_policy=SINGLE_RUN,
)
def prices(context: dg.AssetExecutionContext, platform: PlatformResource):
    pool, sessions, keys = run_scope(context)
    run = platform.pool_run(pool, sessions)
    with retry_on_service_errors():
        result = run.prices
    summary = price_summary(result, config_hash=platform.config_hash)
    rows = run.price_rows().with_meta(config_hash=platform.config_hash)
    quarantine = run.quarantine_by_session()
    value = {key: quarantine[t] for key, t in zip(keys, sessions)} if len(keys) > 1 else quarantine[sessions[-1]]
    meta = to_dagster_metadata(summary, markdown_keys=("funds_table", "quality_table"))
    meta["sessions_in_run"] = dg.MetadataValue.int(len(keys))
    for key, t in zip(keys, sessions):  # what each partition's values were computed from
        context.add_asset_metadata({"data_hash": dg.MetadataValue.text(run.data_hash(t)),
                                    "session": dg.MetadataValue.text(str(t.date()))},
                                   asset_key="prices", partition_key=key)
    yield dg.Output(rows, output_name="prices", metadata=meta)
    yield dg.Output(value, output_name="price_quarantine",
                    metadata={"rows": dg.MetadataValue.int(len(quarantine[sessions[-1]]))})
    yield dg.AssetCheckResult(
        check_name=QUALITY_CHECK, asset_key="prices", passed=bool(result.report.passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=_gate_line(result.report),
        metadata=to_dagster_metadata(quality_check_summary(result.report), markdown_keys=("findings",)),
    )
    yield check_result(fuses.index_normalisation(run), "prices")


def _gate_line(report) -> str:
    """One line: pass, or the ERROR/FATAL findings with their funds (e.g. "QUALITY GATE FAILED: ...")."""
    if report.passed:
        return "data quality gate passed"
    bad = [f for f in report.findings if f.severity.name in ("ERROR", "FATAL")]
    parts = [f"{f.check} {f.symbol}: {f.message}" for f in bad[:3]]
    return "QUALITY GATE FAILED: " + "; ".join(parts) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")


PRICE_ASSETS = [prices]
