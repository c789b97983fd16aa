"""Redis as a read-through cache in front of any store.

* Values are cached as LZ4-compressed Arrow IPC (:func:`~.codec.to_bytes`; price panels in wide form),
  so a hit returns exactly what the store would, without a pivot or Parquet decoding; values above
  ``chunk_bytes`` are split over several keys written in one ``MULTI``/``EXEC`` transaction behind a
  manifest that carries their SHA-256.
* Keys are versioned: ``rp:<cache format>:<config hash>:<code version>:<asset code version>:<store>:
  <asset>:<partition>`` (``<store>``: a hash of the backing store's location). A new configuration, a
  new code version or another store never reads an older entry; a write replaces the entry of its
  own key (write-through).
* TTLs by data kind (:class:`CacheKind`): real-time 5 min, hot data 30 min, computed results 1 h,
  user queries 15 min. An asset may declare its kind; otherwise price panels are hot and everything
  else is a computed result.
* A window of partitions (:meth:`CachedStore.read_many`) is one ``MGET``; the misses come from the
  store in one ``read_many`` and are cached in one ``MULTI``/``EXEC`` pipeline.
* Redis down is never fatal: the first failure logs a warning, the cache is skipped for
  ``retry_after_s`` seconds, then tried again. Reads and writes go to the store meanwhile.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from rotation_platform.storage import codec
from rotation_platform.storage import stats as store_stats
from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    StoredCounts,
    Store,
    WriteReceipt,
    asset_name,
    unique_partitions,
)
from rotation_platform.storage.errors import StorageError
from rotation_platform.storage.health import check_redis, redact_url

__all__ = ["CacheKind", "CachePolicy", "DEFAULT_TTLS", "CACHE_FORMAT", "RedisCache", "CachedStore", "kind_for"]

CACHE_FORMAT = "1"


class CacheKind(str, Enum):
    REALTIME = "realtime"
    HOT = "hot"
    COMPUTED = "computed"
    QUERY = "query"


DEFAULT_TTLS: dict[CacheKind, int] = {
    CacheKind.REALTIME: 5 * 60,
    CacheKind.HOT: 30 * 60,
    CacheKind.COMPUTED: 60 * 60,
    CacheKind.QUERY: 15 * 60,
}


@dataclass(frozen=True)
class CachePolicy:
    """Seconds to keep an entry, by kind."""

    ttls: Mapping[CacheKind, int] = field(default_factory=lambda: dict(DEFAULT_TTLS))

    def ttl(self, kind: CacheKind) -> int:
        return int(self.ttls.get(kind, DEFAULT_TTLS[kind]))


def kind_for(value_kind: str | None, declared: str | CacheKind | None = None) -> CacheKind:
    """The cache kind of a value: the asset's declaration, else hot for price panels and computed
    for everything else."""
    if declared:
        try:
            return CacheKind(declared)
        except ValueError:
            raise StorageError(f"unknown cache kind {declared!r}; use one of {[k.value for k in CacheKind]}") from None
    return CacheKind.HOT if value_kind == codec.KIND_PANEL else CacheKind.COMPUTED


_MANIFEST = b"RPCHUNKS1:"


class RedisCache:
    """A byte cache on Redis that degrades to a no-op (with a warning) while Redis is unreachable."""

    def __init__(self, url: str, password: str | None = None, *, namespace: str, code_version: str = "",
                 policy: CachePolicy | None = None, socket_timeout_s: float = 0.5, retry_after_s: float = 30.0,
                 chunk_bytes: int = 32 << 20, logger: Any = None):
        import redis

        self.url = url
        self.server = f"Redis {redact_url(url)}"
        self.namespace = namespace
        self.code_version = code_version
        self.policy = policy or CachePolicy()
        self.retry_after_s = retry_after_s
        self.chunk_bytes = chunk_bytes
        self.logger = logger
        self._password = password
        self._client = redis.Redis.from_url(url, password=password, socket_timeout=socket_timeout_s,
                                            socket_connect_timeout=socket_timeout_s, health_check_interval=0)
        self._down_until = 0.0
        self.last_error: str | None = None
        self.stats = {"hits": 0, "misses": 0, "writes": 0, "errors": 0, "skipped": 0}

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self.url)!r}, namespace={self.namespace!r})"

    def _warn(self, message: str) -> None:
        import logging

        (self.logger or logging.getLogger("rotation_platform.storage.cache")).warning(message)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _guard(self, op: str, fn: Callable[[], Any], default: Any = None, *, kind: str = "",
               size: Callable[[Any], int] | None = None) -> Any:
        """``fn()``, or ``default`` while Redis is unreachable; counted as one ``kind`` operation of the
        backend ``redis`` (:mod:`.stats`) when ``kind`` is given, ``size(result)`` its bytes."""
        import redis

        if not self.available:
            self.stats["skipped"] += 1
            return default
        t0 = time.perf_counter()
        try:
            result = fn()
            if kind:
                store_stats.record("redis", kind, time.perf_counter() - t0, size(result) if size else 0)
            if self.last_error is not None:
                self._warn(f"{self.server}: answering again; the cache is back in use")
                self.last_error = None
            return result
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
                redis.exceptions.ResponseError, OSError) as exc:
            if kind:
                store_stats.record("redis", kind, time.perf_counter() - t0, 0, error=True)
            self.stats["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            self._down_until = time.monotonic() + self.retry_after_s
            self._warn(f"{self.server}: {op} failed ({self.last_error}); continuing without the cache "
                       f"for {self.retry_after_s:g}s -- results come from the store")
            return default

    # ---------------------------------------------------------------------------------- keys
    def key(self, asset: Sequence[str], partition: Partition, version: str = "", scope: str = "") -> str:
        """``rp:<format>:<namespace>:<code version>:<asset version>:<store scope>:<asset>:<partition>``."""
        return ":".join(["rp", CACHE_FORMAT, self.namespace or "-", self.code_version or "-", version or "-",
                         scope or "-", asset_name(asset), partition.key])

    # ---------------------------------------------------------------------------------- bytes
    def get(self, key: str) -> bytes | None:
        def fetch() -> bytes | None:
            data = self._client.get(key)
            if data is None or not data.startswith(_MANIFEST):
                return data
            count_text, digest = data[len(_MANIFEST):].split(b":", 1)
            parts = self._client.mget([f"{key}#{i}" for i in range(int(count_text))])
            if any(p is None for p in parts):
                return None
            joined = b"".join(parts)
            return joined if hashlib.sha256(joined).hexdigest().encode() == digest else None

        data = self._guard(f"GET {key}", fetch, kind="read", size=lambda d: len(d) if d else 0)
        if data is None:
            self.stats["misses"] += 1
        else:
            self.stats["hits"] += 1
        store_stats.cache_lookups(int(data is not None), int(data is None))
        return data

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The entries of many keys in one ``MGET`` (entries split over chunks take one more ``MGET``
        for all their chunks); None for a miss, and for every key while Redis is unreachable."""
        if not keys:
            return []

        def fetch() -> list[bytes | None]:
            found = list(self._client.mget(list(keys)))
            chunked = {i: data for i, data in enumerate(found) if data is not None and data.startswith(_MANIFEST)}
            if chunked:
                plan = []
                for i, head in chunked.items():
                    count_text, digest = head[len(_MANIFEST):].split(b":", 1)
                    plan.append((i, int(count_text), digest))
                parts = self._client.mget([f"{keys[i]}#{j}" for i, count, _ in plan for j in range(count)])
                at = 0
                for i, count, digest in plan:
                    pieces, at = parts[at:at + count], at + count
                    joined = None if any(p is None for p in pieces) else b"".join(pieces)
                    ok = joined is not None and hashlib.sha256(joined).hexdigest().encode() == digest
                    found[i] = joined if ok else None
            return found

        answer = self._guard(f"MGET {len(keys)} keys", fetch, kind="read",
                             size=lambda found: sum(len(d) for d in found if d))
        if answer is None:
            answer = [None] * len(keys)
        hits = sum(1 for data in answer if data is not None)
        self.stats["hits"] += hits
        self.stats["misses"] += len(keys) - hits
        store_stats.cache_lookups(hits, len(keys) - hits)
        return answer

    def _queue_set(self, pipe: Any, key: str, data: bytes, ttl_s: int) -> None:
        """Queue the writes of one entry on ``pipe``: the value itself, or its chunks and a manifest naming
        their count and the value's SHA-256 when it is larger than ``chunk_bytes``."""
        if len(data) <= self.chunk_bytes:
            pipe.set(key, data, ex=ttl_s)
            return
        chunks = [data[i:i + self.chunk_bytes] for i in range(0, len(data), self.chunk_bytes)]
        for i, chunk in enumerate(chunks):
            pipe.set(f"{key}#{i}", chunk, ex=ttl_s + 60)
        pipe.set(key, _MANIFEST + f"{len(chunks)}:".encode() + hashlib.sha256(data).hexdigest().encode(), ex=ttl_s)

    def set_many(self, entries: Sequence[tuple[str, bytes, int]]) -> bool:
        """Store ``(key, data, ttl_s)`` entries in one ``MULTI``/``EXEC`` pipeline."""
        if not entries:
            return True

        def store() -> bool:
            pipe = self._client.pipeline(transaction=True)
            for key, data, ttl_s in entries:
                self._queue_set(pipe, key, data, ttl_s)
            pipe.execute()
            return True

        ok = bool(self._guard(f"SET {len(entries)} keys", store, False, kind="write",
                              size=lambda _: sum(len(data) for _, data, _ in entries)))
        if ok:
            self.stats["writes"] += len(entries)
        return ok

    def set(self, key: str, data: bytes, ttl_s: int) -> bool:
        def store() -> bool:
            pipe = self._client.pipeline(transaction=True)
            self._queue_set(pipe, key, data, ttl_s)
            pipe.execute()
            return True

        ok = bool(self._guard(f"SET {key}", store, False, kind="write", size=lambda _: len(data)))
        if ok:
            self.stats["writes"] += 1
        return ok

    def delete(self, key: str) -> None:
        """Remove an entry (its chunks, if any, become unreachable and expire with their TTL)."""
        self._guard(f"DEL {key}", lambda: self._client.delete(key), kind="delete")

    def delete_partition(self, asset: Sequence[str], partition: Partition) -> int:
        """Delete the entries of a partition under every code version; the number removed."""
        def remove() -> int:
            pattern = ":".join(["rp", CACHE_FORMAT, _glob_escape(self.namespace or "-"), "*",
                                _glob_escape(asset_name(asset)), _glob_escape(partition.key)])
            return sum(self._client.delete(k) for k in self._client.scan_iter(match=pattern, count=1000))

        return int(self._guard(f"delete {asset_name(asset)} {partition.key}", remove, 0) or 0)

    def memory_bytes(self, key: str) -> int | None:
        """Bytes Redis uses for an entry, its chunks included; None when absent or unreachable."""
        def usage() -> int | None:
            total = self._client.memory_usage(key)
            if total is None:
                return None
            head = self._client.get(key) or b""
            if head.startswith(_MANIFEST):
                count = int(head[len(_MANIFEST):].split(b":", 1)[0])
                total += sum(self._client.memory_usage(f"{key}#{i}") or 0 for i in range(count))
            return int(total)

        return self._guard(f"MEMORY USAGE {key}", usage)

    def clear_namespace(self) -> int:
        """Delete every key of this cache's namespace; the number of keys removed."""
        def clear() -> int:
            n = 0
            pattern = f"rp:{CACHE_FORMAT}:{_glob_escape(self.namespace or '-')}:*"
            for key in self._client.scan_iter(match=pattern, count=1000):
                n += self._client.delete(key)
            return n

        return int(self._guard("clear namespace", clear, 0) or 0)

    def health(self) -> HealthStatus:
        return check_redis(self.url, self._password)

    def close(self) -> None:
        self._client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class CachedStore(Store):
    """A store with a Redis read-through, write-through cache in front of it."""

    delegates = True  # the store behind counts its calls, the cache its own (backend ``redis``)

    def __init__(self, inner: Store, cache: RedisCache, logger: Any = None):
        self.inner = inner
        self.cache = cache
        self.scope = hashlib.sha1(inner.location.encode()).hexdigest()[:10]
        self.backend = inner.backend  # type: ignore[misc]
        self.logger = logger

    def _children(self) -> list[Store]:
        return [self.inner]

    @property
    def location(self) -> str:
        return f"{self.inner.location} + cache {self.cache.server}"

    def servers(self) -> list[str]:
        return [*self.inner.servers(), self.cache.server]

    def write(self, asset: Sequence[str], partition: Partition, value: Any, *, version: str = "",
              kind: str | CacheKind | None = None) -> WriteReceipt:
        self.cache.logger = self.logger
        receipt = self.inner.write(asset, partition, value)
        self.cache.delete(self._partitions_key(asset))
        key = self.cache.key(asset, partition, version, self.scope)
        self.cache.set(key, codec.to_bytes(value), self.cache.policy.ttl(kind_for(codec.kind_of(value), kind)))
        return receipt

    def read(self, asset: Sequence[str], partition: Partition, *, version: str = "",
             kind: str | CacheKind | None = None) -> Any:
        self.cache.logger = self.logger
        key = self.cache.key(asset, partition, version, self.scope)
        data = self.cache.get(key)
        if data is not None:
            try:
                return codec.from_bytes(data)
            except StorageError as exc:
                self.log.warning(f"{self.cache.server}: entry {key} is unreadable ({exc}); reading the store")
        value = self.inner.read(asset, partition)
        self.cache.set(key, codec.to_bytes(value), self.cache.policy.ttl(kind_for(codec.kind_of(value), kind)))
        return value

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *, strict: bool = False,
                  version: str = "", kind: str | CacheKind | None = None) -> dict[str, Any]:
        """A window of partitions: the cached ones from one ``MGET``, the misses from the store in one
        :meth:`Store.read_many` call, then cached in one pipeline."""
        self.cache.logger = self.logger
        wanted = unique_partitions(partitions)
        keys = [self.cache.key(asset, p, version, self.scope) for p in wanted]
        out: dict[str, Any] = {}
        misses: list[Partition] = []
        for partition, key, data in zip(wanted, keys, self.cache.get_many(keys)):
            if data is not None:
                try:
                    out[partition.key] = codec.from_bytes(data)
                    continue
                except StorageError as exc:
                    self.log.warning(f"{self.cache.server}: entry {key} is unreadable ({exc}); reading the store")
            misses.append(partition)
        if misses:
            loaded = self.inner.read_many(asset, misses)
            fills = []
            for partition in misses:
                if partition.key in loaded:
                    value = loaded[partition.key]
                    out[partition.key] = value
                    fills.append((self.cache.key(asset, partition, version, self.scope), codec.to_bytes(value),
                                  self.cache.policy.ttl(kind_for(codec.kind_of(value), kind))))
            self.cache.set_many(fills)
        return self._window_answer(asset, wanted, out, strict)

    def read_window(self, asset: Sequence[str], partitions: Sequence[Partition], *, version: str = "",
                    kind: str | CacheKind | None = None) -> Any:
        """:meth:`Store.read_window` through the cache (entries of ``version``)."""
        from rotation_platform.storage.partitioning import PartitionSlice, combine_values

        values = self.read_many(asset, partitions, strict=True, version=version, kind=kind)
        if not values:
            return super().read_window(asset, partitions)
        return combine_values([(PartitionSlice(p), values[p.key]) for p in unique_partitions(partitions)])

    def _query_key(self, name: str) -> str:
        return ":".join(["rp", CACHE_FORMAT, self.cache.namespace or "-", "query", self.scope, name])

    def _partitions_key(self, asset: Sequence[str]) -> str:
        return self._query_key(f"partitions:{asset_name(asset)}")

    def query(self, name: str, fn: Callable[[], Any], *, kind: CacheKind = CacheKind.QUERY) -> Any:
        """Memoise a user query (a JSON-able answer, a frame or a panel) under ``name``."""
        key = self._query_key(name)
        data = self.cache.get(key)
        if data is not None:
            return codec.from_bytes(data)
        value = fn()
        self.cache.set(key, codec.to_bytes(value), self.cache.policy.ttl(kind))
        return value

    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        return self.inner.exists(asset, partition)

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        self.inner.delete(asset, partition)
        self.cache.delete_partition(asset, partition)
        self.cache.delete(self._partitions_key(asset))

    def partitions(self, asset: Sequence[str]) -> list[str]:
        return self.query(f"partitions:{asset_name(asset)}", lambda: self.inner.partitions(asset))

    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        return self.inner.counts(asset, partition)

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        return self.inner.checksum(asset, partition)

    def invalidate(self, asset: Sequence[str], partition: Partition) -> None:
        """Forget the cached entries of a partition (every code version) and the asset's partition list,
        after the partition was changed in the store behind this cache's back."""
        self.cache.delete_partition(asset, partition)
        self.cache.delete(self._partitions_key(asset))

    def health(self) -> list[HealthStatus]:
        return [*self.inner.health(), self.cache.health()]

    def close(self) -> None:
        self.inner.close()
        self.cache.close()
