"""Alerts reach real loopback servers: a DingTalk-style robot that verifies the signature and an SMTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.parse
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.notify import DingTalkError, EmailError, Notification, notify_all, send_dingtalk, send_email

TOKEN = "tok-7f3a9c1e5d"
SECRET = "SECc0ffee4242deadbeef"
SMTP_PASSWORD = "smtp-pw-91x"


class RobotServer(ThreadingHTTPServer):
    """Accepts POST /robot/send?access_token=..&timestamp=..&sign=.. like DingTalk, verifying the signature."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _RobotHandler)
        self.messages: list[dict] = []
        self.rejected: list[str] = []


class _RobotHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = {"errcode": 0, "errmsg": "ok"}
        ts = query.get("timestamp", ["0"])[0]
        expected = base64.b64encode(hmac.new(SECRET.encode(), f"{ts}\n{SECRET}".encode(), hashlib.sha256).digest())
        if query.get("access_token") != [TOKEN]:
            answer = {"errcode": 300001, "errmsg": "token is not exist"}
        elif query.get("sign", [""])[0].encode() != expected:
            answer = {"errcode": 310000, "errmsg": "sign not match"}
        elif abs(time.time() * 1000 - int(ts)) > 3_600_000:
            answer = {"errcode": 310000, "errmsg": "timestamp expired"}
        if answer["errcode"] == 0:
            self.server.messages.append(json.loads(body))
        else:
            self.server.rejected.append(answer["errmsg"])
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture()
def robot():
    server = RobotServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def mailbox():
    import socket

    with socket.socket() as probe:  # a free loopback port (aiosmtpd checks readiness by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.port = port
    yield box
    controller.stop()


@pytest.fixture()
def alert_env(robot, mailbox, monkeypatch):
    env = {
        "ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"),
        "ROTATION_NOTIFICATIONS__DINGTALK__ENABLED": "true",
        "ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK":
            f"http://127.0.0.1:{robot.server_address[1]}/robot/send?access_token={TOKEN}",
        "ROTATION_NOTIFICATIONS__DINGTALK__SECRET": SECRET,
        "ROTATION_NOTIFICATIONS__EMAIL__ENABLED": "true",
        "ROTATION_NOTIFICATIONS__EMAIL__SMTP_PORT": str(mailbox.port),
        "ROTATION_NOTIFICATIONS__EMAIL__STARTTLS": "false",  # the loopback test server speaks plain SMTP
        "ROTATION_NOTIFICATIONS__EMAIL__RECIPIENTS": "[ops@example.com, quant@example.com]",
        "ROTATION_NOTIFICATIONS__EMAIL__PASSWORD": SMTP_PASSWORD,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@dg.op
def _explode():
    raise RuntimeError("prices for 2024-10-08 are stale")


@dg.op
def _fine():
    return 1


@dg.job
def failing_job():
    _explode()


@dg.job
def fine_job():
    _fine()


def _secrets_absent(*texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, SECRET, SMTP_PASSWORD):
            assert secret not in text


def test_failure_and_success_sensors_alert_both_channels(alert_env, robot, mailbox, caplog) -> None:
    from jobs.sensors import alert_on_failure, alert_on_success

    caplog.set_level(logging.DEBUG)
    instance = dg.DagsterInstance.ephemeral()
    failed = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not failed.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_failure", dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event()).for_run_failure()
    alert_on_failure(ctx)

    ok = fine_job.execute_in_process(instance=instance)
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_success", dagster_instance=instance, dagster_run=ok.dagster_run,
        dagster_event=ok.get_run_success_event())
    alert_on_success(ctx)

    assert robot.rejected == []
    assert [m["msgtype"] for m in robot.messages] == ["markdown", "markdown"]
    first = robot.messages[0]["markdown"]
    assert first["title"] == "failing_job failed"
    assert "_explode" in first["text"] and failed.run_id in first["text"]
    assert "prices for 2024-10-08 are stale" in first["text"]
    assert "<rotation>" in first["text"] or "rotation" in first["text"]
    assert robot.messages[1]["markdown"]["title"] == "fine_job succeeded"

    assert len(mailbox.messages) == 2
    sender, rcpts, mail = mailbox.messages[0]
    assert rcpts == ["ops@example.com", "quant@example.com"]
    assert mail["Subject"] == "[rotation] failing_job failed" and mail["X-Rotation-Level"] == "error"
    assert failed.run_id in mail.get_payload()

    logs = caplog.text + "".join(json.dumps(m) for m in robot.messages) + \
        "".join(m[2].as_string() for m in mailbox.messages)
    _secrets_absent(logs)


def test_wrong_secret_is_refused_without_leaking(alert_env, robot, monkeypatch) -> None:
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__DINGTALK__SECRET", "SECwrong")
    config = load_config()
    with pytest.raises(DingTalkError, match="errcode 310000 sign not match") as info:
        send_dingtalk(config.notifications.dingtalk, Notification("t", "b"))
    _secrets_absent(str(info.value))
    assert "SECwrong" not in str(info.value)
    assert robot.messages == [] and robot.rejected == ["sign not match"]


def test_unreachable_channels_do_not_raise_or_leak(monkeypatch, caplog) -> None:
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__DINGTALK__ENABLED", "true")
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__DINGTALK__WEBHOOK", f"http://127.0.0.1:9/robot/send?access_token={TOKEN}")
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__DINGTALK__SECRET", SECRET)
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__EMAIL__ENABLED", "true")
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__EMAIL__SMTP_PORT", "9")
    monkeypatch.setenv("ROTATION_NOTIFICATIONS__EMAIL__RECIPIENTS", "[a@example.com]")
    caplog.set_level(logging.DEBUG)
    config = load_config(CONFIG_DIR / "demo.yaml")
    outcome = notify_all(config.notifications, Notification("t", "b", level="error"), timeout=2)
    assert outcome["dingtalk"].startswith("error: DingTalk robot at http://127.0.0.1:9/robot/send unreachable")
    assert outcome["email"].startswith("error: SMTP server 127.0.0.1:9 unreachable")
    _secrets_absent(caplog.text, json.dumps(outcome))


def test_email_errors_name_the_server(mailbox) -> None:
    from rotation_platform.config.models import EmailConfig

    cfg = EmailConfig(enabled=True, smtp_port=mailbox.port, starttls=False, recipients=("x@example.com",),
                      username="bot")
    with pytest.raises(EmailError, match="needs ROTATION_NOTIFICATIONS__EMAIL__PASSWORD"):
        send_email(cfg, Notification("t", "b"))


def test_email_uses_starttls_unless_told_otherwise(mailbox) -> None:
    """STARTTLS is the default: a server that cannot upgrade the connection gets no message (and no
    password); plain SMTP only when the configuration says starttls: false."""
    from rotation_platform.config.models import EmailConfig

    assert EmailConfig().starttls is True
    assert load_config(CONFIG_DIR / "demo.yaml").notifications.email.starttls is True
    cfg = EmailConfig(enabled=True, smtp_port=mailbox.port, recipients=("x@example.com",))
    with pytest.raises(EmailError, match=f"SMTP server 127.0.0.1:{mailbox.port} refused the message"):
        send_email(cfg, Notification("t", "b"))
    assert mailbox.messages == []
    send_email(cfg.model_copy(update={"starttls": False}), Notification("t", "b"))
    assert len(mailbox.messages) == 1


def test_a_fuse_that_stops_a_day_reaches_both_channels(alert_env, robot, mailbox, tmp_path, monkeypatch, caplog) -> None:
    """The daily job with a failing fuse: the alert names the pool, session and check; no secret anywhere."""
    import importlib
    import sys

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROTATION_DATA__SYNTHETIC__END", "2024-12-31")
    monkeypatch.setenv("ROTATION_FUSES__MIN_EFFECTIVE_FACTORS", "11")  # the screen keeps at most 10
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    defs = importlib.import_module("definitions").defs
    from assets.partitions import pool_session_key
    from jobs.sensors import alert_on_failure

    instance = dg.DagsterInstance.ephemeral()
    failed = defs.resolve_job_def("daily").execute_in_process(
        partition_key=pool_session_key("QDII", "2024-12-31"), instance=instance, raise_on_error=False)
    assert not failed.success
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_failure", dagster_instance=instance, dagster_run=failed.dagster_run,
        dagster_event=failed.get_run_failure_event()).for_run_failure()
    alert_on_failure(ctx)
    assert robot.rejected == [] and len(robot.messages) == 1 and len(mailbox.messages) == 1
    text = robot.messages[0]["markdown"]["text"]
    assert "QDII|2024-12-31" in text
    assert "factor_screen:effective_factors" in text and "TOO FEW FACTORS" in text
    mail = mailbox.messages[0][2]
    assert "factor_screen:effective_factors" in mail.get_payload()
    metadata = json.dumps([str(e.event_specific_data) for e in failed.all_events if e.event_specific_data])
    _secrets_absent(caplog.text, text, mail.as_string(), metadata)
