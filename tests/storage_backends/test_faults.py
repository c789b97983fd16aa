"""Faults against real servers (private instances this session starts, stops and kills).

What is counted:
* Redis killed mid-run: the run succeeds, a warning names the cache server, every asset's rows are in
  the store (count per asset == rows produced).
* InfluxDB / MariaDB killed mid-run: the step retries with backoff (one warning per retry, the
  elapsed time covers the backoff), then fails naming server, asset and partition; after a restart
  the rerun succeeds and the partition holds exactly the rows produced: visible == physical ==
  distinct row numbers == rows (zero lost, zero duplicated).
* A server killed in the middle of a multi-batch write, and a client process SIGKILLed in the middle
  of a write (files, InfluxDB, MySQL): readers still get the previous value in full (visible count
  == previous rows); the rewrite then leaves exactly the new rows.
"""

import json
import logging
import os
import subprocess
import sys
import time
import uuid

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.io_managers import StoreIOManager
from resources.stores import FileStoreResource, InfluxStoreResource, MySQLStoreResource, RedisCacheResource
from rotation_platform.storage.base import Partition, RetryPolicy
from rotation_platform.storage.errors import StorageUnavailableError
from rotation_platform.storage.files import FileStore
from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport
from rotation_platform.storage.mysql import MySQLStore

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")
RETRY = {"retry_attempts": 3, "retry_base_delay_s": 0.2, "retry_max_delay_s": 0.4}
BACKOFF_S = 0.2 + 0.4  # waits between the three attempts, before jitter


def ticks(day: str, rows: int, version: int = 1) -> pd.DataFrame:
    index = pd.date_range(day, periods=rows, freq="s", name="time")
    values = np.arange(rows, dtype=float) * version
    return pd.DataFrame({"price": values, "size": np.arange(rows) % 13, "flag": values % 2 == 0}, index=index)


def _warnings(instance: dg.DagsterInstance, run_id: str, text: str) -> list[str]:
    return [r.user_message for r in instance.all_logs(run_id)
            if r.level == logging.WARNING and text in (r.user_message or "")]


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.to_string()


# -------------------------------------------------------------------------------------------- Redis
def test_redis_killed_mid_run_the_run_completes(private_redis, running, tmp_path) -> None:
    redis = running(private_redis)
    frame = ticks("2024-01-02", 500)

    @dg.asset
    def raw() -> pd.DataFrame:
        return frame

    @dg.asset
    def doubled(raw: pd.DataFrame) -> pd.DataFrame:
        redis.kill()  # the cache dies while the run is under way
        return raw * 2

    @dg.asset
    def shifted(doubled: pd.DataFrame) -> pd.DataFrame:
        return doubled + 1

    base = tmp_path / "data"
    manager = StoreIOManager(store=FileStoreResource(base_dir=str(base)),
                             cache=RedisCacheResource(url=redis.url, namespace=uuid.uuid4().hex,
                                                      socket_timeout_s=0.3, retry_after_s=60))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw, doubled, shifted], resources={"io_manager": manager}, instance=instance)
    assert result.success
    warned = _warnings(instance, result.run_id, "continuing without the cache")
    assert warned and all(f"Redis redis://127.0.0.1:{redis.port}/0" in w for w in warned)
    store = FileStore(base)
    for name, want in (("raw", frame), ("doubled", frame * 2), ("shifted", frame * 2 + 1)):
        pd.testing.assert_frame_equal(store.read((name,), Partition.unpartitioned()), want, check_freq=False)
        assert store.counts((name,), Partition.unpartitioned()).visible == len(frame)
    mats = {e.event_specific_data.materialization.asset_key.to_user_string():
            e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()}
    assert mats["raw"]["cache"].value["writes"] == 1
    assert mats["shifted"]["cache"].value["available"] is False

    redis.start()
    again = dg.materialize([raw, doubled, shifted], resources={"io_manager": manager}, instance=instance,
                           selection=[raw])
    assert again.success
    meta = again.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["cache"].value["writes"] == 1 and meta["cache"].value["errors"] == 0


# ------------------------------------------------------------------------------- servers mid-run
def _server_mid_run(server, resource, running) -> None:
    running(server)
    state = {"kill": True}
    rows = 5_000

    @dg.asset(partitions_def=DAILY)
    def tick_rows(context: dg.AssetExecutionContext) -> pd.DataFrame:
        if state["kill"]:
            server.kill()  # the server dies while the run is under way
        return ticks(context.partition_key, rows)

    manager = StoreIOManager(store=resource)
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.monotonic()
    failed = dg.materialize([tick_rows], resources={"io_manager": manager}, instance=instance,
                            partition_key="2024-01-02", raise_on_error=False)
    elapsed = time.monotonic() - t0
    assert not failed.success
    message = _failure(failed)
    assert "asset tick_rows partition 2024-01-02" in message and "failed after 3 attempts" in message
    assert f"127.0.0.1:{server.port}" in message and "check that the server is running" in message
    retries = _warnings(instance, failed.run_id, "retrying in")
    assert len(retries) == 2
    assert elapsed >= BACKOFF_S * 0.9

    server.start()
    state["kill"] = False
    rerun = dg.materialize([tick_rows], resources={"io_manager": manager}, instance=instance,
                           partition_key="2024-01-02")
    assert rerun.success
    store = resource.open_store()
    try:
        counts = store.counts(("tick_rows",), Partition.single("2024-01-02"))
        assert (counts.visible, counts.physical, counts.distinct) == (rows, rows, rows)
        pd.testing.assert_frame_equal(store.read(("tick_rows",), Partition.single("2024-01-02")),
                                      ticks("2024-01-02", rows), check_freq=False)
    finally:
        store.close()


def test_influxdb_killed_mid_run_retries_then_fails_and_rerun_is_exact(private_influx, running) -> None:
    resource = InfluxStoreResource(url=private_influx.url, database=f"rp_fault_{uuid.uuid4().hex[:6]}",
                                   batch_lines=500, **RETRY)
    _server_mid_run(private_influx, resource, running)


def test_mariadb_killed_mid_run_retries_then_fails_and_rerun_is_exact(private_mariadb, running) -> None:
    url = private_mariadb.url.replace("/rp_fault", f"/rp_fault_{uuid.uuid4().hex[:6]}")
    resource = MySQLStoreResource(url=url, connect_timeout_s=2, **RETRY)
    _server_mid_run(private_mariadb, resource, running)


# ----------------------------------------------------------------------------- server dies mid-write
def _killed_mid_write(server, make, asset) -> None:
    partition = Partition.single("2024-01-03")
    before, after = ticks("2024-01-03", 20_000, 1), ticks("2024-01-03", 30_000, 2)
    store = make(None)
    store.write(asset, partition, before)

    def kill_after_three(done: int, total: int) -> None:
        if done == 3 and server.running:
            server.kill()

    dying = make(kill_after_three)
    with pytest.raises(StorageUnavailableError, match="failed after 3 attempts") as info:
        dying.write(asset, partition, after)
    assert "partition 2024-01-03" in str(info.value)
    server.start()
    store = make(None)
    pd.testing.assert_frame_equal(store.read(asset, partition), before, check_freq=False)
    counts = store.counts(asset, partition)
    assert counts.visible == len(before)
    store.write(asset, partition, after)
    counts = store.counts(asset, partition)
    assert (counts.visible, counts.physical, counts.distinct) == (len(after),) * 3
    pd.testing.assert_frame_equal(store.read(asset, partition), after, check_freq=False)
    store.close()


def test_influxdb_killed_mid_write_keeps_previous_value(private_influx, running) -> None:
    server = running(private_influx)
    database = f"rp_fault_{uuid.uuid4().hex[:6]}"
    policy = RetryPolicy(attempts=3, base_delay=0.2, max_delay=0.4)

    def make(progress):
        return InfluxStore(InfluxV1Transport(server.url, database), retry=policy, batch_lines=1_000,
                           concurrency=1, progress=progress)

    _killed_mid_write(server, make, ("ticks",))


def test_mariadb_killed_mid_write_keeps_previous_value(private_mariadb, running) -> None:
    server = running(private_mariadb)
    url = server.url.replace("/rp_fault", f"/rp_fault_{uuid.uuid4().hex[:6]}")
    policy = RetryPolicy(attempts=3, base_delay=0.2, max_delay=0.4)

    def make(progress):
        return MySQLStore(url, retry=policy, batch_bytes=64 << 10, connect_timeout_s=2, progress=progress)

    _killed_mid_write(server, make, ("ticks",))


# ------------------------------------------------------------------------- client killed mid-write
CHILD = r"""
import json, os, signal, sys
import numpy as np, pandas as pd
from rotation_platform.storage.base import Partition
args = json.loads(sys.argv[1])
index = pd.date_range("2024-01-04", periods=args["rows"], freq="s", name="time")
frame = pd.DataFrame({"price": np.arange(args["rows"], dtype=float) * 7}, index=index)

def die(done, total):
    if done >= 3:
        os.kill(os.getpid(), signal.SIGKILL)

if args["kind"] == "local":
    from rotation_platform.storage.files import FileStore
    store = FileStore(args["dir"])
    os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)  # die between write and rename
elif args["kind"] == "influxdb":
    from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport
    store = InfluxStore(InfluxV1Transport(args["url"], args["db"]), batch_lines=1000, concurrency=1, progress=die)
else:
    from rotation_platform.storage.mysql import MySQLStore
    store = MySQLStore(args["url"], batch_bytes=64 << 10, progress=die)
store.write(tuple(args["asset"]), Partition.single("2024-01-04"), frame)
print("write completed: the kill did not happen")
"""


@pytest.mark.parametrize("kind", ["local", "influxdb", "mysql"])
def test_process_killed_during_write_leaves_no_partial_partition(kind, make_store, influx_server, mysql_server,
                                                                 tmp_path, asset_key) -> None:
    store = make_store(kind)
    partition = Partition.single("2024-01-04")
    before = ticks("2024-01-04", 10_000)
    store.write(asset_key, partition, before)
    args = {"kind": kind, "rows": 25_000, "asset": list(asset_key), "dir": str(tmp_path / "files"),
            "url": influx_server[0] if kind == "influxdb" else mysql_server, "db": influx_server[1]}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9, proc.stdout + proc.stderr
    pd.testing.assert_frame_equal(store.read(asset_key, partition), before, check_freq=False)
    counts = store.counts(asset_key, partition)
    assert counts.visible == len(before)
    assert store.partitions(asset_key) == ["2024-01-04"]
    if kind == "local":
        assert len(store.temp_files(asset_key, partition)) == 1  # the dead writer's, invisible to readers
    after = ticks("2024-01-04", 25_000, 3)
    store.write(asset_key, partition, after)
    counts = store.counts(asset_key, partition)
    assert (counts.visible, counts.physical, counts.distinct) == (len(after),) * 3
    pd.testing.assert_frame_equal(store.read(asset_key, partition), after, check_freq=False)
