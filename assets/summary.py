"""Per session, across pools: the combined metrics summary and the session snapshot.

Both judge whether each pool's stored values are current (``rotation_platform.production.summary.
pool_currency``): from the data and config hashes the values carry, the pool's run record in the store,
and -- for the latest sessions of a run -- the Dagster instance, which also knows of a run that stopped
before it wrote anything (e.g. its prices could not be loaded).

Sessions: the assets are partitioned by the main calendar's sessions (``assets.partitions``). For each
pool they read the pool's latest session *on or before* the summary's date on the pool's own calendar
(``rotation_platform.production.summary.pool_sessions``): the same day for the main calendar's pools,
the XNYS session of 2021-10-08 for the XSHG summary of 2021-10-08 after Golden Week, the previous US
session (2021-07-02) for the XSHG session 2021-07-05 (a US holiday). Which session each pool's row is as
of is in the summary (``rotation_platform.production.summary.summarise``) and in the ``pool_sessions``
metadata. A US pool's session D closes after the XSHG session D (16:00 New York is 04:00 or 05:00 in
Shanghai the next day): the summary sensor waits for its target portfolio before it runs the summary of
D (``jobs.schedules.summary_requests``). :func:`build_summary_assets` adds the other calendar groups'
prefixed assets to the dependencies.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets._metadata import PER_PARTITION_METADATA, SINGLE_RUN, metadata_tail, retry_on_service_errors
from assets.partitions import MarketGroup, session_of, session_partitions
from resources.platform import PlatformResource
from resources.stores import StoreResource
from rotation_platform.observability.steps import step_logs
from rotation_platform.production.summary import (
    COMBINED,
    CURRENCY_ASSETS,
    PoolAsOf,
    pool_currency,
    pool_sessions,
    summarise,
)
from rotation_platform.reports.tables import markdown_table
from rotation_platform.storage.base import Partition
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.provenance import PROVENANCE_KEY, RUN_END_ASSET, read_run_record, results_config_hash
from rotation_platform.storage.snapshots import SnapshotStore, stored_digest

BY_SESSION = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="session")
#: a pool group on another calendar: its sessions are another time zone's windows, which Dagster does not map
#: onto the main calendar's; every partition counts (the summary of D reads the pool's latest session on or
#: before D, :func:`pool_sessions`, and a backfill of both runs the summary after the group's partitions)
OTHER_CALENDAR = dg.AllPartitionMapping()
POOL_ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio")


def _read(store, asset: str, pool: str, session: pd.Timestamp):
    try:
        return store.read((asset,), Partition.multi({"pool": pool, "session": str(session.date())}))
    except StorageNotFoundError:
        return None


def _run_end_key(config, pool: str) -> dg.AssetKey:
    """The Dagster key of the pool's run-end asset (prefixed for a pool outside the main calendar)."""
    from assets.partitions import group_of

    return group_of(config, pool).key(RUN_END_ASSET)


def _summarise(config, t: pd.Timestamp, backtests: dict, currency: dict, taken: dict) -> pd.DataFrame:
    """The summary of ``t`` with each pool's values of its session ``taken[pool]`` (its latest on or before
    ``t`` on its own calendar; the domain function labels which session each row is as of)."""
    return summarise(config, t, {p: PoolAsOf(taken[p], backtests.get(p), currency.get(p)) for p in config.pool_names})


def run_failure(instance, pool: str, session: pd.Timestamp, asset_key: dg.AssetKey | None = None) -> str | None:
    """Why the latest run planned to materialise the pool's target for the session has not (it failed,
    was stopped, or is still going), when the Dagster instance knows of one newer than the stored target."""
    key = f"{pool}|{session.date()}"
    asset_key = asset_key or dg.AssetKey(RUN_END_ASSET)
    try:
        planned = instance.get_latest_planned_materialization_info(asset_key, partition=key)
        if planned is None:
            return None
        done = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]),
                                               limit=1).records
        if done and done[0].storage_id >= planned.storage_id:
            return None
        run = instance.get_run_by_id(planned.run_id)
    except Exception:  # noqa: BLE001 - the instance is a second opinion; the store's evidence stands alone
        return None
    status = run.status.value.lower() if run is not None else "unknown"
    if status == "success":
        return None
    return f"the latest run {planned.run_id[:8]} ({status}) did not materialise {RUN_END_ASSET}"


def _currency(store, config_hash: str, pool: str, session: pd.Timestamp | None, values: dict | None = None,
              instance=None, run_end_key: dg.AssetKey | None = None) -> dict:
    """:func:`pool_currency` of one pool and session from the store (``values``: what was read already;
    ``session`` None: the pool's calendar has no session by then, nothing to read)."""
    values = dict(values or {})
    if session is None:
        return pool_currency(config_hash, {asset: None for asset in CURRENCY_ASSETS}, None, None)
    for asset in CURRENCY_ASSETS:
        if asset not in values:  # only its provenance counts: from the digest recorded on write when there is one
            v = _digested(store, asset, pool, session, {})
            values[asset] = v if v is not None else _read(store, asset, pool, session)
    run = read_run_record(store, Partition.multi({"pool": pool, "session": str(session.date())}))
    failure = run_failure(instance, pool, session, run_end_key) if instance is not None else None
    return pool_currency(config_hash, values, run, failure)


def _pool_metrics_summary(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
    config = platform.config
    sessions = session_of(context)
    frames, taken_by_session = [], []
    run_ends = {p: _run_end_key(config, p) for p in config.pool_names}
    asked = set(sessions[-PER_PARTITION_METADATA:])  # the instance is asked about the latest sessions only
    current_hash = results_config_hash(config)
    with retry_on_service_errors():
        store = storage.open_store()
        try:
            for t in sessions:
                taken = pool_sessions(config, t)
                taken_by_session.append(taken)
                backtests = {p: _read(store, "backtest", p, taken[p]) if taken[p] is not None else None
                             for p in config.pool_names}
                currency = {p: _currency(store, current_hash, p, taken[p], {"backtest": backtests[p]},
                                         context.instance if t in asked else None, run_ends[p])
                            for p in config.pool_names}
                frames.append(_summarise(config, t, backtests, currency, taken))
        finally:
            store.close()
    table = pd.concat(frames)
    tail = {t for _, t in metadata_tail([str(t.date()) for t in sessions], sessions)}
    for t, frame, taken in zip(sessions, frames, taken_by_session):
        if t not in tail:
            continue
        comb = frame.xs(COMBINED, level="pool").iloc[0]
        # each session its own table (one row per pool and the combined row: small), then its numbers
        meta = {"summary": dg.MetadataValue.md(markdown_table(frame.droplevel("session")))}
        meta.update({f"combined_{k}": dg.MetadataValue.float(float(comb[k])) for k in ("annual_return", "sharpe",
                                                                                         "max_drawdown", "equity")
                     if pd.notna(comb[k])})
        meta["all_thresholds_ok"] = dg.MetadataValue.bool(bool(comb["all_thresholds_ok"]))
        # the session each pool's row was read from: its latest on or before the summary's, own calendar
        meta["pool_sessions"] = dg.MetadataValue.json({p: str(s.date()) if s is not None else None
                                                       for p, s in taken.items()})
        meta["missing_pools"] = dg.MetadataValue.json(list(frame.index.get_level_values("pool")[frame["status"] == "missing"]))
        pools = frame.droplevel("session").drop(index=COMBINED)
        meta["not_current_pools"] = dg.MetadataValue.json({p: f"{r['status']}: {r['reason']}"
                                                           for p, r in pools.iterrows()
                                                           if r["status"] in ("stale", "failed")})
        context.add_asset_metadata(meta, partition_key=t.strftime("%Y-%m-%d"))
    return table


def _session_snapshot(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
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
                hashes: dict[str, dict[str, str]] = {}
                taken = pool_sessions(config, t)  # each pool's values of its latest session by t
                kept = i >= keep_from  # a kept snapshot copies the values; the others need their hashes only
                for asset in POOL_ASSETS:
                    for pool in config.pool_names:
                        if taken[pool] is None:
                            continue
                        v = None if kept else _digested(store, asset, pool, taken[pool], hashes)
                        if v is None:
                            v = _read(store, asset, pool, taken[pool])
                        if v is not None:
                            values.setdefault(asset, {})[pool] = v
                summary_partition = Partition.single(str(t.date()))
                summary = store.read(("pool_metrics_summary",), summary_partition)
                currency = _snapshot_currency(store, results_config_hash(config), config.pool_names, taken, values,
                                              summary)
                values["pool_metrics_summary"] = {"_session": summary}
                digest = None if kept else stored_digest(store, "pool_metrics_summary", summary_partition)
                if digest is not None:
                    hashes["pool_metrics_summary"] = {"_session": digest["value_hash"]}
                day = str(t.date())
                if kept:
                    manifest = snapshots.save(day, values, platform.config_hash, currency)
                else:
                    manifest = SnapshotStore.manifest_of(day, values, platform.config_hash, currency, hashes)
                manifests[day] = manifest
                n_values = sum(len(v) for v in manifest["assets"].values())
                if i < len(sessions) - PER_PARTITION_METADATA:
                    continue
                superseded = SnapshotStore.superseded_of(manifest)
                context.add_asset_metadata({"values": dg.MetadataValue.int(n_values),
                                            "config_hash": dg.MetadataValue.text(platform.config_hash),
                                            "kept": dg.MetadataValue.bool(i >= keep_from),
                                            "pool_status": dg.MetadataValue.json(
                                                {p: c["status"] for p, c in currency.items()}),
                                            "superseded": dg.MetadataValue.json(
                                                {p: sorted(a) for p, a in superseded.items()})},
                                           partition_key=day)
        finally:
            store.close()
    context.add_output_metadata({"snapshots_kept": dg.MetadataValue.json(snapshots.sessions())})
    return manifests if len(sessions) > 1 else manifests[str(sessions[-1].date())]


def _digested(store, asset: str, pool: str, session: pd.Timestamp, hashes: dict) -> dict | None:
    """A stand-in for a stored value whose hash and provenance the store recorded on write (a manifest and
    :func:`pool_currency` need nothing else of it): ``{"provenance": ...}``, its hash put in ``hashes``;
    None when the store has no digest for it (then it is read)."""
    digest = stored_digest(store, asset, Partition.multi({"pool": pool, "session": str(session.date())}))
    if digest is None:
        return None
    hashes.setdefault(asset, {})[pool] = digest["value_hash"]
    return {PROVENANCE_KEY: digest["provenance"]}


def _snapshot_currency(store, config_hash: str, pools, taken: dict, values: dict, summary) -> dict:
    """Each pool's currency for the snapshot: every stored value judged by its hashes (of the pool's
    session ``taken[pool]``); the pool's status and reason as the session's summary gave them (it also
    knows of runs that failed before writing)."""
    rows = summary.droplevel("session") if isinstance(summary, pd.DataFrame) and "session" in summary.index.names \
        else None
    out = {}
    for pool in pools:
        by_asset = {asset: values.get(asset, {}).get(pool) for asset in POOL_ASSETS}
        judged = _currency(store, config_hash, pool, taken[pool], by_asset)
        if rows is not None and pool in rows.index and "reason" in rows.columns:
            judged["status"], judged["reason"] = str(rows.loc[pool, "status"]), str(rows.loc[pool, "reason"])
        out[pool] = judged
    return out


SUMMARY_DESCRIPTION = ("Every pool's metrics as of the session with the threshold verdicts and its status (ok, stale, "
                       "failed, missing) with the reason, and the combined view weighted by each pool's summary_weight "
                       "over the pools current for the session (index session x pool; COMBINED is the weighted row "
                       "and names the pools it leaves out). A pool on another calendar is read at its latest session "
                       "on or before the session (metadata pool_sessions).")
SNAPSHOT_DESCRIPTION = ("Content hashes and the config hash of everything produced for the session, each value's data "
                        "and config hash and whether it was current or superseded, with copies of the "
                        "values of the last orchestration.keep_snapshots sessions (restore one with "
                        "`python -m jobs.snapshots restore <session>`).")


def build_summary_assets(groups: tuple[MarketGroup, ...] | list[MarketGroup] = ()) -> list[dg.AssetsDefinition]:
    """The summary and snapshot assets; besides the per-pool assets of the main calendar (plain keys) they
    depend on those of every other calendar group (``xnys/target_portfolio`` ...). The dependency edges map
    session labels (a US pool's session D to the summary of D); which session is read is
    :func:`pool_sessions`' choice."""
    others = [g for g in groups if not g.main]

    @dg.asset(
        name="pool_metrics_summary", partitions_def=session_partitions, group_name="summary",
        backfill_policy=SINGLE_RUN, code_version="2",
        deps=[dg.AssetDep("backtest", partition_mapping=BY_SESSION)]
        + [dg.AssetDep(g.key(name), partition_mapping=OTHER_CALENDAR) for g in others
           for name in ("backtest", "target_portfolio")],
        description=SUMMARY_DESCRIPTION,
    )
    def pool_metrics_summary(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
        with step_logs(context):  # run, step, asset and session on every log record of the step
            return _pool_metrics_summary(context, platform, storage)

    @dg.asset(
        name="session_snapshot", partitions_def=session_partitions, group_name="summary",
        backfill_policy=SINGLE_RUN, code_version="2",
        deps=[dg.AssetDep(a, partition_mapping=BY_SESSION) for a in POOL_ASSETS]
        + [dg.AssetDep(g.key(a), partition_mapping=OTHER_CALENDAR) for g in others for a in POOL_ASSETS]
        + ["pool_metrics_summary"],
        description=SNAPSHOT_DESCRIPTION,
    )
    def session_snapshot(context: dg.AssetExecutionContext, platform: PlatformResource, storage: StoreResource):
        with step_logs(context):
            return _session_snapshot(context, platform, storage)

    return [pool_metrics_summary, session_snapshot]


SUMMARY_ASSETS = build_summary_assets()
pool_metrics_summary, session_snapshot = SUMMARY_ASSETS
