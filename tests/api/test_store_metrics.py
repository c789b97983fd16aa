"""Store statistics: real reads and writes of the file store and real Redis cache lookups are counted per
backend and operation; a run in its own process leaves its counts in the data folder and the API's
``/metrics`` adds them up, beside the run and step figures it reads from the instance's run records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotation_platform.storage import FileStore, Partition, stats
from rotation_platform.storage.errors import StorageInputError, StorageNotFoundError
from tests.api.conftest import demo_environment
from tests.orchestration.conftest import ROOT, SESSION

REDIS_URL = os.environ.get("ROTATION_CI_REDIS_URL", "redis://127.0.0.1:6379/0")


def _op(before: dict, after: dict, backend: str, op: str) -> dict:
    """What ``after`` counted for ``backend|op`` beyond ``before`` (buckets left out)."""
    old = before["ops"].get(f"{backend}|{op}", {})
    new = after["ops"].get(f"{backend}|{op}", {})
    return {k: new.get(k, 0) - old.get(k, 0) for k in ("count", "seconds", "bytes", "errors")}


def test_file_store_reads_and_writes_are_counted(tmp_path):
    store = FileStore(tmp_path / "data")
    frame = pd.DataFrame({"close": [1.0, 2.0, 3.0]}, index=pd.date_range("2024-01-02", periods=3))
    before = stats.RECORDER.snapshot()
    receipt = store.write(("prices",), Partition.single("A_SHARE"), frame)
    size = os.path.getsize(receipt.location)
    store.read(("prices",), Partition.single("A_SHARE"))
    got = store.read_many(("prices",), [Partition.single("A_SHARE"), Partition.single("QDII")])
    assert list(got) == ["A_SHARE"]
    with pytest.raises(StorageNotFoundError):
        store.read(("prices",), Partition.single("OTHER"))
    with pytest.raises(StorageInputError):
        store.write(("prices",), Partition.single("bad"), object())
    after = stats.RECORDER.snapshot()
    write, read = _op(before, after, "local", "write"), _op(before, after, "local", "read")
    assert write["count"] == 2 and write["errors"] == 1 and write["bytes"] == size
    # a window read is one call; a missing partition is an answer, not an error
    assert read["count"] == 3 and read["errors"] == 0 and read["bytes"] == 2 * size
    assert read["seconds"] > 0 and write["seconds"] > 0
    bucketed = after["ops"]["local|read"]["buckets"]
    assert sum(bucketed) == after["ops"]["local|read"]["count"]


def test_counts_of_ended_processes_are_added_and_merged(tmp_path):
    folder = tmp_path / "stats"
    code = ("import sys; from rotation_platform.storage import stats; stats.use_folder(sys.argv[1]);"
            "[stats.record('mysql', 'write', 0.02, 100) for _ in range(3)]; stats.cache_lookups(5, 2)")
    for _ in range(2):  # two runs that ended: their totals are written when they exit
        subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, check=True, timeout=120)
    assert len(list(folder.glob("*.json"))) == 2
    mine = stats.RECORDER.snapshot()
    got = stats.totals(folder)
    assert got["processes"] == 3
    assert got["ops"]["mysql|write"]["count"] == 6 + mine["ops"].get("mysql|write", {}).get("count", 0)
    assert got["ops"]["mysql|write"]["bytes"] == 600 + mine["ops"].get("mysql|write", {}).get("bytes", 0)
    assert got["cache"]["hits"] == 10 + mine["cache"]["hits"]
    # the ended processes' files are now one totals.json: adding up again gives the same counts
    assert sorted(p.name for p in folder.glob("*.json")) == ["totals.json"]
    assert stats.totals(folder)["ops"]["mysql|write"]["count"] == got["ops"]["mysql|write"]["count"]


def _redis():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis is not answering at {REDIS_URL} ({exc}); start it (port 6379)", pytrace=False)
    return client


def test_redis_cache_hits_and_misses_are_counted(tmp_path):
    from rotation_platform.storage.cache import CachedStore, RedisCache

    client = _redis()
    namespace = f"test-stats-{uuid.uuid4().hex[:8]}"
    store = CachedStore(FileStore(tmp_path / "data"), RedisCache(REDIS_URL, namespace=namespace))
    frame = pd.DataFrame({"w": [0.5, 0.5]}, index=["510300", "518880"])
    part = Partition.single("QDII")
    try:
        store.inner.write(("weights",), part, frame)  # behind the cache's back: the first read misses
        before = stats.RECORDER.snapshot()
        pd.testing.assert_frame_equal(store.read(("weights",), part), frame)  # miss: file read, entry cached
        pd.testing.assert_frame_equal(store.read(("weights",), part), frame)  # hit
        store.read_many(("weights",), [part, Partition.single("OTHER")])  # one hit, one miss
        after = stats.RECORDER.snapshot()
    finally:
        store.cache.clear_namespace()
        store.close()
        client.close()
    assert after["cache"]["hits"] - before["cache"]["hits"] == 2
    assert after["cache"]["misses"] - before["cache"]["misses"] == 2
    redis_read, redis_write = _op(before, after, "redis", "read"), _op(before, after, "redis", "write")
    assert redis_read["count"] == 3 and redis_read["errors"] == 0 and redis_read["bytes"] > 0
    assert redis_write["count"] >= 1 and redis_write["bytes"] > 0
    # the file store is read for the misses only: the first read and the window's missing partition
    assert _op(before, after, "local", "read")["count"] == 2


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_metrics_show_a_runs_store_counts_and_steps(tmp_path, monkeypatch):
    """``python -m jobs.main`` runs one pool in its own process; the API then answers with what it did."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    env = demo_environment(tmp_path)
    (tmp_path / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    child = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    child.update(env)
    out = subprocess.run([sys.executable, "-m", "jobs.main", "--session", SESSION, "--pools", "QDII"], cwd=ROOT,
                         env=child, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    folder = tmp_path / "data" / ".stats"
    (left,) = [json.loads(p.read_text()) for p in folder.glob("*.json")]  # the run's process, ended
    data = tmp_path / "data"
    values = [p for p in data.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(data).parts)
              and p.relative_to(data).parts[0] != "snapshots"]  # snapshots are copies, not store writes
    assert values and left["ops"]["local|write"]["count"] >= len(values)  # every value file is one write
    assert left["ops"]["local|write"]["bytes"] >= sum(p.stat().st_size for p in values)
    assert left["ops"]["local|read"]["count"] > 0 and left["ops"]["local|read"]["bytes"] > 0

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ROTATION_API_KEYS_FILE", str(tmp_path / "keys.json"))
    monkeypatch.setenv("ROTATION_API_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    client = TestClient(create_app())
    try:
        mine = stats.RECORDER.snapshot()
        text = client.get("/metrics").text
    finally:
        client.app.state.platform.store.close()
        client.app.state.platform.instance.dispose()
    samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        got = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(got) == 1, (name, labels, got)
        return got[0]

    own = mine["ops"].get("local|write", {})
    assert value("rotation_store_operations_total", backend="local", op="write") >= \
        left["ops"]["local|write"]["count"] + own.get("count", 0)
    assert value("rotation_store_bytes_total", backend="local", op="write") >= left["ops"]["local|write"]["bytes"]
    assert value("rotation_store_errors_total", backend="local", op="write") >= 0
    assert value("rotation_store_operation_seconds_count", backend="local", op="read") >= \
        left["ops"]["local|read"]["count"]
    assert value("rotation_store_operation_seconds_sum", backend="local", op="read") > 0
    assert value("rotation_store_operation_seconds_bucket", backend="local", op="read", le="+Inf") == \
        value("rotation_store_operation_seconds_count", backend="local", op="read")
    assert "rotation_cache_hits_total" in samples and "rotation_cache_misses_total" in samples
    # the run's record: one successful run of the pool's job, its duration and each step's
    runs = [s for s in samples["rotation_dagster_runs_24h"] if s.labels["status"] == "SUCCESS"]
    assert sum(s.value for s in runs) >= 1
    durations = [s for s in samples["rotation_dagster_run_duration_seconds"] if s.labels["pool"] == "QDII"]
    assert len(durations) == 1 and durations[0].value > 0
    steps = {s.labels["step"]: s.value for s in samples["rotation_dagster_step_duration_seconds"]
             if s.labels["pool"] == "QDII"}
    assert "pool_chain" in steps  # the pool's assets are one step
    assert all(0 <= v <= durations[0].value for v in steps.values())
    failures = [s for s in samples["rotation_dagster_step_failures_24h"]]
    assert failures and all(s.value == 0 for s in failures)
    assert all(s.value == 0 for s in samples["rotation_dagster_step_retries_24h"])


def test_step_failures_and_retries_come_from_the_run_records(tmp_path):
    """A real run whose step fails twice (one retry): its failure and retry are counted per job and step."""
    from types import SimpleNamespace

    import dagster as dg

    from api.metrics import StoredResultsCollector

    @dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
    def flaky():
        raise RuntimeError("the server went away")

    @dg.op
    def fine():
        return 1

    @dg.job
    def flaky_job():
        flaky()
        fine()

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert not flaky_job.execute_in_process(instance=instance, raise_on_error=False).success
        state = SimpleNamespace(config=SimpleNamespace(pool_names=["QDII"]), instance=instance)
        families = {f.name: f for f in StoredResultsCollector(state)._runs()}

    def values(name: str) -> dict:
        return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}

    assert values("rotation_dagster_runs_24h") == {(("dagster_job", "flaky_job"), ("status", "FAILURE")): 1.0}
    assert values("rotation_dagster_step_failures_24h") == {
        (("dagster_job", "flaky_job"), ("step", "flaky")): 1.0, (("dagster_job", "flaky_job"), ("step", "fine")): 0.0}
    assert values("rotation_dagster_step_retries_24h")[(("dagster_job", "flaky_job"), ("step", "flaky"))] == 1.0
    assert values("rotation_dagster_run_retries_24h") == {(("dagster_job", "flaky_job"),): 0.0}
    (run,) = families["rotation_dagster_run_duration_seconds"].samples
    assert run.labels == {"dagster_job": "flaky_job", "pool": ""} and run.value > 0
    steps = {s.labels["step"] for s in families["rotation_dagster_step_duration_seconds"].samples}
    assert steps == {"flaky", "fine"}
