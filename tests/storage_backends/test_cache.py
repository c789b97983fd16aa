"""Redis read-through cache: TTL by data kind, versioned keys, chunked entries, degrading when down."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest
import redis as redis_lib

from rotation_platform.storage.base import Partition
from rotation_platform.storage.cache import CacheKind, CachedStore, RedisCache, kind_for
from rotation_platform.storage.errors import StorageError
from rotation_platform.storage.files import FileStore

P = Partition.single("2024-01-02")


def _cached(tmp_path, url, namespace, **options) -> CachedStore:
    return CachedStore(FileStore(tmp_path / "files"), RedisCache(url, namespace=namespace, **options))


def test_kinds_and_ttls(tmp_path, redis_server, namespace, panel) -> None:
    assert kind_for("price_panel") is CacheKind.HOT and kind_for("frame") is CacheKind.COMPUTED
    assert kind_for("frame", "realtime") is CacheKind.REALTIME
    with pytest.raises(StorageError, match="unknown cache kind"):
        kind_for("frame", "forever")
    store = _cached(tmp_path, redis_server, namespace)
    client = redis_lib.Redis.from_url(redis_server)
    frame = pd.DataFrame({"x": [1.0]})
    cases = [(("prices",), panel, None, 1800), (("screen",), frame, None, 3600), (("quotes",), frame, "realtime", 300)]
    for asset, value, kind, ttl in cases:
        store.write(asset, P, value, kind=kind)
        key = store.cache.key(asset, P, "", store.scope)
        assert ttl - 5 <= client.ttl(key) <= ttl
    assert store.partitions(("screen",)) == ["2024-01-02"]
    query_key = next(iter(client.scan_iter(match=f"rp:1:{namespace}:query:*")))
    assert 895 <= client.ttl(query_key) <= 900
    client.close()


def test_reads_are_served_from_the_cache_and_keys_are_versioned(tmp_path, redis_server, namespace) -> None:
    store = _cached(tmp_path, redis_server, namespace)
    frame = pd.DataFrame({"x": np.arange(5.0)}, index=pd.date_range("2024-01-01", periods=5, name="session"))
    store.write(("f",), P, frame, version="1")
    FileStore(tmp_path / "files").delete(("f",), P)  # the store no longer has it: only the cache does
    pd.testing.assert_frame_equal(store.read(("f",), P, version="1"), frame, check_freq=False)
    assert store.cache.stats["hits"] == 1
    with pytest.raises(StorageError, match="nothing stored"):
        store.read(("f",), P, version="2")  # another code version never sees the old entry
    other = _cached(tmp_path, redis_server, namespace + "x")
    with pytest.raises(StorageError, match="nothing stored"):
        other.read(("f",), P, version="1")  # another configuration neither


def test_large_values_are_chunked_and_verified(tmp_path, redis_server, namespace) -> None:
    store = _cached(tmp_path, redis_server, namespace, chunk_bytes=4096)
    frame = pd.DataFrame(np.random.default_rng(3).standard_normal((2000, 4)), columns=list("abcd"))
    store.write(("big",), P, frame)
    key = store.cache.key(("big",), P, "", store.scope)
    client = redis_lib.Redis.from_url(redis_server)
    assert client.get(key).startswith(b"RPCHUNKS1:")
    assert store.cache.get(key) is not None
    client.set(key + "#1", b"corrupted")
    assert store.cache.get(key) is None  # checksum mismatch: a miss, never wrong data
    pd.testing.assert_frame_equal(store.read(("big",), P), frame)  # read through the store again
    assert store.cache.get(key) is not None
    client.close()


def test_redis_down_degrades_with_one_warning_and_recovers(tmp_path, private_redis, running, namespace,
                                                           caplog) -> None:
    server = running(private_redis)
    store = _cached(tmp_path, server.url, namespace, socket_timeout_s=0.3, retry_after_s=0.5)
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    store.write(("a",), P, frame)
    server.kill()
    with caplog.at_level(logging.WARNING, logger="rotation_platform.storage.cache"):
        t0 = time.monotonic()
        for _ in range(5):
            pd.testing.assert_frame_equal(store.read(("a",), P), frame)
        assert time.monotonic() - t0 < 3.0
    warnings = [r.getMessage() for r in caplog.records if "continuing without the cache" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{server.port}" in warnings[0]
    assert not store.cache.available and store.cache.stats["skipped"] >= 4
    assert not store.health()[-1].ok
    server.start()
    time.sleep(0.6)
    store.write(("a",), P, frame)
    assert store.cache.available and store.cache.last_error is None
    assert store.health()[-1].ok
