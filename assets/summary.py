"""Per session, across pools: the combined metrics summary and the session snapshot."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets._metadata import PER_PARTITION_METADATA, SINGLE_RUN, metadata_tail, retry_on_service_errors
from assets.partitions import session_of, session_partitions
from resources.platform import PlatformResource
from resources.stores import StoreResource
from rotation_platform.production.summary import COMBINED, pool_metrics_summary as summarise
from rotation_platform.reports.tables import markdown_table
from rotation_platform.storage.base import Partition
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.snapshots import SnapshotStore

BY_SESSION = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="session")
POOL_ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio")


def _read(store, asset: str, pool: str, session: pd.Timestamp):
    try:
        return store.read((asset,), Partition.multi({"pool": pool, "session": str(session.date())}))
    except StorageNotFoundError:
        return None


@dg.asset(
    partitions_def=session_partitions, group_name="summary", backfill_policy=SINGLE_RUN, code_version="1",
    deps=[dg.AssetDep("backtest", partition_mapping=BY_SESSION)],
    description="Every pool's metrics as of the session with the threshold verdicts, and the combined view "
                "weighted by each pool's summary_weight (index session x pool; COMBINED is the weighted row).",
)
def pool_metrics_summary(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
    config = platform.config
    sessions = session_of(context)
    frames = []
    with retry_on_service_errors():
        store = storage.open_store()
        try:
            for t in sessions:
                frames.append(summarise(config, t, {p: _read(store, "backtest", p, t) for p in config.pool_names}))
        finally:
            store.close()
    table = pd.concat(frames)
    tail = {t for _, t in metadata_tail([str(t.date()) for t in sessions], sessions)}
    for t, frame in zip(sessions, frames):
        if t not in tail:
            continue
        comb = frame.xs(COMBINED, level="pool").iloc[0]
        # each session its own table (one row per pool and the combined row: small), then its numbers
        meta = {"summary": dg.MetadataValue.md(markdown_table(frame.droplevel("session")))}
        meta.update({f"combined_{k}": dg.MetadataValue.float(float(comb[k])) for k in ("annual_return", "sharpe",
                                                                                         "max_drawdown", "equity")
                     if pd.notna(comb[k])})
        meta["all_thresholds_ok"] = dg.MetadataValue.bool(bool(comb["all_thresholds_ok"]))
        meta["missing_pools"] = dg.MetadataValue.json(list(frame.index.get_level_values("pool")[frame["status"] == "missing"]))
        context.add_asset_metadata(meta, partition_key=t.strftime("%Y-%m-%d"))
    return table


@dg.asset(
    partitions_def=session_partitions, group_name="summary", backfill_policy=SINGLE_RUN, code_version="1",
    deps=[dg.AssetDep(a, partition_mapping=BY_SESSION) for a in POOL_ASSETS] + ["pool_metrics_summary"],
    description="Content hashes and the config hash of everything produced for the session, with copies of the "
                "values of the last orchestration.keep_snapshots sessions (restore one with "
                "`python -m jobs.snapshots restore <session>`).",
)
def session_snapshot(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
    config = platform.config
    sessions = session_of(context)
    snapshots = SnapshotStore(Path(config.storage.data_dir) / "snapshots", keep=config.orchestration.keep_snapshots)
    keep_from = max(len(sessions) - snapshots.keep, 0)
    manifests = {}
    with retry_on_service_errors():
        store = storage.open_store()
        try:
            for i, t in enumerate(sessions):
                values: dict[str, dict[str, object]] = {}
                for asset in POOL_ASSETS:
                    for pool in config.pool_names:
                        v = _read(store, asset, pool, t)
                        if v is not None:
                            values.setdefault(asset, {})[pool] = v
                summary = store.read(("pool_metrics_summary",), Partition.single(str(t.date())))
                values["pool_metrics_summary"] = {"_session": summary}
                day = str(t.date())
                if i >= keep_from:
                    manifest = snapshots.save(day, values, platform.config_hash)
                else:
                    manifest = SnapshotStore.manifest_of(day, values, platform.config_hash)
                manifests[day] = manifest
                n_values = sum(len(v) for v in manifest["assets"].values())
                if i < len(sessions) - PER_PARTITION_METADATA:
                    continue
                context.add_asset_metadata({"values": dg.MetadataValue.int(n_values),
                                            "config_hash": dg.MetadataValue.text(platform.config_hash),
                                            "kept": dg.MetadataValue.bool(i >= keep_from)},
                                           partition_key=day)
        finally:
            store.close()
    context.add_output_metadata({"snapshots_kept": dg.MetadataValue.json(snapshots.sessions())})
    return manifests if len(sessions) > 1 else manifests[str(sessions[-1].date())]


SUMMARY_ASSETS = [pool_metrics_summary, session_snapshot]
