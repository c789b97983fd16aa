"""Storage resources: one interface (:class:`StoreResource`), one implementation per backend.

Each resource holds only configuration (URLs, names, tuning) and secrets given as ``dg.EnvVar`` --
read when a run starts, never shown in the UI -- and opens the library's
:class:`~rotation_platform.storage.base.Store` on demand. :func:`resources.definitions.build_resources`
picks them for the environment.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import dagster as dg

from rotation_platform.storage.base import RetryPolicy, Store
from rotation_platform.storage.errors import StorageInputError

__all__ = [
    "StoreResource",
    "FileStoreResource",
    "InfluxStoreResource",
    "MySQLStoreResource",
    "RoutedStoreResource",
    "RedisCacheResource",
]


class StoreResource(dg.ConfigurableResource):
    """Where asset values are kept. Subclasses open one kind of store."""

    retry_attempts: int = 4
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 8.0

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retry_attempts, base_delay=self.retry_base_delay_s,
                           max_delay=self.retry_max_delay_s)

    @abstractmethod
    def open_store(self) -> Store:
        """A store for this resource's server and settings."""


class FileStoreResource(StoreResource):
    """The embedded default: Parquet/JSON files under ``base_dir``."""

    base_dir: str

    def open_store(self) -> Store:
        from rotation_platform.storage.files import FileStore

        return FileStore(self.base_dir)


class InfluxStoreResource(StoreResource):
    """InfluxDB for time series. ``api="v1"``: the v1 HTTP API (InfluxDB 1.x, or 2.x/3.x v1
    endpoints) with ``username``/``password`` or ``token``; ``api="v2"``: ``influxdb-client`` with
    ``token``, ``org`` and the bucket ``database``."""

    url: str
    database: str
    api: Literal["v1", "v2"] = "v1"
    username: str | None = None
    password: str | None = None
    token: str | None = None
    org: str = ""
    timeout_s: float = 30.0
    batch_lines: int = 5_000
    batch_bytes: int = 4 << 20
    concurrency: int = 2
    gzip_level: int = 1

    def open_store(self) -> Store:
        from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport

        if self.api == "v2":
            from rotation_platform.storage.influx_v2 import InfluxV2Transport

            if not self.token:
                raise StorageInputError(f"InfluxDB {self.url}: the v2 API needs a token; set "
                                        "ROTATION_STORAGE__INFLUX_TOKEN")
            transport = InfluxV2Transport(self.url, self.database, token=self.token, org=self.org or self.database,
                                          timeout_s=self.timeout_s)
        else:
            transport = InfluxV1Transport(self.url, self.database, username=self.username, password=self.password,
                                          token=self.token, org=self.org or None, timeout_s=self.timeout_s)
        return InfluxStore(transport, retry=self.retry_policy(), batch_lines=self.batch_lines,
                           batch_bytes=self.batch_bytes, concurrency=self.concurrency, gzip_level=self.gzip_level)


class MySQLStoreResource(StoreResource):
    """MySQL/MariaDB for tables; ``url`` without password (``mysql+pymysql://user@host:3306/db``)."""

    url: str
    password: str | None = None
    batch_bytes: int = 4 << 20
    connect_timeout_s: int = 5

    def open_store(self) -> Store:
        from rotation_platform.storage.mysql import MySQLStore

        return MySQLStore(self.url, self.password, retry=self.retry_policy(), batch_bytes=self.batch_bytes,
                          connect_timeout_s=self.connect_timeout_s)


class RoutedStoreResource(StoreResource):
    """Time series in ``timeseries`` (InfluxDB), tables and documents in ``tables`` (MySQL)."""

    timeseries: StoreResource
    tables: StoreResource

    def open_store(self) -> Store:
        from rotation_platform.storage.routing import RoutedStore

        return RoutedStore(self.timeseries.open_store(), self.tables.open_store())


class RedisCacheResource(dg.ConfigurableResource):
    """Redis read-through cache. ``namespace`` is the configuration hash; TTLs in seconds by kind."""

    url: str
    password: str | None = None
    namespace: str = ""
    code_version: str = ""
    ttl_realtime_s: int = 5 * 60
    ttl_hot_s: int = 30 * 60
    ttl_computed_s: int = 60 * 60
    ttl_query_s: int = 15 * 60
    socket_timeout_s: float = 0.5
    retry_after_s: float = 30.0

    def open_cache(self):
        from rotation_platform.storage.cache import CacheKind, CachePolicy, RedisCache

        policy = CachePolicy({CacheKind.REALTIME: self.ttl_realtime_s, CacheKind.HOT: self.ttl_hot_s,
                              CacheKind.COMPUTED: self.ttl_computed_s, CacheKind.QUERY: self.ttl_query_s})
        return RedisCache(self.url, self.password, namespace=self.namespace, code_version=self.code_version,
                          policy=policy, socket_timeout_s=self.socket_timeout_s, retry_after_s=self.retry_after_s)
