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

The instance configuration (``configs/dagster.yaml``, copied into ``$DAGSTER_HOME``)::

    event_log_storage:
      module: resources.event_log
      class: BatchingSqliteEventLogStorage
      config:
        batch_size: 1000      # events per write; sets DAGSTER_EVENT_BATCH_SIZE unless it is set
        # base_dir: ...       # default: $DAGSTER_HOME/history/runs, where Dagster puts it by default
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import Field, IntSource, StringSource
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._serdes import ConfigurableClassData

__all__ = ["BatchingSqliteEventLogStorage", "BATCH_SIZE_ENV"]

BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_BATCH_SIZE = 1000


def _is_batchable(event: EventLogEntry) -> bool:
    dagster_event = event.dagster_event if event.is_dagster_event else None
    return bool(dagster_event is not None and event.dagster_event_type in ASSET_EVENTS and dagster_event.asset_key)


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
        super().__init__(base_dir, inst_data=inst_data)

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

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
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
        update these rows in place)."""
        planned = event.dagster_event.event_specific_data if event.dagster_event else None
        subset = getattr(planned, "partitions_subset", None)
        if subset is None:
            super()._store_asset_check_evaluation_planned(event, event_id)
            return
        from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
        from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
        from dagster._serdes import serialize_value

        keys = sorted(subset.get_partition_keys(), key=lambda k: (str(k).split("|")[-1], str(k)))
        serialized = serialize_value(event)
        timestamp = self._event_insert_timestamp(event)
        rows = [dict(asset_key=planned.asset_key.to_string(), check_name=planned.check_name, partition=key,
                     run_id=event.run_id, execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                     evaluation_event=serialized, evaluation_event_timestamp=timestamp,
                     evaluation_event_storage_id=event_id) for key in keys]
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
