"""Storage: one interface (:class:`~.base.Store`), swappable implementations.

* :class:`~.files.FileStore` -- the embedded default: Parquet/JSON files under the data folder;
* :class:`~.influx.InfluxStore` -- InfluxDB (v1 HTTP API, or the v2 client in :mod:`.influx_v2`);
* :class:`~.mysql.MySQLStore` -- MySQL/MariaDB tables via SQLAlchemy + PyMySQL;
* :class:`~.routing.RoutedStore` -- time series in one store, tables and documents in another;
* :class:`~.cache.CachedStore` -- a Redis read-through cache in front of any of them.

:func:`open_store` builds the store a :class:`~rotation_platform.config.models.StorageConfig` asks
for. Modules for servers import their client libraries lazily, so the embedded default needs none.
"""

from __future__ import annotations

from typing import Any

from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    RetryPolicy,
    StoredCounts,
    Store,
    WriteReceipt,
)
from rotation_platform.storage.errors import (
    StorageError,
    StorageInputError,
    StorageIntegrityError,
    StorageNotFoundError,
    StorageUnavailableError,
)
from rotation_platform.storage.files import FileStore

__all__ = [
    "Store",
    "Partition",
    "WriteReceipt",
    "StoredCounts",
    "HealthStatus",
    "RetryPolicy",
    "FileStore",
    "StorageError",
    "StorageInputError",
    "StorageIntegrityError",
    "StorageNotFoundError",
    "StorageUnavailableError",
    "open_store",
]


def _secret(value: Any) -> str | None:
    return None if value is None else value.get_secret_value()


def open_store(storage: Any, *, retry: RetryPolicy | None = None, cache_namespace: str | None = None,
               code_version: str = "") -> Store:
    """The store for a ``StorageConfig``: ``local`` files, ``mysql`` tables, or ``influxdb`` time
    series with tables and documents in MySQL; behind a Redis cache when ``redis_cache`` is on.
    InfluxDB goes through the v2 client when ``influx_token`` is set, otherwise the v1 HTTP API."""
    from pathlib import Path

    from rotation_platform.storage import stats
    from rotation_platform.storage.routing import RoutedStore

    stats.use_folder(Path(storage.data_dir) / ".stats")  # where this process leaves its store statistics
    store: Store
    if storage.backend == "local":
        store = FileStore(storage.data_dir)
    else:
        from rotation_platform.storage.mysql import MySQLStore

        tables = MySQLStore(storage.mysql_url, _secret(storage.mysql_password), retry=retry)
        if storage.backend == "mysql":
            store = tables
        elif storage.backend == "influxdb":
            from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport

            token = _secret(storage.influx_token)
            if token:
                from rotation_platform.storage.influx_v2 import InfluxV2Transport

                transport = InfluxV2Transport(storage.influx_url, storage.influx_database, token=token,
                                              org=storage.influx_database)
            else:
                transport = InfluxV1Transport(storage.influx_url, storage.influx_database,
                                              username=storage.influx_username,
                                              password=_secret(storage.influx_password))
            store = RoutedStore(InfluxStore(transport, retry=retry), tables)
        else:
            raise StorageInputError(f"unknown storage backend {storage.backend!r}; use local, influxdb or mysql")
    if storage.redis_cache:
        from rotation_platform.storage.cache import CachedStore, RedisCache

        store = CachedStore(store, RedisCache(storage.redis_url, _secret(storage.redis_password),
                                              namespace=cache_namespace or "-", code_version=code_version))
    return store
