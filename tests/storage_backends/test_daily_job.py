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




def _run(backend, monkeypatch, tmp_path, fresh_databases, redis_server):
    (influx_url, influx_db), mysql_url = fresh_databases
    env = {
        "ROTATION_CONFIG": str(CONFIG_DIR / "demo.yaml"),
        "ROTATION_ENV": "test",
        "ROTATION_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "ROTATION_DATA__SYNTHETIC__END": "2024-12-31",
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
    job = defs.resolve_job_def("daily")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(partition_key="A_SHARE", instance=instance)
    assert result.success
    config = load_config()
    store = open_store(config.storage.model_copy(update={"redis_cache": False}))  # what the backend holds
    try:
        panel = store.read(("prices",), Partition.single("A_SHARE"))
        quarantine = store.read(("price_quarantine",), Partition.single("A_SHARE"))
        counts = store.counts(("prices",), Partition.single("A_SHARE"))
    finally:
        store.close()
    mats = {m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("prices")}
    return result, panel, quarantine, counts, mats


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_daily_job_on_each_backend_matches_embedded_default(backend, monkeypatch, tmp_path, tmp_path_factory,
                                                            fresh_databases, redis_server) -> None:
    ref_dir = tmp_path_factory.mktemp("reference")
    with monkeypatch.context() as m:
        _, want_panel, want_quarantine, _, _ = _run("local", m, ref_dir, fresh_databases, redis_server)
    result, panel, quarantine, counts, mats = _run(backend, monkeypatch, tmp_path, fresh_databases, redis_server)
    assert isinstance(panel, PricePanel)
    produced = result.output_for_node("prices", "prices")
    assert panel.content_hash() == want_panel.content_hash() == produced.content_hash()
    # the configuration hash covers the storage settings, so only it differs between backends
    assert {k: v for k, v in panel.meta.items() if k != "config_hash"} == \
        {k: v for k, v in want_panel.meta.items() if k != "config_hash"}
    assert panel.meta["config_hash"] == mats["prices"]["config_hash"].value
    pd.testing.assert_frame_equal(quarantine, want_quarantine, check_exact=True)
    rows = int((~panel["close"].isna()).to_numpy().sum())
    assert mats["prices"]["rows"].value == rows
    expected_backend = "local" if backend == "local" else backend.split("+")[0]
    assert mats["prices"]["storage_backend"].value == expected_backend
    assert all(h["ok"] for h in mats["prices"]["storage_health"].value)
    if backend != "local":
        assert (counts.visible, counts.physical, counts.distinct) == (rows, rows, rows)
