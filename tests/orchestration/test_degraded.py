"""Degraded service shows on the console: Redis down (the cache bypassed), a store's retries, a step retried."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import dagster as dg

from jobs.sensors import degraded_service
from rotation_platform.notify import DegradedService
from rotation_platform.storage.base import RetryPolicy, call_with_retries
from rotation_platform.storage.cache import RedisCache
from tests.orchestration.conftest import ROOT, SMALL_END, small_env


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_warnings_of_the_cache_and_the_stores_become_one_line_per_server() -> None:
    port = _closed_port()
    logger = logging.getLogger("test_degraded")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", namespace="t", logger=logger)
        assert cache.get("k") is None and cache.get("k") is None  # the second is skipped: one warning
        attempts = iter([ConnectionError("refused"), ConnectionError("refused"), None])

        def flaky():
            exc = next(attempts)
            if exc:
                raise exc
            return 1

        assert call_with_retries(flaky, policy=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0),
                                 transient=lambda e: isinstance(e, ConnectionError), server="MySQL 127.0.0.1:3306",
                                 action="write prices", logger=logger) == 1
    finally:
        logger.removeHandler(handler)
    found = DegradedService()
    for message in handler.messages:
        found.add_warning(message)
    found.add_metadata({"storage_health": [{"backend": "redis", "server": f"Redis redis://127.0.0.1:{port}/0",
                                            "ok": False, "detail": "no answer"},
                                           {"backend": "local", "server": "/data", "ok": True, "detail": "ok"}]})
    lines = found.lines()
    assert len(lines) == 2, lines  # the health entry of the same Redis adds nothing
    assert lines[0].startswith(f"degraded: Redis redis://127.0.0.1:{port}/0 did not answer (ConnectionError")
    assert lines[0].endswith("the cache was bypassed and every value came from the store")
    assert lines[1] == "degraded: MySQL 127.0.0.1:3306 needed 2 retries (write prices: ConnectionError: refused)"
    assert DegradedService().lines() == [] and not DegradedService()


def test_a_step_retried_by_dagster_is_degraded_service() -> None:
    tries = {"n": 0}

    @dg.op(retry_policy=None)
    def shaky(context):
        tries["n"] += 1
        if tries["n"] == 1:
            raise dg.RetryRequested(max_retries=1, seconds_to_wait=0) from ConnectionError("MySQL went away")
        return 1

    @dg.job
    def retried():
        shaky()

    instance = dg.DagsterInstance.ephemeral()
    result = retried.execute_in_process(instance=instance)
    assert result.success and tries["n"] == 2
    assert degraded_service(instance, [result.run_id]).lines() == [
        "degraded: step shaky was retried 1 time after: ConnectionError: MySQL went away"]


def test_cli_run_with_redis_down_prints_degraded_and_succeeds(tmp_path) -> None:
    env = small_env(tmp_path)
    port = _closed_port()
    env.update({"ROTATION_STORAGE__REDIS_CACHE": "true", "ROTATION_STORAGE__REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    proc = subprocess.run([sys.executable, "-m", "jobs.main", "--pools", "EQUITY", "--session", SMALL_END], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    degraded = [line for line in proc.stdout.splitlines() if line.startswith("degraded:")]
    assert len(degraded) == 1, proc.stdout[-3000:]
    assert degraded[0].startswith(f"degraded: Redis redis://127.0.0.1:{port}/0 did not answer (")
    assert "the cache was bypassed" in degraded[0]
    report = proc.stdout.index(f"Session {SMALL_END}")
    assert proc.stdout.index(degraded[0]) < report  # printed with the report, before it
    assert list((tmp_path / "data" / "target_portfolio" / "EQUITY").glob(f"{SMALL_END}.*"))
