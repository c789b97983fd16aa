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

Every other setting of the resources :func:`build_resources` returns is fixed by the deployment (the
config file and the environment), not by a run's config: :func:`fixed_by_deployment` leaves every
field but the secrets out of the run config schema, so the launchpad has no ``io_manager.base_dir``,
``platform.config_path``, server URL or cache namespace to change (a run config naming one is refused by
Dagster's config check as an unexpected entry), and the files and servers stay what the config says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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

#: resource fields that stay run-config fields: secrets, given as ``dg.EnvVar`` (resolved at launch)
SECRET_FIELDS = frozenset({"password", "token"})

R = TypeVar("R", bound=dg.ConfigurableResource)


def fixed_by_deployment(resource: R) -> R:
    """``resource`` with every setting but its secrets left out of its run config schema, so a run's
    config (the launchpad) cannot change them; the values stay the resource's fields, which the run
    uses as constructed. Nested resources are not run-configurable in Dagster anyway.

    Dagster has no public switch for this: the resource's config schema (Dagster 1.13,
    ``ConfigurableResourceFactory._state__internal__``) is replaced by the one of its secret fields
    only (``tests/deploy/test_confinement.py`` checks the job's run config schema)."""
    from dagster._config.pythonic_config.config import infer_schema_from_config_class
    from dagster._config.pythonic_config.conversion_utils import _curry_config_schema

    cls = type(resource)
    fixed = {name for name in cls.model_fields if name not in SECRET_FIELDS}
    state = resource._state__internal__
    schema = infer_schema_from_config_class(cls, fields_to_omit=fixed)
    given = {k: v for k, v in state.resolved_config_dict.items() if k not in fixed}
    resource._state__internal__ = state._replace(schema=schema, config_schema=_curry_config_schema(schema, given))
    return resource


@dataclass(frozen=True)
class EnvironmentProfile:
    retry_attempts: int
    retry_base_delay_s: float
    retry_max_delay_s: float
    step_retries: int = 0          # whole-step retries when a server stays down (not for the local files)
    step_retry_wait_s: float = 30.0

    def retry_policy(self):
        """The store's retry policy of this environment (the command lines open their stores with it)."""
        from rotation_platform.storage import RetryPolicy

        return RetryPolicy(attempts=self.retry_attempts, base_delay=self.retry_base_delay_s,
                           max_delay=self.retry_max_delay_s)


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
    # the run locks live in the configured data folder on every backend (the CLI takes the same ones)
    return StoreIOManager(store=store_resource(storage, env), cache=cache, lock_dir=str(Path(storage.data_dir)),
                          **retries)


def build_resources(env: str | None = None, config_path: str | None = None) -> dict[str, object]:
    """The resources for the config at ``config_path`` (default: the file the environment names now). The
    platform resource keeps that file's absolute path, so every run loads the config the definitions were
    built from, whatever its working directory, ``ROTATION_CONFIG`` or run config (every setting but the
    secrets is fixed, see :func:`fixed_by_deployment`)."""
    env = resolve_environment(env)
    path = str(Path(config_path or default_config_path()).resolve())
    config = load_config(path)
    resources = {
        "platform": PlatformResource(config_path=path),
        "io_manager": storage_io_manager(config.storage, env, namespace=config_hash(config)[:16]),
        # the same backend, for assets that read other assets' partitions themselves (summary, snapshot)
        "storage": store_resource(config.storage, env),
    }
    return {name: fixed_by_deployment(resource) for name, resource in resources.items()}
