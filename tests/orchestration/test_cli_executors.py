"""``python -m jobs.main`` on the configured executor: on multiprocess and on real Celery workers it stores the
same bytes and writes the same ``--json`` result as on in-process, its steps in other processes write under
the run locks the command line holds for them (and a lock held by anyone else still stops them), and a
Celery broker that does not answer is one line and exit code 5 with nothing stored.

The command-line runs use the executor tests' sandbox (``tests/orchestration/test_executors.py``: the demo
configuration, one data folder moved aside after each run, one Dagster instance) and its Celery workers,
for one pool (QDII) and one session. The Celery test needs RabbitMQ at 127.0.0.1:5672 and Redis at
127.0.0.1:6379 (``bash .ci/services.sh start``) and fails when either does not answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.errors import EXIT_SERVICE
from rotation_platform.notify import CLI_RUN_TAG
from rotation_platform.production.runlock import LOCK_DIR, RunLock, RunLockBusy, cli_holder_run_id, pool_scope
from tests.orchestration.conftest import ROOT, SESSION
from tests.orchestration.test_executors import (  # noqa: F401 - sandbox and workers: the fixtures, used by name
    POOL,
    Sandbox,
    _events,
    _worker_of,
    sandbox,
    workers,
)

ARGS = ["--config", str(ROOT / "configs" / "demo.yaml"), "--pools", POOL, "--session", SESSION]


# ---------------------------------------------------------------------------------------------- helpers
def _cli(sandbox: Sandbox, label: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m jobs.main`` for :data:`POOL` and :data:`SESSION` in the sandbox, with ``env`` on top; the
    process and its ``--json`` file."""
    result_file = sandbox.base / f"{label}.json"
    proc = subprocess.run([sys.executable, "-m", "jobs.main", *ARGS, "--json", str(result_file)], cwd=ROOT,
                          env={**os.environ, **sandbox.env, **env,
                               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
                          capture_output=True, text=True, timeout=900)
    return proc, result_file


def _stored(sandbox: Sandbox, label: str) -> dict[str, str]:
    """The sha256 of every stored file but the store's statistics and the lock files; the data folder is
    moved aside as ``label``."""
    return {name: digest for name, digest in sandbox.keep(label).items() if not name.startswith(".locks/")}


def _result(path: Path) -> dict:
    """The ``--json`` result but the time it was written."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("generated_at")
    return doc


def _run_of(proc: subprocess.CompletedProcess) -> str:
    """The run id of the pool's daily run, from the progress line ``[1/1] QDII: ok in ...s (run abcd1234)``."""
    match = re.search(rf"^\[1/1\] {POOL}: ok in [0-9.]+s \(run ([0-9a-f]{{8}})\)", proc.stdout, re.MULTILINE)
    assert match, proc.stdout + proc.stderr
    with dg.DagsterInstance.get() as instance:
        runs = [r.run_id for r in instance.get_runs(filters=dg.RunsFilter(job_name="daily"))
                if r.run_id.startswith(match.group(1))]
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def in_process_cli(sandbox) -> dict[str, object]:
    """The in-process command-line run the other executors are compared with."""
    proc, result_file = _cli(sandbox, "cli_in_process", ROTATION_ORCHESTRATION__EXECUTOR="in_process")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header.endswith(f" · session {SESSION}")  # the in-process header as it always was: no executor named
    return {"files": _stored(sandbox, "cli_in_process"), "result": _result(result_file)}


# ------------------------------------------------------------------------------------ the executors
def test_cli_on_multiprocess_stores_and_reports_what_in_process_does(sandbox, in_process_cli) -> None:
    proc, result_file = _cli(sandbox, "cli_multiprocess", ROTATION_ORCHESTRATION__EXECUTOR="multiprocess")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].endswith(" · executor multiprocess")
    # the step's process logs in the command line's format, not its own default (JSON lines)
    assert [x for x in proc.stderr.splitlines() if x.lstrip().startswith("{")] == [], proc.stderr[-2000:]
    run_id = _run_of(proc)
    with dg.DagsterInstance.get() as instance:
        # the pool's chain ran in a process of its own, which wrote under the command line's pool lock
        started = _events(instance, run_id, "STEP_WORKER_STARTED")
        assert [e.step_key for e in started] == ["pool_chain"]
        cli_pid = _events(instance, run_id, "PIPELINE_START")[0].dagster_event.pid  # the run orchestrated in the CLI
        assert [e.dagster_event.pid for e in _events(instance, run_id, "STEP_START")] == \
            [int(started[0].dagster_event.event_specific_data.metadata["pid"].value)]
        assert started[0].dagster_event.event_specific_data.metadata["pid"].value != str(cli_pid)
        assert instance.get_run_by_id(run_id).tags[CLI_RUN_TAG]
    files = _stored(sandbox, "cli_multiprocess")
    assert f"target_portfolio/{POOL}/{SESSION}.parquet" in files and f"pool_metrics_summary/{SESSION}.parquet" in files
    assert files == in_process_cli["files"]
    assert _result(result_file) == in_process_cli["result"]


def test_cli_on_celery_stores_and_reports_what_in_process_does(sandbox, in_process_cli, workers) -> None:
    proc, result_file = _cli(sandbox, "cli_celery", ROTATION_ORCHESTRATION__EXECUTOR="celery",
                             ROTATION_ORCHESTRATION__CELERY__QUEUE=workers.queue,
                             ROTATION_ORCHESTRATION__CELERY__BACKEND=workers.env["ROTATION_ORCHESTRATION__CELERY__BACKEND"])
    assert proc.returncode == 0, proc.stdout + proc.stderr + f" (worker logs in {workers.logs})"
    assert proc.stdout.splitlines()[0].endswith(" · executor celery")
    with dg.DagsterInstance.get() as instance:
        assert _worker_of(instance, _run_of(proc))[0] in workers.procs  # the chain ran on a worker
    assert _stored(sandbox, "cli_celery") == in_process_cli["files"]
    assert _result(result_file) == in_process_cli["result"]


def test_cli_on_celery_without_a_broker_is_one_line_and_nothing_stored(sandbox) -> None:
    proc, result_file = _cli(sandbox, "cli_no_broker", ROTATION_ORCHESTRATION__EXECUTOR="celery",
                             ROTATION_ORCHESTRATION__CELERY__BROKER="amqp://guest:guest@127.0.0.1:9//")
    assert proc.returncode == EXIT_SERVICE, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: orchestration.executor celery: the broker amqp://guest:**@127.0.0.1:9// did "
                               "not answer")
    assert "bash .ci/services.sh start" in lines[0]
    assert proc.stdout == "" and not result_file.exists()
    assert not sandbox.data.exists() or not [p for p in sandbox.data.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------------------------- lock delegation
HOLDER = textwrap.dedent("""
    import json, os, socket, sys, time
    from rotation_platform.production.runlock import RunLock, lock_path
    data, scope, run_id, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    lock = RunLock(data, scope, run_id=run_id, config="/cfg/holder.yaml").acquire()
    if pid:  # the record names another process than the one holding the lock
        path = lock_path(data, scope)
        doc = json.loads(path.read_text())
        doc["pid"] = pid
        path.write_text(json.dumps(doc))
    print("held", flush=True)
    time.sleep(600)
""")


@pytest.fixture()
def hold(tmp_path):
    """``hold(data_dir, scope, run_id, pid=0)``: a process holding the lock as ``run_id`` (recording ``pid``
    instead of its own when given) until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(data_dir: Path, scope: str, run_id: str, pid: int = 0) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir), scope, run_id, str(pid)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=30)


def test_a_delegated_request_proceeds_only_for_its_own_live_command_line(tmp_path, hold) -> None:
    scope = pool_scope("EQUITY")
    holder = hold(tmp_path, scope, cli_holder_run_id("abc123"))
    mine = RunLock(tmp_path, scope, run_id="step-run", delegated_by=cli_holder_run_id("abc123")).acquire()
    assert mine.delegated and not mine.held
    mine.release()  # holds nothing: the command line's lock stays taken
    assert RunLock(tmp_path, scope).holder().pid == holder.pid
    # another invocation's step, and a request that is not delegated, are refused as before
    for request in (RunLock(tmp_path, scope, run_id="step-run", delegated_by=cli_holder_run_id("zzz999")),
                    RunLock(tmp_path, scope, run_id="step-run")):
        with pytest.raises(RunLockBusy) as info:
            request.acquire()
        text = info.value.one_line()
        assert "\n" not in text and info.value.exit_code == EXIT_SERVICE
        assert text.startswith(f"pool EQUITY of {tmp_path.resolve()} is being written by another run "
                               f"(pid {holder.pid} on ")
        assert "run jobs.main abc123, config /cfg/holder.yaml" in text and "--wait SECONDS" in text
        assert not request.delegated and not request.held


def test_a_delegated_request_is_busy_when_the_recorded_holder_is_gone(tmp_path, hold) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    scope = pool_scope("EQUITY")
    hold(tmp_path, scope, cli_holder_run_id("abc123"), pid=dead)
    request = RunLock(tmp_path, scope, run_id="step-run", delegated_by=cli_holder_run_id("abc123"))
    with pytest.raises(RunLockBusy, match=rf"being written by another run \(pid {dead} on .*run jobs.main abc123"):
        request.acquire()
    assert not request.delegated


def _weights_asset():
    parts = dg.MultiPartitionsDefinition({"pool": dg.StaticPartitionsDefinition(["EQUITY"]),
                                          "session": dg.DailyPartitionsDefinition("2025-09-01", end_offset=0)})

    @dg.asset(partitions_def=parts)
    def weights() -> pd.DataFrame:
        return pd.DataFrame({"w": [0.5, 0.5]}, index=pd.Index(["A", "B"], name="symbol"))

    return weights


def test_a_step_of_the_command_lines_run_writes_under_its_lock_and_another_is_refused(tmp_path, hold) -> None:
    """The IO manager of a run tagged with the command line's cli_run writes while that command line holds
    the pool's lock in another process; a run of another invocation, or of none, fails as busy."""
    from resources.io_managers import LocalFilesIOManager

    data = tmp_path / "data"
    holder = hold(data, pool_scope("EQUITY"), cli_holder_run_id("abc123"))
    key = dg.MultiPartitionKey({"pool": "EQUITY", "session": "2025-09-22"})

    def materialise(tags: dict[str, str]):
        return dg.materialize([_weights_asset()], partition_key=key, tags=tags, raise_on_error=False,
                              resources={"io_manager": LocalFilesIOManager(base_dir=str(data))},
                              instance=dg.DagsterInstance.ephemeral())

    for tags in ({CLI_RUN_TAG: "zzz999"}, {}):
        result = materialise(tags)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error
        while failure.cause is not None:
            failure = failure.cause
        assert failure.cls_name == "RunLockBusy"
        assert (f"pool EQUITY of {data.resolve()} is being written by another run (pid {holder.pid} on "
                in failure.message) and "run jobs.main abc123" in failure.message
        assert not list((data / "weights").rglob("*.parquet"))
    assert materialise({CLI_RUN_TAG: "abc123"}).success
    assert list((data / "weights" / "EQUITY").glob("2025-09-22.*"))
    assert RunLock(data, pool_scope("EQUITY")).holder().pid == holder.pid  # still the command line's


def test_cli_on_multiprocess_refuses_a_pool_another_run_holds(sandbox, hold) -> None:
    holder = hold(sandbox.data, pool_scope(POOL), cli_holder_run_id("other-invocation"))
    proc, result_file = _cli(sandbox, "cli_busy", ROTATION_ORCHESTRATION__EXECUTOR="multiprocess")
    holder.kill()
    holder.wait(timeout=30)
    assert proc.returncode == EXIT_SERVICE, proc.stdout + proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: pool {POOL} of {sandbox.data.resolve()} is being written by another run "
                           f"(pid {holder.pid} on ")
    assert "run jobs.main other-invocation" in line and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not result_file.exists()
    # nothing stored: the folder holds the lock file alone
    assert [p.relative_to(sandbox.data).as_posix() for p in sandbox.data.rglob("*") if p.is_file()] == \
        [f"{LOCK_DIR}/{pool_scope(POOL)}.lock"]
    sandbox.keep("cli_busy")
