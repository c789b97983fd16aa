"""The Dagster UI on the project's definitions: GraphQL shows the graph; a real browser renders it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rotation_platform.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")

ASSET_GRAPH_QUERY = """
{ assetNodes { assetKey { path } groupName isPartitioned partitionKeys
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"),
           "ROTATION_STORAGE__DATA_DIR": str(home / "data")}
    port = _free_port()
    log = open(home / "webserver.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                data = _graphql(port, ASSET_GRAPH_QUERY)
                if data.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError("webserver did not come up:\n" + (home / "webserver.log").read_text()[-3000:])
            time.sleep(1)
        yield port, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_graphql_shows_partitioned_assets_and_checks(webserver) -> None:
    port, _ = webserver
    nodes = _graphql(port, ASSET_GRAPH_QUERY)["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"prices", "price_quarantine"} <= set(by_key)
    prices = by_key["prices"]
    assert prices["isPartitioned"] and prices["partitionKeys"] == ["A_SHARE", "QDII", "OTHER"]
    assert prices["groupName"] == "data"
    checks = prices["assetChecksOrError"]["checks"]
    assert {"name": "quality_gate", "blocking": True} in checks


def test_asset_graph_page_renders_in_chromium(webserver) -> None:
    assert CHROMIUM, "chromium is required for the UI test (apt-get install chromium; .ci/run installs it)"
    from playwright.sync_api import sync_playwright

    port, home = webserver
    shot = home / "asset_graph.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/asset-groups/data/lineage", wait_until="networkidle", timeout=90_000)
        page.get_by_text("price_quarantine").first.wait_for(timeout=60_000)
        page.get_by_text("prices", exact=True).first.wait_for(timeout=60_000)
        skip = page.get_by_role("button", name="Skip")  # the UI's first-visit newsletter dialog
        try:
            skip.wait_for(timeout=5_000)
            skip.click()
        except Exception:  # noqa: BLE001 - the dialog does not appear on every version
            pass
        page.get_by_text("Loading...").first.wait_for(state="hidden", timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shot), full_page=True)
        text = page.inner_text("body")
        browser.close()
    assert "prices" in text and "price_quarantine" in text
    assert "Asset checks" in text and "Join the Dagster community" not in text
    assert shot.stat().st_size > 20_000  # a rendered graph, not a blank page
    artifacts = os.environ.get("TEST_ARTIFACTS_DIR")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "asset_graph.png")
