"""One place picks the implementations: ROTATION_ENV x storage.backend; secrets only as EnvVar;
health checks as plain functions."""

from __future__ import annotations

import importlib
import sys

import dagster as dg
import pytest

from resources.definitions import ENVIRONMENTS, PROFILES, build_resources, resolve_environment
from resources.io_managers import LocalFilesIOManager, StoreIOManager
from resources.stores import (
    FileStoreResource,
    InfluxStoreResource,
    MySQLStoreResource,
    RedisCacheResource,
    RoutedStoreResource,
)
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.storage.health import check_influx, check_mysql, check_redis, check_storage

from .conftest import free_port  # noqa: F401

DEMO = str(CONFIG_DIR / "demo.yaml")
SECRETS = {"ROTATION_STORAGE__MYSQL_PASSWORD": "mysql-pw-123", "ROTATION_STORAGE__INFLUX_TOKEN": "influx-tok-456",
           "ROTATION_STORAGE__REDIS_PASSWORD": "redis-pw-789"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ["ROTATION_ENV", "ROTATION_STORAGE__BACKEND", "ROTATION_STORAGE__REDIS_CACHE", *SECRETS]:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("backend,cache", [("local", False), ("local", True), ("mysql", False), ("mysql", True),
                                           ("influxdb", False), ("influxdb", True)])
def test_environment_and_backend_pick_the_implementations(env, backend, cache, monkeypatch) -> None:
    monkeypatch.setenv("ROTATION_STORAGE__BACKEND", backend)
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_CACHE", str(cache).lower())
    resources = build_resources(env=env, config_path=DEMO)
    manager = resources["io_manager"]
    profile = PROFILES[env]
    if backend == "local" and not cache:
        assert isinstance(manager, LocalFilesIOManager)
    else:
        assert isinstance(manager, StoreIOManager)
        assert isinstance(manager.cache, RedisCacheResource) == cache
        store = manager.store
        assert store.retry_attempts == profile.retry_attempts
        expected = {"local": FileStoreResource, "mysql": MySQLStoreResource, "influxdb": RoutedStoreResource}[backend]
        assert type(store) is expected
        if backend == "influxdb":
            assert isinstance(store.timeseries, InfluxStoreResource) and store.timeseries.api == "v1"
            assert isinstance(store.tables, MySQLStoreResource)
    # the whole Dagster layer accepts them
    assets, jobs = _layer()
    defs = dg.Definitions(assets=assets, jobs=jobs, resources=resources)
    assert defs.resolve_job_def("daily") is not None


def _layer():
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "jobs"}:
            del sys.modules[name]
    from assets import ALL_ASSETS
    from jobs import ALL_JOBS

    return ALL_ASSETS, ALL_JOBS


def test_secrets_reach_resources_only_as_env_vars(monkeypatch) -> None:
    for var, value in SECRETS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("ROTATION_STORAGE__BACKEND", "influxdb")
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_CACHE", "true")
    manager = build_resources(env="prod", config_path=DEMO)["io_manager"]
    influx, mysql = manager.store.timeseries, manager.store.tables
    assert influx.api == "v2" and influx.org == "rotation"  # a token selects the v2 client
    for holder, field, var in [(influx, "token", "ROTATION_STORAGE__INFLUX_TOKEN"),
                               (mysql, "password", "ROTATION_STORAGE__MYSQL_PASSWORD"),
                               (manager.cache, "password", "ROTATION_STORAGE__REDIS_PASSWORD")]:
        value = getattr(holder, field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name == var
    text = repr(manager) + str(manager.store) + str(manager.cache)
    assert not any(secret in text for secret in SECRETS.values())
    assert manager.store.retry_attempts == PROFILES["prod"].retry_attempts


def test_unknown_environment_is_refused(monkeypatch) -> None:
    with pytest.raises(ValueError, match="ROTATION_ENV='staging'"):
        build_resources(env="staging", config_path=DEMO)
    monkeypatch.setenv("ROTATION_ENV", "qa")
    with pytest.raises(ValueError, match="is not one of"):
        resolve_environment()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_definitions_module_loads_in_every_environment(env, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ROTATION_ENV", env)
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path))
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    defs = importlib.import_module("definitions").defs
    assert defs.resolve_job_def("daily").name == "daily"


def test_health_functions(influx_server, mysql_server, redis_server, tmp_path, monkeypatch) -> None:
    influx = check_influx(influx_server[0], influx_server[1])
    assert influx.ok and influx.version.startswith("1.") and influx.latency_ms is not None
    assert check_mysql(mysql_server).ok and "MariaDB" in (check_mysql(mysql_server).version or "")
    assert check_redis(redis_server).ok
    closed = free_port()
    for status in (check_influx(f"http://127.0.0.1:{closed}", "x", password="pw-secret", timeout_s=1),
                   check_mysql(f"mysql+pymysql://root@127.0.0.1:{closed}/x", "pw-secret", timeout_s=1),
                   check_redis(f"redis://127.0.0.1:{closed}/0", "pw-secret", timeout_s=0.5)):
        assert not status.ok and status.detail.startswith("no answer")
        assert "pw-secret" not in repr(status.as_dict())
    monkeypatch.setenv("ROTATION_STORAGE__BACKEND", "influxdb")
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_CACHE", "true")
    monkeypatch.setenv("ROTATION_STORAGE__INFLUX_URL", influx_server[0])
    monkeypatch.setenv("ROTATION_STORAGE__MYSQL_URL", mysql_server)
    monkeypatch.setenv("ROTATION_STORAGE__REDIS_URL", redis_server)
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path))
    statuses = check_storage(load_config(DEMO).storage)
    assert [s.backend for s in statuses] == ["local", "influxdb", "mysql", "redis"]
    assert all(s.ok for s in statuses), statuses
