"""Pick resource implementations for the environment, in one place.

``ROTATION_ENV`` chooses the environment, ``storage.backend`` (YAML or
``ROTATION_STORAGE__BACKEND``) the store:

============  ===============================================================================
backend       IO manager
============  ===============================================================================
``local``     :class:`LocalFilesIOManager` -- Parquet/JSON files under ``storage.data_dir``
``mysql``     :class:`StoreIOManager` over MySQL (every value as rows)
``influxdb``  :class:`StoreIOManager` over InfluxDB for time series + MySQL for tables/documents
============  ===============================================================================

``storage.redis_cache: true`` puts a Redis read-through cache in front of any of them. InfluxDB is
spoken through the v2 client (``influxdb-client``; org = the database name) when
``ROTATION_STORAGE__INFLUX_TOKEN`` is set, otherwise through the v1 HTTP API.

Environments differ in how hard a store retries a server before failing the run: ``local`` 3
attempts (0.5 s, 1 s backoff), ``test`` 3 attempts (0.2 s, 0.4 s) so faults surface fast, ``prod`` 6
attempts (1 s doubling up to 30 s) to ride out restarts. When a database server is still down after
that, the step itself is retried (Dagster ``RetryRequested``): once after 30 s locally, three times
60 s apart in ``prod``, never in ``test``. Steps that read the price source retry the same way.

Secrets (``ROTATION_STORAGE__MYSQL_PASSWORD``, ``__INFLUX_TOKEN``, ``__INFLUX_PASSWORD``,
``__REDIS_PASSWORD``) reach resources only as ``dg.EnvVar``: read when a run starts, hidden in the UI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from resources.io_managers import LocalFilesIOManager, StoreIOManager
from resources.platform import PlatformResource
from resources.stores import (
    FileStoreResource,
    InfluxStoreResource,
    MySQLStoreResource,
    RedisCacheResource,
    RoutedStoreResource,
    StoreResource,
)
from rotation_platform import __version__
from rotation_platform.config import config_hash, default_config_path, load_config
from rotation_platform.config.models import StorageConfig
from rotation_platform.storage.codec import FORMAT_VERSION

ENVIRONMENTS = ("local", "test", "prod")


@dataclass(frozen=True)
class EnvironmentProfile:
    retry_attempts: int
    retry_base_delay_s: float
    retry_max_delay_s: float
    step_retries: int = 0          # whole-step retries when a server stays down (not for the local files)
    step_retry_wait_s: float = 30.0


PROFILES = {
    "local": EnvironmentProfile(3, 0.5, 4.0, 1, 30.0),
    "test": EnvironmentProfile(3, 0.2, 1.0, 0, 0.0),
    "prod": EnvironmentProfile(6, 1.0, 30.0, 3, 60.0),
}

SECRET_ENV = {
    "mysql_password": "ROTATION_STORAGE__MYSQL_PASSWORD",
    "influx_token": "ROTATION_STORAGE__INFLUX_TOKEN",
    "influx_password": "ROTATION_STORAGE__INFLUX_PASSWORD",
    "redis_password": "ROTATION_STORAGE__REDIS_PASSWORD",
}


def _secret(name: str) -> dg.EnvVar | None:
    """The secret as an ``EnvVar`` when its variable is set (resolved at launch), else None."""
    var = SECRET_ENV[name]
    return dg.EnvVar(var) if os.environ.get(var) else None


def resolve_environment(env: str | None = None) -> str:
    env = env or os.environ.get("ROTATION_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"ROTATION_ENV={env!r} is not one of {ENVIRONMENTS}")
    return env


def _mysql(storage: StorageConfig, profile: EnvironmentProfile) -> MySQLStoreResource:
    return MySQLStoreResource(url=storage.mysql_url, password=_secret("mysql_password"),
                              retry_attempts=profile.retry_attempts, retry_base_delay_s=profile.retry_base_delay_s,
                              retry_max_delay_s=profile.retry_max_delay_s)


def store_resource(storage: StorageConfig, env: str) -> StoreResource:
    """The store resource for a storage configuration in an environment."""
    profile = PROFILES[resolve_environment(env)]
    retry = {"retry_attempts": profile.retry_attempts, "retry_base_delay_s": profile.retry_base_delay_s,
             "retry_max_delay_s": profile.retry_max_delay_s}
    if storage.backend == "local":
        return FileStoreResource(base_dir=str(Path(storage.data_dir)), **retry)
    if storage.backend == "mysql":
        return _mysql(storage, profile)
    token = _secret("influx_token")
    influx = InfluxStoreResource(url=storage.influx_url, database=storage.influx_database,
                                 api="v2" if token is not None else "v1", username=storage.influx_username,
                                 password=_secret("influx_password"), token=token, org=storage.influx_database,
                                 **retry)
    return RoutedStoreResource(timeseries=influx, tables=_mysql(storage, profile), **retry)


def storage_io_manager(storage: StorageConfig, env: str, namespace: str = "") -> dg.ConfigurableIOManager:
    """The IO manager every asset stores through."""
    if storage.backend == "local" and not storage.redis_cache:
        return LocalFilesIOManager(base_dir=str(Path(storage.data_dir)))
    profile = PROFILES[resolve_environment(env)]
    retries = {"step_retries": profile.step_retries if storage.backend != "local" else 0,
               "step_retry_wait_s": profile.step_retry_wait_s}
    cache = None
    if storage.redis_cache:
        cache = RedisCacheResource(url=storage.redis_url, password=_secret("redis_password"), namespace=namespace,
                                   code_version=f"{__version__}.{FORMAT_VERSION}")
    return StoreIOManager(store=store_resource(storage, env), cache=cache, **retries)


def build_resources(env: str | None = None, config_path: str | None = None) -> dict[str, object]:
    """The resources for the config at ``config_path`` (default: the file the environment names now). The
    platform resource keeps that file's absolute path, so every run loads the config the definitions were
    built from, whatever its working directory or ``ROTATION_CONFIG``."""
    env = resolve_environment(env)
    path = str(Path(config_path or default_config_path()).resolve())
    config = load_config(path)
    return {
        "platform": PlatformResource(config_path=path),
        "io_manager": storage_io_manager(config.storage, env, namespace=config_hash(config)[:16]),
        # the same backend, for assets that read other assets' partitions themselves (summary, snapshot)
        "storage": store_resource(config.storage, env),
    }
