"""``data.history: store``: the graph's pools read their history from the market store that ``market_data``
fills, and compute what they compute from the raw files -- with the raw files gone."""

from __future__ import annotations

import shutil

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR
from rotation_platform.data.panel import PRICE_FIELDS
from rotation_platform.storage.provenance import PROVENANCE_KEY
from rotation_platform.storage.files import read_value
from tests.orchestration.conftest import QUIET, ROOT, fresh_defs, materialised_assets, run_daily

SHARED = ROOT.parent / "shared" / "data" / "cn_etf"
SESSION = "2026-07-31"
POOL = "QDII"
VALUES = ("prices", "factor_panel", "factor_screen", "wfo_result", "backtest", "capacity_report", "target_portfolio")


def _env(monkeypatch, tmp_path, name: str, **extra: str):
    monkeypatch.setenv("ROTATION_CONFIG", str(CONFIG_DIR / "cn_etf.yaml"))
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / name / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / name / "home"))
    (tmp_path / name / "home").mkdir(parents=True)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return tmp_path / name


def _values(data) -> dict[str, object]:
    out = {}
    for asset in VALUES:
        files = [p for p in (data / asset / POOL).iterdir() if p.name.startswith(SESSION)]
        assert len(files) == 1, files
        out[asset] = read_value(data / asset / POOL / SESSION)
    return out


def test_pools_read_the_market_store_and_compute_what_the_files_give(tmp_path, monkeypatch) -> None:
    if not SHARED.exists():
        pytest.fail(f"the shared real data is missing: expected {SHARED}")
    # the reference: the pool reads the raw files
    with monkeypatch.context() as m:
        ref = _env(m, tmp_path, "files")
        defs = fresh_defs()
        with dg.DagsterInstance.get() as instance:
            assert run_daily(defs, instance, POOL, [SESSION]).success
        want = _values(ref / "data")

    # data.history: store -- the market data job ingests the drop folder, then the folder is gone
    drop = tmp_path / "drop"
    shutil.copytree(SHARED, drop)
    run = _env(monkeypatch, tmp_path, "store", ROTATION_DATA__HISTORY="store", ROTATION_DATA__DIRECTORY=str(drop))
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        ingest = defs.resolve_job_def("ingest_market_data").execute_in_process(
            partition_key=SESSION, instance=instance, run_config=QUIET)
        assert ingest.success and materialised_assets(ingest) == {"market_data"}
        shutil.rmtree(drop)  # raw files are read by market_data only
        result = run_daily(defs, instance, POOL, [SESSION])
        assert result.success
    got = _values(run / "data")
    # the same values; only the config hash each carries differs (data.history is part of the configuration)
    for asset in VALUES:
        if isinstance(want[asset], pd.DataFrame):
            pd.testing.assert_frame_equal(got[asset], want[asset], check_exact=True, obj=asset)
        elif asset == "prices":
            for field in PRICE_FIELDS:
                pd.testing.assert_frame_equal(got[asset][field], want[asset][field], check_exact=True, obj=field)
            assert got[asset].meta[PROVENANCE_KEY]["data_hash"] == want[asset].meta[PROVENANCE_KEY]["data_hash"]
            assert (got[asset].meta["source"], want[asset].meta["source"]) == ("store", "directory")
        else:  # the walk-forward record
            a, b = dict(got[asset]), dict(want[asset])
            assert a.pop(PROVENANCE_KEY)["data_hash"] == b.pop(PROVENANCE_KEY)["data_hash"]
            assert a == b
