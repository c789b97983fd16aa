"""Runs that write the same partitions cannot interleave: the run locks of a data folder (command line,
IO manager) and the run queue's per-pool limits of launched runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.errors import EXIT_SERVICE
from rotation_platform.production.runlock import (
    SUMMARY_SCOPE,
    WRITE_SCOPE_TAG,
    RunLock,
    RunLockBusy,
    acquire_all,
    lock_path,
    pool_scope,
    scope_of_partition,
)
from rotation_platform.storage.files import read_value
from tests.orchestration.conftest import ROOT, SMALL_END, small_env

HOLDER = textwrap.dedent("""
    import sys, time
    from rotation_platform.production.runlock import RunLock
    lock = RunLock(sys.argv[1], sys.argv[2], run_id="run-held-by-child", config="/cfg/other.yaml").acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def _hold_in_child(data_dir: Path, scope: str) -> subprocess.Popen:
    """A process that holds ``scope``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir), scope], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_held_lock_names_its_holder_and_a_killed_holder_frees_it(tmp_path) -> None:
    child = _hold_in_child(tmp_path, pool_scope("EQUITY"))
    try:
        with pytest.raises(RunLockBusy) as info:
            RunLock(tmp_path, pool_scope("EQUITY"), run_id="mine").acquire()
        err = info.value
        assert err.exit_code == EXIT_SERVICE
        text = err.one_line()
        assert "\n" not in text
        assert f"pool EQUITY of {tmp_path.resolve()} is being written by another run" in text
        assert f"pid {child.pid} on " in text and "run run-held-by-child" in text
        assert "config /cfg/other.yaml" in text and "since 20" in text and "--wait SECONDS" in text
        assert str(lock_path(tmp_path, "pool-EQUITY")) in text
        assert err.holder.pid == child.pid
        # other scopes are free meanwhile
        with RunLock(tmp_path, pool_scope("OVERSEAS")):
            pass
        # a wait that runs out says how long it waited
        with pytest.raises(RunLockBusy, match="after waiting 0.5s"):
            RunLock(tmp_path, pool_scope("EQUITY")).acquire(wait_s=0.5)
    finally:
        _kill(child)
    # SIGKILL leaves the file behind, but the kernel dropped the lock: free again
    assert lock_path(tmp_path, "pool-EQUITY").exists()
    lock = RunLock(tmp_path, pool_scope("EQUITY"), run_id="mine").acquire()
    try:
        assert lock.holder().run_id == "mine" and lock.holder().pid == os.getpid()
    finally:
        lock.release()
    assert RunLock(tmp_path, pool_scope("EQUITY")).holder() is None


def test_locks_are_reentrant_in_a_process_and_exclusive_across_processes(tmp_path) -> None:
    with acquire_all(tmp_path, [pool_scope("EQUITY"), SUMMARY_SCOPE], run_id="outer") as locks:
        assert [lock.scope for lock in locks] == ["pool-EQUITY", "summary"]
        inner = RunLock(tmp_path, SUMMARY_SCOPE, run_id="inner").acquire()  # the IO manager inside the run
        inner.release()
        assert RunLock(tmp_path, SUMMARY_SCOPE).holder().run_id == "outer"  # still held by the outer one
        probe = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys
            from rotation_platform.production.runlock import RunLock, RunLockBusy
            try:
                RunLock(sys.argv[1], "summary").acquire()
            except RunLockBusy as exc:
                print(exc.one_line()); sys.exit(5)
            """), str(tmp_path)], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert probe.returncode == 5 and "the summary and snapshots of" in probe.stdout
        assert "run outer" in probe.stdout
    assert RunLock(tmp_path, SUMMARY_SCOPE).holder() is None


def test_scope_of_a_stored_partition() -> None:
    assert scope_of_partition({"pool": "QDII", "session": "2024-12-31"}) == "pool-QDII"
    assert scope_of_partition({"": "2024-12-31"}) == SUMMARY_SCOPE
    assert scope_of_partition({}) is None


def test_the_io_manager_takes_the_pool_lock_so_a_launched_run_cannot_interleave(tmp_path) -> None:
    from resources.io_managers import LocalFilesIOManager

    parts = dg.MultiPartitionsDefinition({"pool": dg.StaticPartitionsDefinition(["EQUITY", "OVERSEAS"]),
                                          "session": dg.DailyPartitionsDefinition("2025-09-01", end_offset=0)})

    @dg.asset(partitions_def=parts)
    def weights() -> pd.DataFrame:
        return pd.DataFrame({"w": [0.5, 0.5]}, index=pd.Index(["A", "B"], name="symbol"))

    data = tmp_path / "data"
    io = LocalFilesIOManager(base_dir=str(data))
    key = dg.MultiPartitionKey({"pool": "EQUITY", "session": "2025-09-22"})
    child = _hold_in_child(data, pool_scope("EQUITY"))
    try:
        result = dg.materialize([weights], partition_key=key, resources={"io_manager": io}, raise_on_error=False,
                                instance=dg.DagsterInstance.ephemeral())
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
        while failure.cause is not None:
            failure = failure.cause
        assert failure.cls_name == "RunLockBusy"
        assert f"pool EQUITY of {data.resolve()} is being written by another run (pid {child.pid}" in failure.message
        assert not list((data / "weights").rglob("*.parquet"))
        # another pool is not held up
        other = dg.MultiPartitionKey({"pool": "OVERSEAS", "session": "2025-09-22"})
        assert dg.materialize([weights], partition_key=other, resources={"io_manager": io},
                              instance=dg.DagsterInstance.ephemeral()).success
    finally:
        _kill(child)
    assert dg.materialize([weights], partition_key=key, resources={"io_manager": io},
                          instance=dg.DagsterInstance.ephemeral()).success
    assert list((data / "weights" / "EQUITY").glob("2025-09-22.*"))
    assert RunLock(data, pool_scope("EQUITY")).holder() is None  # released when the run ended


# ------------------------------------------------------------------------------ launched runs: the queue
def test_instance_run_queue_allows_one_run_per_pool_and_for_the_summary(tmp_path, monkeypatch) -> None:
    from dagster._core.instance.config import dagster_instance_config

    expected = [{"key": WRITE_SCOPE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
                {"key": "dagster/partition/pool", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the event log of configs/dagster.yaml lives there
    (home / "dagster.yaml").write_text((ROOT / "configs" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == expected
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(deploy))  # validates the file as Dagster loads it
    assert config["concurrency"]["runs"]["tag_concurrency_limits"] == expected
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_schedule_and_summary_sensor_tag_what_their_runs_write(tmp_path, monkeypatch) -> None:
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    from jobs.schedules import session_run_requests
    from rotation_platform.config import load_config

    env = small_env(tmp_path)
    config = load_config(env["ROTATION_CONFIG"], env={})
    requests = session_run_requests(pd.Timestamp("2025-09-26 18:00", tz="Asia/Shanghai"), config)
    assert {r.tags[WRITE_SCOPE_TAG] for r in requests} == {f"pool:{p}" for p in config.pool_names}

    # the daemon's own counter: with a run of EQUITY in progress, a second EQUITY run waits, OVERSEAS does not
    limits = [{"key": WRITE_SCOPE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    in_progress = dg.DagsterRun(job_name="daily", run_id="a" * 8, tags={WRITE_SCOPE_TAG: "pool:EQUITY"})
    counter = TagConcurrencyLimitsCounter(limits, [in_progress])
    assert counter.is_blocked(dg.DagsterRun(job_name="daily", run_id="b" * 8,
                                            tags={WRITE_SCOPE_TAG: "pool:EQUITY"}))
    assert not counter.is_blocked(dg.DagsterRun(job_name="daily", run_id="c" * 8,
                                                tags={WRITE_SCOPE_TAG: "pool:OVERSEAS"}))


# ------------------------------------------------------------------------------ two command-line runs
def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "jobs.main", *args], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_holder(data: Path, scope: str, pid: int, proc: subprocess.Popen) -> None:
    path = lock_path(data, scope)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first run ended before it took its lock"
        holder = RunLock(data, scope).holder() if path.exists() else None
        if holder is not None and holder.pid == pid:
            return
        time.sleep(0.1)
    raise AssertionError("the first run never took its lock")


def _stored_matches(data: Path, doc: dict) -> bool:
    """Whether the stored backtest row and target portfolio of the session are the result file's."""
    pool = doc["pools"][0]
    frame = read_value(data / "backtest" / pool["pool"] / SMALL_END)
    row = frame.loc[pd.Timestamp(SMALL_END)]
    target = read_value(data / "target_portfolio" / pool["pool"] / SMALL_END).xs(pd.Timestamp(SMALL_END))
    shares = {t["symbol"]: t["target_shares"] for t in pool["targets"]}
    stored_shares = {s: int(v) for s, v in target["target_shares"].items() if v}
    return (round(float(row["equity"]), 2) == pool["equity"] and float(row["sharpe"]) == pool["metrics"]["sharpe"]
            and stored_shares == {s: v for s, v in shares.items() if v})


def _wait_for_text(log: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"the run ended before printing {text!r}: {log.read_text()[-2000:]}"
        time.sleep(0.1)
    raise AssertionError(f"the run never printed {text!r}")


def test_two_command_line_runs_on_one_folder_do_not_interleave(tmp_path) -> None:
    env = small_env(tmp_path)
    data = tmp_path / "data"
    other = {**env, "ROTATION_BACKTEST__SLIPPAGE_BPS": "9"}  # another config: other costs, other numbers
    args = ["--pools", "EQUITY", "--session", SMALL_END]
    # a run holds the pool (this process, as a run would): timing no longer decides who waits for whom
    gate = RunLock(data, pool_scope("EQUITY"), run_id="jobs.main held-by-test", config=env["ROTATION_CONFIG"])
    gate.acquire()
    procs: list[subprocess.Popen] = []
    try:
        refused = subprocess.run([sys.executable, "-m", "jobs.main", *args, "--json", str(tmp_path / "refused.json")],
                                 cwd=ROOT, env=other, capture_output=True, text=True, timeout=300)
        # two runs with different configs wait for it, then run one after the other, never interleaved
        first = _start([*args, "--json", str(tmp_path / "first.json"), "--wait", "900"], env, tmp_path / "first.log")
        procs.append(first)
        _wait_for_text(tmp_path / "first.log", "waiting up to 900s", first)
        second = _start([*args, "--json", str(tmp_path / "second.json"), "--wait", "900"], other,
                        tmp_path / "second.log")
        procs.append(second)
        _wait_for_text(tmp_path / "second.log", "waiting up to 900s", second)
        gate.release()
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
        assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        gate.release()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # the run without --wait: refused at once, one line naming the run that holds the pool
    assert refused.returncode == EXIT_SERVICE, refused.stdout + refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: pool EQUITY of {data.resolve()} is being written by another run "
                           f"(pid {os.getpid()} ")
    assert "run jobs.main held-by-test" in line and f"config {env['ROTATION_CONFIG']}" in line and "since 20" in line
    assert "--wait SECONDS" in line and "Traceback" not in refused.stderr
    assert refused.stdout == "" and not (tmp_path / "refused.json").exists()
    # each waiting run said whom it waited for
    for log in ("first.log", "second.log"):
        assert (f"waiting up to 900s: pool EQUITY of {data.resolve()} is being written by another run "
                f"(pid {os.getpid()}") in (tmp_path / log).read_text()
    one = json.loads((tmp_path / "first.json").read_text())
    two = json.loads((tmp_path / "second.json").read_text())
    assert one["pools"][0]["equity"] != two["pools"][0]["equity"]  # the two configs disagree
    # what is stored is the run that took the lock last, whole: nothing of the other is left in its partitions
    files = {"first": tmp_path / "first.json", "second": tmp_path / "second.json"}
    last = max(files, key=lambda k: files[k].stat().st_mtime_ns)
    later, earlier = (one, two) if last == "first" else (two, one)
    assert _stored_matches(data, later) and not _stored_matches(data, earlier)
    summary = read_value(data / "pool_metrics_summary" / SMALL_END)
    assert float(summary.xs("EQUITY", level="pool")["equity"].iloc[0]) == pytest.approx(later["pools"][0]["equity"],
                                                                                          abs=0.01)
    assert RunLock(data, pool_scope("EQUITY")).holder() is None and RunLock(data, SUMMARY_SCOPE).holder() is None


# ------------------------------------------------------------------------------ interrupted snapshots
SAVER = textwrap.dedent("""
    import sys, time
    import pandas as pd
    import rotation_platform.storage.snapshots as snapshots
    real_write = snapshots.write_value

    def slow_write(path, value):  # the first value is written, then the save hangs until killed
        real_write(path, value)
        print("writing", flush=True)
        time.sleep(600)

    snapshots.write_value = slow_write
    store = snapshots.SnapshotStore(sys.argv[1], keep=5)
    store.save(sys.argv[2], {"backtest": {"EQUITY": pd.DataFrame({"equity": [1.0, 2.0]})}}, "cfg")
""")


def test_a_save_killed_midway_leaves_staging_that_the_next_save_removes(tmp_path, caplog) -> None:
    from rotation_platform.storage.snapshots import SnapshotStore

    root = tmp_path / "snapshots"
    store = SnapshotStore(root, keep=5)
    kept = {"backtest": {"EQUITY": pd.DataFrame({"equity": [1.0, 1.5]})}}
    store.save("2025-09-29", kept, "cfg")

    def saver(session: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(root), session], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == "writing"
        return proc

    killed = saver("2025-09-30")
    live = saver("2025-10-08")  # a save still in progress in another process (it keeps the first one's folder)
    try:
        _kill(killed)  # SIGKILL in the middle of the save
        left = [p.name for p in root.iterdir() if p.name.startswith(".2025-09-30.")]
        assert len(left) == 1 and list((root / left[0]).rglob("*.parquet"))  # half a snapshot, unseen by readers
        assert store.sessions() == ["2025-09-29"]
        in_progress = [p.name for p in root.iterdir() if p.name.startswith(".2025-10-08.")]
        caplog.set_level("WARNING", logger="rotation_platform.storage.snapshots")
        again = SnapshotStore(root, keep=5)
        again.save("2025-09-30", {"backtest": {"EQUITY": pd.DataFrame({"equity": [1.0, 3.0]})}}, "cfg")
        assert again.removed_staging == left
        assert f"removed 1 unfinished save(s) left by a process that ended mid-save: {left[0]}" in caplog.text
        assert not (root / left[0]).exists()
        assert (root / in_progress[0]).exists()  # not ours to remove: its owner is alive
    finally:
        _kill(killed)
        _kill(live)
    assert again.sessions() == ["2025-09-29", "2025-09-30"]
    assert again.load("2025-09-29")["backtest"]["EQUITY"].equals(kept["backtest"]["EQUITY"])  # hashes verified
    assert again.load("2025-09-30")["backtest"]["EQUITY"]["equity"].tolist() == [1.0, 3.0]
    assert again.clean_staging() == in_progress  # its owner is gone now too
    assert sorted(p.name for p in root.iterdir()) == ["2025-09-29", "2025-09-30"]
