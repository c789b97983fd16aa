"""The Grafana dashboard (``deploy/grafana/rotation.json``): every panel query names metrics the API
exposes and is valid PromQL, checked against the live Prometheus (``.ci/services.sh``) after it scraped
the API served over the demo store (as in ``tests/api/test_prometheus.py``)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse


from tests.api.conftest import demo_store  # noqa: F401 - the fixture the served API reads
from tests.api.conftest import wait_until
from tests.api.test_prometheus import PROMETHEUS, _get, _query, scraped, served_api  # noqa: F401
from tests.orchestration.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "rotation.json"
# what Grafana puts in place of its variables before it sends a query
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$pool": ".*"}
METRIC = re.compile(r"\b(rotation_[a-z0-9_]+)\b")


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out += [p] if p.get("type") != "row" else p.get("panels", [])
    return out


def _exprs(dash: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _panels(dash) for t in p.get("targets", [])]


def _expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown variable in {expr!r}"
    return expr


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable():
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = [p for p in _panels(dash) if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels for t in p["targets"])
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    titles = " / ".join(p["title"] for p in panels).lower()
    for topic in ("sessions behind", "pool status", "fuses", "sharpe", "drawdown", "capacity", "target published",
                  "run failures", "step duration", "store latency", "store errors", "store bytes", "cache hit rate",
                  "api requests", "api latency"):
        assert topic in titles, topic
    # documented: every metric the dashboard reads is in docs/api.md's metrics table or the store section
    docs = (ROOT / "docs" / "api.md").read_text()
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for _, e in _exprs(dash) for m in METRIC.findall(e)}
    assert sorted(m for m in base if m not in docs) == []


def test_every_panel_query_names_a_scraped_metric_and_is_valid_promql(served_api):  # noqa: F811
    dash = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dash)
    names = sorted({m for _, e in exprs for m in METRIC.findall(e)})
    with scraped(served_api) as run:
        sel = f'{{test_run="{run}"}}'
        wait_until(lambda: _query(f"rotation_strategy_sharpe{sel}"), "Prometheus did not scrape the API", 90)
        # the API's own store reads and requests show from the second scrape on
        wait_until(lambda: _query(f'rotation_api_requests_total{{test_run="{run}",route="/metrics"}}'),
              "the API's request counts were not scraped", 30)
        wait_until(lambda: _query(f'rotation_store_operations_total{{test_run="{run}",op="read"}}'),
              "the API's store counts were not scraped", 30)
        known = set(_get(f"{PROMETHEUS}/api/v1/label/__name__/values")["data"])
        assert [n for n in names if n not in known] == []
        for name in names:  # each from this test's API, not only from some other target
            assert _query(f'count({{__name__="{name}",test_run="{run}"}})'), name
        for title, expr in exprs:
            query = _expand(expr)
            try:
                got = _get(f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
            except urllib.error.HTTPError as exc:
                raise AssertionError(f"panel {title!r}: Prometheus refused {query!r}: {exc.read()[:300]!r}") from exc
            assert got["status"] == "success", (title, query, got)
