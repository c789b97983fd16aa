"""Per trading session: the raw bars of every configured fund of a calendar, ingested into the market store.

``market_data`` (one copy per calendar group, :func:`market_data_asset`; the main calendar's group keeps
the plain key, others are prefixed like the pool assets: ``xnys/market_data``) reads the funds of the
group's pools from the configured source (``data.source``) through the run's last session and upserts
them into the market store (:mod:`rotation_platform.data.market_store`, on ``storage.backend``). With
``data.history: store`` the pools read their history from that store.

Each partition records the bars dated in it (new / unchanged / restated), the funds, the store's location
and its DataVersion: a hash chain over everything stored through the session
(:func:`rotation_platform.data.market_store.session_versions`), so a restated bar dated ``d`` changes the
version of the partition holding ``d`` and of every later one. Dagster marks a downstream partition stale
when a newer materialisation of an upstream partition it read carries another data version than the one
it read (``CachingStaleStatusResolver._is_dep_updated``). A run that restates a bar dated before its own
sessions therefore records a materialisation, with the new data version, for every partition from that
date on that was materialised before (each has a new version: the chain moves from the restated date on),
and lists the restatements in a metadata table.

Pool assets declare the dependency with :data:`MARKET_DATA_DEP` (or :func:`market_data_dep` for another
group): pool x session partitions map to the session dimension.
"""


from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd

from assets._metadata import SINGLE_RUN, add_partition_metadata
from assets.partitions import MarketGroup, session_of
from rotation_platform.observability.steps import step_logs
from rotation_platform.data.market_store import (
    Restatement,
    calendar_symbols,
    ingest_from_source,
    open_market_store,
)

__all__ = ["MARKET_DATA", "MARKET_DATA_DEP", "market_data_asset", "market_data_dep", "market_data_assets",
           "restatement_table"]

MARKET_DATA = "market_data"
#: rows of the restatement table shown in the metadata (the store's log keeps every one)
MAX_LISTED = 50


def market_data_dep(group: MarketGroup | None = None) -> dg.AssetDep:
    """The dependency of a pool x session asset on the session's ``market_data`` partition."""
    key = group.key(MARKET_DATA) if group is not None else dg.AssetKey(MARKET_DATA)
    return dg.AssetDep(key, partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="session"))


#: what the main group's pool ``prices`` asset declares: ``deps=[MARKET_DATA_DEP]``
MARKET_DATA_DEP = market_data_dep()


def restatement_table(restatements: Sequence[Restatement], limit: int = MAX_LISTED) -> str:
    """Markdown table of restated values (the first ``limit``)."""
    lines = ["| table | symbol | session | field | old | new |", "| --- | --- | --- | --- | ---: | ---: |"]
    for r in list(restatements)[:limit]:
        lines.append(f"| {r.table} | {r.symbol} | {r.session} | {r.field} | {r.old:.10g} | {r.new:.10g} |")
    if len(restatements) > limit:
        lines.append(f"| ... | {len(restatements) - limit} more in the store's restatement log | | | | |")
    return "\n".join(lines)


def _tags(version: str) -> dict[str, str]:
    return {"dagster/data_version": version, "dagster/data_version_is_user_provided": "true"}


def market_data_asset(group: MarketGroup, *, plain_key: bool = False) -> dg.AssetsDefinition:
    """The ``market_data`` asset of calendar ``group``: key ``market_data`` for the main group, the group's
    prefix otherwise (``xnys/market_data``). ``plain_key=True`` keeps the plain key for any group, for a list
    that :func:`~assets.partitions.group_assets` renames together with the pool assets (their dependency
    on ``market_data`` is then renamed to the group's copy in the same step)."""
    key = dg.AssetKey(MARKET_DATA) if plain_key else group.key(MARKET_DATA)
    session_def = group.partitions.session

    # one op per calendar group: the copies compute different funds, so they need different op names
    @dg.multi_asset(
        name=MARKET_DATA if group.main else f"{group.prefix}_{MARKET_DATA}",
        specs=[dg.AssetSpec(
            key, partitions_def=session_def, group_name="data", code_version="1",
            description=f"Raw daily bars and corporate actions of every configured fund on {group.calendar}, "
                        "ingested from data.source into the market store through the session (the system of record "
                        "data.history: store reads). Restated vendor values replace the stored ones and are logged.")],
        partitions_def=session_def,
        backfill_policy=SINGLE_RUN,
        required_resource_keys={"platform"},
    )
    def market_data(context: dg.AssetExecutionContext) -> Iterator[object]:
        with step_logs(context):  # run, step, asset and session on every log record of the step
            yield from _market_data(context)

    def _market_data(context: dg.AssetExecutionContext) -> Iterator[object]:
        # the key at run time: group_assets may have renamed the plain key to the group's
        asset_key = context.assets_def.key
        config = context.resources.platform.config
        sessions = session_of(context)
        symbols = calendar_symbols(config, group.calendar)
        store = open_market_store(config.storage)
        try:
            result = ingest_from_source(store, config, group.calendar, sessions[-1])
            run_keys = [str(s.date()) for s in sessions]
            earliest = result.earliest_restated
            done = context.instance.get_materialized_partitions(asset_key) if earliest is not None else set()
            older = sorted(k for k in done if pd.Timestamp(k) >= earliest and k not in run_keys) if done else []
            # the version chain always starts at the first partition, so a session's version depends on the
            # stored data only (never on which run computed it)
            last = max([*run_keys, *older])
            span = [k for k in session_def.get_partition_keys() if k <= last]
            versions = store.session_versions(symbols, span)
            location = store.location
        finally:
            store.close()

        restated_table = dg.MetadataValue.md(restatement_table(result.restatements)) if result.restatements else None
        last_meta: dict[str, object] = {}
        entries: dict[str, dict[str, object]] = {}
        for i, k in enumerate(run_keys):
            previous = run_keys[i - 1] if i else None
            counts = result.bars_in(previous, k)
            meta = {"rows_new": dg.MetadataValue.int(counts["new"]),
                    "rows_unchanged": dg.MetadataValue.int(counts["unchanged"]),
                    "rows_restated": dg.MetadataValue.int(counts["restated"]),
                    "symbols": dg.MetadataValue.json(symbols),
                    "store": dg.MetadataValue.text(location),
                    "data_version": dg.MetadataValue.text(versions[k])}
            if k == run_keys[-1]:
                meta.update({"ingest": dg.MetadataValue.json({x: v for x, v in result.to_dict().items()
                                                              if x != "restatements"}),
                             "restated_values": dg.MetadataValue.int(len(result.restatements))})
                if restated_table is not None:
                    meta["restatements"] = restated_table
            entries[k] = meta
            last_meta = meta
        add_partition_metadata(context, asset_key, entries)
        yield dg.MaterializeResult(data_version=dg.DataVersion(versions[run_keys[-1]]))
        # a range run: Dagster gives every partition of the result the same version; each gets its own
        for k in run_keys[:-1]:
            yield dg.AssetMaterialization(asset_key=asset_key, partition=k, tags=_tags(versions[k]),
                                          metadata={"data_version": dg.MetadataValue.text(versions[k]),
                                                    "store": dg.MetadataValue.text(location)})
        # partitions materialised before whose stored history a restatement changed
        if older:
            for k in older:
                context.log_event(dg.AssetMaterialization(
                    asset_key=asset_key, partition=k, tags=_tags(versions[k]),
                    description=f"restated by the ingest of {run_keys[-1]}",
                    metadata={"data_version": dg.MetadataValue.text(versions[k]),
                              "restated_by_session": dg.MetadataValue.text(run_keys[-1]),
                              "store": dg.MetadataValue.text(location),
                              **({"restatements": restated_table} if restated_table is not None else {})}))
            context.log.info(f"{len(result.restatements)} restated value(s) from {earliest.date()}: recorded new data "
                             f"versions for {len(older)} earlier partition(s) of {asset_key.to_user_string()}")
        if len(run_keys) > 1 or older:
            # the run's last session is recorded last again, so the UI's latest materialisation is it, with its
            # figures (the earlier partitions' versions above were recorded after the run's result)
            yield dg.AssetMaterialization(asset_key=asset_key, partition=run_keys[-1],
                                          tags=_tags(versions[run_keys[-1]]), metadata=last_meta)

    return market_data


def market_data_assets(groups: Sequence[MarketGroup]) -> list[dg.AssetsDefinition]:
    """One ``market_data`` asset per calendar group."""
    return [market_data_asset(g) for g in groups]
