"""Orchestration benchmarks: ``python -m benchmarks orchestration``.

Every case runs the real Dagster jobs on the demo configuration (synthetic data: A_SHARE 16 funds,
QDII 6, OTHER 5) in fresh processes, with its own data folder and Dagster instance (SQLite, as
``scripts/demo.sh`` uses), and the numba cache warm (a warm-up run first, not timed) -- except
``first_run_after_install``, which starts from empty numba caches of its own.

Cases
-----
* ``one_session_cold_cli`` -- ``python -m jobs.main --session <last>``: a new process materialises one
  session for every pool (daily job per pool + summary and snapshot) and prints the report. Target
  <= 60 s (``baseline``; ``ratio`` = value / baseline).
* ``backfill_single_runs`` -- ``ROTATION_BENCH_YEARS`` (default 10) years of sessions for every pool,
  one single run per pool over the whole range, then one summary run over the range. Target
  <= 300 s for 10 years. Also the seconds per pool-session and the summary run's seconds per session
  (``summary_seconds_per_session``: the metrics summary and the session snapshot, whose manifests use
  the hashes the store recorded when it wrote each value).
* ``backfill_pools_side_by_side`` -- the same range, but each pool's single run in a process of its own,
  ``ROTATION_BENCH_PARALLEL`` (default 3: every pool at once) at a time, as the run queue launches a
  backfill's runs (its concurrency limits allow one run per pool at a time, not one run in all), then
  the summary run; the instance's SQLite files are made first, untimed, as a deployment's webserver or
  daemon makes them. Same target; ``daily_runs_s`` gives each pool's run time, ``pools_wall_s`` the wall
  time until the last pool run ended.
* ``rerun_one_asset`` -- ``target_portfolio`` rerun alone for a stored session against the whole chain of
  the same session (:mod:`benchmarks._rerun`; target: at most 20% of it).
* ``one_run_per_partition`` -- the same ``ROTATION_BENCH_SESSIONS`` (default 20) sessions of one pool
  as one run per session and as one single run; ``ratio`` = per-partition seconds / single-run
  seconds (how much single-run backfills save).
* ``event_recording`` -- a one-year single run of one pool with the project's SQLite instance
  (``configs/dagster.yaml``: batched event log), with Dagster's own SQLite event log (one write per
  event) and with an in-memory instance: what recording one planned and one materialisation event
  per asset and partition costs, and what writing them in batches saves.

* ``first_run_after_install`` -- what a fresh install costs before the first results
  (``scripts/demo.sh``: ``python -m jobs.main`` for the last session, every pool): the run with an
  empty numba cache and no warm-up (``cold_first_run_seconds``: every kernel compiled in the run), the
  warm-up ``python -m rotation_platform.warmup`` that ``scripts/_env.sh`` runs after installing, into
  another empty cache (``warmup_seconds``), and the first run after it (``first_run_after_warmup_seconds``,
  with ``index_files_added``: the kernels that run still had to compile, 0 when the warm-up covered
  them all). Target: results for every pool within 60 s of the install finishing (``baseline``).

``ROTATION_BENCH_CASES`` (comma-separated case names) runs some of them only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = "orchestration"
YEARS = int(os.environ.get("ROTATION_BENCH_YEARS", "10"))
PARALLEL = int(os.environ.get("ROTATION_BENCH_PARALLEL", "3"))
SESSIONS = int(os.environ.get("ROTATION_BENCH_SESSIONS", "20"))
CASES = [c for c in os.environ.get("ROTATION_BENCH_CASES", "").split(",") if c]  # default: every case
DEMO = ROOT / "configs" / "demo.yaml"
LAST = "2025-12-31"

_RUNNER = r"""
import json, sys, time
import dagster as dg
import pandas as pd
from definitions import defs
from assets.partitions import pool_session_key
from rotation_platform.calendars import get_calendar

spec = json.loads(sys.argv[1])
quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
sessions = [str(d.date()) for d in get_calendar("XSHG").sessions(pd.Timestamp(spec["start"]), pd.Timestamp(spec["end"]))]
instance = dg.DagsterInstance.ephemeral() if spec.get("ephemeral") else dg.DagsterInstance.get()
daily, summary = defs.resolve_job_def("daily"), defs.resolve_job_def("session_summary")
out = {"sessions": len(sessions), "pools": {}}
t_all = time.perf_counter()
for pool in spec["pools"]:
    t0 = time.perf_counter()
    if spec["mode"] == "per_partition":
        for s in sessions:
            r = daily.execute_in_process(partition_key=pool_session_key(pool, s), instance=instance, run_config=quiet)
            assert r.success
    else:
        r = daily.execute_in_process(instance=instance, run_config=quiet, tags={
            "dagster/asset_partition_range_start": str(pool_session_key(pool, sessions[0])),
            "dagster/asset_partition_range_end": str(pool_session_key(pool, sessions[-1]))})
        assert r.success
    out["pools"][pool] = time.perf_counter() - t0
if spec.get("summary"):
    t0 = time.perf_counter()
    r = summary.execute_in_process(instance=instance, run_config=quiet, tags={
        "dagster/asset_partition_range_start": sessions[0], "dagster/asset_partition_range_end": sessions[-1]})
    assert r.success
    out["summary"] = time.perf_counter() - t0
out["total"] = time.perf_counter() - t_all
print("RESULT " + json.dumps(out))
"""


def _env(tmp: Path, default_event_log: bool = False, **extra: str) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    if default_event_log:  # Dagster's own SQLite event log (one write per event)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    else:  # the project's instance (configs/dagster.yaml)
        shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_") or k.startswith("ROTATION_BENCH_")}
    env.update({"ROTATION_CONFIG": str(DEMO), "ROTATION_STORAGE__DATA_DIR": str(tmp / "data"),
                "DAGSTER_HOME": str(home), "ROTATION_DATA__SYNTHETIC__END": LAST, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float = 7200) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def _runner(spec: dict[str, object], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    wall, out = _run(["-c", _RUNNER, json.dumps(spec)], env)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return wall, json.loads(line[len("RESULT "):])


def _fig(case: str, metric: str, value: float, unit: str, **extra: object) -> dict[str, object]:
    return {"suite": SUITE, "case": case, "metric": metric, "value": round(float(value), 3), "unit": unit, **extra}


def run() -> Iterator[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="rotation-bench-") as tmp_name:
        tmp = Path(tmp_name)
        def wanted(case: str) -> bool:
            return not CASES or case in CASES

        if any(wanted(c) for c in ("one_session_cold_cli", "one_run_per_partition", "event_recording",
                                   "backfill_single_runs", "backfill_pools_side_by_side", "rerun_one_asset")):
            # warm the numba cache (and the OS file cache) once; not timed
            _run(["-m", "jobs.main", "--session", LAST], _env(tmp / "warmup"))

        if wanted("one_session_cold_cli"):
            wall, _ = _run(["-m", "jobs.main", "--session", LAST], _env(tmp / "cli"))
            yield _fig("one_session_cold_cli", "seconds", wall, "s", baseline=60.0, ratio=round(wall / 60.0, 3),
                       pools=3, session=LAST)

        if wanted("rerun_one_asset"):
            from benchmarks._rerun import rerun_one_asset

            yield from rerun_one_asset(tmp, _env, _run, _fig, LAST)
        if wanted("one_run_per_partition"):
            yield from _per_partition(tmp, SESSIONS)
        if wanted("event_recording"):
            yield from _event_recording(tmp)
        if wanted("backfill_single_runs"):
            yield from _backfill(tmp)
        if wanted("backfill_pools_side_by_side"):
            yield from _backfill_side_by_side(tmp)
        if wanted("first_run_after_install"):
            yield from _first_run_after_install(tmp)


def _per_partition(tmp: Path, n: int) -> Iterator[dict[str, object]]:
    start = _session_offset(LAST, -(n - 1))
    _, single = _runner({"mode": "single", "pools": ["QDII"], "start": start, "end": LAST},
                                  _env(tmp / "single"))
    _, per = _runner({"mode": "per_partition", "pools": ["QDII"], "start": start, "end": LAST},
                            _env(tmp / "per"))
    s_single = single["pools"]["QDII"] / n
    s_per = per["pools"]["QDII"] / n
    yield _fig("one_run_per_partition", "seconds_per_session", s_per, "s", pool="QDII", sessions=n,
               baseline=round(s_single, 4), ratio=round(s_per / s_single, 2), peer="one single run")
    yield _fig("one_run_per_partition", "single_run_seconds_per_session", s_single, "s", pool="QDII", sessions=n)


def _event_recording(tmp: Path) -> Iterator[dict[str, object]]:
    year_start = _session_offset(LAST, -249)
    spec = {"mode": "single", "pools": ["A_SHARE"], "start": year_start, "end": LAST}
    _, disk = _runner(spec, _env(tmp / "events_sqlite"))
    _, default = _runner(spec, _env(tmp / "events_default", default_event_log=True))
    _, memory = _runner({**spec, "ephemeral": True}, _env(tmp / "events_memory"))
    s_disk, s_default, s_memory = (r["pools"]["A_SHARE"] for r in (disk, default, memory))
    yield _fig("event_recording", "sqlite_instance_seconds", s_disk, "s", pool="A_SHARE", sessions=250,
               baseline=round(s_memory, 3), ratio=round(s_disk / s_memory, 2), peer="in-memory instance")
    yield _fig("event_recording", "batched_event_log_seconds", s_disk, "s", pool="A_SHARE", sessions=250,
               baseline=round(s_default, 3), ratio=round(s_disk / s_default, 2),
               peer="Dagster's SQLite event log (one write per event)")


def _backfill_range(folder: Path) -> tuple[str, str, dict[str, str]]:
    """The first and last day of the ``YEARS``-year backfill range and the environment of a run over it
    (eight years of synthetic history before it)."""
    first = f"{int(LAST[:4]) - YEARS + 1}-01-01"
    env = _env(folder, ROTATION_DATA__SYNTHETIC__START=f"{int(first[:4]) - 8}-01-04",
               ROTATION_ORCHESTRATION__FIRST_SESSION=_session_offset(first, 0))
    return first, LAST, env


def _backfill(tmp: Path) -> Iterator[dict[str, object]]:
    years = YEARS
    first, end, env = _backfill_range(tmp / "backfill")
    wall, res = _runner({"mode": "single", "pools": ["A_SHARE", "QDII", "OTHER"], "start": first, "end": end,
                         "summary": True}, env)
    target = 300.0 * years / 10.0
    yield _fig("backfill_single_runs", "seconds", wall, "s", years=years, sessions=res["sessions"], pools=3,
               baseline=target, ratio=round(wall / target, 3),
               daily_runs_s={k: round(v, 1) for k, v in res["pools"].items()},
               summary_run_s=round(res["summary"], 1))
    pool_sessions = res["sessions"] * 3
    yield _fig("backfill_single_runs", "seconds_per_pool_session", sum(res["pools"].values()) / pool_sessions,
               "s", years=years, pool_sessions=pool_sessions)
    yield _fig("backfill_single_runs", "summary_seconds_per_session", res["summary"] / res["sessions"], "s",
               years=years, sessions=res["sessions"])


_OPEN_INSTANCE = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    instance.event_log_storage.get_maximum_record_id()
"""


def _backfill_side_by_side(tmp: Path) -> Iterator[dict[str, object]]:
    from concurrent.futures import ThreadPoolExecutor

    years = YEARS
    first, end, env = _backfill_range(tmp / "side_by_side")
    pools = ["A_SHARE", "QDII", "OTHER"]

    def pool_run(pool: str) -> tuple[str, float]:
        _, res = _runner({"mode": "single", "pools": [pool], "start": first, "end": end}, env)
        return pool, res["pools"][pool]

    # the instance's SQLite files made first, as a deployment's webserver or daemon makes them: Dagster's
    # run and schedule storages cannot be created by two processes at once (their migrations race)
    _run(["-c", _OPEN_INSTANCE], env)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool_exec:  # each a process of its own
        runs = dict(pool_exec.map(pool_run, pools))
    pools_wall = time.perf_counter() - t0
    _, res = _runner({"mode": "single", "pools": [], "start": first, "end": end, "summary": True}, env)
    wall = time.perf_counter() - t0
    target = 300.0 * years / 10.0
    yield _fig("backfill_pools_side_by_side", "seconds", wall, "s", years=years, sessions=res["sessions"], pools=3,
               parallel=PARALLEL, baseline=target, ratio=round(wall / target, 3),
               daily_runs_s={k: round(v, 1) for k, v in runs.items()}, pools_wall_s=round(pools_wall, 1),
               summary_run_s=round(res["summary"], 1))


def _first_run_after_install(tmp: Path) -> Iterator[dict[str, object]]:
    from rotation_platform.numba_cache import index_files

    case, target = "first_run_after_install", 60.0
    cold_cache, warm_cache = tmp / "numba-cold", tmp / "numba-warm"
    cold, _ = _run(["-m", "jobs.main", "--session", LAST],
                   _env(tmp / "install_cold", NUMBA_CACHE_DIR=str(cold_cache)))
    yield _fig(case, "cold_first_run_seconds", cold, "s", baseline=target, ratio=round(cold / target, 3),
               pools=3, session=LAST, kernels_compiled=len(index_files(cold_cache)),
               peer="empty numba cache, no warm-up")
    warmup, _ = _run(["-m", "rotation_platform.warmup", "--quiet"],
                     _env(tmp / "install_warmup", NUMBA_CACHE_DIR=str(warm_cache)))
    before = index_files(warm_cache)
    yield _fig(case, "warmup_seconds", warmup, "s", kernels_cached=len(before), cache_dir=str(warm_cache))
    first, _ = _run(["-m", "jobs.main", "--session", LAST],
                    _env(tmp / "install_first", NUMBA_CACHE_DIR=str(warm_cache)))
    after = index_files(warm_cache)
    added = len([k for k in after if before.get(k) != after[k]])
    yield _fig(case, "first_run_after_warmup_seconds", first, "s", baseline=target, ratio=round(first / target, 3),
               pools=3, session=LAST, index_files_added=added, cold_ratio=round(cold / first, 2))


def _session_offset(day: str, offset: int) -> str:
    import pandas as pd

    from rotation_platform.calendars import get_calendar

    cal = get_calendar("XSHG")
    base = cal.session_on_or_before(pd.Timestamp(day)) if offset <= 0 else pd.Timestamp(day)
    if offset == 0 and not cal.is_session(pd.Timestamp(day)):
        return str(cal.next_session(pd.Timestamp(day)).date())
    return str(cal.session_offset(base, offset).date())
