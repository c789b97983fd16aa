"""The alert of a command-line run (``python -m jobs.main``): one message per channel for the whole run.

The run-status sensors (``jobs.sensors``) alert runs launched through Dagster (the UI, the schedule, the
summary sensor, ``dagster job launch``). They never see the command line's runs: those execute in
process and carry no code-location origin, and a run-status sensor only matches runs of its own code
location. So the command line sends its alert itself, after its runs, through the same channels
(:func:`~rotation_platform.notify.message.notify_all`), and tags its runs with :data:`CLI_ALERT_TAG`;
the sensors skip runs with that tag, so a run is alerted once even if a sensor is set to watch every
code location.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rotation_platform.config.models import NotificationConfig
from rotation_platform.notify.message import Notification, notify_all

__all__ = ["CLI_ALERT_TAG", "CLI_ALERT_VALUE", "CLI_RUN_TAG", "cli_run_notification", "notify_cli_run"]

#: run tag of the command line's runs: their alert is sent by the command line, not by the sensors
CLI_ALERT_TAG = "rotation/alerts"
CLI_ALERT_VALUE = "jobs.main"
#: run tag with the id of the command-line invocation (the same on each pool's run and the summary's)
CLI_RUN_TAG = "rotation/cli_run"


def cli_run_notification(*, config_name: str, config_file: str | None, span: str, pools: Sequence[str],
                         failed: Mapping[str, str], run_ids: Mapping[str, str], cli_run: str,
                         degraded: Sequence[str] = ()) -> Notification:
    """One notification for a command-line run: its status, each pool's (and the summary's) outcome with
    the Dagster run id, why it failed and any degraded service."""
    ok = not failed
    title = f"jobs.main {'succeeded' if ok else 'failed'}: {config_name} {span}"
    lines = []
    for name in [*pools, "summary"]:
        run = run_ids.get(name)
        where = f" (run {run})" if run else ""
        if name in failed:
            lines.append(f"- **{name}**: failed{where}: {failed[name].strip()[:600]}")
        elif run:
            lines.append(f"- **{name}**: ok{where}")
        else:
            lines.append(f"- **{name}**: not run")
    body = ("All steps and blocking checks passed." if ok else
            f"{len(failed)} of {len(pools) + 1} runs failed.") + "\n\n" + "\n".join(lines)
    if degraded:
        body += "\n\n**Degraded service**\n" + "\n".join(f"- {line.removeprefix('degraded: ')}" for line in degraded)
    fields = {"job": "jobs.main", "config": config_name, "session": span, "cli_run": cli_run}
    if config_file:
        fields["config_file"] = config_file
    level = "error" if not ok else ("warning" if degraded else "info")
    return Notification(title=title, body=body[:4000], level=level, fields=fields)


def notify_cli_run(config: NotificationConfig, notification: Notification, *,
                   timeout: float = 10.0) -> dict[str, str]:
    """Send ``notification`` when the configuration asks for it (``notifications.on_failure`` for a failed
    run, ``on_success`` otherwise); ``channel -> "sent" | "error: ..."``, empty when not asked."""
    wanted = config.on_failure if notification.level == "error" else config.on_success
    if not wanted:
        return {}
    return notify_all(config, notification, timeout=timeout)
