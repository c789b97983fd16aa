"""IO managers over the platform's stores: every asset stores and loads through the selected backend.

* :class:`StoreIOManager` -- any :class:`~resources.stores.StoreResource`, optionally behind a
  :class:`~resources.stores.RedisCacheResource`;
* :class:`LocalFilesIOManager` -- the embedded default (files under ``base_dir``), same behaviour.

For one partition the value is written as it is. For a partition range (a single-run backfill) the
value is split per partition on write and the partitions are combined on load
(:mod:`rotation_platform.storage.partitioning`). Each output's metadata names the backend, where the
data went, rows, checksum and the health of the servers involved (checked at most once a minute);
never a secret.

Currency of what is stored (:mod:`rotation_platform.storage.provenance`): each partition's value keeps
the data and config hash it was computed from inside itself (an output of a step that carries none,
such as the quarantine beside the prices, takes the record of the step's earlier output for the same
partition); and the pool's chain is bracketed by run records -- ``started`` written before a run's
``prices``, ``complete`` after its ``target_portfolio`` -- so a reader of the store sees whether the
latest run of a partition got to its target.

What the UI shows first (Dagster 1.13, ``dagster._core.execution.plan.execute_step``):

* A materialisation lists its metadata in the order it was recorded: the output's own metadata, then
  the IO manager's (``OutputContext.add_output_metadata``), then the asset's metadata for the partition
  (``context.add_asset_metadata(..., partition_key=...)``, where the assets put their finance numbers
  and tables). So storage bookkeeping added with ``add_output_metadata`` would sit above them. The IO
  manager records it after the asset's entries instead, as partition metadata of each partition the
  output covers (:func:`_record_after_asset_metadata`, one update of the step's metadata for the whole
  range); keys and values are the output's as before.
* A range emits one materialisation per partition in the order of the output's partition subset,
  which for pool × session partitions is a Python set (hash order): the UI's "latest materialization"
  of the asset was a random session. The IO manager hands Dagster the keys in session order (pools in
  turn within a session, :func:`_emit_in_session_order`), so the run's latest session is recorded last.
"""

from __future__ import annotations

import os
import time
from abc import abstractmethod
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.subset.default import DefaultPartitionsSubset
from pydantic import PrivateAttr

from resources.stores import FileStoreResource, RedisCacheResource, StoreResource
from rotation_platform.calendars import storage_key
from rotation_platform.observability.logs import log_context
from rotation_platform.notify.runs import CLI_RUN_TAG
from rotation_platform.production.runlock import RunLock, cli_holder_run_id, scope_of_partition
from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.cache import CachedStore
from rotation_platform.storage.errors import StorageUnavailableError
from rotation_platform.storage.files import FileStore
from rotation_platform.storage.partitioning import PartitionSlice, combine_values, split_value
from rotation_platform.storage.provenance import (
    RUN_END_ASSET,
    RUN_START_ASSET,
    provenance_of,
    run_record,
    with_provenance,
    write_run_record,
)

__all__ = ["StoreIOManager", "LocalFilesIOManager", "partition_slices"]

HEALTH_TTL_S = 60.0
_health_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def _asset_label(context: dg.OutputContext | dg.InputContext) -> str:
    return context.asset_key.to_user_string()


def _window(pdef: Any, key: str) -> tuple[Any, Any]:
    tw = pdef.time_window_for_partition_key(key)
    import pandas as pd

    return pd.Timestamp(tw.start), pd.Timestamp(tw.end)


def partition_slices(context: dg.OutputContext | dg.InputContext) -> list[PartitionSlice]:
    """The partitions an output or input covers, with what selects each one's rows."""
    if not context.has_asset_partitions:
        return [PartitionSlice(Partition.unpartitioned())]
    pdef = context.asset_partitions_def
    slices = []
    for key in context.asset_partition_keys:
        if isinstance(pdef, dg.MultiPartitionsDefinition):
            mkey = key if isinstance(key, dg.MultiPartitionKey) else pdef.get_partition_key_from_str(str(key))
            dims = dict(mkey.keys_by_dimension)
            window = None
            static = {}
            for dim in pdef.partitions_defs:
                if isinstance(dim.partitions_def, dg.TimeWindowPartitionsDefinition):
                    window = _window(dim.partitions_def, dims[dim.name])
                else:
                    static[dim.name] = dims[dim.name]
            slices.append(PartitionSlice(Partition.multi(dims), window, static))
        elif isinstance(pdef, dg.TimeWindowPartitionsDefinition):
            slices.append(PartitionSlice(Partition.single(str(key)), _window(pdef, str(key))))
        else:
            slices.append(PartitionSlice(Partition.single(str(key)), None, {"": str(key)}))
    # Dagster hands over the keys of a range unordered: time order, then key
    return sorted(slices, key=lambda s: (s.window[0].value if s.window else 0, s.key))


class _OrderedPartitionsSubset(DefaultPartitionsSubset):
    """The same keys, iterated in a given order (Dagster emits an output's events in this order)."""

    def __new__(cls, ordered_keys: list[str]):
        obj = super().__new__(cls, set(ordered_keys))
        obj._ordered = list(ordered_keys)  # type: ignore[attr-defined]
        return obj

    def get_partition_keys(self):  # type: ignore[override]
        return list(self._ordered)  # type: ignore[attr-defined]


def _session_order_key(pdef: Any, key: Any) -> tuple[Any, str]:
    if isinstance(pdef, dg.MultiPartitionsDefinition):
        mkey = key if isinstance(key, dg.MultiPartitionKey) else pdef.get_partition_key_from_str(str(key))
        dims = dict(mkey.keys_by_dimension)
        for dim in pdef.partitions_defs:
            if isinstance(dim.partitions_def, dg.TimeWindowPartitionsDefinition):
                return _window(dim.partitions_def, dims[dim.name])[0].value, str(key)
    elif isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        return _window(pdef, str(key))[0].value, str(key)
    return 0, str(key)


def _emit_in_session_order(context: dg.OutputContext) -> None:
    """Make Dagster record the output's materialisations in session order (then by key), so the latest
    session of a range is the asset's latest materialisation. Dagster 1.13 iterates the output context's
    partition subset, a set for multi-partitions; the context keeps it in a private attribute, which is
    replaced by the same keys in order (nothing changes when the attribute is not there)."""
    subset = getattr(context, "_asset_partitions_subset", None)
    if not isinstance(subset, DefaultPartitionsSubset) or len(subset.subset) < 2:
        return
    pdef = context.asset_partitions_def
    ordered = sorted(subset.get_partition_keys(), key=lambda k: _session_order_key(pdef, k))
    context._asset_partitions_subset = _OrderedPartitionsSubset(ordered)  # type: ignore[attr-defined]


def _record_after_asset_metadata(context: dg.OutputContext, metadata: dict[str, Any]) -> None:
    """Record the IO manager's ``metadata`` on the output's materialisations after the asset's own
    entries: as partition metadata of every partition of the output (asset metadata when unpartitioned),
    in one update of the step's metadata; ``add_output_metadata`` (listed first) when the step's metadata
    cannot be reached (an output context built outside a run, another Dagster version)."""
    try:
        from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

        step = context.step_context if context.has_asset_key else None
        accumulator = getattr(step, "_metadata_accumulator", None)
    except Exception:  # noqa: BLE001 - no step context: a context built for a test
        step, accumulator = None, None
    if step is None or not isinstance(accumulator, OutputMetadataAccumulator):
        context.add_output_metadata(metadata)
        return
    keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
    recorded = dict(accumulator.per_output_metadata)
    for key in keys:
        handle = AssetMetadataHandle(asset_key=context.asset_key, partition_key=key)
        existing = recorded.get(handle, {})
        recorded[handle] = {**existing, **{k: v for k, v in metadata.items() if k not in existing}}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=recorded)


def _run_id(context: dg.OutputContext) -> str | None:
    try:
        return str(context.run_id)
    except Exception:  # noqa: BLE001 - an output context built outside a run
        return None


def _run_tags(context: dg.OutputContext) -> dict[str, str]:
    try:
        return dict(context.step_context.dagster_run.tags)
    except Exception:  # noqa: BLE001 - an output context built outside a run
        return {}


def _code_version(context: dg.OutputContext | dg.InputContext) -> str:
    try:
        out = context if isinstance(context, dg.OutputContext) else context.upstream_output
        return str(out.asset_spec.code_version or "") if out is not None else ""
    except Exception:  # noqa: BLE001 - source assets and ops have no spec: no version
        return ""


def _cache_kind(context: dg.OutputContext | dg.InputContext) -> str | None:
    try:
        out = context if isinstance(context, dg.OutputContext) else context.upstream_output
        value = (out.definition_metadata or {}).get("cache_kind") if out is not None else None
    except Exception:  # noqa: BLE001
        return None
    return getattr(value, "value", value)


class _StoreBackedIOManager(dg.ConfigurableIOManager):
    """Shared logic: open the store once per run, split/combine partitions, report metadata.

    ``step_retries`` > 0: when the store's server is still unreachable after the store's own retries,
    the step is retried (``RetryRequested``) up to that many times, ``step_retry_wait_s`` apart; any
    other error fails the step at once.
    """

    step_retries: int = 0
    step_retry_wait_s: float = 30.0
    #: folder whose run locks (rotation_platform.production.runlock) guard the writes; the file stores'
    #: base_dir when unset, no lock for a database store without it
    lock_dir: str | None = None
    lock_wait_s: float = 0.0
    _store: Store | None = PrivateAttr(default=None)
    _locks: dict = PrivateAttr(default_factory=dict)
    _step_provenance: dict = PrivateAttr(default_factory=dict)

    def _retry_step(self, exc: StorageUnavailableError) -> None:
        if self.step_retries > 0:
            raise dg.RetryRequested(max_retries=self.step_retries, seconds_to_wait=self.step_retry_wait_s) from exc

    @abstractmethod
    def _make_store(self) -> Store:
        """The store this IO manager writes to."""

    def _get_store(self) -> Store:
        if self._store is None:
            self._store = self._make_store()
        return self._store

    def _lock_folder(self) -> str | None:
        return self.lock_dir

    def _take_run_locks(self, context: dg.OutputContext) -> None:
        """Hold the run lock of every pool (or the summary) the output writes, from its first write until
        the run ends, so a run of another process (the command line, another launched run) cannot
        interleave its writes with this run's; a lock held by another process fails the step with a line
        naming that run."""
        folder = self._lock_folder()
        if folder is None:
            return
        scopes = {scope_of_partition(dict(s.partition.dims)) for s in partition_slices(context)} - {None}
        # a run of ``python -m jobs.main`` (its cli_run tag) writes under the locks that command line holds for
        # it, also from a step's own process or a Celery worker; a delegated lock is asked again at each write
        cli_run = _run_tags(context).get(CLI_RUN_TAG)
        delegated_by = cli_holder_run_id(cli_run) if cli_run else None
        for scope in sorted(scopes):
            held = self._locks.get(scope)
            if held is not None and held.held:
                continue
            lock = RunLock(folder, scope, run_id=context.run_id, config=os.environ.get("ROTATION_CONFIG", ""),
                           delegated_by=delegated_by)
            lock.acquire(self.lock_wait_s)
            self._locks[scope] = lock

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _health(self, store: Store) -> list[dict[str, Any]]:
        now = time.monotonic()
        key = store.location
        cached = _health_cache.get(key)
        if cached is None or now - cached[0] > HEALTH_TTL_S:
            cached = (now, [h.as_dict() for h in store.health()])
            _health_cache[key] = cached
        return cached[1]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is not None:
            self._take_run_locks(context)
        try:
            self._handle_output(context, obj)
        except StorageUnavailableError as exc:
            self._retry_step(exc)
            raise

    def load_input(self, context: dg.InputContext) -> object:
        try:
            return self._load_input(context)
        except StorageUnavailableError as exc:
            self._retry_step(exc)
            raise

    def _handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        store = self._get_store()
        asset = storage_key(context.asset_key.path)  # a market prefix (xnys/prices) is not stored
        if context.has_asset_partitions:
            _emit_in_session_order(context)
        slices = partition_slices(context)
        pieces = self._with_step_provenance(context, split_value(obj, slices, f"asset {_asset_label(context)}"))
        version, kind = _code_version(context), _cache_kind(context)
        receipts = []
        with store.logging_to(context.log), log_context(asset=context.asset_key.to_user_string()):
            if asset == (RUN_START_ASSET,) and context.has_asset_partitions:
                for piece_slice, value in pieces:  # before the prices: a run that stops later stays "started"
                    write_run_record(store, piece_slice.partition, run_record("started", provenance_of(value)))
            if isinstance(store, FileStore) and type(store).write is FileStore.write and len(pieces) > 1:
                # a range run's partitions: written and synced together (FileStore.write_many)
                receipts += store.write_many(asset, [(piece_slice.partition, value) for piece_slice, value in pieces])
            else:
                for piece_slice, value in pieces:
                    if isinstance(store, CachedStore):
                        receipts.append(store.write(asset, piece_slice.partition, value, version=version, kind=kind))
                    else:
                        receipts.append(store.write(asset, piece_slice.partition, value))
            if asset == (RUN_END_ASSET,) and context.has_asset_partitions:
                for piece_slice, value in pieces:
                    write_run_record(store, piece_slice.partition, run_record("complete", provenance_of(value)))
        metadata: dict[str, Any] = {
            "storage_backend": dg.MetadataValue.text(store.backend),
            "storage_location": dg.MetadataValue.text(receipts[0].location if len(receipts) == 1 else store.location),
            "rows": dg.MetadataValue.int(sum(r.rows for r in receipts)),
            "partitions_written": dg.MetadataValue.int(len(receipts)),
            "write_seconds": dg.MetadataValue.float(round(sum(r.seconds for r in receipts), 4)),
            "storage_health": dg.MetadataValue.json(self._health(store)),
        }
        if len(receipts) == 1:
            metadata["checksum"] = dg.MetadataValue.text(receipts[0].checksum)
        if isinstance(store, FileStore) and len(receipts) == 1:
            metadata["path"] = dg.MetadataValue.path(receipts[0].location)
        if isinstance(store, CachedStore):
            metadata["cache"] = dg.MetadataValue.json({**store.cache.stats, "available": store.cache.available,
                                                       "last_error": store.cache.last_error})
        _record_after_asset_metadata(context, metadata)

    def _with_step_provenance(self, context: dg.OutputContext, pieces: list) -> list:
        """Pieces without a provenance record take the one an earlier output of the same step recorded for
        their partition (the outputs of one step are computed from the same inputs)."""
        try:
            step = (_run_id(context), context.step_key)
        except Exception:  # noqa: BLE001 - an output context built outside a run
            step = (None, None)
        if step not in self._step_provenance:
            self._step_provenance = {step: {}}  # one step at a time: forget the earlier ones
        seen = self._step_provenance[step]
        out = []
        for piece_slice, value in pieces:
            prov = provenance_of(value)
            if prov is None and piece_slice.key in seen:
                value = with_provenance(value, seen[piece_slice.key])
            elif prov is not None:
                seen[piece_slice.key] = prov
            out.append((piece_slice, value))
        return out

    def _load_input(self, context: dg.InputContext) -> object:
        store = self._get_store()
        asset = storage_key(context.asset_key.path)  # a market prefix (xnys/prices) is not stored
        slices = partition_slices(context)
        version, kind = _code_version(context), _cache_kind(context)
        parts = []
        with store.logging_to(context.log), log_context(asset=context.asset_key.to_user_string()):
            for piece_slice in slices:
                if isinstance(store, CachedStore):
                    value = store.read(asset, piece_slice.partition, version=version, kind=kind)
                else:
                    value = store.read(asset, piece_slice.partition)
                parts.append((piece_slice, value))
        return combine_values(parts)


class StoreIOManager(_StoreBackedIOManager):
    """Stores asset values in ``store`` (see :mod:`resources.stores`), behind ``cache`` when given."""

    store: StoreResource
    cache: RedisCacheResource | None = None

    def _lock_folder(self) -> str | None:
        return self.lock_dir or (self.store.base_dir if isinstance(self.store, FileStoreResource) else None)

    def _make_store(self) -> Store:
        inner = self.store.open_store()
        if self.cache is None:
            return inner
        return CachedStore(inner, self.cache.open_cache())


class LocalFilesIOManager(_StoreBackedIOManager):
    """Embedded default storage: one file per asset partition under ``base_dir``.

    Layout: ``<base_dir>/<asset key path>/<partition dimension values...>``, with a suffix from the
    value's type (``.panel.parquet``, ``.parquet``, ``.json``). Writes are atomic (temp file + rename).
    """

    base_dir: str

    def _lock_folder(self) -> str | None:
        return self.lock_dir or self.base_dir

    def _make_store(self) -> Store:
        return FileStore(self.base_dir)
