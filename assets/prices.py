"""Per pool and session: the adjusted prices of the session, quality-gated as of that session."""

import dagster as dg

from assets._metadata import SINGLE_RUN, check_result, check_spec, pool_value, retry_on_service_errors, to_dagster_metadata
from assets.partitions import pool_session_partitions, run_groups
from resources.platform import PlatformResource
from rotation_platform.production import fuses
from rotation_platform.production.fuses import FuseResult
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
    groups = [(pool, platform.pool_run(pool, sessions), sessions, keys) for pool, sessions, keys in run_groups(context)]
    panels, quarantines, gates, indexes = [], {}, {}, {}
    meta: dict[str, object] = {}
    for pool, run, sessions, keys in groups:
        with retry_on_service_errors():
            result = run.prices
        summary = price_summary(result, config_hash=platform.config_hash)
        meta = to_dagster_metadata(summary, markdown_keys=("funds_table", "quality_table"))
        panels.append(run.price_rows().with_meta(config_hash=platform.config_hash))
        by_session = run.quarantine_by_session()
        quarantines.update({key: by_session[t] for key, t in zip(keys, sessions)})
        for key, t in zip(keys, sessions):  # what each partition's values were computed from
            context.add_asset_metadata({"data_hash": dg.MetadataValue.text(run.data_hash(t)),
                                        "session": dg.MetadataValue.text(str(t.date()))},
                                       asset_key="prices", partition_key=key)
        gates[pool] = result.report
        indexes[pool] = fuses.index_normalisation(run)
    meta["pools_in_run"] = dg.MetadataValue.json([g[0] for g in groups])
    meta["sessions_in_run"] = dg.MetadataValue.int(sum(len(g[3]) for g in groups))
    yield dg.Output(pool_value(groups, panels), output_name="prices", metadata=meta)
    last_key = groups[-1][3][-1]
    yield dg.Output(quarantines if len(quarantines) > 1 else quarantines[last_key], output_name="price_quarantine",
                    metadata={"rows": dg.MetadataValue.int(len(quarantines[last_key]))})
    if len(gates) == 1:
        report = next(iter(gates.values()))
        yield dg.AssetCheckResult(
            check_name=QUALITY_CHECK, asset_key="prices", passed=bool(report.passed),
            severity=dg.AssetCheckSeverity.ERROR, description=_gate_line(report),
            metadata=to_dagster_metadata(quality_check_summary(report), markdown_keys=("findings",)),
        )
    else:
        yield check_result(fuses.combine({pool: _gate_fuse(report) for pool, report in gates.items()}), "prices")
    yield check_result(fuses.combine(indexes), "prices")


def _gate_line(report) -> str:
    """One line: pass, or the ERROR/FATAL findings with their funds (e.g. "QUALITY GATE FAILED: ...")."""
    if report.passed:
        return "data quality gate passed"
    bad = [f for f in report.findings if f.severity.name in ("ERROR", "FATAL")]
    parts = [f"{f.check} {f.symbol}: {f.message}" for f in bad[:3]]
    return "QUALITY GATE FAILED: " + "; ".join(parts) + (f" (+{len(bad) - 3} more)" if len(bad) > 3 else "")


def _gate_fuse(report) -> FuseResult:
    summary = quality_check_summary(report)
    return FuseResult(QUALITY_CHECK, bool(report.passed), "ERROR", _gate_line(report),
                      {k: v for k, v in summary.items() if k != "findings"}, str(summary["findings"]))


PRICE_ASSETS = [prices]
