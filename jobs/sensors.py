"""Run-status sensors that send alerts (DingTalk, e-mail) for the platform's jobs.

``definitions.build_defs`` builds them for its config (:func:`build_alert_sensors`); the module-level
ones read the environment's config at each evaluation.

Runs of the command line (``python -m jobs.main``) are not alerted here: they execute in process, have no
code-location origin, and a run-status sensor matches only runs of its own code location
(``dagster._core.definitions.run_status_sensor_definition``); the command line sends their alert itself
and tags them ``rotation/alerts=jobs.main`` (:mod:`rotation_platform.notify.runs`), which these sensors
skip, so no run is alerted twice even with ``monitor_all_code_locations``.
"""

from __future__ import annotations

import dagster as dg

from rotation_platform.config import load_config
from rotation_platform.notify import CLI_ALERT_TAG, DegradedService, Notification, notify_all


def _run_fields(run: dg.DagsterRun) -> dict[str, str]:
    fields = {"job": run.job_name, "run": run.run_id}
    for tag in ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"):
        if tag in run.tags:
            fields[tag.split("/")[-1]] = run.tags[tag]
    return fields


def failure_notification(run: dg.DagsterRun, message: str) -> Notification:
    return Notification(title=f"{run.job_name} failed", body=message.strip()[:2000] or "the run failed",
                        level="error", fields=_run_fields(run))


def success_notification(run: dg.DagsterRun, degraded: list[str] | None = None) -> Notification:
    body = "All steps and blocking checks passed."
    if degraded:
        body += "\n\n**Degraded service**\n" + "\n".join(f"- {line.removeprefix('degraded: ')}" for line in degraded)
    return Notification(title=f"{run.job_name} succeeded", body=body, level="warning" if degraded else "info",
                        fields=_run_fields(run))


def alerted_by_cli(run: dg.DagsterRun) -> bool:
    """The command line alerts this run itself (see :mod:`rotation_platform.notify.runs`)."""
    return CLI_ALERT_TAG in run.tags


def degraded_service(instance: dg.DagsterInstance, run_ids: list[str]) -> DegradedService:
    """What the runs worked around: steps retried (``STEP_UP_FOR_RETRY``), a store's retries and the
    cache bypassed while Redis was down (their warnings), servers that failed a health check (the
    outputs' ``storage_health`` / ``cache`` metadata)."""
    import logging

    found = DegradedService()
    for run_id in run_ids:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                if record.level >= logging.WARNING:
                    found.add_warning(record.user_message)
                continue
            if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
                error = getattr(event.event_specific_data, "error", None)
                while error is not None and error.cause is not None:
                    error = error.cause
                reason = error.message.strip().splitlines()[0] if error is not None and error.message.strip() else ""
                found.add_step_retry(event.step_key or "?", reason)
            elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                metadata = event.event_specific_data.materialization.metadata
                found.add_metadata({k: getattr(v, "value", v) for k, v in metadata.items()
                                    if k in ("cache", "storage_health")})
    return found


def _step_errors(context: dg.RunFailureSensorContext) -> str:
    """The first line of each failed step's error (e.g. a blocking check that failed)."""
    lines = []
    records = context.instance.all_logs(context.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for record in records[:10]:
        event = record.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
            error = error.cause
        if error is not None:
            first = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
            lines.append(f"- `{event.step_key}`: {first}")
    return ("\n\n" + "\n".join(lines)) if lines else ""


def _failed_checks(context: dg.RunFailureSensorContext) -> str:
    """The checks of the run that failed, with their one-line summary (e.g. a fuse that stopped the day)."""
    failed: dict[tuple[str, str, str], list] = {}  # checks are per partition: one line per check
    records = context.instance.all_logs(context.dagster_run.run_id,
                                        of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    for record in records:
        evaluation = record.dagster_event.event_specific_data if record.dagster_event else None
        if evaluation is None or evaluation.passed:
            continue
        severity = getattr(evaluation.severity, "value", str(evaluation.severity))
        failed.setdefault((evaluation.asset_key.to_user_string(), evaluation.check_name, severity), []).append(
            evaluation)
    lines = []
    for (asset, name, severity), items in failed.items():
        more = f" (and {len(items) - 1} more partition(s))" if len(items) > 1 else ""
        lines.append(f"- check `{asset}:{name}` ({severity}): {(items[0].description or '').strip()[:300]}{more}")
    return ("\n\n**Failed checks**\n" + "\n".join(lines[:10])) if lines else ""


def _report(context, outcome: dict[str, str]) -> None:
    for channel, result in outcome.items():
        (context.log.info if result == "sent" else context.log.warning)(f"alert via {channel}: {result}")


def build_alert_sensors(config_path: str | None = None) -> list[dg.SensorDefinition]:
    """The alert sensors for the config at ``config_path`` (None: the environment's at each evaluation)."""

    @dg.run_failure_sensor(name="alert_on_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                           description="Sends a DingTalk message and an e-mail when a run fails.")
    def alert_on_failure(context: dg.RunFailureSensorContext):
        config = load_config(config_path)
        if not config.notifications.on_failure or alerted_by_cli(context.dagster_run):
            return
        text = (context.failure_event.message or "") + _failed_checks(context) + _step_errors(context)
        _report(context, notify_all(config.notifications, failure_notification(context.dagster_run, text)))

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="alert_on_success",
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Sends a DingTalk message and an e-mail when a run succeeds.")
    def alert_on_success(context: dg.RunStatusSensorContext):
        config = load_config(config_path)
        if not config.notifications.on_success or alerted_by_cli(context.dagster_run):
            return
        degraded = degraded_service(context.instance, [context.dagster_run.run_id]).lines()
        _report(context, notify_all(config.notifications, success_notification(context.dagster_run, degraded)))

    return [alert_on_failure, alert_on_success]


ALERT_SENSORS = build_alert_sensors()
alert_on_failure, alert_on_success = ALERT_SENSORS


# ------------------------------------------------------------------------------ command-line runs
def cli_runs(instance: dg.DagsterInstance, cli_run: str) -> dict[str, str]:
    """The Dagster runs of one command-line invocation (tag ``rotation/cli_run``): pool (or ``summary``)
    -> run id, in the order they ran."""
    from jobs.daily import SUMMARY_JOB
    from rotation_platform.notify import CLI_RUN_TAG

    out: dict[str, str] = {}
    records = instance.get_run_records(filters=dg.RunsFilter(tags={CLI_RUN_TAG: cli_run}))
    for run in [r.dagster_run for r in sorted(records, key=lambda r: (r.create_timestamp, r.dagster_run.run_id))]:
        if run.job_name == SUMMARY_JOB:  # the other runs are a calendar group's daily job (daily, daily_xnys)
            out["summary"] = run.run_id
            continue
        pool = run.tags.get("dagster/partition/pool") or \
            str(run.tags.get("dagster/asset_partition_range_start", "")).split("|")[0]
        out[pool or run.run_id] = run.run_id
    return out


def alert_cli_run(config_path: str | None, *, cli_run: str, span: str, pools: list[str], failed: dict[str, str],
                  runs: dict[str, str], degraded: list[str]) -> dict[str, str]:
    """Send the alert of a command-line run (one message per channel for the whole invocation) through
    the channels the configuration enables; ``channel -> "sent" | "error: ..."``."""
    from rotation_platform.notify import cli_run_notification, notify_cli_run

    config = load_config(config_path)
    notification = cli_run_notification(config_name=config.name, config_file=config_path, span=span, pools=pools,
                                        failed=failed, run_ids=runs, cli_run=cli_run, degraded=degraded)
    return notify_cli_run(config.notifications, notification)
