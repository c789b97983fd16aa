"""Dagster event log in SQLite that writes a batch of asset events in one transaction per database.

A single-run backfill materialises every asset for many partitions at once, and Dagster records one
``ASSET_MATERIALIZATION`` event (and, when the run is created, one ``ASSET_MATERIALIZATION_PLANNED``
event) per asset and partition. Dagster hands these events over in batches
(``DAGSTER_EVENT_BATCH_SIZE``), but its SQLite storage writes them one at a time, opening two database
connections and committing two transactions per event: about 8 ms per event on a local disk, half the
time of a ten-year backfill. :class:`BatchingSqliteEventLogStorage` keeps everything else of
:class:`~dagster._core.storage.event_log.SqliteEventLogStorage` (the same files, schema and
queries, so an existing ``$DAGSTER_HOME`` keeps working and the UI reads it unchanged) and writes
each batch with one connection and one transaction per database.

Asset check results are the other half of a backfill's events: a per-partition check records one
``ASSET_CHECK_EVALUATION`` per check and partition, and Dagster hands each one to the storage on its
own (it never batches them), which Dagster's SQLite storage writes with three connections and three
commits (about 40 ms per result on a shared disk: a third of a backfill's pool runs). This storage
keeps them in memory as they arrive and writes the pending ones together -- one transaction on the
run's database and one on the index -- before anything else touches the event log: before the next
event of any other kind is stored, before any read (every query opens a connection, which writes the
pending results first), when ``batch_size`` of them are pending, at :meth:`dispose` and at interpreter
exit. The order of the stored events is the order they arrived in, and no query ever sees the log
without them; only a process killed (``SIGKILL``) between a check result and the step's next event
loses the results since its last event -- the step's own success or failure event would be lost the
same way.

The instance configuration (``configs/dagster.yaml``, copied into ``$DAGSTER_HOME``)::

    event_log_storage:
      module: resources.event_log
      class: BatchingSqliteEventLogStorage
      config:
        batch_size: 1000      # events per write; sets DAGSTER_EVENT_BATCH_SIZE unless it is set
        # base_dir: ...       # default: $DAGSTER_HOME/history/runs, where Dagster puts it by default
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dagster import Field, IntSource, StringSource
from dagster._core.events import ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData

__all__ = ["BatchingSqliteEventLogStorage", "BATCH_SIZE_ENV"]

BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_BATCH_SIZE = 1000


def _is_batchable(event: EventLogEntry) -> bool:
    dagster_event = event.dagster_event if event.is_dagster_event else None
    return bool(dagster_event is not None and event.dagster_event_type in ASSET_EVENTS and dagster_event.asset_key)


def _is_deferrable_check(event: EventLogEntry) -> bool:
    """A check result of a run (a runless one, reported from outside a run, takes Dagster's own path)."""
    return bool(event.is_dagster_event and event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION
                and event.run_id)


def _flush_at_exit(ref: "weakref.ReferenceType[BatchingSqliteEventLogStorage]") -> None:
    storage = ref()
    if storage is not None:
        storage.flush_check_results()


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log whose ``store_event_batch`` writes a whole batch of asset events at once.

    Per batch: one transaction on the run's database (the run's event log) and one on the index
    database (the cross-run copy of asset events, their tags and the per-asset summary row), in the
    order the events arrived. Any other event in a batch (asset check planning) is stored as Dagster
    stores it, in its place in the order. Single events take Dagster's own path.
    """

    def __init__(self, base_dir: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 inst_data: ConfigurableClassData | None = None):
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError("BatchingSqliteEventLogStorage: no base_dir configured and DAGSTER_HOME is not set")
            base_dir = os.path.join(home, "history", "runs")
        if batch_size < 1:
            raise ValueError(f"BatchingSqliteEventLogStorage: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        # Dagster groups events into batches only when this is set (read at every event)
        os.environ.setdefault(BATCH_SIZE_ENV, str(self.batch_size))
        self._pending_checks: list[EventLogEntry] = []
        self._pending_lock = threading.Lock()
        self._shared_index: Any = None  # the index connection a flush writes the check rows through
        super().__init__(base_dir, inst_data=inst_data)
        atexit.register(_flush_at_exit, weakref.ref(self))

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:  # type: ignore[override]
        return {
            "base_dir": Field(StringSource, is_required=False),
            "batch_size": Field(IntSource, is_required=False, default_value=DEFAULT_BATCH_SIZE),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Mapping[str, Any]) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **dict(config_value))

    # ------------------------------------------------------------------------- deferred check results
    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        """Every connection (a write or a query) first writes the check results still pending."""
        if self._pending_checks:
            self.flush_check_results()
        with super()._connect(shard) as conn:
            yield conn

    def index_connection(self) -> Any:
        if self._shared_index is not None:
            return contextlib.nullcontext(self._shared_index)
        return super().index_connection()

    def store_event(self, event: EventLogEntry) -> None:
        if _is_deferrable_check(event):
            with self._pending_lock:
                self._pending_checks.append(event)
                full = len(self._pending_checks) >= self.batch_size
            if full:
                self.flush_check_results()
            return
        if self._pending_checks:
            self.flush_check_results()
        super().store_event(event)

    def flush_check_results(self) -> int:
        """Write the pending check results (in arrival order, one transaction per database and run);
        return how many were written."""
        with self._pending_lock:
            events, self._pending_checks = self._pending_checks, []
        start = 0
        while start < len(events):
            end = start
            while end < len(events) and events[end].run_id == events[start].run_id:
                end += 1
            self._store_check_results(events[start:end])
            start = end
        return len(events)

    def _store_check_results(self, events: Sequence[EventLogEntry]) -> None:
        """What Dagster's ``store_event`` does per check result (the event in the run's log, its copy in
        the index and the update of its planned execution row), for a run's results in two transactions."""
        statements = [self.prepare_insert_event(event) for event in events]
        with super()._connect(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        with super()._connect("index") as conn:
            self._shared_index = conn
            try:
                for event, statement in zip(events, statements, strict=True):
                    event_id = conn.execute(statement).inserted_primary_key[0]
                    self.store_asset_check_event(event, event_id)  # through the shared connection
            finally:
                self._shared_index = None

    def dispose(self) -> None:
        self.flush_check_results()
        super().dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if self._pending_checks:
            self.flush_check_results()
        pending: list[EventLogEntry] = []
        for event in events:
            if _is_batchable(event):
                if pending and pending[-1].run_id != event.run_id:
                    self._store_asset_events(pending)
                    pending = []
                pending.append(event)
            else:
                self._store_asset_events(pending)
                pending = []
                self.store_event(event)
        self._store_asset_events(pending)

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """One execution row per planned partition, inserted in session order (then by key).

        Dagster inserts them in the order of the run's partition subset, a Python set for pool x session
        partitions, and the UI's *Latest execution* of a check is the row with the highest id: it showed a
        random session of the run. In session order it is the run's latest session (the results then
        update these rows in place).

        Each row's ``evaluation_event`` is the planned event narrowed to the row's own partition (Dagster
        stores the whole run's subset in every row: for a range of n partitions n rows of n keys each,
        6 GB of index for a ten-year backfill of the demo's pools). The run's own log keeps the event
        with the whole subset."""
        planned = event.dagster_event.event_specific_data if event.dagster_event else None
        subset = getattr(planned, "partitions_subset", None)
        if subset is None:
            super()._store_asset_check_evaluation_planned(event, event_id)
            return
        from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
        from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
        from dagster._serdes import serialize_value

        keys = sorted(subset.get_partition_keys(), key=lambda k: (str(k).split("|")[-1], str(k)))
        timestamp = self._event_insert_timestamp(event)
        narrowed = _narrowed_planned(event, planned, subset)
        whole = serialize_value(event) if narrowed is None else None
        rows = [dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, partition=key,
                     run_id=event.run_id, execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                     evaluation_event=whole if narrowed is None else narrowed(key),
                     evaluation_event_timestamp=timestamp, evaluation_event_storage_id=event_id) for key in keys]
        with self.index_transaction() as conn:
            for start in range(0, len(rows), 500):  # SQLite's limit on bound variables per statement
                conn.execute(AssetCheckExecutionsTable.insert().values(rows[start:start + 500]))

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """Asset events of one run: what ``store_event`` does per event, in two transactions."""
        if not events:
            return
        if len(events) == 1:
            self.store_event(events[0])
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:
            for statement in statements:
                conn.execute(statement)
        with self.index_transaction() as conn:
            event_ids = []
            for event, statement in zip(events, statements, strict=True):
                result = conn.execute(statement)
                event_id = result.inserted_primary_key[0]
                if event_id is None:
                    raise RuntimeError(f"event log: no id for the stored {event.dagster_event_type} event "
                                       f"of run {event.run_id}")
                event_ids.append(event_id)
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in _summary_updates(events, event_ids):
                self._store_asset_event(conn, event, event_id)


def _narrowed_planned(event: EventLogEntry, planned: Any, subset: Any) -> Any:
    """``key -> the serialized planned event with the subset of that partition only``, for a subset of
    explicit keys (pool x session partitions); None for any other subset (stored whole, as Dagster does)."""
    from dagster._core.definitions.partitions.subset.default import DefaultPartitionsSubset
    from dagster._record import copy
    from dagster._serdes import serialize_value

    if not isinstance(subset, DefaultPartitionsSubset) or event.dagster_event is None:
        return None

    def one(key: str) -> str:
        data = copy(planned, partitions_subset=DefaultPartitionsSubset({key}))
        return serialize_value(event._replace(dagster_event=event.dagster_event._replace(event_specific_data=data)))

    return one


def _summary_updates(events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> list[tuple[EventLogEntry, int]]:
    """The events whose per-asset summary update (``asset_keys`` row) survives the batch, in order.

    Each event overwrites its asset's row in the columns of its kind (a materialisation: last
    materialisation, run and time; a planned event: run and time). Applying, per asset and kind,
    only the last event of the batch, in the original order, leaves every column as applying all
    events one after the other would: the last event to set a column is the last of its kind.
    """
    last: dict[tuple[str, object], int] = {}
    for i, event in enumerate(events):
        last[(event.dagster_event.asset_key.to_string(), event.dagster_event_type)] = i
    return [(events[i], event_ids[i]) for i in sorted(last.values())]
