"""Command-line runs are alerted like launched ones: a failing and a succeeding ``python -m jobs.main`` run
each send exactly one message per channel (the loopback DingTalk robot and SMTP server of test_alerts),
and the run-status sensors skip those runs, so nothing is sent twice."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg

from tests.notify.test_alerts import SECRET, SMTP_PASSWORD, TOKEN, _secrets_absent, mailbox, robot  # noqa: F401
from tests.orchestration.conftest import ROOT, SMALL_END, small_env


def _alert_env(tmp_path, robot, mailbox, **extra) -> dict[str, str]:  # noqa: F811 - the fixtures' values
    env = small_env(tmp_path)
    env.update({
        "ROTATION_NOTIFICATIONS__DINGTALK__ENABLED": "true",
        "ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK":
            f"http://127.0.0.1:{robot.server_address[1]}/robot/send?access_token={TOKEN}",
        "ROTATION_NOTIFICATIONS__DINGTALK__SECRET": SECRET,
        "ROTATION_NOTIFICATIONS__EMAIL__ENABLED": "true",
        "ROTATION_NOTIFICATIONS__EMAIL__SMTP_PORT": str(mailbox.port),
        "ROTATION_NOTIFICATIONS__EMAIL__STARTTLS": "false",  # the loopback test server speaks plain SMTP
        "ROTATION_NOTIFICATIONS__EMAIL__RECIPIENTS": "[ops@example.com]",
        "ROTATION_NOTIFICATIONS__EMAIL__PASSWORD": SMTP_PASSWORD,
        **extra,
    })
    return env


def _cli(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.main", "--pools", "EQUITY", "--session", SMALL_END], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def test_failing_and_succeeding_cli_runs_send_one_message_per_channel(tmp_path, robot, mailbox,  # noqa: F811
                                                                      monkeypatch) -> None:
    # a fuse that cannot pass (more effective factors than there are): the pool's run fails
    failing = _cli(_alert_env(tmp_path / "bad", robot, mailbox, ROTATION_FUSES__MIN_EFFECTIVE_FACTORS="999"))
    assert failing.returncode != 0, failing.stdout[-3000:] + failing.stderr[-3000:]
    assert robot.rejected == []
    assert len(robot.messages) == 1 and len(mailbox.messages) == 1, (robot.messages, failing.stdout[-2000:])
    message = robot.messages[0]["markdown"]
    assert message["title"] == f"jobs.main failed: small {SMALL_END}"
    assert "**EQUITY**: failed (run " in message["text"] and "effective_factors" in message["text"]
    _, rcpts, mail = mailbox.messages[0]
    assert rcpts == ["ops@example.com"] and mail["Subject"] == f"[rotation] jobs.main failed: small {SMALL_END}"
    assert mail["X-Rotation-Level"] == "error"
    assert "Alert: dingtalk sent, email sent" in failing.stdout

    # the sensors see the run (same instance) but leave it to the command line: still one message each
    from jobs.sensors import alert_on_failure

    home = tmp_path / "bad" / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in _alert_env(tmp_path / "bad", robot, mailbox).items():
        if key.startswith("ROTATION_"):
            monkeypatch.setenv(key, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        failed_runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert len(failed_runs) == 1 and failed_runs[0].tags["rotation/alerts"] == "jobs.main"
        failure = instance.all_logs(failed_runs[0].run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0]
        ctx = dg.build_run_status_sensor_context(
            sensor_name="alert_on_failure", dagster_instance=instance, dagster_run=failed_runs[0],
            dagster_event=failure.dagster_event).for_run_failure()
        alert_on_failure(ctx)
    assert len(robot.messages) == 1 and len(mailbox.messages) == 1

    succeeding = _cli(_alert_env(tmp_path / "good", robot, mailbox))
    assert succeeding.returncode == 0, succeeding.stdout[-3000:] + succeeding.stderr[-3000:]
    assert len(robot.messages) == 2 and len(mailbox.messages) == 2
    message = robot.messages[1]["markdown"]
    assert message["title"] == f"jobs.main succeeded: small {SMALL_END}"
    assert "**EQUITY**: ok (run " in message["text"] and "**summary**: ok (run " in message["text"]
    assert mailbox.messages[1][2]["X-Rotation-Level"] == "info"

    _secrets_absent(failing.stdout, failing.stderr, succeeding.stdout, succeeding.stderr,
                    json.dumps(robot.messages), *(m[2].as_string() for m in mailbox.messages))


def test_no_alert_when_the_configuration_asks_for_none(tmp_path, robot, mailbox) -> None:  # noqa: F811
    env = _alert_env(tmp_path, robot, mailbox, ROTATION_NOTIFICATIONS__ON_SUCCESS="false")
    proc = _cli(env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert robot.messages == [] and mailbox.messages == [] and "Alert:" not in proc.stdout
