"""Turn the library's plain summaries and fuse results into Dagster metadata and check results.

What the UI shows for a pool-session partition, and in which order:

* **checks** are partitioned like their asset (:func:`check_spec`): every fuse gives each pool × session
  partition of the run its own result (:func:`check_evaluations`), so one pool's verdict never overwrites
  another's and every session keeps its own history. Dagster 1.13's ``AssetCheckResult`` records a
  partition only for a run of one partition (it takes the step's ``partition_key``, which a range run has
  not), so the results are recorded as ``AssetCheckEvaluation`` events with ``partition`` set, as Dagster
  records them itself; a failed ERROR result of a blocking check still fails the step (Dagster raises
  after the step's events), so the pool's later steps do not run.
* **metadata** of the latest sessions of a run (:data:`PER_PARTITION_METADATA`, :func:`per_partition`):
  each partition its own markdown tables and numbers, pictures on the latest session only (a few hundred
  kB each). Numbers carry the pool in their key (``sharpe · A_SHARE``): the UI plots one series per
  metadata key across the asset's partitions, and a key shared by the pools would mix them in one line.
* **order**: the UI lists a materialisation's entries in the order they were recorded; the asset's
  entries come first, the IO manager's storage bookkeeping after them (``resources.io_managers``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported by dagster 1.13; what its own results carry
)

from rotation_platform.production.fuses import FuseResult
from rotation_platform.storage.errors import StorageUnavailableError

#: every per-pool, per-session asset computes a whole partition range in one pass
SINGLE_RUN = dg.BackfillPolicy.single_run()

#: joins a numeric metadata key and its pool (``sharpe · A_SHARE``)
POOL_SEP = " · "


def to_dagster_metadata(summary: Mapping[str, object], markdown_keys: tuple[str, ...] = ()) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in summary.items():
        if key in markdown_keys and isinstance(value, str):
            out[key] = dg.MetadataValue.md(value)
        elif isinstance(value, bool | np.bool_):
            out[key] = dg.MetadataValue.bool(bool(value))
        elif isinstance(value, int | np.integer):
            out[key] = dg.MetadataValue.int(int(value))
        elif isinstance(value, float | np.floating):
            out[key] = dg.MetadataValue.float(float(value))
        elif isinstance(value, (dict, list)):
            out[key] = dg.MetadataValue.json(value)
        elif value is None:
            out[key] = dg.MetadataValue.text("")
        else:
            out[key] = dg.MetadataValue.text(str(value))
    return out


def pool_key(key: str, pool: str) -> str:
    """The metadata key of a number of ``pool`` (``sharpe · A_SHARE``)."""
    return f"{key}{POOL_SEP}{pool}"


def shown_float(value: float) -> float:
    """A float as the UI should print it: 6 significant digits, CNY-sized values to the fen (the stored
    values keep full precision)."""
    v = float(value)
    if not np.isfinite(v):
        return v
    return round(v, 2) if abs(v) >= 1000 else float(f"{v:.6g}")


def per_pool_numbers(metadata: Mapping[str, object], pool: str) -> dict[str, object]:
    """``metadata`` with every int / float entry keyed by its pool (what the UI plots), the rest as is."""
    out: dict[str, object] = {}
    for k, v in metadata.items():
        if isinstance(v, dg.FloatMetadataValue):
            out[pool_key(k, pool)] = dg.MetadataValue.float(shown_float(v.value)) if v.value is not None else v
        elif isinstance(v, dg.IntMetadataValue):
            out[pool_key(k, pool)] = v
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------- checks
def check_spec(name: str, asset: str, description: str, *, blocking: bool = True) -> dg.AssetCheckSpec:
    """A check of a pool-session asset, partitioned like it (``definitions.build_defs`` attaches the
    config's partitions to both, ``assets.partitions.bind``)."""
    from assets import partitions

    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description,
                             partitions_def=partitions.pool_session_partitions)


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def asset_key_of(context: dg.AssetExecutionContext, asset: str) -> dg.AssetKey:
    """The key of the step's asset named ``asset``: ``prices``, or in another calendar's group of pools its
    prefixed copy (``xnys/prices``, see ``assets.partitions.group_assets``)."""
    for key in context.assets_def.keys:
        if key.path[-1] == asset:
            return key
    return dg.AssetKey(asset)


def _run_materialisations(context: dg.AssetExecutionContext, asset: str, keys: Sequence[str]):
    """``{partition key: materialisation record}`` of ``asset`` recorded by this run (the check results'
    target, as Dagster's own results point at it); one query for the whole run."""
    if not keys:
        return {}
    try:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key_of(context, asset), asset_partitions=list(keys)),
            limit=len(keys)).records
    except Exception:  # noqa: BLE001 - a pointer for the UI only; the result stands without it
        return {}
    run_id = context.run.run_id
    out = {}
    for record in records:
        if record.event_log_entry.run_id == run_id and record.partition_key not in out:
            out[record.partition_key] = record
    return out


def check_evaluations(context: dg.AssetExecutionContext, asset: str,
                      groups: Sequence[tuple[str, object, Sequence[pd.Timestamp], Sequence[str]]],
                      results: Mapping[str, Mapping[str, FuseResult]],
                      extra: Mapping[str, Callable[[str, FuseResult], Mapping[str, object]]] | None = None,
                      ) -> Iterator[object]:
    """The results of ``asset``'s checks for every pool × session partition of the run.

    ``results``: check name -> pool -> the fuse's result for the run (its ``by_session`` verdicts give each
    partition its own); ``extra``: check name -> a function of (pool, result) giving more metadata for the
    pool's latest partition. For each check: its output (downstream steps depend on it), then one
    ``AssetCheckEvaluation`` per partition in session order (pools in turn within a session), so the
    check's latest result is the latest session's. Each result carries the session's one-line summary and
    figures; the pool's latest partition, and a failed partition of the latest sessions, also the run's
    table and details.

    Which partitions get a result: every partition of the run's latest :data:`PER_PARTITION_METADATA`
    sessions of each pool, and every partition that failed an ERROR check. Dagster's SQLite event log
    stores each check result on its own (about 20 ms: three databases, several connections), so a result
    for every session of a ten-year backfill (15 checks x 2,400 sessions x 3 pools) would add half an
    hour; the earlier sessions that passed (or only warned) are left to the run's verdict (the UI shows
    them as skipped in that run).
    """
    specs = {spec.name: (name, spec) for name, spec in context.assets_def.check_specs_by_output_name.items()
             if spec.asset_key == asset_key_of(context, asset)}
    selected = set(context.selected_asset_check_keys)
    order = sorted(((pd.Timestamp(t), pool, key) for pool, _, sessions, keys in groups
                    for t, key in zip(sessions, keys)), key=lambda x: (x[0], x[1]))
    tails = {pool: set(list(keys)[-PER_PARTITION_METADATA:]) for pool, _, _, keys in groups}
    lasts = {pool: list(keys)[-1] for pool, _, _, keys in groups}

    def recorded(fuse: FuseResult, t: pd.Timestamp, pool: str, key: str) -> bool:
        # an earlier session of a long range that passed (or only warns) is left to the run's verdict
        return key in tails[pool] or (fuse.severity == "ERROR" and not fuse.verdict(t).passed)

    wanted = {key for by_pool in results.values() for t, pool, key in order if recorded(by_pool[pool], t, pool, key)}
    targets = _run_materialisations(context, asset, [key for _, _, key in order if key in wanted])
    for check_name, by_pool in results.items():
        output_name, spec = specs[check_name]
        if spec.key not in selected:
            continue
        yield dg.Output(None, output_name=output_name)
        for t, pool, key in order:
            fuse = by_pool[pool]
            if not recorded(fuse, t, pool, key):
                continue
            verdict = fuse.verdict(t)
            # the one-line summary is the result's description (the UI shows it above the metadata)
            metadata: dict[str, object] = {"pool": dg.MetadataValue.text(pool),
                                           "session": dg.MetadataValue.text(str(t.date()))}
            metadata.update({k: dg.MetadataValue.float(shown_float(v)) for k, v in verdict.values.items()})
            if key == lasts[pool] or (not verdict.passed and key in tails[pool]):
                if fuse.table:
                    metadata["table"] = dg.MetadataValue.md(fuse.table)
                metadata["run_details"] = dg.MetadataValue.json(_jsonable(fuse.details))
                if key == lasts[pool] and extra and check_name in extra:
                    metadata.update(extra[check_name](pool, fuse))
            record = targets.get(key)
            target = None if record is None else AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.event_log_entry.run_id, timestamp=record.timestamp)
            yield dg.AssetCheckEvaluation(
                asset_key=spec.asset_key, check_name=check_name, passed=bool(verdict.passed),
                metadata=metadata, target_materialization_data=target,
                severity=dg.AssetCheckSeverity.ERROR if fuse.severity == "ERROR" else dg.AssetCheckSeverity.WARN,
                description=verdict.summary, blocking=spec.blocking, partition=key)


# -------------------------------------------------------------------------------------- asset metadata
#: per-partition metadata is recorded for at most this many sessions of a run (the latest): Dagster
#: checks each call against every key of the run's range, so a long backfill would pay that squared
PER_PARTITION_METADATA = 60


def add_partition_metadata(context: dg.AssetExecutionContext, asset_key: dg.AssetKey,
                           entries: Mapping[str, Mapping[str, object]]) -> None:
    """``context.add_asset_metadata(meta, asset_key=asset_key, partition_key=key)`` for every ``key: meta``
    of ``entries``, in one update of the step's metadata.

    Dagster 1.13 checks each call against every partition key of the run's range and copies the step's
    whole metadata mapping, so one call per partition costs O(range) and a backfill pays that squared
    (on a ten-year range, seconds per pool). Here the run's keys are listed once and the step's metadata
    accumulator is updated once, with the same merge per handle as Dagster's; where that accumulator cannot
    be reached (another Dagster version), each entry goes through ``add_asset_metadata``."""
    from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

    if not entries:
        return
    step = getattr(getattr(context, "op_execution_context", None), "_step_execution_context", None)
    accumulator = getattr(step, "_metadata_accumulator", None)
    if step is None or not isinstance(accumulator, OutputMetadataAccumulator) \
            or asset_key not in context.assets_def.keys:
        for key, meta in entries.items():
            context.add_asset_metadata(dict(meta), asset_key=asset_key, partition_key=key)
        return
    targeted = set(context.partition_keys)
    missing = [k for k in entries if k not in targeted]
    if missing:
        raise dg.DagsterInvariantViolationError(
            f"Attempted to add metadata for partition key '{missing[0]}' that is not being targeted.")
    recorded = dict(accumulator.per_output_metadata)
    for key, meta in entries.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        recorded[handle] = {**recorded.get(handle, {}), **meta}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=recorded)


def metadata_tail(keys: Sequence[str], sessions: Sequence[object]) -> list[tuple[str, object]]:
    """The (partition key, session) pairs of the run that get their own metadata: the latest ones."""
    pairs = list(zip(keys, sessions))
    return pairs[-PER_PARTITION_METADATA:]


def per_partition(context: dg.AssetExecutionContext, asset: str, pool: str, pairs: Sequence[tuple[str, object]],
                  row: Callable[[object], Mapping[str, object]],
                  tables: Callable[[object], Mapping[str, object]] | None = None,
                  latest: Mapping[str, object] | None = None) -> None:
    """The metadata of each of ``pairs`` (the run's latest sessions of ``pool``), in this order: its own
    tables (``tables(session)``: markdown text or metadata values), its numbers (``row(session)``; ints and
    floats keyed by pool, which the UI plots over the partitions), and on the latest session ``latest``
    (pictures: too large to repeat for every session)."""
    entries: dict[str, dict[str, object]] = {}
    for i, (key, session) in enumerate(pairs):
        meta: dict[str, object] = {}
        if tables is not None:
            meta.update({k: dg.MetadataValue.md(v) if isinstance(v, str) else v
                         for k, v in tables(session).items()})
        meta.update(per_pool_numbers(to_dagster_metadata(row(session)), pool))
        if latest and i == len(pairs) - 1:
            meta.update(per_pool_numbers(dict(latest), pool))
        entries[key] = meta
    add_partition_metadata(context, asset_key_of(context, asset), entries)


@contextlib.contextmanager
def retry_on_service_errors(attempts: int = 3, wait_s: float = 10.0) -> Iterator[None]:
    """Turn a server that is down (after the store's own retries) into a step retry; everything else
    fails at once."""
    try:
        yield
    except (StorageUnavailableError, ConnectionError, TimeoutError) as exc:
        raise dg.RetryRequested(max_retries=attempts, seconds_to_wait=wait_s) from exc


def pool_value(groups: Sequence[tuple[str, object, Sequence[object], Sequence[str]]], values: Sequence[object]) -> object:
    """The output of a run: one pool's value as it is (the IO manager splits it by session), or, for a
    run over several pools, a dict of each partition's own value. Each partition's value carries the
    data hash and config hash it was computed from (:mod:`rotation_platform.storage.provenance`)."""
    from rotation_platform.storage.provenance import stamp_partitions

    if len(values) == 1:
        return stamp_partitions(values[0], provenance_records(groups[0]))
    out: dict[str, object] = {}
    for group, value in zip(groups, values):
        _, _, sessions, keys = group
        records = provenance_records(group)
        parts = split_by_session(value, sessions, keys)
        out.update({k: stamp_partitions(v, {k: records[k]}) for k, v in parts.items()})
    return out


def provenance_records(group: tuple[str, object, Sequence[object], Sequence[str]]) -> dict[str, dict[str, object]]:
    """``{partition key: {data_hash, config_hash}}`` of one pool's partitions of the run (``group``:
    pool, its ``PoolRun``, sessions, partition keys)."""
    from rotation_platform.storage.provenance import record, results_config_hash

    _, run, sessions, keys = group
    config = getattr(run, "config", None)
    if config is None or not hasattr(run, "data_hash"):
        return {}
    chash = results_config_hash(config)
    return {str(key): record(run.data_hash(t), chash) for key, t in zip(keys, sessions)}


def split_by_session(value: object, sessions: Sequence[object], keys: Sequence[str]) -> dict[str, object]:
    """``{partition key: the value's part for that session}`` for a frame indexed by session (or with a
    ``session`` level), a price panel, or a dict already keyed by partition."""
    from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if len(keys) == 1 and not isinstance(value, PricePanel):
        return {keys[0]: value}
    if isinstance(value, PricePanel):
        return {key: PricePanel({f: value[f].loc[[pd.Timestamp(t)]] for f in PRICE_FIELDS}, value.meta)
                for key, t in zip(keys, sessions)}
    if isinstance(value, pd.DataFrame):
        level = value.index.get_level_values("session") if isinstance(value.index, pd.MultiIndex) else value.index
        groups = pd.Series(range(len(value)), index=pd.DatetimeIndex(level)).groupby(level=0).indices
        return {key: value.iloc[groups[pd.Timestamp(t)]] for key, t in zip(keys, sessions)}
    raise TypeError(f"cannot split a {type(value).__name__} by session")
