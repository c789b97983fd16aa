"""Per-pool prices: read, quality-gated, adjusted and aligned to the pool's calendar."""

import dagster as dg

from assets._metadata import to_dagster_metadata
from assets.partitions import pool_of, pool_partitions
from resources.platform import PlatformResource
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources import make_source
from rotation_platform.reports.prices import price_summary, quality_check_summary

QUALITY_CHECK = "quality_gate"

@dg.multi_asset(
    outs={
        "prices": dg.AssetOut(
            group_name="data",
            description="Adjusted daily OHLCV + amount of the pool's funds on its trading sessions "
                        "(sessions x funds; shares, CNY).",
            code_version="1",
        ),
        "price_quarantine": dg.AssetOut(
            group_name="data",
            description="Rows the data-quality gate took out of the prices, with the reason; nothing is dropped silently.",
            code_version="1",
        ),
    },
    check_specs=[dg.AssetCheckSpec(QUALITY_CHECK, asset="prices", blocking=True,
                                   description="Data-quality gate: schema, sessions, OHLC, stale prices, gaps, "
                                               "unexplained jumps, future dates.")],
    partitions_def=pool_partitions,
)
def prices(context: dg.AssetExecutionContext, platform: PlatformResource):
    config = platform.config
    pool = config.pool(pool_of(context))
    result = load_pool_prices(make_source(config), pool, config.data)
    summary = price_summary(result, config_hash=platform.config_hash)
    panel = result.panel.with_meta(config_hash=platform.config_hash, data_hash=summary["data_hash"])
    yield dg.Output(panel, output_name="prices",
                    metadata=to_dagster_metadata(summary, markdown_keys=("funds_table", "quality_table")))
    yield dg.Output(result.quarantine, output_name="price_quarantine",
                    metadata={"rows": dg.MetadataValue.int(len(result.quarantine))})
    yield dg.AssetCheckResult(
        check_name=QUALITY_CHECK, asset_key="prices", passed=bool(result.report.passed),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=to_dagster_metadata(quality_check_summary(result.report), markdown_keys=("findings",)),
    )

PRICE_ASSETS = [prices]
PRICE_CHECKS: list = []
