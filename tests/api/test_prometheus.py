"""Prometheus: the alert rules pass ``promtool check rules`` and their unit tests, and a real Prometheus
server (started by ``.ci/services.sh``, 127.0.0.1:19090 or ``ROTATION_CI_PROMETHEUS_URL``) scrapes the API
-- served by ``python -m api`` in its own process -- and answers a PromQL query for each metric."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.api.conftest import wait_until
from tests.orchestration.conftest import ROOT
from tests.ui.services import free_port

RULES = ROOT / "deploy" / "prometheus"
PROMETHEUS = os.environ.get("ROTATION_CI_PROMETHEUS_URL", "http://127.0.0.1:19090")
HINT = "start it with `bash .ci/services.sh start` (installs Debian's prometheus package)"
POOL_METRICS = ("rotation_data_sessions_behind", "rotation_data_latest_session_timestamp_seconds",
                "rotation_factor_coverage", "rotation_effective_factors", "rotation_strategy_sharpe",
                "rotation_strategy_max_drawdown", "rotation_capacity_utilisation",
                "rotation_target_published_timestamp_seconds", "rotation_target_session_timestamp_seconds",
                "rotation_target_sessions_behind", "rotation_target_due_timestamp_seconds")


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(f"promtool is not installed; {HINT}", pytrace=False)
    return tool


def test_promtool_checks_the_rules():
    out = subprocess.run([_promtool(), "check", "rules", "rules.yml"], cwd=RULES, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 8 rules found" in out.stdout + out.stderr


def test_promtool_unit_tests_the_rules():
    out = subprocess.run([_promtool(), "test", "rules", "rules_test.yml"], cwd=RULES, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {t["alertname"] for case in yaml.safe_load((RULES / "rules_test.yml").read_text())["tests"]
              for t in case["alert_rule_test"]}
    defined = {r["alert"] for g in yaml.safe_load((RULES / "rules.yml").read_text())["groups"] for r in g["rules"]}
    assert tested == defined  # every alert has a unit test


def _get(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _query(expr: str) -> list[dict]:
    got = _get(f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert got["status"] == "success", got
    return got["data"]["result"]


@pytest.fixture()
def served_api(demo_store, tmp_path):
    """``python -m api`` on a free loopback port over the demo store (stopped by its process group)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update(demo_store["env"])
    env.update({"ROTATION_API_KEYS_FILE": str(tmp_path / "keys.json"), "ROTATION_API_AUDIT_LOG": str(tmp_path / "a.jsonl"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    log = open(tmp_path / "api.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)

    def up():
        if proc.poll() is not None:
            raise AssertionError("the API exited:\n" + (tmp_path / "api.log").read_text()[-3000:])
        try:
            return _get(f"http://127.0.0.1:{port}/health", timeout=2)
        except OSError:
            return None

    try:
        wait_until(up, "the API did not answer /health", 90)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@contextlib.contextmanager
def scraped(port: int) -> Iterator[str]:
    """For the block, the live Prometheus scrapes the API on ``port`` as a target of its own (a file of the
    ``rotation-api`` job's file_sd folder) labelled ``test_run``; yields that label's value."""
    try:
        config = yaml.safe_load(_get(f"{PROMETHEUS}/api/v1/status/config")["data"]["yaml"])
    except OSError as exc:
        pytest.fail(f"Prometheus is not answering at {PROMETHEUS} ({exc}); {HINT}", pytrace=False)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "rotation-api")
    targets = Path(job["file_sd_configs"][0]["files"][0]).parent
    run = uuid.uuid4().hex[:12]
    target = targets / f"test-{run}.json"
    staged = targets / f".test-{run}.json.tmp"  # renamed into place: Prometheus never reads half a file
    staged.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"test_run": run}}]))
    staged.replace(target)
    try:
        yield run
    finally:
        target.unlink(missing_ok=True)


def test_prometheus_scrapes_the_api_and_answers_promql(served_api):
    with scraped(served_api) as run:
        sel = f'{{test_run="{run}"}}'
        wait_until(lambda: [r for r in _query(f"up{sel}") if r["value"][1] == "1"], "Prometheus did not scrape the API", 90)
        wait_until(lambda: _query(f"rotation_strategy_sharpe{sel}"), "no stored-results metrics scraped", 60)
        for name in POOL_METRICS:
            pools = {r["metric"]["pool"] for r in _query(f"{name}{sel}")}
            assert pools == {"A_SHARE", "QDII", "OTHER"}, name
        assert _query(f'rotation_data_sessions_behind{{test_run="{run}",pool="A_SHARE"}} > 0')  # the demo end is fixed
        assert float(_query(f'rotation_effective_factors{{test_run="{run}",pool="QDII"}}')[0]["value"][1]) >= 8
        fuses = _query(f'rotation_fuse_passed{{test_run="{run}",severity="ERROR"}}')
        assert len(fuses) >= 3 * 9 and all(r["value"][1] == "1" for r in fuses)
        assert _query(f'rotation_fuse_passed{{test_run="{run}",check="sharpe_threshold",pool="A_SHARE"}} == 0')
        assert {r["metric"]["pool"] for r in _query(f'rotation_pool_status{{test_run="{run}",status="ok"}} == 1')} == \
            {"A_SHARE", "QDII", "OTHER"}
        assert _query(f'rotation_store_up{{test_run="{run}",backend="local"}} == 1')
        assert _query(f"rotation_dagster_failed_runs_24h{sel}")
        # runs and steps from the instance's run records: the demo's three daily runs and the summary
        assert {r["metric"]["pool"] for r in _query(f'rotation_dagster_run_duration_seconds{{test_run="{run}",'
                                                    'dagster_job="daily"} > 0')} == {"A_SHARE", "QDII", "OTHER"}
        assert _query(f'sum(rotation_dagster_runs_24h{{test_run="{run}",status="SUCCESS"}}) >= 4')
        assert _query(f'rotation_dagster_step_duration_seconds{{test_run="{run}",step="pool_chain"}} > 0')
        assert _query(f'sum(rotation_dagster_step_failures_24h{sel}) == 0')
        assert _query(f'sum(rotation_dagster_step_retries_24h{sel}) == 0')
        # the store layer's counts: the API's own reads (and what the runs left in the data folder)
        wait_until(lambda: _query(f'rotation_store_operations_total{{test_run="{run}",backend="local",op="read"}} > 0'),
              "no store counts scraped", 30)
        assert _query(f'rotation_store_bytes_total{{test_run="{run}",backend="local",op="read"}} > 0')
        assert _query(f'rotation_store_errors_total{{test_run="{run}",backend="local",op="read"}} == 0')
        assert _query(f'histogram_quantile(0.9, sum by (le) (rotation_store_operation_seconds_bucket{{'
                      f'test_run="{run}",op="read"}})) > 0')
        assert _query(f"rotation_cache_hits_total{sel}") and _query(f"rotation_cache_misses_total{sel}")
        # a request is counted when its answer has gone: the scrapes after the first show the earlier ones
        wait_until(lambda: _query(f'rotation_api_requests_total{{test_run="{run}",route="/metrics"}} > 0'),
              "the API's own request counts were not scraped", 30)
        assert _query(f'rotation_api_request_duration_seconds_count{{test_run="{run}",route="/metrics"}} > 0')
        # the rules Prometheus loaded fire on these series: the demo's data is behind, its targets too
        alerts = wait_until(lambda: [a for a in _get(f"{PROMETHEUS}/api/v1/alerts")["data"]["alerts"]
                                if a["labels"].get("test_run") == run and a["labels"]["alertname"] == "TargetNotPublished"],
                       "TargetNotPublished did not fire", 30)
        assert {a["labels"]["pool"] for a in alerts} == {"A_SHARE", "QDII", "OTHER"}
