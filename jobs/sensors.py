"""Run-status sensors that send alerts (DingTalk, e-mail) for the platform's jobs.

``definitions.build_defs`` builds them for its config (:func:`build_alert_sensors`); the module-level
ones read the environment's config at each evaluation.
"""

from __future__ import annotations

import dagster as dg

from rotation_platform.config import load_config
from rotation_platform.notify import Notification, notify_all


def _run_fields(run: dg.DagsterRun) -> dict[str, str]:
    fields = {"job": run.job_name, "run": run.run_id}
    for tag in ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"):
        if tag in run.tags:
            fields[tag.split("/")[-1]] = run.tags[tag]
    return fields


def failure_notification(run: dg.DagsterRun, message: str) -> Notification:
    return Notification(title=f"{run.job_name} failed", body=message.strip()[:2000] or "the run failed",
                        level="error", fields=_run_fields(run))


def success_notification(run: dg.DagsterRun) -> Notification:
    return Notification(title=f"{run.job_name} succeeded", body="All steps and blocking checks passed.",
                        level="info", fields=_run_fields(run))


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
        if not config.notifications.on_failure:
            return
        text = (context.failure_event.message or "") + _failed_checks(context) + _step_errors(context)
        _report(context, notify_all(config.notifications, failure_notification(context.dagster_run, text)))

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name="alert_on_success",
                          default_status=dg.DefaultSensorStatus.RUNNING,
                          description="Sends a DingTalk message and an e-mail when a run succeeds.")
    def alert_on_success(context: dg.RunStatusSensorContext):
        config = load_config(config_path)
        if not config.notifications.on_success:
            return
        _report(context, notify_all(config.notifications, success_notification(context.dagster_run)))

    return [alert_on_failure, alert_on_success]


ALERT_SENSORS = build_alert_sensors()
alert_on_failure, alert_on_success = ALERT_SENSORS
