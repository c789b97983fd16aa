"""Real servers for the storage backend tests.

Shared servers (started by ``.ci/services.sh``; override with environment variables):

* InfluxDB 1.x -- ``ROTATION_TEST_INFLUX_URL`` (default ``http://127.0.0.1:18086``): a database
  ``rp_t_<run>`` per test session, dropped at the end;
* MariaDB/MySQL -- ``ROTATION_TEST_MYSQL_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``):
  a database ``rp_t_<run>`` on that server per session, dropped at the end;
* Redis -- ``ROTATION_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``): a key namespace per
  session, deleted at the end.

A server that does not answer FAILS the tests that need it (never a skip), with the command to
start it. Fault-injection tests stop and restart servers, so they run private ``influxd``,
``mariadbd`` and ``redis-server`` processes on free loopback ports with their own data folders.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data.panel import PricePanel
from rotation_platform.data.sources.synthetic import SyntheticSource
from rotation_platform.storage.base import RetryPolicy, Store
from rotation_platform.storage.files import FileStore

ROOT = Path(__file__).resolve().parents[2]
INFLUX_URL = os.environ.get("ROTATION_TEST_INFLUX_URL", "http://127.0.0.1:18086")
MYSQL_URL = os.environ.get("ROTATION_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("ROTATION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_HINT = "start the servers with .ci/services.sh (the CI entry point runs it before the tests)"
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1)
BACKENDS = ("local", "influxdb", "mysql", "routed", "cached")


# ------------------------------------------------------------------------------------ shared servers
@pytest.fixture(scope="session")
def run_tag() -> str:
    return uuid.uuid4().hex[:8]


def _server_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database="").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def influx_server(run_tag) -> Iterator[tuple[str, str]]:
    """``(url, database)`` on the shared InfluxDB; the database is dropped after the session."""
    import requests

    try:
        requests.get(INFLUX_URL + "/ping", timeout=3).raise_for_status()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"InfluxDB is not answering at {INFLUX_URL} ({exc}); {START_HINT}", pytrace=False)
    database = f"rp_t_{run_tag}"
    yield INFLUX_URL, database
    requests.post(INFLUX_URL + "/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=30)


@pytest.fixture(scope="session")
def mysql_server(run_tag) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh database on the shared MySQL/MariaDB server."""
    import pymysql
    from sqlalchemy.engine import make_url

    base = make_url(MYSQL_URL)
    try:
        conn = pymysql.connect(host=base.host, port=base.port or 3306, user=base.username,
                               password=base.password or "", connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"MySQL/MariaDB is not answering at {base.host}:{base.port or 3306} ({exc}); {START_HINT}",
                    pytrace=False)
    database = f"rp_t_{run_tag}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    yield base.set(database=database).render_as_string(hide_password=False)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    conn.close()


@pytest.fixture(scope="session")
def redis_server(run_tag) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis is not answering at {REDIS_URL} ({exc}); {START_HINT}", pytrace=False)
    yield REDIS_URL
    for key in client.scan_iter(match=f"rp:*t{run_tag}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture()
def fresh_databases(influx_server, mysql_server) -> Iterator[tuple[tuple[str, str], str]]:
    """``((influx url, database), mysql url)`` of databases no other test uses (created by the
    stores on first use, dropped afterwards)."""
    import pymysql
    import requests
    from sqlalchemy.engine import make_url

    tag = uuid.uuid4().hex[:8]
    influx = (influx_server[0], f"{influx_server[1]}_{tag}")
    mysql = make_url(mysql_server)
    database = f"{mysql.database}_{tag}"
    yield influx, mysql.set(database=database).render_as_string(hide_password=False)
    requests.post(influx[0] + "/query", data={"q": f'DROP DATABASE "{influx[1]}"'}, timeout=30)
    conn = pymysql.connect(host=mysql.host, port=mysql.port or 3306, user=mysql.username,
                           password=mysql.password or "", connect_timeout=3)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    conn.close()


@pytest.fixture()
def namespace(run_tag) -> str:
    """A cache namespace unique to the test (keys are removed with the session's)."""
    return f"t{run_tag}{uuid.uuid4().hex[:6]}"


@pytest.fixture()
def asset_key() -> tuple[str, ...]:
    """An asset key no other test uses."""
    return ("t_" + uuid.uuid4().hex[:10],)


@pytest.fixture()
def make_store(tmp_path, influx_server, mysql_server, redis_server, namespace) -> Iterator[Callable[[str], Store]]:
    """Open a store of a backend kind: local, influxdb, mysql, routed (InfluxDB + MySQL) or cached
    (Redis in front of routed)."""
    from rotation_platform.storage.cache import CachedStore, RedisCache
    from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport
    from rotation_platform.storage.mysql import MySQLStore
    from rotation_platform.storage.routing import RoutedStore

    opened: list[Store] = []

    def make(kind: str, **options) -> Store:
        def influx() -> InfluxStore:
            return InfluxStore(InfluxV1Transport(*influx_server), retry=FAST_RETRY, **options)

        def mysql() -> MySQLStore:
            return MySQLStore(mysql_server, retry=FAST_RETRY, **options)

        if kind == "local":
            store: Store = FileStore(tmp_path / "files")
        elif kind == "influxdb":
            store = influx()
        elif kind == "mysql":
            store = mysql()
        elif kind == "routed":
            store = RoutedStore(influx(), mysql())
        elif kind == "cached":
            store = CachedStore(RoutedStore(influx(), mysql()), RedisCache(redis_server, namespace=namespace))
        else:
            raise ValueError(kind)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


# ----------------------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def panel() -> PricePanel:
    """A small synthetic price panel (late listings leave NaN blocks)."""
    config = load_config(CONFIG_DIR / "demo.yaml", env={})
    raw = SyntheticSource(config.pools, config.data.synthetic, end="2016-12-30").read(["DA01", "DA02", "DO02"])
    long = pd.concat([r.frame.assign(symbol=s).rename(columns={"date": "session"}) for s, r in raw.items()])
    return PricePanel.from_long(long.drop(columns="line"), meta={"source": "synthetic", "synthetic": True,
                                                                "note": "quotes ' \" and unicode 基金"})


def frame_cases() -> dict[str, object]:
    """Every stored type the platform uses, with awkward values."""
    rng = np.random.default_rng(7)
    sessions = pd.bdate_range("2024-01-01", periods=30, name="session")
    wide = pd.DataFrame(rng.standard_normal((30, 4)), index=sessions, columns=["DA01", "DA02", "QD01", "OT01"])
    wide.iloc[3, 1] = np.nan
    wide.iloc[5, 0] = np.inf
    wide.iloc[6, 2] = -np.inf
    wide.iloc[7, 3] = -0.0
    mixed = pd.DataFrame({
        "weight": rng.random(30),
        "lots": rng.integers(-5, 10**12, 30),
        "held": rng.random(30) > 0.5,
        "note": [None if i % 7 == 0 else f"row {i}: it's \"ok\"\n\\ 基金 {i}\x00\t\r😀" for i in range(30)],
        "empty_text": [""] * 30,
        "stamp": pd.date_range("2020-01-01 09:30", periods=30, freq="h", tz="Asia/Shanghai"),
        "nullable": pd.array([None if i % 4 == 0 else i for i in range(30)], dtype="Int64"),
        "category": pd.Categorical(["a", "b", None] * 10),
        "all_missing": [np.nan] * 30,
    }, index=sessions)
    symbols = ["DA01", "DA02", "QD 01", "O,T=1"]
    mi = pd.MultiIndex.from_product([sessions[:10], symbols], names=["session", "symbol"])
    factors = pd.DataFrame(rng.standard_normal((40, 3)), index=mi, columns=["mom_20", "vol 60", "1/pe"])
    factors.iloc[::5, 0] = np.nan
    table = pd.DataFrame({"factor": ["mom_20", "vol_60", "ic\"x"], "ic": [0.05, -0.01, np.nan],
                          "rank": [1, 2, 3]}).set_index(["factor", "rank"])
    plain = pd.DataFrame({"pool": ["A_SHARE", "QDII"], "capital": [8e6, 4e6]})
    return {
        "wide_datetime_index": wide,
        "mixed_dtypes": mixed,
        "multiindex_session_symbol": factors,
        "multiindex_no_time": table,
        "range_index": plain,
        "empty": pd.DataFrame({"a": pd.Series([], dtype="float64"), "b": pd.Series([], dtype="int64")}),
        "json_dict": {"weights": {"DA01": 0.5, "QD01": 0.5}, "asof": "2024-12-31", "n": 3, "ok": True,
                      "nested": [1, 2.5, None, "x'\"\\"]},
        "json_list": [{"rank": i, "fund": f"F{i:02d}"} for i in range(3)],
        "json_large": {"text": "长文本 'quoted' \"double\" \\ " * 8000},
    }


# ------------------------------------------------------------------------------------ private servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(probe: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f}s")


class PrivateServer:
    """A server process this test session owns: start, stop (SIGTERM), kill (SIGKILL), restart
    on the same port and data folder."""

    name = "server"

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        log = open(self.folder / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait(self.ready, f"{self.name} on port {self.port}")
        except RuntimeError:
            tail = (self.folder / f"{self.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{tail}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class PrivateInflux(PrivateServer):
    name = "influxd"

    def __init__(self, folder: Path):
        super().__init__(folder)
        rpc = free_port()
        (folder / "influxdb.conf").write_text(f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{folder}/meta"
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[logging]
  level = "warn"
""")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["influxd", "-config", str(self.folder / "influxdb.conf")]

    def ready(self) -> bool:
        import requests

        return requests.get(self.url + "/ping", timeout=1).status_code == 204


class PrivateMariaDB(PrivateServer):
    name = "mariadbd"

    def __init__(self, folder: Path):
        super().__init__(folder)
        data = folder / "data"
        if not data.exists():
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                            "--auth-root-authentication-method=normal", "--skip-test-db"],
                           check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/rp_fault"

    def command(self) -> list[str]:
        f = self.folder
        return ["mariadbd", "--no-defaults", f"--datadir={f / 'data'}", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--socket={f / 'mysqld.sock'}", f"--pid-file={f / 'mysqld.pid'}",
                "--user=root", "--skip-grant-tables", "--innodb-buffer-pool-size=64M", "--skip-log-bin",
                f"--log-error={f / 'error.log'}"]

    def ready(self) -> bool:
        import pymysql

        pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
        return True


class PrivateRedis(PrivateServer):
    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.folder)]

    def ready(self) -> bool:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping())


def _binary(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed; {START_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def private_influx(tmp_path_factory) -> Iterator[PrivateInflux]:
    _binary("influxd")
    server = PrivateInflux(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory) -> Iterator[PrivateMariaDB]:
    _binary("mariadbd")
    _binary("mariadb-install-db")
    server = PrivateMariaDB(tmp_path_factory.mktemp("mariadbd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory) -> Iterator[PrivateRedis]:
    _binary("redis-server")
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def running() -> Iterator[Callable[[PrivateServer], PrivateServer]]:
    """Make sure a private server is up at the start and at the end of a test."""
    servers: list[PrivateServer] = []

    def ensure(server: PrivateServer) -> PrivateServer:
        server.start()
        servers.append(server)
        return server

    yield ensure
    for server in servers:
        server.start()
