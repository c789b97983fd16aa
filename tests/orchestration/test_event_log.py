"""The instance's batching SQLite event log records exactly what Dagster's own SQLite event log records."""

from __future__ import annotations

import importlib
import os
import shutil

import dagster as dg
import pytest
from dagster._core.storage.event_log import SqliteEventLogStorage

from tests.orchestration.conftest import ROOT, fresh_defs, run_daily, sessions_between

POOL = "QDII"
SESSIONS = sessions_between("2024-12-23", "2024-12-31")
BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
ASSET_EVENTS = (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)


def _batching_class():
    """The class as the instance imports it (the tests re-import the project's modules per test)."""
    return importlib.import_module("resources.event_log").BatchingSqliteEventLogStorage


def _use_default_event_log(home) -> None:
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def _materialisations(instance, asset: str) -> dict[str, dict[str, object]]:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return {r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()
                              if k in ("rows", "checksum", "partitions_written")} for r in records}


def _snapshot(instance, run_id: str, assets: list[str]) -> dict[str, object]:
    counts = {t.value: len(instance.all_logs(run_id, of_type=t)) for t in ASSET_EVENTS}
    per_asset = {}
    for asset in assets:
        key = dg.AssetKey(asset)
        record = instance.get_asset_records([key])[0].asset_entry
        per_asset[asset] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "materialisations": _materialisations(instance, asset),
            "last_run_id": record.last_run_id == run_id,
            "last_partition": record.last_materialization.dagster_event.partition,
            "partition_status": instance.get_status_by_partition(
                key, [f"{POOL}|{s}" for s in SESSIONS], _partitions_def()),
        }
    return {"counts": counts, "assets": per_asset}


def _partitions_def():
    from assets.partitions import pool_session_partitions

    return pool_session_partitions


def test_instance_config_selects_the_batching_event_log(demo_env) -> None:
    BatchingSqliteEventLogStorage = _batching_class()
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, BatchingSqliteEventLogStorage)
        assert storage.batch_size == 1000
        assert os.environ[BATCH_SIZE_ENV] == "1000"  # Dagster batches events only when this is set
        # the files Dagster's default SQLite event log uses: an existing home keeps its history
        assert os.path.samefile(storage._base_dir, demo_env / "home" / "history" / "runs")


def test_batch_size_must_be_positive(tmp_path) -> None:
    BatchingSqliteEventLogStorage = _batching_class()
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        BatchingSqliteEventLogStorage(str(tmp_path), batch_size=0)


def test_single_run_backfill_records_the_same_events_as_the_default_event_log(demo_env, monkeypatch) -> None:
    assets = ["prices", "factor_panel", "backtest", "target_portfolio"]
    defs = fresh_defs()
    BatchingSqliteEventLogStorage = _batching_class()
    calls: list[int] = []
    original = BatchingSqliteEventLogStorage._store_asset_events

    def spy(self, events):
        calls.append(len(events))
        return original(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "_store_asset_events", spy)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        result = run_daily(defs, instance, POOL, SESSIONS)
        assert result.success
        batched = _snapshot(instance, result.run_id, assets)
    # every asset's partitions went in as batches: planned events at run creation, materialisations per output
    assert len(SESSIONS) in calls and max(calls) > len(SESSIONS)

    shutil.rmtree(demo_env / "data")
    shutil.rmtree(demo_env / "home")
    (demo_env / "home").mkdir()
    _use_default_event_log(demo_env / "home")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        result = run_daily(defs, instance, POOL, SESSIONS)
        assert result.success
        default = _snapshot(instance, result.run_id, assets)

    n = len(SESSIONS)
    assert batched["counts"] == default["counts"] == {t.value: n * 8 for t in ASSET_EVENTS}
    assert batched["assets"] == default["assets"]
    for asset in assets:
        assert batched["assets"][asset]["materialized"] == sorted(f"{POOL}|{s}" for s in SESSIONS)
        assert batched["assets"][asset]["last_run_id"] is True


def test_replayed_batch_leaves_the_index_as_one_event_at_a_time(demo_env, tmp_path) -> None:
    """Same events, stored one by one by Dagster's storage and as one batch: same rows everywhere."""
    defs = fresh_defs()
    _use_default_event_log(demo_env / "home")
    with dg.DagsterInstance.get() as instance:
        result = run_daily(defs, instance, POOL, SESSIONS[-3:])
        assert result.success
        entries = [e for e in instance.all_logs(result.run_id) if e.is_dagster_event]
    # interleave two assets and both kinds of event, as a batch may
    asset_events = [e for e in entries if e.dagster_event_type in ASSET_EVENTS]
    others = [e for e in entries if e.dagster_event_type not in ASSET_EVENTS]
    assert len(asset_events) == 2 * 8 * 3 and others
    mixed = asset_events[::2] + others[:3] + asset_events[1::2]

    BatchingSqliteEventLogStorage = _batching_class()
    one_by_one = SqliteEventLogStorage(str(tmp_path / "plain"))
    for event in mixed:
        one_by_one.store_event(event)
    batched = BatchingSqliteEventLogStorage(str(tmp_path / "batched"))
    batched.store_event_batch(mixed)

    def rows(storage):
        keys = storage.all_asset_keys()
        out = {}
        for record in storage.get_asset_records(keys):
            entry = record.asset_entry
            last = entry.last_materialization_record
            out[entry.asset_key.to_user_string()] = (
                entry.last_run_id, last.storage_id if last else None,
                last.event_log_entry.dagster_event.partition if last else None)
        logs = [(r.storage_id, r.event_log_entry.dagster_event_type)
                for r in storage.get_records_for_run(result.run_id, limit=1000).records]
        tagged = {key.to_user_string(): sorted(storage.get_materialized_partitions(key)) for key in keys}
        return out, logs, tagged

    assert rows(batched) == rows(one_by_one)
    assert len(rows(batched)[1]) == len(mixed)

