"""The daily job gives the same stored bytes on every executor: in one process, one process per step and on
real Celery workers (RabbitMQ broker, Redis results) -- also when a worker is killed while it executes a
step -- and the store steps' concurrency pool holds a step back while the pool is full.

Every run writes to the same data folder (``storage.data_dir`` is part of the configuration hash a price
panel records, so another folder would change its bytes); the folder is moved aside after each run. The
files compared are all of it: the values and the pools' run records (``_records/pool_run/...``, which
hold the data and config hashes and the state, no run id or time -- see
``rotation_platform/storage/provenance.py``) and the run locks (empty files). The session snapshots,
the only files with a wall-clock time, are written by the summary job, which these runs do not include.

The Celery tests need RabbitMQ at 127.0.0.1:5672 (guest/guest) and Redis at 127.0.0.1:6379
(``bash .ci/services.sh start``); they fail when either does not answer. Each test uses a queue of its
own and Redis database 7 for results, starts its workers itself and stops them (their process groups)
when it ends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.orchestration.conftest import QUIET, ROOT, SESSION, fresh_defs, sessions_between, write_small_config

POOL = "QDII"
BACKFILL = sessions_between("2024-12-27", "2024-12-31")  # three sessions
BROKER = ("127.0.0.1", 5672)
REDIS = ("127.0.0.1", 6379)
RESULTS_DB = 7  # the Celery results of these tests; no other user of the local Redis takes it
CELERY = str(Path(sys.executable).with_name("celery"))


# ---------------------------------------------------------------------------------------------- helpers
def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path, but the store's operation counts (``.stats/``,
    one file per process: what each process read and wrote, not what was computed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".stats" not in p.relative_to(root).parts}


class Sandbox:
    """The demo configuration, one data folder and one Dagster instance (SQLite) for a module's runs."""

    def __init__(self, base: Path, monkeypatch: pytest.MonkeyPatch):
        self.base, self.data, self.home = base, base / "data", base / "home"
        self.home.mkdir(parents=True)
        doc = yaml.safe_load((ROOT / "configs" / "dagster.yaml").read_text(encoding="utf-8"))
        # the store steps' pool (test_store_pool_holds_a_step_while_it_is_full): op granularity, one slot
        doc.setdefault("concurrency", {})["pools"] = {"granularity": "op", "default_limit": 1}
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
        self.monkeypatch = monkeypatch
        self.env = {"ROTATION_CONFIG": str((ROOT / "configs" / "demo.yaml").resolve()),
                    "ROTATION_STORAGE__DATA_DIR": str(self.data), "ROTATION_DATA__SYNTHETIC__END": SESSION,
                    "DAGSTER_HOME": str(self.home)}
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    def executor(self, name: str, **env: str) -> dg.Definitions:
        """Definitions built with ``orchestration.executor: name`` (and further ``ROTATION_*`` settings)."""
        self.monkeypatch.setenv("ROTATION_ORCHESTRATION__EXECUTOR", name)
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        return fresh_defs()

    def run(self, sessions: list[str], *, tags: dict[str, str] | None = None):
        """The daily job for :data:`POOL` over ``sessions`` on the executor of the loaded definitions."""
        from assets.partitions import pool_session_key
        from jobs.executor import execute_job

        with dg.DagsterInstance.get() as instance:
            if len(sessions) == 1:
                return execute_job("daily", instance, partition_key=pool_session_key(POOL, sessions[0]),
                                   tags=tags, run_config=QUIET)
            return execute_job("daily", instance, run_config=QUIET, tags={
                **(tags or {}), "dagster/asset_partition_range_start": str(pool_session_key(POOL, sessions[0])),
                "dagster/asset_partition_range_end": str(pool_session_key(POOL, sessions[-1]))})

    def keep(self, label: str) -> dict[str, str]:
        """Move the data folder aside as ``label``; the digests of its files."""
        target = self.base / label
        self.data.rename(target)
        return _digests(target)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key in [k for k in os.environ if k.startswith("ROTATION_") and k != "ROTATION_ENV"]:
            monkeypatch.delenv(key)
        yield Sandbox(tmp_path_factory.mktemp("executors"), monkeypatch)


@pytest.fixture(scope="module")
def in_process(sandbox) -> dict[str, dict[str, str]]:
    """The in-process runs every other executor is compared with: one session, and the three-session
    backfill (one run over the range)."""
    sandbox.executor("in_process")
    assert sandbox.run([SESSION]).success
    one = sandbox.keep("in_process_one")
    assert sandbox.run(BACKFILL).success
    return {"one": one, "backfill": sandbox.keep("in_process_backfill")}


def _expected_files(sessions: list[str]) -> set[str]:
    return {f"{asset}/{POOL}/{s}" for asset in ("prices", "factor_panel", "factor_screen", "wfo_result",
                                                  "backtest", "capacity_report", "target_portfolio")
            for s in sessions}


def _events(instance, run_id: str, kind: str) -> list:
    return [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type_value == kind]


def _materialised(instance, run_id: str, since: int = 0) -> list[tuple[str, str]]:
    """(asset, partition) of every materialisation of the run, from the ``since``-th STEP_START on."""
    starts, out = 0, []
    for e in instance.all_logs(run_id):
        if not e.dagster_event:
            continue
        if e.dagster_event.event_type_value == "STEP_START":
            starts += 1
        if e.dagster_event.event_type_value == "ASSET_MATERIALIZATION" and starts > since:
            m = e.dagster_event.event_specific_data.materialization
            out.append((m.asset_key.to_user_string(), str(m.partition)))
    return out


# ------------------------------------------------------------------------------------------ multiprocess
def test_config_chooses_the_executor(sandbox) -> None:
    from jobs.executor import executor_for
    from rotation_platform.config import config_hash, load_config

    names = {}
    for name in ("in_process", "multiprocess", "celery"):
        defs = sandbox.executor(name)
        names[name] = defs.resolve_job_def("daily").executor_def.name
        assert defs.resolve_job_def("session_summary").executor_def.name == names[name]
    assert names == {"in_process": "in_process", "multiprocess": "multiprocess", "celery": "celery"}
    # the executor is how a run executes, not what it computes: the recorded config hash stays the same
    hashes = set()
    for name in ("in_process", "multiprocess", "celery"):
        sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__EXECUTOR", name)
        hashes.add(config_hash(load_config()))
    assert len(hashes) == 1
    sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__EXECUTOR", "multiprocess")
    sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__MAX_CONCURRENT", "3")
    configured = executor_for(load_config())
    assert configured.name == "multiprocess"
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.executor.init import InitExecutorContext

    with dg.DagsterInstance.ephemeral() as instance:
        built = configured.executor_creation_fn(InitExecutorContext(
            job=InMemoryJob(sandbox.executor("multiprocess").resolve_job_def("daily")), executor_def=configured, executor_config=configured.apply_config_mapping({}).value["config"],
            instance=instance))
    assert built._max_concurrent == 3
    sandbox.monkeypatch.delenv("ROTATION_ORCHESTRATION__MAX_CONCURRENT")


def test_celery_password_only_from_environment(sandbox, tmp_path) -> None:
    from jobs.executor import celery_url
    from rotation_platform.config import load_config
    from rotation_platform.errors import ConfigError

    sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__CELERY__BROKER", "amqp://rotation@mq:5672//")
    sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD", "s3cr:t/pw")
    celery = load_config().orchestration.celery
    assert "s3cr" not in repr(celery) and "s3cr" not in str(load_config().model_dump())
    assert celery_url(celery.broker, celery.broker_password) == "amqp://rotation:s3cr%3At%2Fpw@mq:5672//"
    sandbox.monkeypatch.setenv("ROTATION_ORCHESTRATION__CELERY__BROKER", "amqp://rotation:inline@mq:5672//")
    with pytest.raises(ConfigError, match="orchestration.celery.broker.*URL carries a password"):
        load_config()
    sandbox.monkeypatch.delenv("ROTATION_ORCHESTRATION__CELERY__BROKER")
    sandbox.monkeypatch.delenv("ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD")
    # a secret in the file is refused
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump({"extends": str(ROOT / "configs" / "demo.yaml"),
                                    "orchestration": {"celery": {"broker_password": "x"}}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="ROTATION_ORCHESTRATION__CELERY__BROKER_PASSWORD"):
        load_config(path)


def test_multiprocess_one_session_equals_in_process(sandbox, in_process) -> None:
    sandbox.executor("multiprocess")
    result = sandbox.run([SESSION])
    assert result.success
    with dg.DagsterInstance.get() as instance:
        # the step ran in a process of its own
        started = _events(instance, result.run_id, "STEP_WORKER_STARTED")
        assert [e.step_key for e in started] == ["pool_chain"]
        assert started[0].dagster_event.event_specific_data.metadata["pid"].value != str(os.getpid())
    files = sandbox.keep("multiprocess_one")
    assert _expected_files([SESSION]) <= {name.split(".")[0] for name in files}
    assert files == in_process["one"]


def test_multiprocess_backfill_equals_in_process(sandbox, in_process) -> None:
    sandbox.executor("multiprocess")
    result = sandbox.run(BACKFILL)
    assert result.success
    with dg.DagsterInstance.get() as instance:
        done = _materialised(instance, result.run_id)
    assert sorted(done) == sorted({(a, f"{POOL}|{s}") for a, _, s in
                                   (f.split("/") for f in _expected_files(BACKFILL))} |
                                  {("price_quarantine", f"{POOL}|{s}") for s in BACKFILL})
    files = sandbox.keep("multiprocess_backfill")
    assert _expected_files(BACKFILL) <= {name.split(".")[0] for name in files}
    assert files == in_process["backfill"]


def test_multiprocess_job_page_range_run_is_repaired_in_the_child(sandbox, in_process) -> None:
    """A job-page backfill's run (the range tags plus the first partition's dimension tags): the step's
    process computes the whole range."""
    sandbox.executor("multiprocess")
    result = sandbox.run(BACKFILL, tags={"dagster/partition/pool": POOL, "dagster/partition/session": BACKFILL[0]})
    assert result.success
    with dg.DagsterInstance.get() as instance:
        messages = [e.message for e in _events(instance, result.run_id, "ENGINE_EVENT")]
        assert any("executing the whole range" in m for m in messages)
        targets = {p for a, p in _materialised(instance, result.run_id) if a == "target_portfolio"}
    assert targets == {f"{POOL}|{s}" for s in BACKFILL}
    assert sandbox.keep("multiprocess_job_page") == in_process["backfill"]


def test_children_load_the_run_configuration(tmp_path, monkeypatch) -> None:
    """``python -m jobs.main --config FILE`` style: the definitions are built from FILE while the
    environment names another; the step's process loads FILE (its pools, its data folder)."""
    from jobs.executor import execute_job

    for key in [k for k in os.environ if k.startswith("ROTATION_") and k != "ROTATION_ENV"]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ROTATION_CONFIG", str(ROOT / "configs" / "demo.yaml"))
    monkeypatch.setenv("ROTATION_ORCHESTRATION__EXECUTOR", "multiprocess")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "small-data")
    with dg.DagsterInstance.get() as instance:
        fresh_defs()  # built from the environment's demo.yaml
        with pytest.raises(Exception, match="definitions were built from .*demo.yaml"):
            execute_job("daily", instance, config_path=path, partition_key="EQUITY|2025-09-26")
        monkeypatch.setenv("ROTATION_CONFIG", str(path))
        fresh_defs()
        result = execute_job("daily", instance, config_path=path, partition_key="EQUITY|2025-09-26",
                             run_config=QUIET)
        assert result.success
        assert _events(instance, result.run_id, "STEP_WORKER_STARTED")
    assert (tmp_path / "small-data" / "target_portfolio" / "EQUITY" / "2025-09-26.parquet").is_file()


# ---------------------------------------------------------------------------------------------- pools
def test_store_pool_holds_a_step_while_it_is_full(sandbox, in_process) -> None:
    """The steps that write the store declare a concurrency pool; with its one slot taken the step waits
    ("Step blocked by limit for pool ...") and starts once the slot is free."""
    from dagster._core.execution.api import create_execution_plan

    defs = sandbox.executor("multiprocess")
    job = defs.resolve_job_def("daily")
    pools = {step.key: step.pool for step in create_execution_plan(job).steps}
    assert pools["pool_chain"], ("the store-writing step pool_chain declares no concurrency pool: set pool= on "
                                 "its asset (assets/chain.py)")
    pool = pools["pool_chain"]
    tag = uuid.uuid4().hex
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert instance.global_op_concurrency_default_limit == 1
        storage.initialize_concurrency_limit_to_default(pool)
        assert storage.get_concurrency_info(pool).slot_count == 1
        assert storage.claim_concurrency_slot(pool, "blocking-run", "blocking-step").is_claimed
        box: dict[str, object] = {}
        thread = threading.Thread(target=lambda: box.update(result=sandbox.run([SESSION], tags={"test": tag})))
        thread.start()
        try:
            blocked = f"Step blocked by limit for pool {pool}"
            run_id = _wait_for(lambda: _run_with_event(instance, tag, "ENGINE_EVENT", blocked), 300,
                               "the step to be blocked by its pool")
            assert not _events(instance, run_id, "STEP_START")
            assert storage.get_concurrency_info(pool).pending_step_count >= 1
        finally:
            storage.free_concurrency_slots_for_run("blocking-run")
            thread.join(600)
    result = box["result"]
    assert result.success
    with dg.DagsterInstance.get() as instance:
        events = [e for e in instance.all_logs(result.run_id) if e.dagster_event]
        first_blocked = next(i for i, e in enumerate(events) if e.message.startswith(blocked))
        first_start = next(i for i, e in enumerate(events) if e.dagster_event.event_type_value == "STEP_START")
        assert first_blocked < first_start
        assert instance.event_log_storage.get_concurrency_info(pool).active_slot_count == 0
    assert sandbox.keep("pool_blocked") == in_process["one"]


def _run_with_event(instance, tag: str, kind: str, message: str = "") -> str | None:
    """The run tagged ``test=tag`` once it has an event of ``kind`` (whose message starts with ``message``)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"test": tag}))
    for run in runs:
        if any(e.message.startswith(message) for e in _events(instance, run.run_id, kind)):
            return run.run_id
    return None


def _wait_for(probe, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------- celery
def _reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=3):
            return True
    except OSError:
        return False


class Workers:
    """Celery worker processes of this test, on a queue of their own."""

    def __init__(self, sandbox: Sandbox, count: int):
        self.queue = f"rotation-test-{uuid.uuid4().hex[:12]}"
        self.env = {**os.environ, **sandbox.env, "ROTATION_ORCHESTRATION__EXECUTOR": "celery",
                    "ROTATION_ORCHESTRATION__CELERY__QUEUE": self.queue,
                    "ROTATION_ORCHESTRATION__CELERY__BACKEND": f"redis://{REDIS[0]}:{REDIS[1]}/{RESULTS_DB}",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.logs = sandbox.base / "workers"
        self.logs.mkdir(exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        for i in range(count):
            name = f"w{i}-{self.queue}@localhost"
            log = (self.logs / f"{self.queue}-w{i}.log").open("w")
            self.procs[name] = subprocess.Popen(
                [CELERY, "-A", "jobs.executor:celery_app", "worker", "-Q", self.queue, "-n", name,
                 "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO", "--without-gossip",
                 "--without-mingle"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # own process group: the worker and its pool process
        self._wait_ready()

    def _wait_ready(self) -> None:
        def ready() -> bool:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"celery worker {name} exited with {proc.returncode}: {self.log_of(name)[-2000:]}")
            return all(" ready." in self.log_of(name) for name in self.procs)

        _wait_for(ready, 180, "the celery workers to be ready")

    def log_of(self, name: str) -> str:
        index = list(self.procs).index(name)
        return (self.logs / f"{self.queue}-w{index}.log").read_text(encoding="utf-8", errors="replace")

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(30)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        from jobs.executor import make_celery_app
        from rotation_platform.config.models import CeleryConfig

        app = make_celery_app(CeleryConfig(queue=self.queue))
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(self.queue)


@pytest.fixture()
def workers(sandbox) -> Iterator[Workers]:
    missing = [f"{what} at {host}:{port}" for what, (host, port) in (("RabbitMQ", BROKER), ("Redis", REDIS))
               if not _reachable((host, port))]
    if missing:
        pytest.fail(f"{' and '.join(missing)} did not answer; start them with `bash .ci/services.sh start`")
    pool = Workers(sandbox, 2)
    try:
        yield pool
    finally:
        pool.stop()


def _celery_defs(sandbox: Sandbox, workers: Workers) -> dg.Definitions:
    return sandbox.executor("celery", ROTATION_ORCHESTRATION__CELERY__QUEUE=workers.queue,
                            ROTATION_ORCHESTRATION__CELERY__BACKEND=workers.env["ROTATION_ORCHESTRATION__CELERY__BACKEND"])


def _worker_of(instance, run_id: str) -> list[str]:
    """The workers that took the run's steps, in order."""
    return [e.dagster_event.event_specific_data.metadata["Celery worker"].value
            for e in _events(instance, run_id, "ENGINE_EVENT")
            if "in celery worker" in e.message]


def test_celery_one_session_equals_in_process(sandbox, in_process, workers) -> None:
    _celery_defs(sandbox, workers)
    result = sandbox.run([SESSION])
    assert result.success
    with dg.DagsterInstance.get() as instance:
        assert _worker_of(instance, result.run_id)[0] in workers.procs
    assert sandbox.keep("celery_one") == in_process["one"]


def test_celery_worker_killed_mid_step_step_runs_on_the_other(sandbox, in_process, workers) -> None:
    _celery_defs(sandbox, workers)
    tag = uuid.uuid4().hex
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = sandbox.run(BACKFILL, tags={"test": tag})
        except BaseException as exc:  # noqa: BLE001 - asserted below
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    try:
        with dg.DagsterInstance.get() as instance:
            def started() -> str | None:
                if not thread.is_alive() and not _run_with_event(instance, tag, "STEP_START"):
                    pytest.fail(f"the run ended before its step started: {box}; worker logs in {workers.logs}")
                return _run_with_event(instance, tag, "STEP_START")

            run_id = _wait_for(started, 300, "the step to start on a worker")
            first = _worker_of(instance, run_id)[0]
            workers.kill(first)
    finally:
        thread.join(900)
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert result.success
    with dg.DagsterInstance.get() as instance:
        took = _worker_of(instance, result.run_id)
        survivor = next(name for name in workers.procs if name != first)
        assert took == [first, survivor]
        # the survivor got the same task back from the broker (acks_late: never acknowledged by the first)
        redelivered = [e.dagster_event.event_specific_data.metadata["redelivered"].value
                       for e in _events(instance, result.run_id, "ENGINE_EVENT") if "in celery worker" in e.message]
        assert redelivered == ["False", "True"]
        assert len(_events(instance, result.run_id, "STEP_START")) == 2
        assert len(_events(instance, result.run_id, "STEP_SUCCESS")) == 1
        assert not _events(instance, result.run_id, "STEP_FAILURE")
        # the attempt that finished stored every partition once
        done = _materialised(instance, result.run_id, since=1)
        assert len(done) == len(set(done))
        assert {p for a, p in done if a == "target_portfolio"} == {f"{POOL}|{s}" for s in BACKFILL}
    assert sandbox.keep("celery_killed") == in_process["backfill"]
