"""Materialise the latest session (or sessions) for every pool on the configured storage and print the
summary, the fuse verdicts and tomorrow's target portfolios.

    python -m jobs.main [--config configs/demo.yaml] [--pools A_SHARE QDII] [--session 2024-12-31] [--sessions 5]
                        [--force] [--json out.json]

``--sessions N`` computes the latest N sessions of each pool in one run (a single-run backfill). The
definitions are built from ``--config`` (or ``ROTATION_CONFIG``): its pools, sessions and storage. A
session that has not closed yet (its close plus ``orchestration.data_delay_minutes``) is refused unless
``--force`` (the runs then carry the tag ``rotation/force=true``). ``--json FILE`` writes the run's result
for an execution desk (schema ``docs/run-result.schema.json``, described in ``docs/orders.md``).
Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default: ``.dagster_home`` in the
repository), so the UI started with ``scripts/ui.sh`` shows them and the stored assets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the console report below says what failed; Dagster's own log stays in the instance (UI)
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
STEPS = ("prices", "factor_panel", "factor_screen", "wfo_result", "backtest", "capacity_report", "target_portfolio")


def ensure_dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    yaml_file = home / "dagster.yaml"
    if not yaml_file.exists():
        shutil.copy(ROOT / "configs" / "dagster.yaml", yaml_file)
    return home


def _run_with_progress(job, instance, label: str, steps: tuple[str, ...], **kwargs):
    """Execute ``job`` in a thread and show which steps have finished while it runs."""
    import dagster as dg

    run_id = str(uuid.uuid4())
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = job.execute_in_process(instance=instance, raise_on_error=False, run_id=run_id,
                                                   run_config=QUIET_LOGS, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    tty = sys.stdout.isatty()
    shown = -1
    while thread.is_alive():
        thread.join(0.5)
        if not tty:
            continue
        try:
            done = len(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS))
        except Exception:  # noqa: BLE001 - the run may not be registered yet
            done = 0
        if done != shown:
            shown = done
            current = steps[min(done, len(steps) - 1)]
            print(f"\r{label}: {done}/{len(steps)} steps, running {current} ({time.perf_counter() - t0:.0f}s)   ",
                  end="", flush=True)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    dt = time.perf_counter() - t0
    status = "ok" if result.success else "FAILED"
    print(f"{chr(13) if tty else ''}{label}: {status} in {dt:.1f}s (run {run_id[:8]})" + " " * 20)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.main", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    parser.add_argument("--pools", nargs="*", help="pools to run (default: all configured pools)")
    parser.add_argument("--session", help="the session to run (default: the latest with data)")
    parser.add_argument("--sessions", type=int, default=1, help="run the latest N sessions in one run per pool")
    parser.add_argument("--force", action="store_true",
                        help="run sessions that have not closed yet (close + orchestration.data_delay_minutes)")
    parser.add_argument("--json", metavar="FILE", help="write the run's result as JSON (docs/orders.md)")
    args = parser.parse_args(argv)
    if args.json:
        target_file = Path(args.json)
        if target_file.is_dir():
            parser.error(f"--json {args.json} is a folder; give a file name such as {Path(args.json) / 'orders.json'}")
        if not target_file.resolve().parent.exists():
            parser.error(f"--json {args.json}: the folder {target_file.resolve().parent} does not exist")
    if args.config:
        # the definitions are built from this file below; child processes and the loader see it too
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())
    home = ensure_dagster_home()

    import dagster as dg
    import pandas as pd

    from rotation_platform.calendars import SessionNotClosedError, get_calendar
    from rotation_platform.config import config_hash, load_config
    from rotation_platform.errors import ConfigError, DataSourceError
    from rotation_platform.production import latest_session
    from rotation_platform.reports.console import render_run_report

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from assets.partitions import FORCE_TAG, partitions_for, pool_session_key, refuse_unclosed
    from definitions import build_defs

    pools = args.pools or list(config.pool_names)
    unknown = [p for p in pools if p not in config.pool_names]
    if unknown:
        parser.error(f"unknown pools {unknown}; configured: {list(config.pool_names)} (config {config.name})")
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    calendar = get_calendar("XSHG")
    delay = config.orchestration.data_delay_minutes
    if args.session:
        last = pd.Timestamp(args.session)
    else:  # the latest session with data whose data is complete by now
        try:
            last = min(latest_session(config), calendar.last_completed_session(close_buffer_minutes=delay))
        except DataSourceError as exc:  # the files are read to find it: a bad file is a data error
            print(f"error: {exc}", file=sys.stderr)
            return 4
    if not calendar.is_session(last):
        parser.error(f"{last.date()} is not an XSHG trading session")
    try:
        for pool in pools:
            refuse_unclosed(config, pool, [last], forced=args.force)
    except SessionNotClosedError as exc:
        print(f"error: {str(exc).split('; to run it anyway')[0]}; add --force to run it anyway", file=sys.stderr)
        return 2
    sessions = [last]
    while len(sessions) < args.sessions:
        sessions.insert(0, calendar.previous_session(sessions[0]))
    first = config.orchestration.first_session
    if sessions[0] < pd.Timestamp(first):
        parser.error(f"sessions start at orchestration.first_session = {first}")
    if not partitions_for(config).session.has_partition_key(str(last.date())):
        parser.error(f"{last.date()} is not a session partition yet: the partitions end at today's session")
    defs = build_defs(os.environ.get("ROTATION_CONFIG") or None)
    force = {FORCE_TAG: "true"} if args.force else {}

    span = f"{sessions[0].date()}..{last.date()}" if len(sessions) > 1 else str(last.date())
    print(f"rotation platform · config {config.name} ({config_hash(config)[:12]}) · storage {config.storage.backend} "
          f"at {config.storage.data_dir} · session {span}")
    daily = defs.resolve_job_def("daily")
    summary_job = defs.resolve_job_def("session_summary")
    checks: dict[str, list[tuple[str, str, bool, str, str]]] = {}
    targets: dict[str, object] = {}
    failed: dict[str, str] = {}
    results: list[dict[str, object]] = []
    capacity: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        for i, pool in enumerate(pools, 1):
            keys = [pool_session_key(pool, s) for s in sessions]
            kwargs = {"partition_key": keys[0], "tags": force} if len(keys) == 1 else {"tags": {
                "dagster/asset_partition_range_start": str(keys[0]),
                "dagster/asset_partition_range_end": str(keys[-1]), **force}}
            result = _run_with_progress(daily, instance, f"[{i}/{len(pools)}] {pool}", STEPS, **kwargs)
            checks[pool] = _verdicts(result, str(keys[-1]))
            if not result.success:
                failed[pool] = _failure_reason(result)
            outcome = _pool_outcome(result, pool, last, checks[pool], failed.get(pool))
            results.append(outcome)
            if outcome["status"] != "failed":
                targets[pool] = result.output_for_node("target_portfolio")
                cap = (outcome.get("metrics") or {}).get("capacity_cny")
                if cap is not None:
                    capacity[pool] = cap
        summary = None
        sresult = _run_with_progress(summary_job, instance, "summary and snapshot", ("pool_metrics_summary",
                                                                                      "session_snapshot"),
                                     **({"partition_key": str(last.date()), "tags": force} if len(sessions) == 1
                                        else {"tags": {
                                            "dagster/asset_partition_range_start": str(sessions[0].date()),
                                            "dagster/asset_partition_range_end": str(last.date()), **force}}))
        if sresult.success:
            summary = sresult.output_for_node("pool_metrics_summary")
        else:
            failed["summary"] = _failure_reason(sresult)
    print()
    print(render_run_report(config, last, summary, checks, targets, failed, capacity))
    if args.json:
        from rotation_platform.reports.orders import run_result, write_result

        combined = None
        if summary is not None:
            rows = summary.xs(last, level="session") if "session" in summary.index.names else summary
            if "COMBINED" in rows.index:
                combined = {k: (v.item() if hasattr(v, "item") else v) for k, v in rows.loc["COMBINED"].items()}
        doc = run_result(config.name, config_hash(config), sessions, results, combined,
                         config_file=os.environ.get("ROTATION_CONFIG") or None)
        written = write_result(doc, args.json)
        print(f"\nResult written to {written} ({sum(len(r['orders']) for r in results)} orders; schema "
              f"docs/run-result.schema.json)")
    print(f"\nStored under {config.storage.data_dir}; Dagster instance: {home}  (open the UI on both: scripts/ui.sh)")
    return 1 if failed else 0


def _verdicts(result, last_key: str) -> list[tuple[str, str, bool, str, str]]:
    """(asset, check, passed, severity, description) of the run's checks; for a check evaluated per
    partition, its evaluation of the run's last partition (or, when it has none, its last one)."""
    latest: dict[tuple[str, str], object] = {}
    for c in result.get_asset_check_evaluations():
        key = (c.asset_key.to_user_string(), c.check_name)
        partition = getattr(c, "partition", None)
        if key in latest and partition is not None and str(partition) != last_key:
            continue
        latest[key] = c
    return [(a, n, bool(c.passed), c.severity.value, str(getattr(c, "description", "") or ""))
            for (a, n), c in latest.items()]


def _output(result, node: str):
    try:
        return result.output_for_node(node)
    except Exception:  # noqa: BLE001 - the step did not run (a fuse stopped it) or failed
        return None


def _pool_outcome(result, pool: str, last, checks, reason: str | None) -> dict[str, object]:
    """The pool's entry of the result file from the run's outputs (see rotation_platform.reports.orders)."""
    import pandas as pd

    from rotation_platform.reports.orders import failed_pool_result, pool_result
    from rotation_platform.research.capacity import capacity_by_session

    target = _output(result, "target_portfolio")
    if target is None:
        return failed_pool_result(pool, last, reason or "the run made no target portfolio", checks)
    frame = _output(result, "backtest")
    row = frame.loc[pd.Timestamp(last)].to_dict() if frame is not None and pd.Timestamp(last) in frame.index else None
    cap = None
    table = _output(result, "capacity_report")
    if table is not None and frame is not None:
        block = table.loc[pd.IndexSlice[[pd.Timestamp(last)], :], :]
        cap = capacity_by_session(block, frame["equity"]).iloc[-1].to_dict()
    wfo = _output(result, "wfo_result")
    if isinstance(wfo, dict) and "dsr" not in wfo:  # a range: one record per partition key
        wfo = list(wfo.values())[-1] if wfo else None
    out = pool_result(pool, last, target, row, checks, capacity=cap, wfo=wfo)
    if reason and out["status"] == "ok":
        out["status"], out["reason"] = "blocked", reason
    return out


def _failure_reason(result) -> str:
    """Why a run failed: the failed ERROR checks with their summary, else the step errors."""
    failed: dict[tuple[str, str], list] = {}
    for c in result.get_asset_check_evaluations():  # one per check and partition
        if not c.passed and c.severity.value == "ERROR":
            failed.setdefault((c.asset_key.to_user_string(), c.check_name), []).append(c)
    reasons = []
    for (asset, name), items in failed.items():
        more = f" (and {len(items) - 1} more partition(s))" if len(items) > 1 else ""
        reasons.append(f"check {asset}:{name} failed: {items[0].description or ''}{more}")
    if not reasons:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.event_specific_data.error
                while error is not None and error.cause is not None:
                    error = error.cause
                reasons.append(f"{event.step_key}: {error.message.strip().splitlines()[0] if error else '?'}")
    skipped = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"]
    if skipped:
        reasons.append(f"not run: {', '.join(dict.fromkeys(skipped))}")
    return "; ".join(reasons) or "the run failed"


if __name__ == "__main__":
    sys.exit(main())
