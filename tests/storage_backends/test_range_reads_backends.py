"""Window reads on the server backends: one round trip for N partitions, values equal to N reads.

Every backend (files, InfluxDB, MySQL, InfluxDB + MySQL routed, Redis in front of routed) stores the
real A_SHARE prices as pool x session partitions, a factor-shaped frame per session and a table
without a time axis per session; ``read_many`` must return exactly what ``read`` returns for each,
leave out (or, ``strict``, name) what is missing, and reach the servers a fixed number of times,
whatever the window's length: counted on MySQL statements, InfluxDB HTTP requests and Redis
commands/pipelines.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import load_config
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition, missing_keys
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.partitioning import PartitionSlice, combine_values, split_value
from rotation_platform.storage.provenance import with_provenance

from .conftest import BACKENDS, ROOT

SHARED_DATA = ROOT.parent / "shared" / "data" / "cn_etf"
POOL = "A_SHARE"
N_SESSIONS = 12


@pytest.fixture(scope="module")
def real_panel() -> PricePanel:
    if not (SHARED_DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {SHARED_DATA}")
    config = load_config(ROOT / "configs" / "cn_etf.yaml", env={})
    pool = next(p for p in config.pools if p.name == POOL)
    panel = load_pool_prices(DirectorySource(SHARED_DATA), pool, config.data).panel
    return panel.select(start=panel.sessions[-N_SESSIONS])


def _slices(sessions: pd.DatetimeIndex) -> list[PartitionSlice]:
    return [PartitionSlice(Partition.multi({"pool": POOL, "session": str(t.date())}),
                           (pd.Timestamp(t, tz="UTC"), pd.Timestamp(t, tz="UTC") + pd.Timedelta(days=1)),
                           {"pool": POOL})
            for t in sessions]


def _values(panel: PricePanel) -> dict[str, list[tuple[Partition, object]]]:
    """Per asset kind, the partitions and values to store."""
    slices = _slices(panel.sessions)
    rng = np.random.default_rng(11)
    index = pd.MultiIndex.from_product([panel.sessions, panel.symbols], names=["session", "symbol"])
    factors = pd.DataFrame(rng.standard_normal((len(index), 16)), index=index,
                           columns=[f"f{k:02d}" for k in range(16)])
    factors.iloc[::7, 3] = np.nan
    factors.iloc[1, 0] = -np.inf
    prov = {"run_id": "r1", "code_version": "v1"}
    prices = [(s.partition, with_provenance(v, prov)) for s, v in split_value(panel, slices, "test")]
    frames = [(s.partition, with_provenance(v, {**prov, "partition": s.key}))
              for s, v in split_value(factors, slices, "test")]
    tables = [(s.partition, pd.DataFrame({"symbol": panel.symbols[:5], "weight": rng.random(5),
                                          "lots": rng.integers(0, 90, 5), "note": ["a'b", "", "基金", "x", "y"]}))
              for s in slices]
    return {"prices": prices, "factors": frames, "targets": tables}


def _assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, PricePanel):
        assert a.content_hash() == b.content_hash() and a.meta == b.meta
        for f in PRICE_FIELDS:
            pd.testing.assert_frame_equal(a[f], b[f], check_exact=True)
    else:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs
        assert codec.table_checksum(codec.encode(a).table) == codec.table_checksum(codec.encode(b).table)


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_equals_single_reads(backend, make_store, asset_key, real_panel) -> None:
    store = make_store(backend)
    for name, items in _values(real_panel).items():
        asset = (asset_key[0] + "_" + name,)
        for partition, value in items:
            store.write(asset, partition, value)
        partitions = [p for p, _ in items]
        singles = {p.key: store.read(asset, p) for p in partitions}
        window = store.read_many(asset, partitions)
        assert list(window) == [p.key for p in partitions], name
        for (partition, written), key in zip(items, window):
            _assert_same(window[key], singles[key])
            _assert_same(window[key], store.read(asset, partition))
        combined = store.read_window(asset, partitions)
        _assert_same(combined, combine_values([(PartitionSlice(p), singles[p.key]) for p in partitions]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_partitions(backend, make_store, asset_key, real_panel) -> None:
    store = make_store(backend)
    items = _values(real_panel)["prices"][:4]
    for partition, value in items:
        store.write(asset_key, partition, value)
    partitions = [p for p, _ in items]
    store.delete(asset_key, partitions[1])
    absent = Partition.multi({"pool": POOL, "session": "1999-01-04"})
    asked = [absent, *partitions]
    window = store.read_many(asset_key, asked)
    assert list(window) == [partitions[0].key, partitions[2].key, partitions[3].key]
    assert missing_keys(asked, window) == [absent.key, partitions[1].key]
    with pytest.raises(StorageNotFoundError) as err:
        store.read_many(asset_key, asked, strict=True)
    assert absent.key in str(err.value) and partitions[1].key in str(err.value) and "\n" not in str(err.value)
    assert store.read_many(("t_never_written",), partitions) == {}


# ------------------------------------------------------------------------------------- round trips
def _write_prices(store, asset, panel, n):
    items = _values(panel)["prices"][:n]
    for partition, value in items:
        store.write(asset, partition, value)
    return [p for p, _ in items]


def test_mysql_window_is_one_catalog_and_one_data_query(make_store, asset_key, real_panel, monkeypatch) -> None:
    import pymysql.cursors

    from rotation_platform.storage.mysql import CATALOG_TABLE, table_name

    store = make_store("mysql")
    frames = _values(real_panel)["factors"]
    for partition, value in frames:
        store.write(asset_key, partition, value)
    statements: list[str] = []
    original = pymysql.cursors.Cursor.execute

    def counting(self, query, args=None):
        statements.append(str(query))
        return original(self, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", counting)
    data_table = table_name(asset_key)
    for n in (1, len(frames)):
        statements.clear()
        store.read_many(asset_key, [p for p, _ in frames[:n]])
        assert sum(CATALOG_TABLE in q for q in statements) == 1, statements
        assert sum(f"`{data_table}`" in q for q in statements) == 1, statements
    statements.clear()
    for partition, _ in frames:
        store.read(asset_key, partition)
    assert sum(f"`{data_table}`" in q for q in statements) == len(frames)


def test_influx_window_is_one_catalog_and_one_data_request(make_store, asset_key, real_panel) -> None:
    store = make_store("influxdb")
    partitions = _write_prices(store, asset_key, real_panel, N_SESSIONS)
    requests: list[str] = []
    transport = store.transport
    original = transport._request

    def counting(method, path, **kwargs):
        requests.append(f"{method} {path}")
        return original(method, path, **kwargs)

    transport._request = counting
    try:
        for n in (1, N_SESSIONS):
            requests.clear()
            assert len(store.read_many(asset_key, partitions[:n])) == n
            assert requests == ["POST /query", "POST /query"], requests
        requests.clear()
        for partition in partitions:
            store.read(asset_key, partition)
        assert len(requests) == 3 * N_SESSIONS  # catalog probe, catalog, data per partition
    finally:
        transport._request = original


class _CountingRedis:
    """A Redis client that counts the commands a cache sends (MGET/GET calls, executed pipelines)."""

    def __init__(self, client):
        self._client = client
        self.calls: list[str] = []

    def mget(self, keys):
        self.calls.append(f"MGET {len(keys)}")
        return self._client.mget(keys)

    def get(self, key):
        self.calls.append("GET")
        return self._client.get(key)

    def pipeline(self, transaction=True):
        pipe = self._client.pipeline(transaction=transaction)
        execute, calls = pipe.execute, self.calls

        def counted_execute(*args, **kwargs):
            calls.append(f"EXEC {len(pipe.command_stack)}")
            return execute(*args, **kwargs)

        pipe.execute = counted_execute
        return pipe

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_cached_window_is_one_mget_and_one_store_call(make_store, asset_key, real_panel) -> None:
    store = make_store("cached")
    partitions = _write_prices(store, asset_key, real_panel, N_SESSIONS)
    cache = store.cache
    counting = _CountingRedis(cache._client)
    cache._client = counting
    inner_calls: list[int] = []
    inner = store.inner
    original = inner.read_many

    def counted(asset, parts, **kwargs):
        inner_calls.append(len(parts))
        return original(asset, parts, **kwargs)

    inner.read_many = counted
    singles = {p.key: inner.read(asset_key, p) for p in partitions}
    # the writes filled the cache: every partition is a hit
    counting.calls.clear()
    warm = store.read_many(asset_key, partitions)
    assert counting.calls == [f"MGET {N_SESSIONS}"] and inner_calls == []
    # drop half of the entries: the misses come from the store in one call and are cached in one pipeline
    for p in partitions[::2]:
        cache.delete(cache.key(asset_key, p, "", store.scope))
    counting.calls.clear()
    hits_before, misses_before = cache.stats["hits"], cache.stats["misses"]
    mixed = store.read_many(asset_key, partitions)
    assert counting.calls == [f"MGET {N_SESSIONS}", f"EXEC {N_SESSIONS // 2}"], counting.calls
    assert inner_calls == [N_SESSIONS // 2]
    assert cache.stats["hits"] - hits_before == N_SESSIONS - N_SESSIONS // 2
    assert cache.stats["misses"] - misses_before == N_SESSIONS // 2
    for key, value in singles.items():
        _assert_same(warm[key], value)
        _assert_same(mixed[key], value)
    counting.calls.clear()
    store.read_many(asset_key, partitions)
    assert counting.calls == [f"MGET {N_SESSIONS}"] and inner_calls == [N_SESSIONS // 2]
    inner.read_many = original


def test_influx_v2_window_query_filters_the_partition_set() -> None:
    import pyarrow as pa

    from rotation_platform.storage.influx import Column
    from rotation_platform.storage.influx_v2 import flux_select

    columns = [Column("rp_n", "field", pa.int64()), Column("rp_part", "tag", pa.string())]
    q = flux_select("bucket", "prices", {}, columns, (0, 10), any_of=("rp_part", ["A|2024-01-02", 'B"|x']))
    assert 'contains(value: r["rp_part"], set: ["A|2024-01-02", "B\\"|x"])' in q
    assert "range(start: time(v: 0), stop: time(v: 10))" in q



def test_cached_window_of_chunked_entries(tmp_path, redis_server, namespace, asset_key, real_panel) -> None:
    """Entries larger than ``chunk_bytes`` sit behind a manifest: their chunks come in one more MGET."""
    from rotation_platform.storage.cache import CachedStore, RedisCache
    from rotation_platform.storage.files import FileStore

    store = CachedStore(FileStore(tmp_path / "files"), RedisCache(redis_server, namespace=namespace,
                                                                  chunk_bytes=1024))
    items = _values(real_panel)["factors"][:5]
    for partition, value in items:
        store.write(asset_key, partition, value)
    counting = _CountingRedis(store.cache._client)
    store.cache._client = counting
    window = store.read_many(asset_key, [p for p, _ in items])
    assert counting.calls[0] == "MGET 5" and counting.calls[1].startswith("MGET ") and len(counting.calls) == 2
    assert int(counting.calls[1].split()[1]) > 5  # every chunk of the five entries, in one command
    for partition, _ in items:
        _assert_same(window[partition.key], store.inner.read(asset_key, partition))
    store.close()


def test_cached_window_reads_the_store_while_redis_is_down(tmp_path, asset_key, real_panel) -> None:
    from rotation_platform.storage.cache import CachedStore, RedisCache
    from rotation_platform.storage.files import FileStore

    store = CachedStore(FileStore(tmp_path / "files"), RedisCache("redis://127.0.0.1:1/0", namespace="down",
                                                                  socket_timeout_s=0.2))
    partitions = _write_prices(store, asset_key, real_panel, 4)
    window = store.read_many(asset_key, partitions)
    assert list(window) == [p.key for p in partitions]
    for partition in partitions:
        _assert_same(window[partition.key], store.inner.read(asset_key, partition))
    assert store.cache.stats["errors"] >= 1 and store.cache.last_error
    store.close()
