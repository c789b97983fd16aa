"""Hashes recorded on write, snapshots built from them, and check results written in batches: the same
values, manifests and check records as reading and re-hashing everything / storing one event at a time."""

from __future__ import annotations

import importlib
import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.storage.base import Partition
from rotation_platform.storage.codec import encode_file
from rotation_platform.storage.files import FileStore, atomic_write_bytes, encode_file_with_hash
from rotation_platform.storage.provenance import with_provenance
from rotation_platform.storage.snapshots import value_hash
from tests.orchestration.conftest import fresh_defs, run_daily, run_summary, sessions_between

POOL = "QDII"


def _frame() -> pd.DataFrame:
    index = pd.MultiIndex.from_product([pd.to_datetime(["2024-12-30", "2024-12-31"]), ["A", "B", "C"]],
                                       names=["session", "symbol"])
    frame = pd.DataFrame({"w": np.arange(6, dtype=float), "n": np.arange(6), "label": list("xyzxyz"),
                          "flag": [True, False] * 3}, index=index)
    frame.loc[frame.index[2], "w"] = np.nan
    return with_provenance(frame, {"data_hash": "d1", "config_hash": "c1"})


def _panel() -> PricePanel:
    days = pd.to_datetime(["2024-12-30", "2024-12-31"])
    frames = {f: pd.DataFrame([[1.0, np.nan], [1.5, 2.0]], index=days, columns=["A", "B"]) for f in PRICE_FIELDS}
    return with_provenance(PricePanel(frames, {"pool": POOL}), {"data_hash": "d2", "config_hash": "c2"})


@pytest.mark.parametrize("make", [_frame, _panel, lambda: {"a": [1, 2.5, None], "provenance": {"data_hash": "d3"},
                                                            "text": "x" * 5000}])
def test_file_bytes_and_hash_are_the_codecs(make) -> None:
    value = make()
    suffix, data, vhash = encode_file_with_hash(value)
    assert (suffix, data) == encode_file(value)  # byte-identical files
    assert vhash == value_hash(value)


def test_value_digest_is_kept_while_the_file_and_its_entry_are_unchanged(tmp_path, monkeypatch) -> None:
    from rotation_platform.storage import files

    hashed = []
    real_sha256 = files.hashlib.sha256
    monkeypatch.setattr(files.hashlib, "sha256", lambda data=b"": hashed.append(len(data)) or real_sha256(data))
    store = FileStore(tmp_path)
    part = Partition.multi({"pool": POOL, "session": "2024-12-31"})
    store.write(("backtest",), part, _frame())
    monkeypatch.setattr(files, "LISTING_SETTLE_NS", 0)  # every file counts as settled
    hashed.clear()
    first = store.value_digest(("backtest",), part)
    assert [store.value_digest(("backtest",), part) for _ in range(3)] == [first] * 3
    assert len(hashed) == 1  # the file's bytes hashed once, then its identity checked
    first["value_hash"] = "changed by the caller"  # a copy each time: the kept answer is not touched
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(_frame())
    # rewritten (another value, then the first value again): read again at once, never the kept answer
    other = with_provenance(_frame() * 3, {"data_hash": "d9", "config_hash": "c1"})
    store.write(("backtest",), part, other)
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(other)
    store.write(("backtest",), part, _frame())
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(_frame())
    # a file of another type written beside it by hand (the folder changes): looked up again
    (tmp_path / "backtest" / POOL / "2024-12-31.panel.parquet").write_bytes(b"not a value")
    assert store.value_digest(("backtest",), part) is None  # the first suffix wins, with no recorded digest
    (tmp_path / "backtest" / POOL / "2024-12-31.panel.parquet").unlink()
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(_frame())
    # files younger than the settle time are hashed on every call (a rewrite within the file system's
    # timestamp granularity could keep the same times)
    monkeypatch.setattr(files, "LISTING_SETTLE_NS", 10**18)
    store.write(("backtest",), part, other)
    expected = value_hash(other)
    hashed.clear()
    assert [store.value_digest(("backtest",), part)["value_hash"] for _ in range(3)] == [expected] * 3
    assert len(hashed) == 3


def test_value_digest_is_recorded_on_write_and_checked_against_the_file(tmp_path) -> None:
    store = FileStore(tmp_path)
    part = Partition.multi({"pool": POOL, "session": "2024-12-31"})
    frame = _frame()
    store.write(("backtest",), part, frame)
    digest = store.value_digest(("backtest",), part)
    assert digest == {"value_hash": value_hash(store.read(("backtest",), part)),
                      "provenance": {"data_hash": "d1", "config_hash": "c1"}}
    # a rewrite: the latest entry counts
    other = with_provenance(frame * 2, {"data_hash": "d9", "config_hash": "c1"})
    store.write(("backtest",), part, other)
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(other)
    assert store.value_digest(("backtest",), part)["provenance"]["data_hash"] == "d9"
    # the file replaced behind the store's back: its digest is the one of the bytes it now holds
    path = store.stem(("backtest",), part).with_name("2024-12-31.parquet")
    atomic_write_bytes(path, encode_file(frame.assign(w=1.0))[1])
    assert store.value_digest(("backtest",), part) is None  # bytes no write recorded
    atomic_write_bytes(path, encode_file(frame)[1])
    assert store.value_digest(("backtest",), part)["value_hash"] == value_hash(frame)  # written before
    # nothing stored, digests lost or cut short: None (the reader decodes the value)
    assert store.value_digest(("backtest",), Partition.multi({"pool": POOL, "session": "2024-12-30"})) is None
    entries = sorted(store.digest_dir.rglob("*.json"))
    assert len(entries) == 2 and store.digest_dir == tmp_path / ".digests"
    entries[0].write_text(entries[0].read_text()[:10])
    entries[1].write_text(entries[1].read_text()[:10])
    assert store.value_digest(("backtest",), part) is None
    # the data folder holds the values, and the digests in its hidden .digests folder only (beside the
    # process's store statistics in .stats)
    assert sorted(p.name for p in tmp_path.rglob("*")
                  if p.is_file() and not {".digests", ".stats"} & set(p.parts)) == \
        ["2024-12-31.parquet"]


def test_write_many_stores_what_write_stores(tmp_path) -> None:
    days = ["2024-12-27", "2024-12-30", "2024-12-31"]
    items = [(Partition.multi({"pool": POOL, "session": d}),
              with_provenance(_frame().assign(w=lambda f, i=i: f["w"] + i), {"data_hash": d}))
             for i, d in enumerate(days)]
    one, many = FileStore(tmp_path / "one"), FileStore(tmp_path / "many")
    # a JSON value there before: a rewrite of another type leaves one file per partition
    many.write(("backtest",), items[0][0], {"old": True})
    singles = [one.write(("backtest",), p, v) for p, v in items]
    receipts = many.write_many(("backtest",), items)
    assert [r.checksum for r in receipts] == [r.checksum for r in singles]
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.parquet")}
    assert files(tmp_path / "one") == files(tmp_path / "many") and len(files(tmp_path / "many")) == 3
    digests = lambda store: {p.name: p.read_bytes() for p in store.digest_dir.rglob("*.json")}
    assert digests(one).items() <= digests(many).items() and len(digests(one)) == 3
    assert len(digests(many)) == 3 + 1  # and the JSON written before
    stray = [q for q in (tmp_path / "many").rglob("*") if ".digests" not in q.parts and q.suffix in (".json", ".tmp")]
    assert stray == []
    for p, v in items:
        assert many.value_digest(("backtest",), p) == one.value_digest(("backtest",), p)
        assert many.value_digest(("backtest",), p)["value_hash"] == value_hash(v)


def _check_rows(instance, run_id: str) -> dict[tuple[str, str, str], tuple[str, bool]]:
    rows = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = entry.dagster_event.event_specific_data
        key = ev.asset_check_key
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
        status = {r.partition: r.status.value for r in history if r.run_id == run_id}
        rows[(key.asset_key.to_user_string(), key.name, ev.partition)] = (status[ev.partition], bool(ev.passed))
    return rows


def test_check_results_written_in_batches_match_the_default_event_log(demo_env, monkeypatch) -> None:
    from dagster._core.storage.event_log import SqliteEventLogStorage

    sessions = sessions_between("2024-12-26", "2024-12-31")
    defs = fresh_defs()
    batching = importlib.import_module("resources.event_log").BatchingSqliteEventLogStorage
    flushed: list[int] = []
    original = batching._store_check_results

    def spy(self, events):
        flushed.append(len(events))
        return original(self, events)

    monkeypatch.setattr(batching, "_store_check_results", spy)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, batching)
        result = run_daily(defs, instance, POOL, sessions)
        assert result.success
        batched = _check_rows(instance, result.run_id)
        entries = list(instance.all_logs(result.run_id))
        n_logs = len(entries)
    assert max(flushed) >= len(sessions)  # a step's results of every session in one write

    # replayed into a fresh log up to a check result: a query right after it sees it (the read writes it)
    replay = batching(str(demo_env / "replay"))
    last_check = max(i for i, e in enumerate(entries)
                     if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    for entry in entries[: last_check + 1]:
        replay.store_event(entry)
    assert replay._pending_checks  # kept back so far
    ev = entries[last_check].dagster_event.event_specific_data
    history = replay.get_asset_check_execution_history(ev.asset_check_key, limit=1000)
    assert not replay._pending_checks
    assert {r.partition: r.status.value for r in history if r.run_id == result.run_id}[ev.partition] == \
        batched[(ev.asset_key.to_user_string(), ev.check_name, ev.partition)][0]
    assert len(replay.get_records_for_run(result.run_id, limit=10000).records) == last_check + 1

    # a planned row carries the planned event of its own partition (not the whole run's subset in every row)
    planned_only = batching(str(demo_env / "planned"))
    planned = [e for e in entries if e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED]
    for entry in planned:
        planned_only.store_event(entry)
    key = planned[0].dagster_event.event_specific_data.asset_check_key
    rows = planned_only.get_asset_check_execution_history(key, limit=1000)
    assert sorted(r.partition for r in rows) == sorted(f"{POOL}|{s}" for s in sessions)
    for r in rows:
        assert r.status.value == "PLANNED"
        assert list(r.event.dagster_event.event_specific_data.partitions_subset.get_partition_keys()) == [r.partition]
    whole = planned_only.get_records_for_run(result.run_id, limit=1000).records[0].event_log_entry
    assert len(whole.dagster_event.event_specific_data.partitions_subset.get_partition_keys()) == len(sessions)

    shutil.rmtree(demo_env / "data")
    shutil.rmtree(demo_env / "home")
    (demo_env / "home").mkdir()
    (demo_env / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        result = run_daily(defs, instance, POOL, sessions)
        assert result.success
        default = _check_rows(instance, result.run_id)
        assert len(instance.all_logs(result.run_id)) == n_logs
    assert batched == default
    assert batched and {s for s, _ in batched.values()} <= {"SUCCEEDED", "FAILED"}
    assert {p.split("|")[-1] for _, _, p in batched} == set(sessions)


def test_snapshot_from_recorded_hashes_equals_reading_every_value(demo_env, monkeypatch) -> None:
    sessions = sessions_between("2024-12-13", "2024-12-31")  # 13 sessions: 3 manifests beyond the 10 kept
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        for pool in ("A_SHARE", "QDII", "OTHER"):
            assert run_daily(defs, instance, pool, sessions).success
        result = run_summary(defs, instance, sessions)
        assert result.success
        fast = result.output_for_node("session_snapshot")
    store = FileStore(demo_env / "data")
    # every value's hash recorded on write is the hash of the value read back
    checked = 0
    from assets.summary import POOL_ASSETS

    for asset in (*POOL_ASSETS, "pool_metrics_summary"):
        for key in store.partitions((asset,)):
            part = Partition.multi(dict(zip(("pool", "session"), key.split("|")))) if "|" in key \
                else Partition.single(key)
            digest = store.value_digest((asset,), part)
            assert digest is not None, (asset, key)
            assert digest["value_hash"] == value_hash(store.read((asset,), part)), (asset, key)
            checked += 1
    assert checked >= (7 * 3 + 1) * len(sessions)  # price_quarantine only where rows were quarantined

    # the same summary run with no digests: every value read and hashed
    monkeypatch.setattr(FileStore, "value_digest", lambda self, asset, partition: None)
    with dg.DagsterInstance.get() as instance:
        result = run_summary(defs, instance, sessions)
        assert result.success
        slow = result.output_for_node("session_snapshot")
    assert sorted(fast) == sessions
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
    kept = sorted(p.name for p in (demo_env / "data" / "snapshots").iterdir() if not p.name.startswith("."))
    assert kept == sessions[-10:]
