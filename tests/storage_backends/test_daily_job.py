"""The asset graph for one partition materialises on every backend with identical results."""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data.panel import PricePanel
from rotation_platform.storage import open_store
from rotation_platform.storage.base import Partition

BACKENDS = {
    "local": {},
    "mysql": {"ROTATION_STORAGE__BACKEND": "mysql"},
    "influxdb": {"ROTATION_STORAGE__BACKEND": "influxdb"},
    "influxdb+redis": {"ROTATION_STORAGE__BACKEND": "influxdb", "ROTATION_STORAGE__REDIS_CACHE": "true"},
    "mysql+redis": {"ROTATION_STORAGE__BACKEND": "mysql", "ROTATION_STORAGE__REDIS_CACHE": "true"},
}


def _fresh_defs():
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    return importlib.import_module("definitions").defs




POOL, SESSION = "QDII", "2024-12-31"
ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest", "capacity_report",
          "target_portfolio")


def _run(backend, monkeypatch, tmp_path, fresh_databases, redis_server):
    (influx_url, influx_db), mysql_url = fresh_databases
    env = {
        "ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"),
        "ROTATION_ENV": "test",
        "ROTATION_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "ROTATION_DATA__SYNTHETIC__END": SESSION,
        "ROTATION_STORAGE__INFLUX_URL": influx_url,
        "ROTATION_STORAGE__INFLUX_DATABASE": influx_db,
        "ROTATION_STORAGE__MYSQL_URL": mysql_url,
        "ROTATION_STORAGE__REDIS_URL": redis_server,
        "DAGSTER_HOME": str(tmp_path / "home"),
        **BACKENDS[backend],
    }
    (tmp_path / "home").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    defs = _fresh_defs()
    from assets.partitions import pool_session_key

    job = defs.resolve_job_def("daily")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(partition_key=pool_session_key(POOL, SESSION), instance=instance)
        assert result.success
        summary = defs.resolve_job_def("session_summary").execute_in_process(partition_key=SESSION, instance=instance)
        assert summary.success
    config = load_config()
    store = open_store(config.storage.model_copy(update={"redis_cache": False}))  # what the backend holds
    part = Partition.multi({"pool": POOL, "session": SESSION})
    try:
        values = {asset: store.read((asset,), part) for asset in ASSETS}
        values["pool_metrics_summary"] = store.read(("pool_metrics_summary",), Partition.single(SESSION))
        counts = store.counts(("prices",), part)
    finally:
        store.close()
    mats = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("pool_chain")}
    return result, values, counts, mats


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_daily_job_on_each_backend_matches_embedded_default(backend, monkeypatch, tmp_path, tmp_path_factory,
                                                            fresh_databases, redis_server) -> None:
    ref_dir = tmp_path_factory.mktemp("reference")
    with monkeypatch.context() as m:
        _, want, _, _ = _run("local", m, ref_dir, fresh_databases, redis_server)
    result, got, counts, mats = _run(backend, monkeypatch, tmp_path, fresh_databases, redis_server)
    panel = got["prices"]
    assert isinstance(panel, PricePanel)
    produced = result.output_for_node("pool_chain", "prices")
    assert panel.content_hash() == want["prices"].content_hash() == produced.content_hash()
    # the configuration hash covers the storage settings, so only it differs between backends
    assert {k: v for k, v in panel.meta.items() if k != "config_hash"} == \
        {k: v for k, v in want["prices"].meta.items() if k != "config_hash"}
    assert panel.meta["config_hash"] == mats["prices"]["config_hash"].value
    for asset in ASSETS[1:] + ("pool_metrics_summary",):
        if isinstance(want[asset], pd.DataFrame):
            pd.testing.assert_frame_equal(got[asset], want[asset], check_exact=True, obj=asset)
        else:
            assert got[asset] == want[asset], asset
    rows = int((~panel["close"].isna()).to_numpy().sum())
    assert mats["prices"]["rows"].value == rows
    expected_backend = "local" if backend == "local" else backend.split("+")[0]
    assert mats["prices"]["storage_backend"].value == expected_backend
    assert all(h["ok"] for h in mats["prices"]["storage_health"].value)
    if backend != "local":
        assert (counts.visible, counts.physical, counts.distinct) == (rows, rows, rows)
