"""Dagster IO managers over every backend: single partitions, single-run backfills over a range of
time partitions and of pool x session partitions, JSON documents, metadata without secrets."""

import numpy as np
import pandas as pd
import pytest

import dagster as dg
from resources.io_managers import LocalFilesIOManager, StoreIOManager
from resources.stores import (
    FileStoreResource,
    InfluxStoreResource,
    MySQLStoreResource,
    RedisCacheResource,
    RoutedStoreResource,
)
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.storage.base import Partition

DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")
POOL_SESSION = dg.MultiPartitionsDefinition({"pool": dg.StaticPartitionsDefinition(["A_SHARE", "QDII"]),
                                              "session": DAILY})
SYMBOLS = {"A_SHARE": ["DA01", "DA02"], "QDII": ["QD01", "QD 02"]}
SECRET = "s3cr3t-influx-password"
RANGE_TAGS = {"dagster/asset_partition_range_start": "2024-01-02",
              "dagster/asset_partition_range_end": "2024-01-12"}


def factor_frame(start, end, pools=("A_SHARE",)) -> pd.DataFrame:
    """Deterministic factor rows for the business days in [start, end)."""
    sessions = pd.bdate_range(pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None),
                              inclusive="left", name="session")
    rows = [(s, p, sym) for s in sessions for p in pools for sym in SYMBOLS[p]]
    index = pd.MultiIndex.from_tuples(rows, names=["session", "pool", "symbol"])
    day = np.array([r[0].dayofyear for r in rows], dtype=float)
    code = np.array([sum(map(ord, r[2])) for r in rows], dtype=float)
    return pd.DataFrame({"mom": day / 100 + code, "vol": np.where(day % 3 == 0, np.nan, day * code)}, index=index)


def price_panel(start, end) -> PricePanel:
    sessions = pd.bdate_range(pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None),
                              inclusive="left", name="session")
    base = np.outer(np.arange(1, len(sessions) + 1), [1.0, 2.0])
    frames = {f: pd.DataFrame(base * (i + 1), index=sessions, columns=["DA01", "DA02"])
              for i, f in enumerate(PRICE_FIELDS)}
    return PricePanel(frames, {"source": "test", "synthetic": True})


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(), code_version="1")
def factor_rows(context: dg.AssetExecutionContext) -> pd.DataFrame:
    start, end = context.partition_time_window
    return factor_frame(start, end)


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(), code_version="1")
def factor_mean(factor_rows: pd.DataFrame) -> pd.DataFrame:
    return factor_rows.groupby(level="session").mean()


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run(), code_version="1",
          metadata={"cache_kind": "hot"})
def daily_prices(context: dg.AssetExecutionContext) -> PricePanel:
    start, end = context.partition_time_window
    return price_panel(start, end)


def _check(panel: PricePanel) -> dict:
    return {"sessions": len(panel.sessions), "close_sum": float(np.nansum(panel["close"].to_numpy()))}


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def price_check(context: dg.AssetExecutionContext, daily_prices: PricePanel) -> dict:
    """One JSON document per partition: a dict keyed by partition key when a run covers several."""
    if len(context.partition_keys) == 1:
        return _check(daily_prices)
    days = {key: daily_prices.sessions[daily_prices.sessions.strftime("%Y-%m-%d") == key]
            for key in context.partition_keys}
    return {key: _check(PricePanel({f: daily_prices[f].loc[s] for f in PRICE_FIELDS}, daily_prices.meta))
            for key, s in days.items()}


@dg.asset(partitions_def=POOL_SESSION, backfill_policy=dg.BackfillPolicy.single_run())
def pool_factors(context: dg.AssetExecutionContext) -> pd.DataFrame:
    keys = [dg.MultiPartitionKey(k.keys_by_dimension) if isinstance(k, dg.MultiPartitionKey) else k
            for k in context.partition_keys]
    pools = sorted({k.keys_by_dimension["pool"] for k in keys})
    sessions = sorted({k.keys_by_dimension["session"] for k in keys})
    end = pd.Timestamp(sessions[-1]) + pd.Timedelta(days=1)
    return factor_frame(sessions[0], end, pools)


@dg.asset(partitions_def=POOL_SESSION, backfill_policy=dg.BackfillPolicy.single_run())
def pool_counts(pool_factors: pd.DataFrame) -> pd.DataFrame:
    return pool_factors.groupby(level=["session", "pool"]).size().to_frame("funds")


@dg.asset
def run_summary() -> dict:
    return {"pools": ["A_SHARE", "QDII"], "note": "unpartitioned JSON", "weights": [0.6, 0.4]}


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def unsplittable() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0]})


BACKEND_IDS = ["local", "mysql", "influxdb", "cached"]


@pytest.fixture()
def io_manager(request, tmp_path, fresh_databases, redis_server, namespace, monkeypatch):
    """An IO manager of the backend named by the test's parameter, and a store opened on it."""
    monkeypatch.setenv("ROTATION_STORAGE__INFLUX_PASSWORD", SECRET)
    kind = request.param
    influx_server, mysql_server = fresh_databases
    retry = {"retry_attempts": 2, "retry_base_delay_s": 0.05, "retry_max_delay_s": 0.1}
    mysql = MySQLStoreResource(url=mysql_server, **retry)
    influx = InfluxStoreResource(url=influx_server[0], database=influx_server[1], username="rotation",
                                 password=dg.EnvVar("ROTATION_STORAGE__INFLUX_PASSWORD"), **retry)
    if kind == "local":
        manager = LocalFilesIOManager(base_dir=str(tmp_path / "data"))
        store = FileStoreResource(base_dir=str(tmp_path / "data"))
    elif kind == "mysql":
        manager = StoreIOManager(store=mysql)
        store = mysql
    else:
        routed = RoutedStoreResource(timeseries=influx, tables=mysql)
        cache = RedisCacheResource(url=redis_server, namespace=namespace) if kind == "cached" else None
        manager = StoreIOManager(store=routed, cache=cache)
        store = routed
    return manager, store.open_store()


def _materialize(assets, manager, instance=None, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources={"io_manager": manager},
                          instance=instance or dg.DagsterInstance.ephemeral(), **kwargs)


def _materializations(result: dg.ExecuteInProcessResult, asset: str) -> list:
    return [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key.to_user_string() == asset]


def _no_secret_anywhere(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> None:
    texts = [repr(e) for e in result.all_events]
    texts += [repr(r) for r in instance.all_logs(result.run_id)]
    texts.append(repr(instance.get_run_by_id(result.run_id).run_config))
    assert not any(SECRET in t for t in texts)


@pytest.mark.parametrize("io_manager", BACKEND_IDS, indirect=True)
def test_single_partition(io_manager) -> None:
    manager, store = io_manager
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize([factor_rows, factor_mean, daily_prices, price_check], manager, instance,
                          partition_key="2024-01-03")
    assert result.success
    want = factor_frame("2024-01-03", "2024-01-04")
    pd.testing.assert_frame_equal(store.read(("factor_rows",), Partition.single("2024-01-03")), want)
    pd.testing.assert_frame_equal(result.output_for_node("factor_mean"), want.groupby(level="session").mean())
    assert store.read(("price_check",), Partition.single("2024-01-03")) == {"sessions": 1, "close_sum": 12.0}
    meta = _materializations(result, "factor_rows")[0].metadata
    assert meta["rows"].value == len(want) and meta["partitions_written"].value == 1
    health = meta["storage_health"].value
    assert health and all(h["ok"] for h in health)
    assert meta["storage_backend"].value == store.backend
    _no_secret_anywhere(result, instance)

    summary = _materialize([run_summary], manager)
    assert summary.success
    assert store.read(("run_summary",), Partition.unpartitioned()) == {
        "pools": ["A_SHARE", "QDII"], "note": "unpartitioned JSON", "weights": [0.6, 0.4]}


@pytest.mark.parametrize("io_manager", BACKEND_IDS, indirect=True)
def test_single_run_backfill_splits_and_combines(io_manager) -> None:
    manager, store = io_manager
    result = _materialize([factor_rows, factor_mean, daily_prices, price_check], manager, tags=RANGE_TAGS)
    assert result.success
    keys = [str(d.date()) for d in pd.date_range("2024-01-02", "2024-01-12")]
    assert store.partitions(("factor_rows",)) == keys
    for key in ("2024-01-05", "2024-01-06"):  # a weekday and a weekend day (no sessions: an empty part)
        end = pd.Timestamp(key) + pd.Timedelta(days=1)
        pd.testing.assert_frame_equal(store.read(("factor_rows",), Partition.single(key)),
                                      factor_frame(key, end), check_index_type=False)
    whole = factor_frame("2024-01-02", "2024-01-13")
    pd.testing.assert_frame_equal(result.output_for_node("factor_mean"), whole.groupby(level="session").mean())
    panel = store.read(("daily_prices",), Partition.single("2024-01-08"))
    assert list(panel.sessions) == [pd.Timestamp("2024-01-08")]
    checks = {k: store.read(("price_check",), Partition.single(k)) for k in keys}
    assert checks["2024-01-06"] == {"sessions": 0, "close_sum": 0.0}
    assert sum(c["sessions"] for c in checks.values()) == len(pd.bdate_range("2024-01-02", "2024-01-12"))
    mats = _materializations(result, "factor_rows")
    assert len(mats) == len(keys)  # one materialization per partition, carrying the output's totals
    assert {(m.metadata["rows"].value, m.metadata["partitions_written"].value) for m in mats} == {(len(whole),
                                                                                                   len(keys))}


@pytest.mark.parametrize("io_manager", BACKEND_IDS, indirect=True)
def test_pool_by_session_range(io_manager) -> None:
    manager, store = io_manager
    result = _materialize([pool_factors, pool_counts], manager,
                          tags={"dagster/asset_partition_range_start": "A_SHARE|2024-01-02",
                                "dagster/asset_partition_range_end": "QDII|2024-01-04"})
    assert result.success
    assert len(store.partitions(("pool_factors",))) == 6
    part = store.read(("pool_factors",), Partition.multi({"pool": "QDII", "session": "2024-01-03"}))
    pd.testing.assert_frame_equal(part, factor_frame("2024-01-03", "2024-01-04", ["QDII"]))
    counts = result.output_for_node("pool_counts")
    assert counts["funds"].tolist() == [2] * 6
    single = _materialize([pool_factors], manager,
                          partition_key=dg.MultiPartitionKey({"pool": "A_SHARE", "session": "2024-01-10"}))
    assert single.success
    assert store.exists(("pool_factors",), Partition.multi({"pool": "A_SHARE", "session": "2024-01-10"}))


@pytest.mark.parametrize("io_manager", ["local", "mysql"], indirect=True)
def test_a_value_that_cannot_be_split_fails_clearly(io_manager) -> None:
    manager, store = io_manager
    result = _materialize([unsplittable], manager, tags=RANGE_TAGS, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.to_string()
    assert "asset unsplittable" in message and "2024-01-02" in message and "DatetimeIndex" in message
    assert store.partitions(("unsplittable",)) == []
