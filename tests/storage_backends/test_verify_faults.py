"""Reconciliation after faults: ``python -m jobs.verify`` finds where the store and Dagster disagree,
``--fix`` makes them agree, and a rerun leaves nothing lost, duplicated or inconsistent.

Each test runs the daily job (``python -m jobs.main``) on the demo config for one pool: one session
alone (its materialisations carry checksums; the summary run takes its snapshot), then a range of
sessions during which something is killed -- the job process itself (local files), a private InfluxDB
or a private MariaDB started by these tests. Whatever the kill left, each kind of disagreement is
also planted so that it is found whatever the timing: a value written to the store without a Dagster
record, a recorded value deleted from the store, a stored value changed, and (InfluxDB) the points of
a write that was never committed. Then ``verify`` must list them (exit 1), ``verify --fix`` must make
them agree, a second ``verify`` must report 0 disagreements, and a rerun of the whole range must
leave 0 partitions lost, duplicated or inconsistent, and 0 rows lost or duplicated (printed as
``figures ...``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.storage import open_store
from rotation_platform.storage.base import Partition, RetryPolicy
from rotation_platform.storage.codec import value_rows

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(CONFIG_DIR / "demo.yaml")
POOL = "QDII"
FIRST = "2024-12-20"                                     # run alone: checksums recorded, snapshot kept
RANGE = ("2024-12-23", "2024-12-24", "2024-12-25", "2024-12-26")  # the run that is killed
PLANTED = "2024-12-27"                                   # a store write Dagster never recorded
ALL = (FIRST, *RANGE, PLANTED)
POOL_ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio")
SESSION_ASSETS = ("pool_metrics_summary", "session_snapshot")
RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=0.4)


def key(session: str) -> str:
    return f"{POOL}|{session}"


def part(session: str) -> Partition:
    return Partition.multi({"pool": POOL, "session": session})


class Deployment:
    """One data folder, one Dagster instance and one storage configuration, driven like a user would."""

    def __init__(self, tmp_path: Path, **storage: str):
        self.home = tmp_path / "dagster_home"
        self.home.mkdir()
        self.data = tmp_path / "data"
        self.env = {"ROTATION_CONFIG": CONFIG, "ROTATION_ENV": "test", "ROTATION_STORAGE__DATA_DIR": str(self.data),
                    "ROTATION_DATA__SYNTHETIC__END": "2024-12-31", "DAGSTER_HOME": str(self.home), **storage}
        self.config = load_config(CONFIG, env=self.env)

    def process_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATION_", "DAGSTER_"))}
        return {**base, **self.env, "PYTHONPATH": str(ROOT)}

    def main_args(self, last: str, sessions: int) -> list[str]:
        return [sys.executable, "-m", "jobs.main", "--pools", POOL, "--session", last, "--sessions", str(sessions)]

    def run_main(self, last: str, sessions: int = 1) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.main_args(last, sessions), cwd=ROOT, env=self.process_env(), capture_output=True,
                              text=True, timeout=900)
        return proc

    def start_main(self, last: str, sessions: int) -> subprocess.Popen:
        return subprocess.Popen(self.main_args(last, sessions), cwd=ROOT, env=self.process_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def run_command(self, command: str) -> subprocess.CompletedProcess:
        argv = shlex.split(command)
        assert argv[:3] == ["python", "-m", "jobs.main"], command
        return subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, env=self.process_env(), capture_output=True,
                              text=True, timeout=900)

    def verify(self, *extra: str) -> tuple[int, dict, str]:
        """``jobs.verify --json`` over the test's sessions: exit code, the document, stderr."""
        args = [sys.executable, "-m", "jobs.verify", "--pools", POOL, "--sessions", f"{ALL[0]}..{ALL[-1]}", "--json",
                *extra]
        proc = subprocess.run(args, cwd=ROOT, env=self.process_env(), capture_output=True, text=True, timeout=600)
        assert proc.stdout.strip(), proc.stderr
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    def verify_text(self, *extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "jobs.verify", "--pools", POOL, "--sessions", f"{ALL[0]}..{ALL[-1]}", *extra]
        return subprocess.run(args, cwd=ROOT, env=self.process_env(), capture_output=True, text=True, timeout=600)

    def store(self):
        return open_store(self.config.storage, retry=RETRY)


def found(doc: dict) -> set[tuple[str, str, str]]:
    return {(f["kind"], f["asset"], f["key"]) for f in doc["findings"]}


def kill_when_stored(dep: Deployment, proc: subprocess.Popen, kill, asset: str = "factor_panel",
                     timeout_s: float = 600.0) -> bool:
    """Call ``kill()`` as soon as the first partition of ``asset`` of the range is committed in the store
    (the run is then between its first and last write of the step); whether the kill came before the
    run ended."""
    store = dep.store()
    wanted = {key(s) for s in RANGE}
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if wanted & set(store.partitions((asset,))):
                    kill()
                    return True
            except Exception:  # noqa: BLE001 - the catalog may not exist yet
                pass
            time.sleep(0.05)
    finally:
        store.close()
    return False


def plant(dep: Deployment, *, orphan_points: bool) -> None:
    """The disagreements every test must see, whatever the kill left."""
    store = dep.store()
    try:
        # (a) a committed store write Dagster has no record of
        store.write(("prices",), part(PLANTED), store.read(("prices",), part(FIRST)))
        # (b) a recorded partition whose value is gone from the store
        store.delete(("factor_screen",), part(FIRST))
        # (c) a recorded partition whose stored value changed
        frame = store.read(("backtest",), part(FIRST))
        frame.iloc[-1, 0] = frame.iloc[-1, 0] + 1.0
        store.write(("backtest",), part(FIRST), frame)
        if orphan_points:  # (d) the points of a write that was sent but never committed
            influx = store.timeseries

            def no_commit(*args, **kwargs):
                raise RuntimeError("the writer died before its commit")

            influx._commit = no_commit
            with pytest.raises(RuntimeError):
                influx.write(("prices",), part(FIRST), store.read(("prices",), part(FIRST)))
            del influx._commit
    finally:
        store.close()


def figures(dep: Deployment, doc: dict) -> dict[str, int]:
    """Partitions and rows lost, duplicated and inconsistent after the rerun: from a ``--deep`` verify,
    the store's counts and the rows Dagster recorded per run output."""
    store = dep.store()
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dep.home)  # the instance's event log storage finds its folder by it
    instance = dg.DagsterInstance.from_config(str(dep.home))
    rows_lost = rows_extra = rows_dup = 0
    try:
        for asset in POOL_ASSETS:
            by_run: dict[str, list] = {}
            for s in ALL:
                counts = store.counts((asset,), part(s))
                rows_dup += max(counts.physical - counts.visible, counts.physical - counts.distinct, 0)
                events = instance.fetch_materializations(dg.AssetRecordsFilter(dg.AssetKey(asset),
                                                                               asset_partitions=[key(s)]), limit=1)
                assert events.records, f"{asset} {key(s)} is not recorded after the rerun"
                by_run.setdefault(events.records[0].run_id, []).append((s, events.records[0]))
            for run_id, items in by_run.items():
                meta = items[0][1].asset_materialization.metadata
                written = meta["partitions_written"].value if "partitions_written" in meta else None
                if written != len(items):
                    continue  # the run's row total covers partitions outside the test's sessions
                stored = sum(value_rows(store.read((asset,), part(s))) for s, _ in items)
                rows_lost += max(meta["rows"].value - stored, 0)
                rows_extra += max(stored - meta["rows"].value, 0)
    finally:
        store.close()
        instance.dispose()
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    kinds = doc["disagreements"]
    return {"partitions_lost": kinds["lost"], "partitions_duplicated": kinds["duplicated"],
            "partitions_inconsistent": kinds["mismatch"] + kinds["unrecorded"], "rows_lost": rows_lost,
            "rows_duplicated": rows_dup + rows_extra}


def scenario(dep: Deployment, kill, restart, *, orphan_points: bool, drop_snapshot: bool = False) -> dict[str, int]:
    first = dep.run_main(FIRST)
    assert first.returncode == 0, first.stdout + first.stderr
    rc, doc, _ = dep.verify()
    assert rc == 0 and not doc["findings"], doc["findings"]

    proc = dep.start_main(RANGE[-1], len(RANGE))
    hit = kill_when_stored(dep, proc, lambda: kill(proc))
    out, _ = proc.communicate(timeout=900)
    restart()
    print(f"kill {'during' if hit else 'after'} the run; the run exited {proc.returncode}")

    rc, doc, _ = dep.verify()
    natural = found(doc)
    print(f"after the kill alone: {doc['disagreements']}")
    if natural:
        assert rc == 1
    assert all(k in ("unrecorded", "duplicated") for k, _, _ in natural), natural  # the store commits first

    if drop_snapshot:
        shutil.rmtree(dep.data / "snapshots" / FIRST)
    plant(dep, orphan_points=orphan_points)
    text = dep.verify_text()
    assert text.returncode == 1, text.stdout + text.stderr
    assert f"unrecorded prices {key(PLANTED)}: in the store but no materialisation is recorded" in text.stdout
    assert f"lost       factor_screen {key(FIRST)}: recorded as materialised" in text.stdout
    mismatch = next(line for line in text.stdout.splitlines() if line.startswith(f"mismatch   backtest {key(FIRST)}: "))
    assert "differs from the one recorded at materialisation" in mismatch
    assert drop_snapshot or f"differs from the snapshot of {FIRST}" in mismatch
    assert "to make them agree: python -m jobs.verify --fix" in text.stdout
    rc, doc, _ = dep.verify()
    want = {("unrecorded", "prices", key(PLANTED)), ("lost", "factor_screen", key(FIRST)),
            ("mismatch", "backtest", key(FIRST))}
    if orphan_points:
        want.add(("duplicated", "prices", key(FIRST)))
    assert rc == 1 and want <= found(doc), found(doc)
    assert found(doc) - want <= natural

    rc, fixed, _ = dep.verify("--fix")
    actions = {(f["kind"], f["asset"], f["key"]): f["action"] for f in fixed["fixed"]}
    assert actions[("unrecorded", "prices", key(PLANTED))] == "record"
    if drop_snapshot:  # no verified copy: the changed value goes, both lost partitions need a run
        assert actions[("mismatch", "backtest", key(FIRST))] == "delete"
        assert actions[("lost", "factor_screen", key(FIRST))] == "rerun"
        assert rc == 1 and fixed["remaining"]["lost"] == 2 and sum(fixed["remaining"].values()) == 2
        assert fixed["rerun"] == [f"python -m jobs.main --config {CONFIG} --pools {POOL} --session {FIRST}"]
        rerun = dep.run_command(fixed["rerun"][0])
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    else:
        assert actions[("mismatch", "backtest", key(FIRST))] == "restore"
        assert actions[("lost", "factor_screen", key(FIRST))] == "restore"
        assert rc == 0 and sum(fixed["remaining"].values()) == 0, fixed
    if orphan_points:
        assert ("duplicated", "prices", key(FIRST)) in actions
    rc, again, _ = dep.verify()
    assert rc == 0 and again["findings"] == [], again["findings"]
    rc, idem, _ = dep.verify("--fix")
    assert rc == 0 and idem["fixed"] == [] and idem["findings"] == []
    store = dep.store()
    try:  # what --fix restored is the value of the session's snapshot, recorded with its checksum
        if not drop_snapshot:
            from rotation_platform.storage.snapshots import SnapshotStore, value_hash

            manifest = SnapshotStore(dep.data / "snapshots").manifest(FIRST)
            for asset in ("factor_screen", "backtest"):
                assert value_hash(store.read((asset,), part(FIRST))) == manifest["assets"][asset][POOL]
        counts = store.counts(("prices",), part(FIRST))
        assert counts.physical == counts.visible == counts.distinct
    finally:
        store.close()

    rerun = dep.run_main(PLANTED, len(ALL))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rc, final, _ = dep.verify("--deep")
    assert rc == 0 and final["findings"] == [], final["findings"]
    assert final["checked"]["read"] >= len(ALL) * len(POOL_ASSETS)
    result = figures(dep, final)
    print("figures", json.dumps(result))
    assert result == {"partitions_lost": 0, "partitions_duplicated": 0, "partitions_inconsistent": 0,
                      "rows_lost": 0, "rows_duplicated": 0}
    return result


# ------------------------------------------------------------------------------------------ tests
def test_local_files_job_killed_mid_run_then_verify_fix_rerun(tmp_path) -> None:
    dep = Deployment(tmp_path)
    scenario(dep, kill=lambda proc: proc.kill(), restart=lambda: None, orphan_points=False, drop_snapshot=True)


def test_influxdb_killed_mid_run_then_verify_fix_rerun(private_influx, mysql_server, running, tmp_path) -> None:
    server = running(private_influx)
    tag = uuid.uuid4().hex[:6]
    dep = Deployment(tmp_path, ROTATION_STORAGE__BACKEND="influxdb", ROTATION_STORAGE__INFLUX_URL=server.url,
                     ROTATION_STORAGE__INFLUX_DATABASE=f"rp_verify_{tag}",
                     ROTATION_STORAGE__MYSQL_URL=mysql_server.rsplit("/", 1)[0] + f"/rp_verify_{tag}")
    scenario(dep, kill=lambda proc: server.kill(), restart=server.start, orphan_points=True)


def test_mariadb_killed_mid_run_then_verify_fix_rerun(private_mariadb, running, tmp_path) -> None:
    server = running(private_mariadb)
    url = server.url.replace("/rp_fault", f"/rp_verify_{uuid.uuid4().hex[:6]}")
    dep = Deployment(tmp_path, ROTATION_STORAGE__BACKEND="mysql", ROTATION_STORAGE__MYSQL_URL=url)
    scenario(dep, kill=lambda proc: server.kill(), restart=server.start, orphan_points=False)


def test_verify_reports_a_server_that_is_down_in_one_line(private_mariadb, running, tmp_path) -> None:
    server = running(private_mariadb)
    url = server.url.replace("/rp_fault", f"/rp_verify_{uuid.uuid4().hex[:6]}")
    dep = Deployment(tmp_path, ROTATION_STORAGE__BACKEND="mysql", ROTATION_STORAGE__MYSQL_URL=url)
    server.stop()
    proc = dep.verify_text()
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("error")]
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert proc.stdout == ""
    # the retries are warnings; the error is one line, the last, naming the server and what to do
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert f"127.0.0.1:{server.port}" in errors[0] and "check that the server is running" in errors[0], errors


def test_verify_usage_and_config_errors_are_one_line(tmp_path) -> None:
    dep = Deployment(tmp_path)
    proc = dep.verify_text("--sessions", "2024-12-31..2024-12-01")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "--sessions" in proc.stderr and "FROM..TO" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: base.yaml\nname: 3\npools: nope\n")
    shutil.copy(CONFIG_DIR / "base.yaml", tmp_path / "base.yaml")
    proc = subprocess.run([sys.executable, "-m", "jobs.verify", "--config", str(bad)], cwd=ROOT,
                          env=dep.process_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert str(bad) in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
