"""Currency of stored results: no stale value is shown as current.

A small directory-source config (two weighted pools, price files written from the synthetic generator)
runs a session through the daily job; then the same session is rerun after a change that makes the
pool fail -- a fuse that cannot pass (``fuses.min_effective_factors``) and, separately, the latest close
of every fund of the pool blanked in its file -- and after a config change without a rerun. The summary,
the snapshot and the main job's console and JSON result must never show the old values as current.
Provenance (data and config hash carried inside each stored value) and the run records round-trip on
the embedded files and on MySQL.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import dagster as dg
import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.orchestration.conftest import (
    ROOT,
    SMALL_END,
    SMALL_POOLS,
    fresh_defs,
    run_daily,
    run_summary,
    write_small_config,
)

SESSION = "2025-09-26"
POOLS = ("EQUITY", "OVERSEAS")  # weighted 0.7 / 0.3
FAILING = "EQUITY"
POOL_ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio")
AFTER_SCREEN = ("wfo_result", "backtest", "capacity_report", "target_portfolio")
MYSQL_URL = os.environ.get("ROTATION_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


# ------------------------------------------------------------------------------------------- set-up
def _write_price_files(folder: Path) -> None:
    """One plain-layout CSV per fund of the two pools, from the synthetic generator of the small config."""
    from rotation_platform.config.models import SyntheticConfig
    from rotation_platform.data.sources.synthetic import SyntheticSource
    from rotation_platform.config import load_config

    folder.mkdir(parents=True)
    config = load_config(write_small_config(folder.parent / "synthetic", data_dir=folder.parent / "unused"))
    pools = [p for p in config.pools if p.name in POOLS]
    source = SyntheticSource(pools, SyntheticConfig(seed=7, start="2022-01-04", end=SMALL_END))
    for symbol, raw in source.read([s for p in pools for s in p.symbols]).items():
        frame = raw.frame[["date", "open", "high", "low", "close", "volume", "amount"]].copy()
        frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
        frame.to_csv(folder / f"{symbol}.csv", index=False, lineterminator="\n")


def _config_file(tmp_path: Path, storage: dict | None = None) -> Path:
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "data")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["name"] = "small_files"
    doc["data"] = {"source": "directory", "directory": str(tmp_path / "prices")}
    doc["pools"] = [p for p in doc["pools"] if p["name"] in POOLS]
    if storage:
        doc["storage"].update(storage)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def files_env(tmp_path, monkeypatch):
    _write_price_files(tmp_path / "prices")
    monkeypatch.setenv("ROTATION_CONFIG", str(_config_file(tmp_path)))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    for key in [k for k in os.environ if k.startswith("ROTATION_") and k not in ("ROTATION_CONFIG", "ROTATION_ENV")]:
        monkeypatch.delenv(key)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text((ROOT / "configs" / "dagster.yaml").read_text())
    return tmp_path


def _summary(data: Path) -> pd.DataFrame:
    from rotation_platform.storage.files import read_value

    return read_value(data / "pool_metrics_summary" / SESSION).droplevel("session")


def _manifest(data: Path) -> dict:
    return json.loads((data / "snapshots" / SESSION / "manifest.json").read_text(encoding="utf-8"))


def _stored(data: Path, asset: str, pool: str):
    from rotation_platform.storage.files import read_value

    return read_value(data / asset / pool / SESSION)


def _current_config_hash() -> str:
    from rotation_platform.config import load_config
    from rotation_platform.storage.provenance import results_config_hash

    return results_config_hash(load_config())


# ----------------------------------------------------------------------------------------- the chain
def test_a_failed_or_changed_pool_is_never_shown_as_current(files_env, monkeypatch, capsys) -> None:
    from rotation_platform.storage.provenance import provenance_of

    data = files_env / "data"
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        for pool in POOLS:
            assert run_daily(defs, instance, pool, [SESSION]).success
        assert run_summary(defs, instance, [SESSION]).success

    # every stored value carries the data hash of its pool's prices and the config hash of the run
    good_hash = _current_config_hash()
    for pool in POOLS:
        data_hash = provenance_of(_stored(data, "prices", pool))["data_hash"]
        assert data_hash and len(data_hash) == 16
        for asset in POOL_ASSETS:
            assert provenance_of(_stored(data, asset, pool)) == {"data_hash": data_hash, "config_hash": good_hash}, \
                (asset, pool)
    before = _summary(data)
    assert list(before.loc[list(POOLS), "status"]) == ["ok", "ok"]
    assert before.loc["COMBINED", "status"] == "ok"
    old_equity = float(before.loc[FAILING, "equity"])
    overseas_equity = float(before.loc["OVERSEAS", "equity"])
    assert before.loc["COMBINED", "equity"] == pytest.approx(old_equity + overseas_equity)
    assert all(v["status"] == "current" for by_pool in _manifest(data)["values"].values() for v in by_pool.values())

    # 1. a config change (slippage) and no pool rerun: every stored output is stale, nothing is combined
    monkeypatch.setenv("ROTATION_BACKTEST__SLIPPAGE_BPS", "9")
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        assert run_summary(defs, instance, [SESSION]).success
    stale = _summary(data)
    for pool in POOLS:
        assert stale.loc[pool, "status"] == "stale"
        assert "config" in stale.loc[pool, "reason"] and good_hash[:12] in stale.loc[pool, "reason"]
        assert np.isnan(stale.loc[pool, "equity"])
    assert stale.loc["COMBINED", "status"] == "partial" and np.isnan(stale.loc["COMBINED", "equity"])
    assert "EQUITY (stale)" in stale.loc["COMBINED", "reason"]
    manifest = _manifest(data)
    assert {manifest["values"]["backtest"][p]["status"] for p in POOLS} == {"superseded"}
    monkeypatch.delenv("ROTATION_BACKTEST__SLIPPAGE_BPS")

    # 2. the same session rerun through the main job with a fuse that cannot pass: EQUITY fails
    monkeypatch.setenv("ROTATION_FUSES__MIN_EFFECTIVE_FACTORS", "10000")
    result_file = files_env / "result.json"
    from jobs.main import main

    fresh_defs()
    code = main(["--session", SESSION, "--pools", FAILING, "--json", str(result_file)])
    out = capsys.readouterr().out
    assert code == 1
    failed = _summary(data)
    assert failed.loc[FAILING, "status"] == "failed", failed.loc[FAILING, "reason"]
    assert "did not materialise target_portfolio" in failed.loc[FAILING, "reason"]
    assert np.isnan(failed.loc[FAILING, "equity"])
    assert failed.loc["OVERSEAS", "status"] == "stale"  # the fuse override is a config change for it
    assert np.isnan(failed.loc["COMBINED", "equity"]) and "EQUITY (failed)" in failed.loc["COMBINED", "reason"]
    # the snapshot: what the failed run wrote is current, what it did not rewrite is superseded
    manifest = _manifest(data)
    assert manifest["pools"][FAILING]["status"] == "failed"
    for asset in ("prices", "factor_panel", "factor_screen"):
        assert manifest["values"][asset][FAILING]["status"] == "current", asset
    for asset in AFTER_SCREEN:
        entry = manifest["values"][asset][FAILING]
        assert entry["status"] == "superseded" and entry["config_hash"] == good_hash, asset
    # the console and the JSON result: failed everywhere, the old equity nowhere
    assert f"{FAILING}: FAILED" in out and f"{old_equity:,.0f}" not in out
    metrics = out.split("Metrics")[1].split("Fuses")[0]
    row = next(line for line in metrics.splitlines() if line.startswith(FAILING))
    assert "failed" in row
    doc = json.loads(result_file.read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "run-result.schema.json").read_text(encoding="utf-8")))
    (pool_doc,) = doc["pools"]
    assert doc["status"] == "failed" and pool_doc["status"] == "failed" and pool_doc["equity"] is None
    assert doc["summary"]["equity"] is None and "EQUITY (failed)" in doc["summary"]["reason"]
    from jobs.snapshots import main as snapshots_main

    assert snapshots_main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "superseded" in listed and f"{FAILING}: " in listed
    assert snapshots_main(["verify", SESSION]) == 0
    verified = capsys.readouterr().out
    assert "superseded" in verified and "backtest" in verified
    monkeypatch.delenv("ROTATION_FUSES__MIN_EFFECTIVE_FACTORS")


def test_a_data_change_that_fails_the_pool_supersedes_its_results(files_env) -> None:
    data = files_env / "data"
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        for pool in POOLS:
            assert run_daily(defs, instance, pool, [SESSION]).success
        assert run_summary(defs, instance, [SESSION]).success
        old = _summary(data)
        assert old.loc[FAILING, "status"] == "ok"
        old_prices_hash = _manifest(data)["values"]["prices"][FAILING]["data_hash"]
        # the close of the session before the one run blanked in every file of the pool: inside any lookback
        previous = "2025-09-25"
        for symbol in SMALL_POOLS[FAILING][2]:
            path = files_env / "prices" / f"{symbol}.csv"
            frame = pd.read_csv(path, dtype={"date": str})
            assert (frame["date"] == previous).sum() == 1
            frame.loc[frame["date"] == previous, "close"] = np.nan
            frame.to_csv(path, index=False, lineterminator="\n")
        rerun = run_daily(defs, instance, FAILING, [SESSION], raise_on_error=False)
        assert not rerun.success
        assert run_summary(defs, instance, [SESSION]).success
    table = _summary(data)
    assert table.loc[FAILING, "status"] == "failed", table.loc[FAILING, "reason"]
    assert np.isnan(table.loc[FAILING, "equity"])
    # the other pool is untouched and current: the combined row is it alone, and says what it leaves out
    assert table.loc["OVERSEAS", "status"] == "ok"
    assert table.loc["OVERSEAS", "equity"] == pytest.approx(old.loc["OVERSEAS", "equity"])
    assert table.loc["COMBINED", "equity"] == pytest.approx(old.loc["OVERSEAS", "equity"])
    assert table.loc["COMBINED", "status"] == "partial" and "EQUITY (failed)" in table.loc["COMBINED", "reason"]
    assert not table.loc["COMBINED", "all_thresholds_ok"]
    manifest = _manifest(data)
    assert manifest["pools"][FAILING]["status"] == "failed"
    assert manifest["values"]["prices"][FAILING]["data_hash"] != old_prices_hash  # the failed run stored its prices
    for asset in ("backtest", "target_portfolio"):
        entry = manifest["values"][asset][FAILING]
        assert entry["status"] == "superseded" and entry["data_hash"] == old_prices_hash, asset
        assert "computed from data" in entry["reason"]
    assert all(v["status"] == "current" for by_pool in manifest["values"].values() for p, v in by_pool.items()
               if p == "OVERSEAS")


# ---------------------------------------------------------------------------------------- round trips
def _values():
    from rotation_platform.data.panel import PRICE_FIELDS, PricePanel

    sessions = pd.DatetimeIndex(["2025-09-25", "2025-09-26"], name="session")
    symbols = ["F1", "F2"]
    panel = PricePanel({f: pd.DataFrame(np.arange(4.0).reshape(2, 2) + 1, index=sessions,
                                        columns=pd.Index(symbols, name="symbol")) for f in PRICE_FIELDS},
                       {"source": "test", "synthetic": False})
    long = pd.DataFrame({"w": np.arange(4.0), "name": ["a", "b", "c", "d"]},
                        index=pd.MultiIndex.from_product([sessions, symbols], names=["session", "symbol"]))
    wide = pd.DataFrame({"equity": [1e6, 1.01e6], "params": ["p", "q"]}, index=sessions)
    return panel, long, wide


def _round_trip(store) -> None:
    from rotation_platform.storage.base import Partition
    from rotation_platform.storage.partitioning import PartitionSlice, combine_values, split_value
    from rotation_platform.storage.provenance import (
        provenance_of,
        read_run_record,
        record,
        run_record,
        stamp_partitions,
        write_run_record,
    )

    tz = "Asia/Shanghai"
    days = ["2025-09-25", "2025-09-26"]
    slices = [PartitionSlice(Partition.multi({"pool": "P", "session": d}),
                             (pd.Timestamp(d, tz=tz), pd.Timestamp(d, tz=tz) + pd.Timedelta(days=1)), {"pool": "P"})
              for d in days]
    records = {s.key: record(f"data{i}", "config") for i, s in enumerate(slices)}
    for name, value in zip(("prices", "factor_panel", "backtest"), _values()):
        stamped = stamp_partitions(value, records)
        assert provenance_of(value) is None  # the caller's value is left as it is
        for piece_slice, piece in split_value(stamped, slices, name):
            store.write((name,), piece_slice.partition, piece)
        back = [(s, store.read((name,), s.partition)) for s in slices]
        assert [provenance_of(v) for _, v in back] == [records[s.key] for s in slices], name
        assert provenance_of(combine_values(back), slices[1].key) == records[slices[1].key]
        # the same shape again with other hashes: nothing of the first write's record is reused
        again = stamp_partitions(back[0][1], {slices[0].key: record("other", "config2")})
        store.write((name,), slices[0].partition, again)
        assert provenance_of(store.read((name,), slices[0].partition)) == record("other", "config2")
    rec = stamp_partitions({"live": {"params": "p"}, "dsr": {"dsr": 0.5}}, {slices[1].key: records[slices[1].key]})
    store.write(("wfo_result",), slices[1].partition, rec)
    assert provenance_of(store.read(("wfo_result",), slices[1].partition)) == records[slices[1].key]
    write_run_record(store, slices[1].partition, run_record("started", records[slices[1].key]))
    got = read_run_record(store, slices[1].partition)
    assert (got["state"], got["data_hash"], got["config_hash"]) == ("started", "data1", "config")
    assert read_run_record(store, slices[0].partition) is None


def test_provenance_round_trips_on_the_embedded_files(tmp_path) -> None:
    from rotation_platform.storage.files import FileStore

    _round_trip(FileStore(tmp_path / "store"))


@pytest.fixture()
def mysql_url():
    import pymysql
    from sqlalchemy.engine import make_url

    base = make_url(MYSQL_URL)
    try:
        conn = pymysql.connect(host=base.host, port=base.port or 3306, user=base.username,
                               password=base.password or "", connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"MySQL/MariaDB is not answering at {base.host}:{base.port or 3306} ({exc}); start the "
                    "servers with .ci/services.sh", pytrace=False)
    database = f"rp_currency_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield base.set(database=database).render_as_string(hide_password=False)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def test_provenance_round_trips_on_mysql(mysql_url) -> None:
    from rotation_platform.storage.mysql import MySQLStore

    store = MySQLStore(mysql_url)
    try:
        _round_trip(store)
    finally:
        store.close()


def test_the_daily_job_on_mysql_stores_every_value_with_its_hashes(tmp_path, monkeypatch, mysql_url) -> None:
    from rotation_platform.config import load_config
    from rotation_platform.storage import open_store
    from rotation_platform.storage.base import Partition
    from rotation_platform.storage.provenance import provenance_of, read_run_record

    _write_price_files(tmp_path / "prices")
    monkeypatch.setenv("ROTATION_CONFIG", str(_config_file(tmp_path, {"backend": "mysql", "mysql_url": mysql_url})))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    for key in [k for k in os.environ if k.startswith("ROTATION_") and k not in ("ROTATION_CONFIG", "ROTATION_ENV")]:
        monkeypatch.delenv(key)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text((ROOT / "configs" / "dagster.yaml").read_text())
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = run_daily(defs, instance, "OVERSEAS", [SESSION])
        assert result.success
        assert run_summary(defs, instance, [SESSION]).success
    config = load_config()
    assert config.storage.backend == "mysql"
    store = open_store(config.storage.model_copy(update={"redis_cache": False}))
    try:
        partition = Partition.multi({"pool": "OVERSEAS", "session": SESSION})
        data_hash = provenance_of(store.read(("prices",), partition))["data_hash"]
        for asset in POOL_ASSETS:
            assert provenance_of(store.read((asset,), partition)) == {"data_hash": data_hash,
                                                                       "config_hash": _current_config_hash()}, asset
        run = read_run_record(store, partition)
        assert run == {"state": "complete", "data_hash": data_hash, "config_hash": _current_config_hash()}
        summary = store.read(("pool_metrics_summary",), Partition.single(SESSION)).droplevel("session")
        assert summary.loc["OVERSEAS", "status"] == "ok" and summary.loc["EQUITY", "status"] == "missing"
    finally:
        store.close()



# ------------------------------------------------------------------------------------ the rule itself
def test_pool_currency_from_the_store_alone() -> None:
    """Without the orchestrator: the hashes the values carry and the run record decide."""
    from rotation_platform.config import CONFIG_DIR, load_config
    from rotation_platform.production.summary import pool_currency, pool_metrics_summary
    from rotation_platform.storage.provenance import record, run_record, with_provenance

    t = pd.Timestamp("2024-12-31")
    config = load_config(CONFIG_DIR / "demo.yaml")

    def backtest(equity):
        return pd.DataFrame([{"equity": equity, "annual_return": 0.1, "max_drawdown": -0.1, "sharpe": 1.0,
                              "monthly_win_rate": 0.6, "annual_turnover": 2.0, "var_95": 0.01,
                              "benchmark_annual_return": 0.02, "params": "p"}], index=pd.DatetimeIndex([t]))

    def values(prices_hash, value_hash, config_hash="c1", equity=1e6):
        prices = with_provenance(pd.DataFrame({"x": [1.0]}), record(prices_hash, config_hash))
        frame = with_provenance(backtest(equity), record(value_hash, "c1"))
        return {"prices": prices, "backtest": frame, "target_portfolio": frame}

    ok = pool_currency("c1", values("d1", "d1"), run_record("complete", record("d1", "c1")))
    assert (ok["status"], ok["reason"]) == ("ok", "")
    moved = pool_currency("c1", values("d2", "d1"), run_record("complete", record("d2", "c1")))
    assert moved["status"] == "stale" and "computed from data d1" in moved["reason"]
    assert moved["assets"]["backtest"]["status"] == "superseded" and moved["assets"]["prices"]["status"] == "current"
    stopped = pool_currency("c1", values("d2", "d1", "c1"), run_record("started", record("d2", "c1")))
    assert stopped["status"] == "failed" and "still 'started'" in stopped["reason"]
    same_inputs = pool_currency("c1", values("d1", "d1"), run_record("started", record("d1", "c1")))
    assert same_inputs["status"] == "failed" and "same data and config" in same_inputs["reason"]
    reconfigured = pool_currency("c2", values("d1", "d1", "c1"), run_record("complete", record("d1", "c1")))
    assert reconfigured["status"] == "stale" and "current config is c2" in reconfigured["reason"]
    unrecorded = pool_currency("c1", {"prices": None, "backtest": backtest(1e6), "target_portfolio": None})
    assert unrecorded["status"] == "stale" and "no data/config hash" in unrecorded["reason"]
    gone = pool_currency("c1", {"prices": None, "backtest": None, "target_portfolio": None})
    assert gone["status"] == "missing"

    table = pool_metrics_summary(config, t, {"A_SHARE": backtest(7e6), "QDII": backtest(3e6), "OTHER": None},
                                 {"A_SHARE": stopped, "QDII": ok, "OTHER": gone}).droplevel("session")
    assert table.loc["A_SHARE", "status"] == "failed" and np.isnan(table.loc["A_SHARE", "equity"])
    assert table.loc["COMBINED", "equity"] == pytest.approx(3e6)  # QDII alone, weight 0.3
    assert table.loc["COMBINED", "weight"] == pytest.approx(0.3) and table.loc["COMBINED", "status"] == "partial"
    assert table.loc["COMBINED", "reason"].startswith("excludes A_SHARE (failed)")
    assert not table.loc["COMBINED", "all_thresholds_ok"]


def test_the_recorded_config_hash_ignores_where_values_are_stored() -> None:
    from rotation_platform.config import CONFIG_DIR, config_hash, load_config
    from rotation_platform.storage.provenance import results_config_hash

    config = load_config(CONFIG_DIR / "demo.yaml")
    moved = config.model_copy(update={"storage": config.storage.model_copy(update={"backend": "mysql"})})
    costlier = config.model_copy(update={"backtest": config.backtest.model_copy(update={"slippage_bps": 9.0})})
    assert config_hash(moved) != config_hash(config)  # the run's hash covers the storage settings ...
    assert results_config_hash(moved) == results_config_hash(config)  # ... what values depend on does not
    assert results_config_hash(costlier) != results_config_hash(config)


def test_the_result_file_says_which_pools_are_current() -> None:
    from rotation_platform.reports.orders import failed_pool_result, run_result

    failed = failed_pool_result("EQUITY", SESSION, "check factor_screen:effective_factors failed")
    currency = {"EQUITY": {"status": "ok", "reason": ""},  # what a summary run before this run's failure said
                "OVERSEAS": {"status": "stale", "reason": "backtest: computed with config 1b0f, the current is 2f7b"}}
    doc = run_result("small", "h", [SESSION], [failed], {"status": "partial", "reason": "excludes EQUITY (failed)",
                                                          "equity": float("nan"), "weight": 0.3}, currency=currency)
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "run-result.schema.json").read_text(encoding="utf-8")))
    assert doc["currency"]["EQUITY"]["status"] == "failed"
    assert "effective_factors" in doc["currency"]["EQUITY"]["reason"]
    assert doc["currency"]["OVERSEAS"] == currency["OVERSEAS"]
    assert doc["status"] == "failed" and doc["summary"]["equity"] is None
