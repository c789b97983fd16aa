"""What a quant reads in the UI: a session's target for one pool, and each partition's own checks.

The daily job runs once over two pools × three sessions of the small config, with one crafted fault in
one partition (the OVERSEAS target of the middle session lacks its data hash, so its metadata check
fails); the webserver shows the instance in headless chromium. Screenshots go to the test's folder and
to ``$UI_SHOTS_DIR`` (default ``/tmp/ui-shots``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest

import rotation_platform.production.pool_run as pool_run_module
from rotation_platform.storage.files import read_value
from tests.orchestration.conftest import QUIET, SMALL_SESSIONS, fresh_defs, small_env, without_data_hash
from tests.ui.services import dagster_services, graphql

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run"]
POOLS = ("EQUITY", "OVERSEAS")
SESSIONS = SMALL_SESSIONS[1:4]
LAST = SESSIONS[-1]
BAD_POOL, BAD_SESSION = "OVERSEAS", SESSIONS[1]
SHOTS = Path(os.environ.get("UI_SHOTS_DIR", "/tmp/ui-shots"))

@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The instance after the run, and the webserver on it: (port, folder, env)."""
    tmp = tmp_path_factory.mktemp("where_to_look")
    env = small_env(tmp)
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("ROTATION_") and k != "ROTATION_ENV"]:
            mp.delenv(key)
        mp.setenv("ROTATION_CONFIG", env["ROTATION_CONFIG"])
        mp.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        mp.setattr(pool_run_module.PoolRun, "run_metadata", without_data_hash(BAD_POOL, BAD_SESSION))
        defs = fresh_defs()
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def("daily").execute_in_process(
                instance=instance, run_config=QUIET, raise_on_error=False,
                tags={"dagster/asset_partition_range_start": f"{POOLS[0]}|{SESSIONS[0]}",
                      "dagster/asset_partition_range_end": f"{POOLS[-1]}|{LAST}"})
        assert not result.success  # the crafted fault stops the run (a blocking check)
    with dagster_services(env, Path(env["DAGSTER_HOME"])) as port:
        yield port, tmp, env


def _open(page, port: int, path: str, wait_text: str) -> None:
    page.goto(f"http://127.0.0.1:{port}{path}", wait_until="networkidle", timeout=90_000)
    skip = page.get_by_role("button", name="Skip")  # the first-visit newsletter dialog
    try:
        skip.wait_for(timeout=3_000)
        skip.click()
    except Exception:  # noqa: BLE001 - the dialog does not appear on every visit
        pass
    page.get_by_text(wait_text).first.wait_for(timeout=60_000)
    page.wait_for_timeout(800)


def _check_partition(page, pool: str, session: str) -> str:
    """Select one pool × session in the open check's Partitions tab; the detail panel's text."""
    page.get_by_text(pool, exact=True).first.click()
    page.get_by_placeholder("Filter by session…").fill(session)
    page.get_by_text(session, exact=True).first.click()
    page.get_by_text(f"{pool}|{session}", exact=True).first.wait_for(timeout=30_000)
    page.wait_for_timeout(800)
    return page.inner_text("body")


def test_target_and_its_checks_as_a_quant_reads_them(ui) -> None:
    assert CHROMIUM, "chromium is required for the UI test (apt-get install chromium; .ci/run installs it)"
    from playwright.sync_api import sync_playwright

    port, tmp, env = ui
    data = Path(env["ROTATION_CONFIG"]).parent.parent / "data"
    target = read_value(data / "target_portfolio" / "EQUITY" / LAST).droplevel("session")
    held = target[target["target_shares"] > 0]
    assert len(held)
    shots: dict[str, Path] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1920, "height": 1200}, device_scale_factor=1)
        # the target of one pool and session: Catalog -> target_portfolio -> Partitions -> EQUITY, the session
        _open(page, port, f"/assets/target_portfolio?view=partitions&partition=EQUITY%7C{LAST}", "Target for")
        page.get_by_text("Hide navigation").click()  # room for the whole table
        page.wait_for_timeout(800)
        shots["target_partition"] = tmp / "target_partition.png"
        page.screenshot(path=str(shots["target_partition"]), full_page=True)
        shots["target_table"] = tmp / "target_table.png"  # the metadata entry itself
        page.locator("tr").filter(has_text="Target for").first.screenshot(path=str(shots["target_table"]))
        target_text = page.inner_text("body")
        headers = [h.strip() for h in page.locator("th").all_inner_texts()]
        table_width = page.evaluate("""() => {
            const th = [...document.querySelectorAll('th')].find(e => e.textContent.trim() === 'symbol');
            const t = th.closest('table'); const box = t.getBoundingClientRect();
            return [box.right, window.innerWidth]; }""")

        # the check of each partition: Checks -> metadata_completeness -> Partitions -> pool, session
        _open(page, port, "/assets/target_portfolio?view=checks&checkDetail=metadata_completeness",
              "metadata_completeness")
        page.locator("button[role=tab]", has_text="Partitions").click()
        bad_text = _check_partition(page, BAD_POOL, BAD_SESSION)
        shots["check_failed_partition"] = tmp / "check_failed_partition.png"
        page.screenshot(path=str(shots["check_failed_partition"]), full_page=True)
        good_text = _check_partition(page, "EQUITY", BAD_SESSION)
        shots["check_passed_partition"] = tmp / "check_passed_partition.png"
        page.screenshot(path=str(shots["check_passed_partition"]), full_page=True)
        page.locator("button[role=tab]", has_text="Execution history").click()
        page.get_by_text(f"{BAD_POOL}|{BAD_SESSION}", exact=True).first.wait_for(timeout=30_000)
        page.wait_for_timeout(800)
        shots["check_history"] = tmp / "check_history.png"
        page.screenshot(path=str(shots["check_history"]), full_page=True)

        # the numbers over time: one plot per metric and pool (Overview -> Metadata -> Plots -> Events)
        _open(page, port, "/assets/backtest", "Latest materialization")
        page.get_by_role("button", name="Plots").click()
        page.get_by_role("button", name="Events").click()
        page.get_by_text("sharpe · EQUITY", exact=True).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        shots["backtest_plots"] = tmp / "backtest_plots.png"
        page.screenshot(path=str(shots["backtest_plots"]), full_page=True)
        plot_labels = [line.strip() for line in page.inner_text("body").splitlines()]  # each plot's title
        browser.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, shot in shots.items():
        assert shot.stat().st_size > 10_000, name  # a rendered page, not a blank one
        shutil.copy(shot, SHOTS / f"{name}.png")

    # the target table as a quant reads it: its header, the funds, whole-lot shares, weights in percent
    assert f"EQUITY|{LAST}" in target_text and "Target for " in target_text
    for column in ("symbol", "price", "target_shares", "order_shares", "value"):
        assert column in headers, headers
    assert "weight" in headers or "model_weight" in headers
    assert table_width[0] <= table_width[1], table_width  # the whole table is on the screen
    for symbol, row in held.iterrows():
        assert re.search(rf"\b{symbol}\b", target_text), symbol
        shares = f"{int(row['target_shares']):,}"
        assert shares in target_text, (symbol, shares)
        assert f"{float(row['target_weight']):.2%}" in target_text, symbol
    assert any("," in f"{int(s):,}" for s in held["target_shares"])  # thousands separators shown
    assert re.search(r"\b\d{1,3}(,\d{3})+\b", target_text)
    assert re.search(r"\b\d+\.\d{2}%", target_text)
    # the numbers of the partition are the pool's, and come before the storage bookkeeping
    assert target_text.index("orders · EQUITY") < target_text.index("storage_backend")

    # one series per pool: no plot mixes the pools' values under one key
    for metric in ("sharpe", "max_drawdown", "equity"):
        assert f"{metric} · EQUITY" in plot_labels and f"{metric} · OVERSEAS" in plot_labels, plot_labels
        assert metric not in plot_labels

    # each partition's check shows its own verdict
    assert f"{BAD_POOL}|{BAD_SESSION}" in bad_text and "Failed" in bad_text
    assert f"METADATA INCOMPLETE at {BAD_SESSION}: data_hash missing" in bad_text
    assert f"EQUITY|{BAD_SESSION}" in good_text and f"metadata complete at {BAD_SESSION}" in good_text
    assert "METADATA INCOMPLETE" not in good_text.split(f"EQUITY|{BAD_SESSION}", 1)[1]

    # the same over GraphQL, per partition
    query = """query($p: String) { assetCheckExecutions(assetKey: {path: ["target_portfolio"]},
                checkName: "metadata_completeness", partition: $p, limit: 5) { partition status } }"""
    for pool in POOLS:
        for session in SESSIONS:
            key = f"{pool}|{session}"
            rows = graphql(port, query, {"p": key})["assetCheckExecutions"]
            want = "FAILED" if key == f"{BAD_POOL}|{BAD_SESSION}" else "SUCCEEDED"
            assert [(r["partition"], r["status"]) for r in rows] == [(key, want)], key
