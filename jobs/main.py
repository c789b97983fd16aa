"""Materialise the latest session (or sessions) for every pool on the configured storage and print the
summary, the fuse verdicts and tomorrow's target portfolios.

    python -m jobs.main [--config configs/demo.yaml] [--pools A_SHARE QDII] [--session 2024-12-31] [--sessions 5]
                        [--force] [--json out.json] [--wait SECONDS]

``--sessions N`` computes the latest N sessions of each pool in one run (a single-run backfill). The
definitions are built from ``--config`` (or ``ROTATION_CONFIG``): its pools, sessions and storage. A
session that has not closed yet (its close plus the market's data delay, ``markets.<CODE>.
data_delay_minutes``, default ``orchestration.data_delay_minutes``) is refused unless ``--force`` (the runs
then carry the tag ``rotation/force=true``).

Sessions are each pool's own calendar's: ``--sessions N`` is N sessions of that calendar, and without
``--session`` each pool runs its latest closed session with data. ``--session D`` must be a session of at
least one selected pool's calendar (else it is refused, naming each calendar and why: e.g. a US holiday);
a selected pool whose calendar has no session D runs its latest session on or before D, and the run says
so in one line per pool (``US: 2021-07-05 is not an XNYS session (...); runs 2021-07-02``). The summary
and snapshot run for the main calendar's sessions (``orchestration.calendar``), each pool read at its
latest session on or before them. ``--json FILE`` writes the run's result
for an execution desk (schema ``docs/run-result.schema.json``, described in ``docs/orders.md``).
One run at a time writes a pool of a data folder (and the summary): the run locks under
``<storage.data_dir>/.locks/`` (:mod:`rotation_platform.production.runlock`); a second run fails at once
with a line naming the holder (exit code 5), or with ``--wait SECONDS`` waits for it. The runs execute on
``orchestration.executor`` (``docs/executors.md``); their steps in other processes write under the locks
this command holds for them. The report and the result file read the values from the configured store
and the checks from the instance, on every executor. The run's alert
(DingTalk, e-mail; ``notifications``) is sent once for the whole invocation when the runs end.
Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default: ``.dagster_home`` in the
repository), so the UI started with ``scripts/ui.sh`` shows them and the stored assets.
The price, factor, split/dividend and positions files are read before any run starts, so a bad one is
refused with nothing stored. Every error is one line on stderr with an exit code by kind: 2 usage,
3 configuration, 4 data, 5 service, 1 a failed pool or anything else (``jobs/cli.py``); ``--debug`` or
``ROTATION_DEBUG=1`` prints the traceback too.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Launch:
    """How this invocation executes its jobs: ``orchestration.executor`` and the absolute path of the config
    file the steps' processes load (``ROTATION_CONFIG``)."""

    executor: str
    config_path: str


class RunEvents:
    """A finished run as the report reads it, on every executor: its events from the instance -- those
    its execution emitted, as Dagster's result of the run lists them (not the planned materialisations and
    checks recorded when the run was created) -- with the same accessors as that result."""

    def __init__(self, run_id: str, success: bool, events: list):
        self.run_id, self.success, self.all_events = run_id, success, events

    @classmethod
    def read(cls, instance, run_id: str, success: bool) -> "RunEvents":
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event is not None
                  and not e.dagster_event.event_type_value.endswith("_PLANNED")]
        return cls(run_id, success, events)

    def get_asset_check_evaluations(self) -> list:
        return [e.event_specific_data for e in self.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]

    def get_asset_materialization_events(self) -> list:
        return [e for e in self.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]

    def materialised(self, asset: str, partition_key: str) -> bool:
        """Whether the run stored ``asset`` (its last key part) for ``partition_key``."""
        return any(e.asset_key is not None and e.asset_key.path[-1] == asset and str(e.partition) == partition_key
                   for e in self.get_asset_materialization_events())


def _cli_run_ids(instance, tags) -> set[str]:
    """The runs already recorded with the invocation's ``rotation/cli_run`` tag."""
    import dagster as dg

    from rotation_platform.notify import CLI_RUN_TAG

    return {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags={CLI_RUN_TAG: tags[CLI_RUN_TAG]}))}


def _run_with_progress(job, instance, label: str, steps: tuple[str, ...], launch: Launch, **kwargs) -> RunEvents:
    """Execute ``job`` on ``launch``'s executor in a thread and show which of ``steps`` (asset names) are
    materialised while it runs; the run's events from the instance (:class:`RunEvents`)."""
    import dagster as dg

    box: dict[str, object] = {}
    if launch.executor == "in_process":
        # the job the command line built, in this process: no definitions loaded again, no process started,
        # the steps' values computed exactly as before; the run id is chosen here for the progress display
        run_id: str | None = str(uuid.uuid4())

        def execute():
            return job.execute_in_process(instance=instance, raise_on_error=False, run_id=run_id,
                                          run_config=QUIET_LOGS, **kwargs)
    else:
        # a reconstructable job on the configured executor: Dagster creates the run, found for the progress
        # display as the one new run of this invocation (its runs are executed one after the other)
        from jobs.executor import execute_job

        run_id, earlier = None, _cli_run_ids(instance, kwargs["tags"])

        def execute():
            return execute_job(job.name, instance, config_path=launch.config_path, run_config=QUIET_LOGS,
                               partition_key=kwargs.get("partition_key"), tags=kwargs["tags"])

    def target() -> None:
        try:
            box["result"] = execute()
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
        try:  # the pool chain is one step: progress is the assets materialised so far
            if run_id is None:
                run_id = next(iter(_cli_run_ids(instance, kwargs["tags"]) - earlier), None)
            done = 0 if run_id is None else len({
                e.asset_key for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                if e.asset_key is not None and e.asset_key.path[-1] in steps})
        except Exception:  # noqa: BLE001 - the run may not be registered yet
            done = 0
        if done != shown:
            shown = done
            current = steps[min(done, len(steps) - 1)]
            print(f"\r{label}: {done}/{len(steps)} assets, computing {current} ({time.perf_counter() - t0:.0f}s)   ",
                  end="", flush=True)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    run_id = result.run_id
    dt = time.perf_counter() - t0
    status = "ok" if result.success else "FAILED"
    print(f"{chr(13) if tty else ''}{label}: {status} in {dt:.1f}s (run {run_id[:8]})" + " " * 20)
    return RunEvents.read(instance, run_id, result.success)


def build_parser():
    from jobs.cli import parser

    p = parser("python -m jobs.main", __doc__.splitlines()[0])
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    p.add_argument("--pools", nargs="*", help="pools to run (default: all configured pools)")
    p.add_argument("--session", help="the session to run, YYYY-MM-DD (default: the latest with data)")
    p.add_argument("--sessions", type=int, default=1, help="run the latest N sessions in one run per pool")
    p.add_argument("--force", action="store_true",
                   help="run sessions that have not closed yet (close + orchestration.data_delay_minutes)")
    p.add_argument("--json", metavar="FILE", help="write the run's result as JSON (docs/orders.md)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="when another run is writing these pools (or the summary) of the data folder, wait up "
                        "to SECONDS for it (default: fail at once, exit code 5)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and :func:`run`; every error is one line on stderr and an exit code by kind
    (see ``jobs/cli.py``: 2 usage, 3 configuration, 4 data, 5 service, 1 other; ``--debug`` for the trace)."""
    from jobs.cli import run_main

    return run_main(build_parser(), run, argv)


def _check_arguments(args) -> None:
    """Refuse wrong flags before anything is read (UsageError: exit code 2)."""
    from jobs.cli import parse_date
    from rotation_platform.errors import UsageError

    if args.sessions < 1:
        raise UsageError(f"--sessions {args.sessions}: must be at least 1")
    if args.session is not None:
        args.session = parse_date(args.session, "--session")
    if args.json:
        target_file = Path(args.json)
        if target_file.is_dir():
            raise UsageError(f"--json {args.json} is a folder; give a file name such as "
                             f"{Path(args.json) / 'orders.json'}")
        if not target_file.resolve().parent.exists():
            raise UsageError(f"--json {args.json}: the folder {target_file.resolve().parent} does not exist")
    if args.config:
        config_file = Path(args.config)
        if not config_file.is_file():
            from rotation_platform.errors import ConfigError

            what = "is a folder, not a config file" if config_file.is_dir() else "config file not found"
            raise ConfigError(str(config_file.resolve()), [("<file>", f"{what}: {config_file}")],
                              hint="give an existing YAML file with --config")


def _data_ends(config, pools: list[str]) -> dict:
    """Each calendar's last date with data among the selected ``pools``: the synthetic end, or the latest
    row of their files (this reads the price files: a bad one is a data error); None when the data does
    not bound it."""
    import pandas as pd

    if config.data.source == "synthetic":
        end = config.data.synthetic.end
        return {code: pd.Timestamp(end) if end is not None else None for code in config.calendars}
    from rotation_platform.data.sources import make_source

    source = make_source(config)
    out: dict = {code: None for code in config.calendars}
    for name in pools:
        pool = config.pool(name)
        for raw in source.read(list(pool.symbols)).values():
            end = raw.frame["date"].max()          # dates are datetime64 (NaT for a missing cell)
            if pd.notna(end):
                out[pool.calendar] = end if out[pool.calendar] is None else max(out[pool.calendar], end)
    return out


def _last_sessions(args, config) -> tuple[dict, list[str]]:
    """Each selected pool's last session on its own calendar and the notes to print: ``--session`` (refused
    when no selected pool's calendar has it; a pool whose calendar lacks it takes its latest session on or
    before it), else the pool's latest session with data whose data is complete by now."""
    import pandas as pd

    from rotation_platform.calendars import get_calendar
    from rotation_platform.errors import CalendarError, UsageError

    calendars = {pool: get_calendar(config.pool(pool).calendar) for pool in args.pools}
    notes: list[str] = []
    if args.session is not None:
        refusals, lasts = {}, {}
        for pool, calendar in calendars.items():
            try:
                lasts[pool] = calendar.require_session(args.session)
            except CalendarError as exc:
                refusals[pool] = exc
        if not lasts:
            why = {calendars[p].code: e.one_line() for p, e in refusals.items()}
            raise UsageError(f"--session {args.session.date()}: " + "; ".join(why.values())
                             + ("" if len(why) == 1 else " (the calendars of the selected pools)")) from None
        for pool, exc in refusals.items():  # a pool whose calendar has no such session: its latest before it
            try:
                lasts[pool] = calendars[pool].session_on_or_before(args.session)
            except CalendarError:
                raise UsageError(f"--session {args.session.date()}: {exc.one_line()}") from None
            notes.append(f"{pool}: {args.session.date()} is not an {calendars[pool].code} session; runs its latest "
                         f"session on or before it, {lasts[pool].date()}")
        return {p: lasts[p] for p in args.pools}, notes
    ends = _data_ends(config, list(args.pools))
    lasts = {}
    for pool, calendar in calendars.items():
        delay = config.market(calendar.code).data_delay_minutes
        last = min(calendar.last_completed_session(), calendar.last_completed_session(close_buffer_minutes=delay))
        end = ends.get(calendar.code)
        if end is not None:
            last = min(last, pd.Timestamp(calendar.session_on_or_before(min(pd.Timestamp(end), last))))
        lasts[pool] = pd.Timestamp(last)
    return lasts, notes


def _pool_sessions(args, config, pool: str, last) -> list:
    """The sessions of ``pool`` to run (its own calendar), ``last`` last; UsageError when ``--session`` /
    ``--sessions`` do not fit its partitions or ``last`` has not closed (without ``--force``)."""
    from assets.partitions import group_of, refuse_unclosed
    from rotation_platform.calendars import SessionNotClosedError, get_calendar
    from rotation_platform.errors import UsageError

    calendar = get_calendar(config.pool(pool).calendar)
    try:
        refuse_unclosed(config, pool, [last], forced=args.force)
    except SessionNotClosedError as exc:
        raise UsageError(f"{str(exc).split('; to run it anyway')[0]}; add --force to run it anyway") from None
    return _span(args, config, calendar, last, group_of(config, pool).partitions.session)


def _span(args, config, calendar, last, session_def) -> list:
    """``args.sessions`` sessions of ``calendar`` ending at ``last``, checked against the partitions."""
    import pandas as pd

    from rotation_platform.errors import UsageError

    sessions = [last]
    first = pd.Timestamp(config.orchestration.first_session)
    while len(sessions) < args.sessions and sessions[0] > first:
        sessions.insert(0, calendar.previous_session(sessions[0]))
    if sessions[0] < first or len(sessions) < args.sessions:
        flag = f"--session {last.date()}" if len(sessions) == 1 else f"--sessions {args.sessions}"
        raise UsageError(f"{flag}: the session partitions start at orchestration.first_session = "
                         f"{first.date()} (config {config.name}); pick later sessions or set an earlier first_session")
    if not session_def.has_partition_key(str(last.date())):
        raise UsageError(f"--session {last.date()} is not a {calendar.code} session partition yet: the partitions "
                         f"end at today's session")
    return sessions


def _summary_sessions(args, config, lasts: dict) -> list:
    """The main calendar's sessions the summary and snapshot run for: ``--sessions`` of them, ending at its
    latest session on or before the latest pool session of the run."""
    from assets.partitions import main_calendar, partitions_for
    from rotation_platform.calendars import get_calendar

    calendar = get_calendar(main_calendar(config))
    last = calendar.session_on_or_before(max(lasts.values()))
    return _span(args, config, calendar, last, partitions_for(config).session)


def _preflight(config, pools: list[str], lasts: dict, prices_read: bool) -> None:
    """Read the inputs the run will read -- the price files (unless finding the latest session read them
    already), the factor, split and dividend tables and the positions files of each pool's last session
    (``lasts``) -- so that a bad file is refused (one line, exit code 4) before anything runs or is stored."""
    symbols = [s for pool in pools for s in config.pool(pool).symbols]
    if config.data.source == "directory":
        from rotation_platform.data.sources import make_source

        source = make_source(config)
        if not prices_read:
            source.read(symbols)
        source.corporate_actions(symbols)
    if config.positions.source == "directory":
        from rotation_platform.production.positions import DirectoryPositions

        reader = DirectoryPositions(config.positions.directory)
        for pool in pools:
            reader(pool, lasts[pool], config.pool(pool).symbols)


def run(args) -> int:
    """The main job for parsed ``args``: check them, load the config, run every pool, print the report."""
    _check_arguments(args)
    from rotation_platform.observability.logs import configure

    configure(default="message")  # ROTATION_LOG_FORMAT, ROTATION_LOG_FILE; unset, stderr shows what it always did
    # the steps of a multiprocess run log in processes of their own, which inherit the environment: they show
    # this command line's format on its stderr, not their own default (JSON lines)
    from rotation_platform.observability.logs import CHILD_DEFAULT_ENV

    os.environ[CHILD_DEFAULT_ENV] = "message"
    if args.config:
        # the definitions are built from this file below; child processes and the loader see it too
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())

    from rotation_platform.config import config_hash, load_config
    from rotation_platform.errors import NotConfiguredError

    config = load_config()
    pools = args.pools or list(config.pool_names)
    unknown = [p for p in pools if p not in config.pool_names]
    if unknown:
        raise NotConfiguredError(f"unknown pools {unknown}; configured: {list(config.pool_names)} "
                                 f"(config {config.name})", key="pools",
                                 hint="give --pools with configured names")
    args.pools = pools
    lasts, notes = _last_sessions(args, config)
    _preflight(config, pools, lasts, prices_read=args.session is None)
    pool_sessions = {pool: _pool_sessions(args, config, pool, lasts[pool]) for pool in pools}
    sessions = _summary_sessions(args, config, lasts)
    last = sessions[-1]

    home = ensure_dagster_home()
    import dagster as dg

    from assets.partitions import FORCE_TAG, group_of, pool_session_key
    from definitions import build_defs
    from rotation_platform.reports.console import render_run_report

    defs = build_defs(os.environ.get("ROTATION_CONFIG") or None)
    force = {FORCE_TAG: "true"} if args.force else {}
    from rotation_platform.config import default_config_path

    launch = Launch(config.orchestration.executor, str(Path(os.environ.get("ROTATION_CONFIG") or
                                                            default_config_path()).resolve()))
    if launch.executor == "celery":  # a broker that does not answer: one line, before anything is stored
        _require_celery(config)

    # run locks: one writer per data folder and pool, and for the summary/snapshots, held until the runs
    # end; another run holding one is RunLockBusy (exit code 5, a busy resource: retry later or --wait)
    import contextlib

    from jobs.sensors import alert_cli_run, cli_runs, degraded_service
    from rotation_platform.errors import UsageError
    from rotation_platform.notify import CLI_ALERT_TAG, CLI_RUN_TAG
    from rotation_platform.production.runlock import SUMMARY_SCOPE, acquire_all, cli_holder_run_id, pool_scope

    if args.wait < 0:
        raise UsageError(f"--wait {args.wait:g}: must be 0 or more seconds")
    cli_run = uuid.uuid4().hex[:12]
    run_locks = contextlib.ExitStack()
    run_locks.enter_context(acquire_all(
        config.storage.data_dir, [*(pool_scope(p) for p in pools), SUMMARY_SCOPE], wait_s=args.wait,
        run_id=cli_holder_run_id(cli_run), config=os.environ.get("ROTATION_CONFIG", ""),
        on_wait=lambda busy: print(f"waiting up to {args.wait:g}s: {busy.what}", file=sys.stderr, flush=True)))
    # the command line alerts its runs itself (the sensors skip this tag) and groups them by cli_run; a step of
    # these runs in another process writes under the locks held here (runlock: delegation)
    force = {**force, CLI_ALERT_TAG: "jobs.main", CLI_RUN_TAG: cli_run}

    def span_of(days: list) -> str:
        return f"{days[0].date()}..{days[-1].date()}" if len(days) > 1 else str(days[-1].date())

    span = span_of(sessions)
    others = {config.pool(p).calendar: span_of(pool_sessions[p]) for p in pools}
    others = {code: text for code, text in others.items() if text != span}
    print(f"rotation platform · config {config.name} ({config_hash(config)[:12]}) · storage {config.storage.backend} "
          f"at {config.storage.data_dir} · session {span}"
          + "".join(f" · {code} pools {text}" for code, text in others.items())
          + ("" if launch.executor == "in_process" else f" · executor {launch.executor}"))
    for note in notes:
        print(note)
    from rotation_platform.calendars import horizon_warning

    for code in config.calendars:
        warning = horizon_warning(code)
        if warning:
            print(f"warning: {warning}")
    summary_job = defs.resolve_job_def("session_summary")
    checks: dict[str, list[tuple[str, str, bool, str, str]]] = {}
    targets: dict[str, object] = {}
    failed: dict[str, str] = {}
    codes: dict[str, int] = {}
    results: list[dict[str, object]] = []
    capacity: dict[str, float] = {}
    store = _report_store(config)
    with dg.DagsterInstance.get() as instance, contextlib.closing(store):
        no_market_data: dict[str, tuple[str, int]] = {}
        if config.data.history == "store":  # the pools read the market store: ingest their sessions first
            no_market_data = _ingest_market_data(defs, config, instance, pools, pool_sessions, force, launch)
        for i, pool in enumerate(pools, 1):
            calendar = config.pool(pool).calendar
            if calendar in no_market_data:  # never run a pool on a store its sessions did not reach
                from rotation_platform.reports.orders import failed_pool_result

                reason, code = no_market_data[calendar]
                failed[pool], codes[pool] = f"market data {calendar} not ingested: {reason}", code
                checks[pool] = []
                print(f"[{i}/{len(pools)}] {pool}: not run (market data {calendar} failed)")
                results.append(failed_pool_result(pool, pool_sessions[pool][-1], failed[pool], checks[pool]))
                continue
            daily = defs.resolve_job_def(group_of(config, pool).daily_job)
            keys = [pool_session_key(pool, s) for s in pool_sessions[pool]]
            kwargs = {"partition_key": keys[0], "tags": force} if len(keys) == 1 else {"tags": {
                "dagster/asset_partition_range_start": str(keys[0]),
                "dagster/asset_partition_range_end": str(keys[-1]), **force}}
            result = _run_with_progress(daily, instance, f"[{i}/{len(pools)}] {pool}", STEPS, launch, **kwargs)
            checks[pool] = _verdicts(result, str(keys[-1]))
            if not result.success:
                failed[pool], codes[pool] = _failure(result)
            values = _pool_values(store, result, pool, pool_sessions[pool][-1])
            outcome = _pool_outcome(values, pool, pool_sessions[pool][-1], checks[pool], failed.get(pool))
            results.append(outcome)
            if outcome["status"] != "failed":
                target = values["target_portfolio"]
                # the pool's own last session: on another calendar it need not be the summary's
                targets[pool] = target.xs(pool_sessions[pool][-1], level="session") \
                    if "session" in target.index.names else target
                cap = (outcome.get("metrics") or {}).get("capacity")
                if cap is not None:
                    capacity[pool] = cap
        summary = None
        sresult = _run_with_progress(summary_job, instance, "summary and snapshot", ("pool_metrics_summary",
                                                                                      "session_snapshot"), launch,
                                     **({"partition_key": str(last.date()), "tags": force} if len(sessions) == 1
                                        else {"tags": {
                                            "dagster/asset_partition_range_start": str(sessions[0].date()),
                                            "dagster/asset_partition_range_end": str(last.date()), **force}}))
        if sresult.success:
            from rotation_platform.storage.base import Partition

            summary = _stored(store, sresult, "pool_metrics_summary", str(last.date()),
                              Partition.single(str(last.date())))
        else:
            failed["summary"], codes["summary"] = _failure(sresult)
        runs = cli_runs(instance, cli_run)
        degraded = degraded_service(instance, list(runs.values())).lines()
    run_locks.close()
    print()
    for line in degraded:
        print(line)
    print(render_run_report(config, last, summary, checks, targets, failed, capacity))
    if args.json:
        from rotation_platform.production.summary import combined_result, is_combined
        from rotation_platform.reports.orders import run_result, write_result

        combined, currency = None, None
        if summary is not None:
            rows = summary.xs(last, level="session") if "session" in summary.index.names else summary
            combined = combined_result(rows)  # with each pool's as-of session and, if any, the per-currency rows
            # every configured pool's standing for the session: ok, stale, failed or missing, with why
            currency = {str(p): {"status": str(r["status"]), "reason": str(r.get("reason") or "")}
                        for p, r in rows.iterrows() if not is_combined(p)}
        doc = run_result(config.name, config_hash(config), sessions, results, combined,
                         config_file=os.environ.get("ROTATION_CONFIG") or None, currency=currency)
        written = write_result(doc, args.json)
        print(f"\nResult written to {written} ({sum(len(r['orders']) for r in results)} orders; schema "
              f"docs/run-result.schema.json)")
    print(f"\nStored under {config.storage.data_dir}; Dagster instance: {home}  (open the UI on both: scripts/ui.sh)")
    alerts = alert_cli_run(os.environ.get("ROTATION_CONFIG") or None, cli_run=cli_run, span=span, pools=pools,
                           failed=failed, runs=runs, degraded=degraded)
    if alerts:
        print("Alert: " + ", ".join(f"{channel} {outcome}" for channel, outcome in alerts.items()))
    return _report_failures(failed, codes, span)


def _report_failures(failed: dict[str, str], codes: dict[str, int], span: str) -> int:
    """One line on stderr naming what failed (the pools; the summary only when no pool failed) and the
    exit code of the first failure's kind: 4 data, 3 configuration, 5 service, 1 a fuse or anything else."""
    if not failed:
        return 0
    shown = {k: v for k, v in failed.items() if k != "summary"} or failed
    what = "; ".join(f"{name}: {reason}" for name, reason in shown.items())
    print(f"error: the run of session {span} failed for {', '.join(shown)} -- {what}", file=sys.stderr, flush=True)
    return next(iter(codes[k] for k in shown))


def _verdicts(result, last_key: str) -> list[tuple[str, str, bool, str, str]]:
    """(asset, check, passed, severity, description) of the run's checks; for a check evaluated per
    partition, its evaluation of the run's last partition (or, when it has none, its last one)."""
    from rotation_platform.calendars import storage_key

    latest: dict[tuple[str, str], object] = {}
    for c in result.get_asset_check_evaluations():  # a market prefix (xnys/prices) is the same fuse
        key = ("/".join(storage_key(c.asset_key.path)), c.check_name)
        partition = getattr(c, "partition", None)
        if key in latest and partition is not None and str(partition) != last_key:
            continue
        latest[key] = c
    return [(a, n, bool(c.passed), c.severity.value, str(getattr(c, "description", "") or ""))
            for (a, n), c in latest.items()]


def _ingest_market_data(defs, config, instance, pools, pool_sessions, tags, launch: Launch
                        ) -> dict[str, tuple[str, int]]:
    """Run each calendar group's ``market_data`` job over the sessions its selected pools run; the failures
    by calendar (``(reason, exit code)``)."""
    from assets.partitions import group_of
    from jobs.market import market_data_job_name

    by_group: dict[str, tuple[object, set]] = {}
    for pool in pools:
        group = group_of(config, pool)
        by_group.setdefault(group.calendar, (group, set()))[1].update(pool_sessions[pool])
    failures = {}
    for code, (group, days) in by_group.items():
        keys = [str(d.date()) for d in sorted(days)]
        job = defs.resolve_job_def(market_data_job_name(group))
        kwargs = {"partition_key": keys[0], "tags": tags} if len(keys) == 1 else {"tags": {
            "dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1], **tags}}
        result = _run_with_progress(job, instance, f"market data {code}", ("market_data",), launch, **kwargs)
        if not result.success:
            failures[code] = _failure(result)
    return failures


def _report_store(config):
    """The configured store (the system of record, without the Redis cache), which the report reads the
    runs' values from."""
    from resources.definitions import PROFILES, resolve_environment
    from rotation_platform.storage import open_store

    return open_store(config.storage.model_copy(update={"redis_cache": False}),
                      retry=PROFILES[resolve_environment()].retry_policy())


def _stored(store, run: RunEvents, asset: str, key: str, partition):
    """The stored value of ``asset`` (its last key part) for ``partition`` (Dagster key ``key``) when ``run``
    materialised it; None when it did not (a fuse stopped it, the step failed), whatever an earlier run left."""
    from rotation_platform.storage.errors import StorageNotFoundError

    if not run.materialised(asset, key):
        return None
    try:
        return store.read((asset,), partition)
    except StorageNotFoundError:
        return None


REPORT_ASSETS = ("wfo_result", "backtest", "capacity_report", "target_portfolio")


def _pool_values(store, run: RunEvents, pool: str, last) -> dict[str, object]:
    """The values of the pool's last session the report and the result file read, from the store."""
    from assets.partitions import pool_session_key
    from rotation_platform.storage.base import Partition

    key, day = str(pool_session_key(pool, last)), str(last.date())
    return {asset: _stored(store, run, asset, key, Partition.multi({"pool": pool, "session": day}))
            for asset in REPORT_ASSETS}


def _pool_outcome(values: dict[str, object], pool: str, last, checks, reason: str | None) -> dict[str, object]:
    """The pool's entry of the result file from the run's stored values of ``last`` (see
    rotation_platform.reports.orders)."""
    import pandas as pd

    from rotation_platform.reports.orders import failed_pool_result, pool_result
    from rotation_platform.research.capacity import capacity_by_session

    target = values["target_portfolio"]
    if target is None:
        return failed_pool_result(pool, last, reason or "the run made no target portfolio", checks)
    frame = values["backtest"]
    row = frame.loc[pd.Timestamp(last)].to_dict() if frame is not None and pd.Timestamp(last) in frame.index else None
    cap = None
    table = values["capacity_report"]
    if table is not None and frame is not None:
        block = table.loc[pd.IndexSlice[[pd.Timestamp(last)], :], :]
        cap = capacity_by_session(block, frame["equity"]).iloc[-1].to_dict()
    wfo = values["wfo_result"]
    if isinstance(wfo, dict) and "dsr" not in wfo:  # a range: one record per partition key
        wfo = list(wfo.values())[-1] if wfo else None
    out = pool_result(pool, last, target, row, checks, capacity=cap, wfo=wfo)
    if reason and out["status"] == "ok":
        out["status"], out["reason"] = "blocked", reason
    return out


def _require_celery(config) -> None:
    """The Celery executor's broker (and a Redis results backend) answer; else a ServiceError (exit code 5)
    naming the server, before any run starts."""
    from jobs.executor import make_celery_app
    from rotation_platform.errors import ServiceError

    celery = config.orchestration.celery
    app = make_celery_app(celery)
    conn = app.connection_for_write()
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same answer
        raise ServiceError(f"orchestration.executor celery: the broker {conn.as_uri()} did not answer "
                           f"({type(exc).__name__}: {exc})", key="orchestration.celery.broker",
                           hint="start RabbitMQ (bash .ci/services.sh start), set orchestration.celery.broker, or "
                                "choose orchestration.executor in_process/multiprocess") from None
    finally:
        conn.release()
    if celery.backend.startswith(("redis://", "rediss://")):
        try:
            app.backend.client.ping()
        except Exception as exc:  # noqa: BLE001
            raise ServiceError(f"orchestration.executor celery: the results backend {app.backend.as_uri()} did not "
                               f"answer ({type(exc).__name__}: {exc})", key="orchestration.celery.backend",
                               hint="start Redis (bash .ci/services.sh start) or set orchestration.celery.backend"
                               ) from None


def _user_error(error):
    """The first error of a step failure's chain that the platform raised on purpose (a
    :class:`~rotation_platform.errors.RotationError`), else the deepest cause; with its exit code."""
    from jobs.cli import EXIT_OTHER, error_classes

    classes = error_classes()
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.cause or getattr(error, "context", None)
    for item in chain:
        if item.cls_name in classes:
            return item, classes[item.cls_name]
    return (chain[-1] if chain else None), EXIT_OTHER


def _error_text(error) -> str:
    """A serialised error's message on one line, without the ``module.Class:`` prefix."""
    import re

    from rotation_platform.errors import one_line

    if error is None:
        return "?"
    text = re.sub(r"^[\w.]*" + re.escape(error.cls_name or "") + r":\s*", "", error.message.strip(), count=1)
    return one_line(text) or error.cls_name


def _failure(result) -> tuple[str, int]:
    """Why a run failed and the exit code of its kind: the failed ERROR checks with their whole summary
    (exit code 1: a fuse), else every step error's whole message (its error's kind)."""
    from jobs.cli import EXIT_OTHER
    from rotation_platform.errors import one_line

    failed: dict[tuple[str, str], list] = {}
    for c in result.get_asset_check_evaluations():  # one per check and partition
        if not c.passed and c.severity.value == "ERROR":
            failed.setdefault((c.asset_key.to_user_string(), c.check_name), []).append(c)
    reasons = []
    code = None
    for (asset, name), items in failed.items():
        more = f" (and {len(items) - 1} more partition(s))" if len(items) > 1 else ""
        reasons.append(f"check {asset}:{name} failed: {one_line(items[0].description or '')}{more}")
        code = EXIT_OTHER
    if not reasons:
        for event in result.all_events:
            if event.is_step_failure:
                error, kind = _user_error(event.event_specific_data.error)
                reasons.append(f"{event.step_key}: {_error_text(error)}")
                code = kind if code is None else code
    skipped = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"]
    made = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    planned = {e.asset_key.path[-1] for e in result.all_events
               if e.event_type_value == "ASSET_MATERIALIZATION_PLANNED" and e.asset_key is not None}
    skipped += [a for a in STEPS if a in planned and a not in made]  # after a failed fuse in the pool chain
    if skipped:
        reasons.append(f"not run: {', '.join(dict.fromkeys(skipped))}")
    return "; ".join(reasons) or "the run failed", EXIT_OTHER if code is None else code


def _failure_reason(result) -> str:
    """Why a run failed (see :func:`_failure`)."""
    return _failure(result)[0]


if __name__ == "__main__":
    sys.exit(main())
