"""JSON logs carry the context fields and no secret: a real pool-chain run with the JSON log file on, and
the redaction processor on its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from rotation_platform.observability import logs
from tests.orchestration.conftest import QUIET, ROOT, fresh_defs, small_env, write_small_config

FIELDS = ("timestamp", "level", "logger", "event", "run_id", "pool", "session", "asset", "step")
MYSQL_PASSWORD = "marker-Mysql7Q"
URL_PASSWORD = "marker-UrlPw3Z"
PEPPER = "marker-Pepper9K"
DINGTALK_SECRET = "marker-Ding4Secret"
MARKERS = (MYSQL_PASSWORD, URL_PASSWORD, PEPPER, DINGTALK_SECRET, "marker-")
SECRET_ENV = {
    "ROTATION_STORAGE__MYSQL_PASSWORD": MYSQL_PASSWORD,
    "ROTATION_API_DAGSTER_URL": f"http://operator:{URL_PASSWORD}@127.0.0.1:1/graphql",
    "ROTATION_API_PEPPER": PEPPER,
    "ROTATION_NOTIFICATIONS__DINGTALK__SECRET": DINGTALK_SECRET,
}


def _records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]  # every line is one JSON object


@pytest.fixture()
def restore_logging():
    """The root logger as it was: the tests install the platform's handlers and take them away after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in logs.installed_handlers():
        root.removeHandler(handler)
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._state.clear()


def test_a_pool_chain_run_logs_json_lines_with_its_context_and_no_secret(tmp_path, monkeypatch,
                                                                          restore_logging) -> None:
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "data")
    log_file = tmp_path / "logs" / "run.jsonl"
    monkeypatch.setenv("ROTATION_CONFIG", str(path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ROTATION_LOG_FILE", str(log_file))
    monkeypatch.delenv("ROTATION_LOG_FORMAT", raising=False)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "home").mkdir()
    defs = fresh_defs()

    # library code inside the step logs through the standard module, an exception with secrets included
    import rotation_platform.production.pool_run as pool_run_module

    original = pool_run_module.PoolRun.run_metadata
    library_log = logging.getLogger("rotation_platform.production.test_probe")

    def run_metadata(self, day, generated_at=None):
        library_log.info("metadata of %s for %s", day.date(), self.pool.name)
        try:
            raise ConnectionError(f"could not log in with {MYSQL_PASSWORD} to "
                                  f"mysql+pymysql://rotation:{URL_PASSWORD}@db:3306/rotation (pepper {PEPPER})")
        except ConnectionError:
            library_log.exception("store login failed, password=%s secret %s", MYSQL_PASSWORD, DINGTALK_SECRET)
        return original(self, day, generated_at)

    monkeypatch.setattr(pool_run_module.PoolRun, "run_metadata", run_metadata)

    from assets.partitions import pool_session_key

    result = defs.resolve_job_def("daily").execute_in_process(
        partition_key=pool_session_key("EQUITY", "2025-09-26"), instance=dg.DagsterInstance.ephemeral(),
        run_config=QUIET)
    assert result.success

    text = log_file.read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text, f"{marker} appears in the log file"
    records = _records(log_file)
    for record in records:
        assert set(FIELDS) <= set(record), record
        assert record["timestamp"].endswith("Z") and "T" in record["timestamp"]

    in_step = [r for r in records if r["step"] is not None]
    assert in_step, "no record was logged inside a step"
    for record in in_step:
        assert record["run_id"] == result.run_id
        assert record["step"] == "pool_chain"
        assert record["pool"] == "EQUITY"
        assert record["session"] == "2025-09-26"

    probes = [r for r in records if r["logger"] == "rotation_platform.production.test_probe"]
    assert {r["level"] for r in probes} == {"info", "error"}
    info = next(r for r in probes if r["level"] == "info")
    assert info["event"] == "metadata of 2025-09-26 for EQUITY"
    assert info["asset"] in {"prices", "factor_panel", "factor_screen", "wfo_result", "backtest",
                             "capacity_report", "target_portfolio"}
    error = next(r for r in probes if r["level"] == "error")
    assert error["event"] == "store login failed, password=*** secret ***"
    assert "ConnectionError: could not log in with *** to mysql+pymysql://rotation:***@db:3306/rotation (pepper ***)" \
        in error["exception"]

    # the step's Dagster log reaches the JSON lines too, and Dagster's own event log is unchanged
    dagster_records = [r for r in in_step if r["logger"] == "dagster"]
    assert any(r["dagster_event"] == "ASSET_MATERIALIZATION" and r["asset"] == "target_portfolio"
               for r in dagster_records), dagster_records[:5]
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"prices", "target_portfolio"} <= materialised
    assert all(e.step_key == "pool_chain" for e in result.all_events if e.step_key)


def test_the_command_line_keeps_its_console_and_writes_json_lines_to_the_file(tmp_path) -> None:
    """``python -m jobs.main``: stdout and stderr say what they said without the log settings; the file
    gets the JSON lines, without the secrets of the environment."""
    env = small_env(tmp_path)
    env.update(SECRET_ENV)
    env.pop("ROTATION_LOG_FORMAT", None)
    env.pop("ROTATION_LOG_FILE", None)
    command = [sys.executable, "-m", "jobs.main", "--pools", "OVERSEAS", "--session", "2025-09-26"]
    plain = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert plain.returncode == 0, plain.stderr
    log_file = tmp_path / "run.jsonl"
    logged = subprocess.run(command, cwd=ROOT, env={**env, "ROTATION_LOG_FILE": str(log_file)},
                            capture_output=True, text=True, timeout=600, check=False)
    assert logged.returncode == 0, logged.stderr
    assert logged.stderr == plain.stderr
    assert "OVERSEAS" in logged.stdout and "{" not in logged.stderr
    records = _records(log_file)
    assert all(set(FIELDS) <= set(r) for r in records)
    in_step = [r for r in records if r["step"] == "pool_chain"]
    assert in_step and {(r["pool"], r["session"]) for r in in_step} == {("OVERSEAS", "2025-09-26")}
    assert len({r["run_id"] for r in in_step}) == 1
    text = log_file.read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text


def test_a_wrong_log_format_is_a_configuration_error(tmp_path) -> None:
    env = small_env(tmp_path)
    env["ROTATION_LOG_FORMAT"] = "xml"
    done = subprocess.run([sys.executable, "-m", "jobs.main", "--pools", "OVERSEAS"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "ROTATION_LOG_FORMAT" in done.stderr and "'xml' is not one of json, console" in done.stderr


def _answered(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:  # an answer all the same (401, 503 ...)
        return exc.code
    except OSError:
        return None


def test_the_api_writes_json_lines_access_log_included_without_secrets(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = small_env(tmp_path)
    env.update(SECRET_ENV)
    env.pop("ROTATION_LOG_FORMAT", None)
    env.update({"ROTATION_API_KEYS_FILE": str(tmp_path / "keys.json"),
                "ROTATION_API_AUDIT_LOG": str(tmp_path / "a.jsonl"), "ROTATION_LOG_FILE": str(tmp_path / "api.jsonl")})
    console = open(tmp_path / "api.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env, stdout=console,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while _answered(f"http://127.0.0.1:{port}/health") is None:
            assert proc.poll() is None, (tmp_path / "api.err").read_text()[-3000:]
            assert time.time() < deadline, "the API did not answer /health within 90s"
            time.sleep(0.5)
        assert _answered(f"http://127.0.0.1:{port}/v1/pools?api_key={PEPPER}&page=1") is not None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        console.close()
    for name in ("api.jsonl", "api.err"):  # the file, and standard error (json by default)
        text = (tmp_path / name).read_text(encoding="utf-8")
        for marker in MARKERS:
            assert marker not in text, f"{marker} appears in {name}"
        records = _records(tmp_path / name)
        assert all(set(FIELDS) <= set(r) for r in records)
        access = [r for r in records if r["logger"] == "uvicorn.access"]
        assert [r["path"] for r in access if r["path"].startswith("/v1/")] == ["/v1/pools?api_key=***&page=1"]
        assert any(r["path"] == "/health" and r["method"] == "GET" for r in access)
        assert all(r["run_id"] is None and r["pool"] is None for r in access)


# ------------------------------------------------------------------------------------- the processor
def test_redaction_masks_secret_keys_environment_secrets_and_url_passwords(monkeypatch) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROTATION_API_KEYS_FILE", "/srv/keys.json")      # a file name, not a secret
    monkeypatch.setenv("ROTATION_STORAGE__INFLUX_TOKEN", "abc")          # too short to search for
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "marker-Pg5Pass")
    event = {
        "event": f"connect to postgresql://dagster:{URL_PASSWORD}@pg/db with {PEPPER} and marker-Pg5Pass",
        "logger": "x", "level": "info", "run_id": None, "pool": "EQUITY",
        "password": "hunter22", "api_key": "k-123", "Authorization": "Bearer abcdefghijkl",
        "mysql_password": None,
        "details": {"token": "t0k3n", "hosts": [f"redis://:{URL_PASSWORD}@r:6379", "plain"], "count": 3},
        "exception": f"Traceback ...\nValueError: bad pepper {PEPPER}; webhook "
                     "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef&timestamp=1",
        "path": "/srv/keys.json",
    }
    out = logs.redact(None, "info", event)
    assert out["event"] == "connect to postgresql://dagster:***@pg/db with *** and ***"
    assert out["password"] == out["api_key"] == out["Authorization"] == "***"
    assert out["mysql_password"] is None          # nothing to hide: stays null
    assert out["details"] == {"token": "***", "hosts": ["redis://:***@r:6379", "plain"], "count": 3}
    assert out["exception"] == ("Traceback ...\nValueError: bad pepper ***; webhook "
                                "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1")
    assert out["pool"] == "EQUITY" and out["path"] == "/srv/keys.json" and out["logger"] == "x"
    assert "abc" not in logs.environment_secrets()


def test_redact_text_alone() -> None:
    assert logs.redact_text("user=a password=s3cr3t, next", secrets=[]) == "user=a password=***, next"
    assert logs.redact_text("amqp://guest:guest-pw@mq:5672//", secrets=[]) == "amqp://guest:***@mq:5672//"
    assert logs.redact_text("value XYZW and XYZW", secrets=["XYZW"]) == "value *** and ***"
    assert logs.redact_text("no secret here: 42 funds", secrets=[]) == "no secret here: 42 funds"


def test_every_record_carries_the_context_fields(restore_logging, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ROTATION_LOG_FORMAT", raising=False)
    log_file = tmp_path / "unit.jsonl"
    logs.configure(default="message", file=log_file)
    log = logging.getLogger("rotation_platform.unit")
    log.warning("outside")
    with logs.log_context(run_id="r-1", pool="EQUITY", session="2025-09-26"):
        log.info("inside %d", 1, extra={"funds": 8})
        with logs.log_context(asset="prices", step="pool_chain"):
            log.info("nested")
        log.info("after")
    first, inside, nested, after = _records(log_file)
    assert [first[k] for k in ("level", "logger", "event", "run_id", "pool")] == \
        ["warning", "rotation_platform.unit", "outside", None, None]
    assert (inside["event"], inside["run_id"], inside["pool"], inside["funds"], inside["asset"]) == \
        ("inside 1", "r-1", "EQUITY", 8, None)
    assert (nested["asset"], nested["step"], nested["session"]) == ("prices", "pool_chain", "2025-09-26")
    assert (after["asset"], after["step"], after["pool"]) == (None, None, "EQUITY")
    assert list(first)[:9] == list(FIELDS)
