"""The market store on every backend, the stored price source, and the market_data asset's staleness.

Servers come from ``conftest.py`` (a missing server fails, never skips); the real data from
``../shared/data/cn_etf`` (missing: a failure naming the folder).
"""


import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data.market_store import (
    InfluxBackend,
    MarketStore,
    MySQLBackend,
    ParquetBackend,
    session_versions,
)
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources import make_source, pool_source
from rotation_platform.data.sources.base import CorporateActions
from rotation_platform.data.sources.stored import StoredSource
from rotation_platform.storage.cache import RedisCache
from rotation_platform.storage.influx import InfluxV1Transport

from .conftest import FAST_RETRY

REPO = Path(__file__).resolve().parents[2]
REAL_DATA = REPO.parent / "shared" / "data" / "cn_etf"
KINDS = ("local", "influxdb", "mysql")


def _open(kind: str, tmp_path: Path, databases) -> MarketStore:
    if kind == "local":
        return MarketStore(ParquetBackend(tmp_path / "market_data"))
    (influx_url, influx_db), mysql_url = databases
    tables = MySQLBackend(mysql_url, retry=FAST_RETRY)
    if kind == "mysql":
        return MarketStore(tables)
    return MarketStore(InfluxBackend(InfluxV1Transport(influx_url, influx_db), tables, retry=FAST_RETRY))


@pytest.fixture(params=KINDS)
def store_factory(request, tmp_path):
    """``open()`` -> a new MarketStore on the same (fresh) storage of one backend kind."""
    kind = request.param
    databases = request.getfixturevalue("fresh_databases") if kind != "local" else None
    opened: list[MarketStore] = []

    def open_() -> MarketStore:
        store = _open(kind, tmp_path, databases)
        opened.append(store)
        return store

    open_.kind = kind  # type: ignore[attr-defined]
    yield open_
    for s in opened:
        s.close()


def _bars(symbols=("AAA", "BBB"), start="2024-01-02", n=30, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sessions = pd.bdate_range(start, periods=n).astype("datetime64[ns]")
    parts = []
    for j, s in enumerate(symbols):
        close = 10.0 * (1 + j) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        parts.append(pd.DataFrame({"symbol": s, "date": sessions, "open": close * 0.999, "high": close * 1.01,
                                   "low": close * 0.99, "close": close, "volume": rng.integers(1e5, 1e7, n) * 1.0,
                                   "amount": close * 1e6, "adj_factor": np.nan}))
    out = pd.concat(parts, ignore_index=True)
    if len(out) > 3:
        out.loc[3, "amount"] = np.nan      # a missing value survives every backend
    return out


# ------------------------------------------------------------------------------------ every backend
def test_append_and_idempotent_reingest(store_factory):
    store = store_factory()
    bars = _bars()
    first = store.upsert("XSHG", bars.iloc[:40])
    assert (first.new, first.unchanged, first.restated) == (40, 0, 0)
    appended = store.upsert("XSHG", bars)          # the first 40 again plus 20 more
    assert (appended.new, appended.unchanged, appended.restated) == (20, 40, 0)
    before = store_factory().bars(["AAA", "BBB"])   # a new connection sees what was stored
    pd.testing.assert_frame_equal(before[list(bars.columns)], bars.sort_values(["symbol", "date"])
                                  .reset_index(drop=True), check_dtype=False)
    again = store.upsert("XSHG", bars)
    assert (again.new, again.unchanged, again.restated) == (0, 60, 0) and again.restatements == ()
    after = store_factory().bars(["AAA", "BBB"])
    pd.testing.assert_frame_equal(before, after)
    assert store.restatements().empty
    through = store.bars(["AAA"], "2024-01-10")
    assert through["date"].max() == pd.Timestamp("2024-01-10") and set(through["symbol"]) == {"AAA"}


def test_restatement_replaces_logs_and_keeps_old_value(store_factory):
    store = store_factory()
    bars = _bars()
    store.upsert("XSHG", bars)
    version_before = store.version(["AAA", "BBB"])
    fixed = bars.copy()
    row = fixed.index[(fixed["symbol"] == "BBB") & (fixed["date"] == pd.Timestamp("2024-01-09"))][0]
    old_close = float(fixed.loc[row, "close"])
    fixed.loc[row, "close"] = old_close * 1.05          # a vendor correction
    fixed.loc[row, "volume"] = np.nan                   # ... and a value withdrawn
    result = store.upsert("XSHG", fixed)
    assert (result.new, result.unchanged, result.restated) == (0, 59, 1)
    got = {(r.symbol, r.session, r.field): (r.old, r.new) for r in result.restatements}
    assert got[("BBB", "2024-01-09", "close")] == (old_close, old_close * 1.05)
    assert np.isnan(got[("BBB", "2024-01-09", "volume")][1])
    assert set(got) == {("BBB", "2024-01-09", "close"), ("BBB", "2024-01-09", "volume")}
    reopened = store_factory()
    stored = reopened.bars(["BBB"]).set_index("date")
    assert stored.loc["2024-01-09", "close"] == old_close * 1.05 and np.isnan(stored.loc["2024-01-09", "volume"])
    log = reopened.restatements(["BBB"])
    close_log = log[log["field"] == "close"].iloc[0]
    assert (close_log["old"], close_log["new"]) == (old_close, old_close * 1.05)
    assert close_log["session"] == pd.Timestamp("2024-01-09") and close_log["table"] == "daily_bars"
    assert reopened.version(["AAA", "BBB"]) != version_before
    # the correction again: nothing new, nothing restated
    assert (store.upsert("XSHG", fixed).restated, len(reopened.restatements())) == (0, 2)


def test_corporate_actions_round_trip_and_restatement(store_factory):
    store = store_factory()
    def ns(*days):
        return pd.DatetimeIndex(days).astype("datetime64[ns]")

    dates = ns("2024-01-02", "2024-01-03", "2024-01-04")
    def table(**cols):   # as the file sources give it: symbols in an object column
        frame = pd.DataFrame(cols)
        frame["symbol"] = frame["symbol"].astype(object)
        return frame

    actions = CorporateActions(
        factors={"AAA": pd.Series([1.0, 1.0, 1.25], index=pd.DatetimeIndex(dates, name="date"), name="AAA")},
        splits=table(symbol=["AAA"], date=ns("2024-01-04"), ratio=[2.0]),
        dividends=table(symbol=["BBB"], date=ns("2024-01-03"), cash=[0.05]))
    first = store.upsert_actions(actions, ["AAA", "BBB"])
    assert (first.new, first.restated) == (5, 0)
    back = store_factory().corporate_actions(["AAA", "BBB"])
    pd.testing.assert_series_equal(back.factors["AAA"], actions.factors["AAA"])
    pd.testing.assert_frame_equal(back.splits, actions.splits)
    pd.testing.assert_frame_equal(back.dividends, actions.dividends)
    assert store.upsert_actions(actions, ["AAA", "BBB"]).new == 0
    changed = CorporateActions(factors=actions.factors, splits=actions.splits,
                               dividends=actions.dividends.assign(cash=[0.06]))
    result = store.upsert_actions(changed, ["AAA", "BBB"])
    assert result.restated == 1 and result.restatements[0].field == "cash"
    assert (result.restatements[0].old, result.restatements[0].new) == (0.05, 0.06)


def test_session_versions_move_from_the_restated_date_on():
    bars = _bars(n=10)
    sessions = sorted(bars["date"].unique())
    tables = {"daily_bars": bars, "adj_factors": pd.DataFrame(columns=["symbol", "date", "hfq_factor"])
              .astype({"date": "datetime64[ns]", "hfq_factor": float}),
              "splits": pd.DataFrame({"symbol": pd.Series(dtype=object), "date": pd.Series(dtype="datetime64[ns]"),
                                      "ratio": pd.Series(dtype=float)}),
              "dividends": pd.DataFrame({"symbol": pd.Series(dtype=object),
                                         "date": pd.Series(dtype="datetime64[ns]"), "cash": pd.Series(dtype=float)})}
    before = session_versions(tables, sessions)
    changed = bars.copy()
    changed.loc[(changed["date"] == sessions[4]) & (changed["symbol"] == "AAA"), "close"] += 0.01
    after = session_versions({**tables, "daily_bars": changed}, sessions)
    keys = list(before)
    assert [before[k] == after[k] for k in keys] == [True] * 4 + [False] * 6


# ------------------------------------------------------------------------------- real data, stores
@pytest.fixture(scope="module")
def real_config():
    if not (REAL_DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {REAL_DATA}")
    return load_config(CONFIG_DIR / "cn_etf.yaml", env={})


def _assert_same_load(a, b) -> None:
    for name in ("open", "high", "low", "close", "volume", "amount"):
        pd.testing.assert_frame_equal(a.panel[name], b.panel[name])
        pd.testing.assert_frame_equal(a.raw_panel[name], b.raw_panel[name])
    assert [f.to_dict() for f in a.report.findings] == [f.to_dict() for f in b.report.findings]
    pd.testing.assert_frame_equal(a.quarantine, b.quarantine)
    assert a.methods == b.methods
    for s, adj in a.adjustments.items():
        pd.testing.assert_series_equal(adj.factor, b.adjustments[s].factor)
    np.testing.assert_array_equal(a.actions.split, b.actions.split)
    np.testing.assert_array_equal(a.actions.dividend, b.actions.dividend)
    pd.testing.assert_frame_equal(a.actions.events, b.actions.events)
    assert a.ended == b.ended
    np.testing.assert_array_equal(a.universe.excluded, b.universe.excluded)


def _compare_pools(config, stored_source_factory, asof="2026-03-31") -> None:
    symbols = [s for p in config.pools for s in p.symbols]
    files = make_source(config)
    file_actions = files.corporate_actions(symbols)
    stored_actions = stored_source_factory().corporate_actions(symbols)
    assert sorted(file_actions.factors) == sorted(stored_actions.factors)
    for s, f in file_actions.factors.items():
        pd.testing.assert_series_equal(f, stored_actions.factors[s])
    pd.testing.assert_frame_equal(file_actions.splits, stored_actions.splits)
    pd.testing.assert_frame_equal(file_actions.dividends, stored_actions.dividends)
    for pool in config.pools:
        a = load_pool_prices(make_source(config), pool, config.data, asof=asof)
        b = load_pool_prices(stored_source_factory(), pool, config.data, asof=asof)
        _assert_same_load(a, b)


def _ingest_real(config, store: MarketStore):
    source = make_source(config)
    symbols = [s for p in config.pools for s in p.symbols]
    raw = source.read(symbols)
    actions = source.corporate_actions(symbols)
    first = store.ingest("XSHG", raw, actions, source.describe())
    second = store.ingest("XSHG", raw, actions, source.describe())
    return first, second


def test_parquet_history_equals_files(real_config, tmp_path):
    store = MarketStore(ParquetBackend(tmp_path / "market_data"))
    first, second = _ingest_real(real_config, store)
    assert first.new > 100_000 and (second.new, second.restated) == (0, 0)
    files = sorted((tmp_path / "market_data" / "daily_bars").glob("*.parquet"))
    assert len(files) == len({s for p in real_config.pools for s in p.symbols})
    _compare_pools(real_config, lambda: StoredSource(MarketStore(ParquetBackend(tmp_path / "market_data"))))
    # cut at the as-of date: the same panels; only the rows after it (INFO after_asof) are not read
    pool = next(p for p in real_config.pools if p.name == "QDII")
    files = load_pool_prices(make_source(real_config), pool, real_config.data, asof="2026-03-31")
    cut = load_pool_prices(StoredSource(store, end="2026-03-31"), pool, real_config.data, asof="2026-03-31")
    pd.testing.assert_frame_equal(files.panel["close"], cut.panel["close"])
    assert [f.to_dict() for f in files.report.findings if f.check != "after_asof"] == \
        [f.to_dict() for f in cut.report.findings]
    assert cut.quarantine.empty and set(files.quarantine["reason"]) == {"after_asof"}


def test_influxdb_only_history_equals_files(real_config, fresh_databases):
    """Bars in InfluxDB, actions and provenance in the tables side: the pools load with no file at all."""
    (influx_url, influx_db), mysql_url = fresh_databases

    def open_store() -> MarketStore:
        return MarketStore(InfluxBackend(InfluxV1Transport(influx_url, influx_db),
                                         MySQLBackend(mysql_url, retry=FAST_RETRY), retry=FAST_RETRY))

    store = open_store()
    first, second = _ingest_real(real_config, store)
    assert (second.new, second.restated) == (0, 0) and second.unchanged == first.new
    _compare_pools(real_config, lambda: StoredSource(open_store()))
    store.close()


def test_pool_source_follows_data_history(real_config, tmp_path):
    stored_cfg = real_config.model_copy(update={
        "data": real_config.data.model_copy(update={"history": "store"}),
        "storage": real_config.storage.model_copy(update={"data_dir": tmp_path})})
    assert not isinstance(pool_source(real_config), StoredSource)
    source = pool_source(stored_cfg, end="2026-03-31")
    assert isinstance(source, StoredSource) and str(tmp_path / "market_data") in source.store.location
    assert source.end is None          # as the directory source: whole histories, the pipeline cuts at asof


# ------------------------------------------------------------------------------------------- cache
def test_redis_cache_hits_on_second_read(tmp_path, redis_server, namespace):
    store = MarketStore(ParquetBackend(tmp_path / "market_data"))
    store.upsert("XSHG", _bars())
    cache = RedisCache(redis_server, namespace=namespace)
    first = StoredSource(store, cache=cache).read(["AAA", "BBB"])
    assert (cache.stats["hits"], cache.stats["misses"], cache.stats["writes"]) == (0, 1, 1)
    second_source = StoredSource(store, cache=cache)
    second = second_source.read(["AAA", "BBB"])
    assert (cache.stats["hits"], cache.stats["misses"]) == (1, 1)
    assert second_source.stats == {"hits": 1, "misses": 0, "store_reads": 0}
    for s in ("AAA", "BBB"):
        pd.testing.assert_frame_equal(first[s].frame, second[s].frame)
    # a changing write renews the revision: the next read misses and sees the new bar
    more = _bars(start="2024-02-13", n=1, seed=9)
    store.upsert("XSHG", more)
    third = StoredSource(store, cache=cache).read(["AAA", "BBB"])
    assert cache.stats["misses"] == 2 and len(third["AAA"].frame) == len(first["AAA"].frame) + 1


def test_redis_outage_reads_the_store(tmp_path):
    from .conftest import free_port

    store = MarketStore(ParquetBackend(tmp_path / "market_data"))
    store.upsert("XSHG", _bars())
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", namespace="down", socket_timeout_s=0.2)
    source = StoredSource(store, cache=cache)
    raw = source.read(["AAA", "BBB"])
    assert len(raw["AAA"].frame) == 30 and cache.stats["errors"] >= 1 and source.stats["store_reads"] == 1


# ------------------------------------------------------------------------------ Dagster staleness
def _write_prices(folder: Path, bump: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    bars = _bars(symbols=("510050", "510300", "510500"), start="2024-01-02", n=12)
    for s, part in bars.groupby("symbol"):
        part = part.copy()
        if bump and s == bump["symbol"]:
            part.loc[part["date"] == pd.Timestamp(bump["date"]), "close"] *= 1.02
        out = part.assign(date=part["date"].dt.strftime("%Y-%m-%d"))[["date", "open", "high", "low", "close",
                                                                        "volume", "amount"]]
        out.to_csv(folder / f"{s}.csv", index=False)


@pytest.fixture(params=KINDS)
def small_config(request, tmp_path):
    """A one-pool directory config whose market store is on one backend kind (fresh databases)."""
    shutil.copy(CONFIG_DIR / "base.yaml", tmp_path / "base.yaml")
    prices = tmp_path / "prices"
    _write_prices(prices)
    storage = {"backend": request.param, "data_dir": str(tmp_path / "data")}
    if request.param != "local":
        (influx_url, influx_db), mysql_url = request.getfixturevalue("fresh_databases")
        storage.update(influx_url=influx_url, influx_database=influx_db, mysql_url=mysql_url)
    doc = {"extends": "base.yaml", "name": "mdtest",
           "data": {"source": "directory", "directory": str(prices), "history": "store"},
           "storage": storage,
           "orchestration": {"first_session": "2024-01-02"},
           "pools": [{"name": "P1", "kind": "A_SHARE", "calendar": "XSHG", "summary_weight": 1.0,
                      "benchmark": "equal_weight", "jump_threshold": 0.2,
                      "capital": {"target_capital": 1000000, "max_single_weight": 0.5, "max_adv_pct": 0.05},
                      "symbols": ["510050", "510300", "510500"]}],
           "screening": {"min_obs": 3}}
    path = tmp_path / "mdtest.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, prices


class _Platform:
    def __init__(self, path: Path):
        self.config = load_config(path, env={})


def test_restatement_marks_downstream_partitions_stale(small_config):
    from dagster._core.definitions.data_version import StaleStatus
    from dagster._utils.test.data_versions import get_stale_status_resolver

    from assets.market_data import MARKET_DATA_DEP, market_data_asset
    from assets.partitions import market_groups

    path, prices = small_config
    platform = _Platform(path)
    group = market_groups(platform.config)[0]
    md = market_data_asset(group)

    @dg.asset(partitions_def=group.partitions.pool_session, deps=[MARKET_DATA_DEP], code_version="1")
    def pool_prices(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult()

    instance = dg.DagsterInstance.ephemeral()
    resources = {"platform": platform}
    for day in ("2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"):
        result = dg.materialize([md], partition_key=day, instance=instance, resources=resources)
        assert result.success
    # a range run: each partition gets its own data version
    ranged = dg.materialize([md], instance=instance, resources=resources,
                            tags={"dagster/asset_partition_range_start": "2024-01-08",
                                  "dagster/asset_partition_range_end": "2024-01-09"})
    assert ranged.success
    versions = {}
    for day in ("2024-01-05", "2024-01-08", "2024-01-09"):
        record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=md.key, asset_partitions=[day]),
                                                 limit=1).records[0]
        versions[day] = record.asset_materialization.tags["dagster/data_version"]
    assert len(set(versions.values())) == 3
    for day in ("2024-01-03", "2024-01-05", "2024-01-09"):
        key = dg.MultiPartitionKey({"pool": "P1", "session": day})
        assert dg.materialize([md, pool_prices], selection=[pool_prices], partition_key=key, instance=instance,
                              resources=resources).success

    def status(day: str) -> StaleStatus:
        resolver = get_stale_status_resolver(instance, [md, pool_prices])
        return resolver.get_status(pool_prices.key, dg.MultiPartitionKey({"pool": "P1", "session": day}))

    assert [status(d) for d in ("2024-01-03", "2024-01-05", "2024-01-09")] == [StaleStatus.FRESH] * 3

    # re-ingesting the same data changes nothing
    assert dg.materialize([md], partition_key="2024-01-09", instance=instance, resources=resources).success
    assert [status(d) for d in ("2024-01-03", "2024-01-05", "2024-01-09")] == [StaleStatus.FRESH] * 3

    # the vendor corrects 2024-01-04: the run of 2024-01-09 restates it
    _write_prices(prices, bump={"symbol": "510500", "date": "2024-01-04"})
    result = dg.materialize([md], partition_key="2024-01-09", instance=instance, resources=resources)
    assert result.success
    mats = result.asset_materializations_for_node(md.op.name)
    latest = [m for m in mats if m.partition == "2024-01-09"][-1]
    assert latest.metadata["restated_values"].value == 1 and "510500" in latest.metadata["restatements"].value
    re_emitted = sorted(m.partition for m in mats if m.partition != "2024-01-09")
    assert re_emitted == ["2024-01-04", "2024-01-05", "2024-01-08"]
    # downstream of a session before the restated bar stays fresh; from the bar on it is stale
    assert status("2024-01-03") == StaleStatus.FRESH
    assert status("2024-01-05") == StaleStatus.STALE
    assert status("2024-01-09") == StaleStatus.STALE
    from rotation_platform.data.market_store import open_market_store

    store = open_market_store(platform.config.storage)
    log = store.restatements()
    assert list(log["field"]) == ["close"] and log["session"].iloc[0] == pd.Timestamp("2024-01-04")
    assert latest.metadata["store"].value == store.location
    # the pool reads its history from the store (data.history: store), with the corrected bar
    source = pool_source(platform.config)
    assert isinstance(source, StoredSource)
    close = source.read(["510500"])["510500"].frame.set_index("date")["close"]
    assert close.loc["2024-01-04"] == log["new"].iloc[0]
    store.close()


def test_market_data_asset_per_group_keys_and_wiring():
    """Each calendar group gets its own copy; pool assets declare MARKET_DATA_DEP and group_assets renames
    the dependency together with the keys (the wiring of docs/market-data.md)."""
    from assets.market_data import MARKET_DATA, MARKET_DATA_DEP, market_data_asset, market_data_dep
    from assets.partitions import MarketGroup, group_assets, market_groups

    config = load_config(CONFIG_DIR / "demo.yaml", env={})
    main = market_groups(config)[0]
    other = MarketGroup("XNYS", "xnys", main.pools, main.partitions)
    assert market_data_asset(main).key == dg.AssetKey("market_data")
    assert market_data_asset(other).key == dg.AssetKey(["xnys", "market_data"])
    dep = market_data_dep(other)
    assert dep.asset_key == dg.AssetKey(["xnys", "market_data"])
    assert isinstance(dep.partition_mapping, dg.MultiToSingleDimensionPartitionMapping)
    assert dep.partition_mapping.partition_dimension_name == "session"

    upstream = {"prices": None, "factor_panel": "prices"}

    @dg.multi_asset(outs={n: dg.AssetOut(is_required=False) for n in upstream}, can_subset=True,
                    deps=[MARKET_DATA_DEP], partitions_def=main.partitions.pool_session,
                    internal_asset_deps={n: {dg.AssetKey(u or MARKET_DATA)} for n, u in upstream.items()})
    def chain(context: dg.AssetExecutionContext):
        yield from ()

    assets = [a for g in (main, other) for a in group_assets([chain, market_data_asset(g, plain_key=True)], g)]
    defs = dg.Definitions(assets=assets, resources={"platform": object()})
    graph = defs.resolve_asset_graph()
    for g in (main, other):
        assert graph.get(g.key("prices")).parent_keys == {g.key("market_data")}
        assert graph.get(g.key("factor_panel")).parent_keys == {g.key("prices")}
        mapping = graph.get_partition_mapping(g.key("prices"), g.key("market_data"))
        assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    defs.resolve_implicit_global_asset_job_def()   # the two copies are distinct ops
