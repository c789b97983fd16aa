"""Deployment files agree with the code: docker-compose services, ports and ROTATION_* variables,
the Dockerfile's pins, the workspace, and deploy/dagster.yaml against a real PostgreSQL."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml

from resources.definitions import SECRET_ENV, build_resources
from resources.io_managers import StoreIOManager
from resources.stores import InfluxStoreResource, MySQLStoreResource, RoutedStoreResource
from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.config.loader import ENV_PREFIX, RESERVED_ENV, secret_paths

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SECRET_VARS = {ENV_PREFIX + "__".join(p.upper() for p in path) for path in secret_paths()}
_SUBST = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+)(?::(?P<op>[?-])(?P<arg>.*))?\}$")


def _resolve(value: str, given: dict[str, str]) -> str:
    """docker compose substitution of a whole-value ``${VAR}``, ``${VAR:?msg}`` or ``${VAR:-default}``."""
    m = _SUBST.match(str(value))
    if not m:
        return str(value)
    if m["name"] in given:
        return given[m["name"]]
    if m["op"] == "?":
        raise AssertionError(f"{m['name']} is required: {m['arg']}")
    return m["arg"] or ""


def _rotation_env() -> dict[str, str]:
    given = {"ROTATION_STORAGE__MYSQL_PASSWORD": "mysql-pw", "ROTATION_STORAGE__INFLUX_TOKEN": "influx-token",
             "ROTATION_STORAGE__REDIS_PASSWORD": "redis-pw", "POSTGRES_PASSWORD": "pg-pw"}
    return {k: _resolve(v, given) for k, v in COMPOSE["x-rotation-env"].items()}


def test_compose_services_and_ports() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "influxdb", "mysql", "redis", "user_code", "webserver", "daemon", "proxy",
                             "rabbitmq", "celery-worker", "api"}
    env = _rotation_env()
    # the servers publish nothing (docs/security.md); their container ports are listed under expose
    ports = {name: [int(p) for p in svc.get("expose", [])] for name, svc in services.items()}
    for var, service in (("ROTATION_STORAGE__INFLUX_URL", "influxdb"), ("ROTATION_STORAGE__MYSQL_URL", "mysql"),
                         ("ROTATION_STORAGE__REDIS_URL", "redis")):
        url = urlsplit(env[var])
        assert url.hostname == service and url.port in ports[service], var
    assert int(env["DAGSTER_PG_PORT"]) == 5432 and env["DAGSTER_PG_HOST"] == "postgres"
    for name in ("user_code", "webserver", "daemon"):  # the rotation env, plus where Celery steps go
        assert services[name]["environment"] in (COMPOSE["x-rotation-env"],
                                                 {**COMPOSE["x-rotation-env"], **COMPOSE["x-celery-env"]}), name
    assert services["celery-worker"]["environment"] == {**COMPOSE["x-rotation-env"], **COMPOSE["x-celery-env"]}
    for name in ("rabbitmq", "celery-worker", "api"):  # internal only, like the other servers
        assert "ports" not in services[name], name
    assert "ports" not in services["webserver"] and 3000 in ports["webserver"]
    command = services["webserver"]["command"]
    assert COMPOSE["services"]["proxy"]["environment"]["ROTATION_UI_UPSTREAM"] == \
        f"webserver:{command[command.index('-p') + 1]}"


def test_every_rotation_variable_is_a_valid_override_or_secret() -> None:
    env = _rotation_env()
    rotation = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    for var, raw in COMPOSE["x-rotation-env"].items():
        if var in SECRET_VARS:
            assert _SUBST.match(str(raw)), f"{var} is a secret: it must come from the environment, not the file"
    config_file = rotation.pop("ROTATION_CONFIG")
    assert config_file.startswith("/opt/dagster/app/configs/")
    local_file = CONFIG_DIR / Path(config_file).name
    assert local_file.is_file()
    config = load_config(local_file, env=rotation)  # raises ConfigError naming any unknown key
    for var in rotation:
        if var not in RESERVED_ENV:
            path = var[len(ENV_PREFIX):].lower().split("__")
            node = config
            for part in path:
                node = getattr(node, part)  # every override lands on a real field
    assert config.storage.backend == "influxdb" and config.storage.redis_cache is True
    assert config.storage.influx_token.get_secret_value() == "influx-token"
    assert config.storage.mysql_password.get_secret_value() == "mysql-pw"
    assert config.storage.redis_password.get_secret_value() == "redis-pw"
    assert Path(env["ROTATION_STORAGE__DATA_DIR"]).is_relative_to(env["ROTATION_ALLOWED_ROOTS"])
    assert env["ROTATION_ENV"] == "prod"


def test_servers_match_the_code_settings() -> None:
    services = COMPOSE["services"]
    env = _rotation_env()
    influx = services["influxdb"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == env["ROTATION_STORAGE__INFLUX_DATABASE"]
    assert influx["DOCKER_INFLUXDB_INIT_ORG"] == env["ROTATION_STORAGE__INFLUX_DATABASE"]  # org defaults to it
    assert "ROTATION_STORAGE__INFLUX_TOKEN" in influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    mysql = services["mysql"]["environment"]
    url = urlsplit(env["ROTATION_STORAGE__MYSQL_URL"])
    assert url.username == mysql["MYSQL_USER"] and url.path.lstrip("/") == mysql["MYSQL_DATABASE"]
    assert url.password is None and "ROTATION_STORAGE__MYSQL_PASSWORD" in mysql["MYSQL_PASSWORD"]
    pg = services["postgres"]["environment"]
    assert (pg["POSTGRES_DB"], pg["POSTGRES_USER"]) == (env["DAGSTER_PG_DB"], env["DAGSTER_PG_USER"])


def test_prod_resources_from_the_compose_environment(monkeypatch) -> None:
    env = _rotation_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ROTATION_CONFIG", str(CONFIG_DIR / Path(env["ROTATION_CONFIG"]).name))
    manager = build_resources()["io_manager"]
    assert isinstance(manager, StoreIOManager) and manager.cache is not None
    assert isinstance(manager.store, RoutedStoreResource)
    assert isinstance(manager.store.timeseries, InfluxStoreResource) and manager.store.timeseries.api == "v2"
    assert isinstance(manager.store.tables, MySQLStoreResource)
    assert isinstance(manager.store.tables.password, dg.EnvVar)
    assert isinstance(manager.cache.password, dg.EnvVar)  # the Redis password the compose redis requires
    assert set(SECRET_ENV.values()) <= SECRET_VARS


def test_workspace_and_commands_agree() -> None:
    services = COMPOSE["services"]
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    command = services["user_code"]["command"]
    assert grpc["host"] == "user_code" and str(grpc["port"]) == command[command.index("-p") + 1]
    assert command[command.index("-m") + 1] == PYPROJECT["tool"]["dagster"]["module_name"]
    assert grpc["location_name"] == PYPROJECT["tool"]["dagster"]["code_location_name"]
    for name in ("webserver", "daemon"):
        cmd = services[name]["command"]
        assert (ROOT / cmd[cmd.index("-w") + 1]).is_file()


def test_dockerfile_pins_and_layout() -> None:
    assert re.search(r"^FROM python:3\.11", DOCKERFILE, re.M)
    dagster_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("dagster=="))
    assert dagster_pin == "dagster==1.13.27"
    assert '"dagster-postgres==0.29.27"' in DOCKERFILE
    requires = importlib.metadata.requires("dagster-postgres") or []
    assert dagster_pin in requires  # the installed dagster-postgres is the one built for this dagster
    assert importlib.metadata.version("dagster-postgres") == "0.29.27"
    for package in ("SQLAlchemy", "PyMySQL", "redis", "influxdb-client", "psycopg2-binary"):
        pinned = re.search(rf'"{package}==([^"]+)"', DOCKERFILE)
        assert pinned, package
        assert importlib.metadata.version(package) == pinned.group(1), package
    assert "cp deploy/dagster.yaml \"$DAGSTER_HOME/dagster.yaml\"" in DOCKERFILE
    for folder in ("rotation_platform", "assets", "resources", "jobs", "configs", "deploy"):
        assert f"COPY {folder} ./{folder}" in DOCKERFILE


def test_dagster_yaml_reads_its_settings_from_the_environment() -> None:
    text = (ROOT / "deploy" / "dagster.yaml").read_text()
    used = set(re.findall(r"env: (DAGSTER_PG_[A-Z]+)", text))
    assert used == {k for k in COMPOSE["x-rotation-env"] if k.startswith("DAGSTER_PG_")}
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in text
    assert yaml.safe_load(text)["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


@pytest.fixture()
def postgres_database():
    import psycopg2

    try:
        admin = psycopg2.connect(host="127.0.0.1", port=5432, dbname="postgres", connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not answering at 127.0.0.1:5432 ({exc}); start the servers with "
                    ".ci/services.sh", pytrace=False)
    admin.autocommit = True
    name = f"rp_dagster_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
        cur.execute("SELECT current_user")
        user = cur.fetchone()[0]
    yield name, user
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def test_instance_from_deploy_dagster_yaml_on_postgres(postgres_database, tmp_path, monkeypatch) -> None:
    import psycopg2

    database, user = postgres_database
    for key, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": database,
                       "DAGSTER_PG_USER": user, "DAGSTER_PG_PASSWORD": ""}.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")

    @dg.op
    def one() -> int:
        return 1

    @dg.job
    def trivial():
        one()

    @dg.asset
    def deployed_asset() -> int:
        return 2

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        run = trivial.execute_in_process(instance=instance)
        assert run.success
        mat = dg.materialize([deployed_asset], instance=instance,
                             resources={"io_manager": dg.mem_io_manager})
        assert mat.success
        assert instance.get_latest_materialization_event(dg.AssetKey("deployed_asset")) is not None
        assert {r.run_id for r in instance.get_runs()} == {run.run_id, mat.run_id}
    conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname=database)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 2
        cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
        assert cur.fetchone()[0] == 1
    conn.close()
