"""Storage benchmarks: ``python -m benchmarks storage``.

Data (synthetic, deterministic):

* ``factor_panel`` -- 38 funds x 3,000 sessions x 200 factors (a frame indexed by session and
  symbol, 5% NaN): 114,000 rows, 22.8 million values;
* ``prices_year`` -- a price panel of 38 funds x 250 sessions (9,500 rows of OHLCV + amount);
* ``prices_history`` -- the same 38 funds over 3,000 sessions (114,000 rows).

Each is written to and read back from every backend -- the embedded files, InfluxDB (v1 API; for
the price data also with gzip off, ``influxdb_gzip_off``) and MySQL -- and checked equal to what was
written. Figures: seconds, rows/s (``points/s`` for InfluxDB: one point per row) and values/s (for
InfluxDB: field values written, the unit of its sizing guidance; the row number ``rp_n`` every point
carries is not counted), and the bytes each backend keeps on disk for the same data
(Parquet files; InfluxDB's TSM/WAL folder of the database when the server's data folder is on this
machine; the InnoDB tablespace file, else ``information_schema``). ``cold``/``warm``: a read through
the Redis cache with the cache empty, then with it filled; ``ratio`` = cold / warm.

Targets (``baseline``; ``ratio`` = value / baseline): InfluxDB >= 200,000 points (lines) /s written,
MySQL >= 50,000 rows/s written, warm-cache rerun >= 5x faster than cold.

Servers: ``ROTATION_TEST_INFLUX_URL`` (default ``http://127.0.0.1:18086``), ``ROTATION_TEST_MYSQL_URL``
(``mysql+pymysql://root@127.0.0.1:3306/test``; a scratch database beside it), ``ROTATION_TEST_REDIS_URL``
(``redis://127.0.0.1:6379/0``), as ``.ci/services.sh`` starts them; ``ROTATION_BENCH_INFLUX_DATA``
names the InfluxDB data folder (default: the one ``.ci/services.sh`` writes). ``ROTATION_BENCH_SCALE``
(default 1) scales the number of sessions. Scratch databases and cache keys are removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.storage import codec
from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.cache import CachedStore, RedisCache
from rotation_platform.storage.files import FileStore
from rotation_platform.storage.influx import InfluxStore, InfluxV1Transport
from rotation_platform.storage.mysql import MySQLStore

SUITE = "storage"
INFLUX_URL = os.environ.get("ROTATION_TEST_INFLUX_URL", "http://127.0.0.1:18086")
MYSQL_URL = os.environ.get("ROTATION_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("ROTATION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
INFLUX_DATA = Path(os.environ.get("ROTATION_BENCH_INFLUX_DATA", str(
    Path(os.environ.get("ROTATION_CI_STATE", Path(tempfile.gettempdir()) / "rotation-ci-services"))
    / f"influxdb-{INFLUX_URL.rsplit(':', 1)[-1].rstrip('/')}")))
SCALE = float(os.environ.get("ROTATION_BENCH_SCALE", "1"))
N_FUNDS, N_SESSIONS, N_FACTORS, YEAR = 38, int(3000 * SCALE), 200, 250
# the target counts points (one line-protocol line); one point carries 7 field values for prices and 201
# for the factor panel, so field values/s is reported beside it, without a target
TARGETS = {"influxdb": ("write_points_per_s", 200_000.0), "influxdb_gzip_off": ("write_points_per_s", 200_000.0),
           "mysql": ("write_rows_per_s", 50_000.0)}
WARM_TARGET = 5.0
PARTITION = Partition.single("BENCH")


def _figure(case: str, metric: str, value: float, unit: str, baseline: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"suite": SUITE, "case": case, "metric": metric, "value": float(value), "unit": unit}
    if baseline:
        out["baseline"] = float(baseline)
        out["ratio"] = float(value) / float(baseline)
    return out


# ---------------------------------------------------------------------------------------------- data
def _symbols() -> list[str]:
    return [f"5{i:05d}" for i in range(N_FUNDS)]


def factor_panel(sessions: int = N_SESSIONS) -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    days = pd.bdate_range("2012-01-04", periods=sessions, name="session")
    index = pd.MultiIndex.from_product([days, _symbols()], names=["session", "symbol"])
    values = rng.standard_normal((len(index), N_FACTORS))
    values[rng.random(values.shape) < 0.05] = np.nan
    return pd.DataFrame(values, index=index, columns=[f"f{k:03d}" for k in range(N_FACTORS)])


def price_panel(sessions: int) -> PricePanel:
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2012-01-04", periods=sessions, name="session")
    close = 1.0 + np.cumsum(rng.normal(0, 0.01, (sessions, N_FUNDS)), axis=0).clip(-0.9) + 1.0
    frames = {"close": close, "open": close * (1 + rng.normal(0, 0.002, close.shape)),
              "high": close * 1.01, "low": close * 0.99,
              "volume": rng.integers(10**4, 10**8, close.shape).astype(float),
              "amount": rng.integers(10**6, 10**10, close.shape).astype(float)}
    return PricePanel({f: pd.DataFrame(frames[f], index=days, columns=_symbols()) for f in PRICE_FIELDS},
                      {"source": "benchmark", "synthetic": True})


def _values(value: Any) -> int:
    if isinstance(value, PricePanel):
        return codec.value_rows(value) * len(PRICE_FIELDS)
    return int(value.shape[0] * value.shape[1])


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, PricePanel):
        return a.content_hash() == b.content_hash()
    return codec.table_checksum(codec.encode(a).table) == codec.table_checksum(codec.encode(b).table)


# --------------------------------------------------------------------------------------- disk sizes
def _folder_bytes(path: Path) -> int:
    """Bytes allocated on disk (sparse preallocated files count only what they use)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _influx_bytes(database: str) -> tuple[float | None, float | None]:
    """(TSM bytes, WAL bytes) of a database, after waiting for the cache snapshot (<= 60 s)."""
    data, wal = INFLUX_DATA / "data" / database, INFLUX_DATA / "wal" / database
    if not data.exists():
        return None, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(p.stat().st_size > 0 for p in wal.rglob("*.wal")):
        time.sleep(2)
    return float(_folder_bytes(data)), float(_folder_bytes(wal))


# ---------------------------------------------------------------------------------------------- run
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def run() -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    scratch = Path(tempfile.mkdtemp(prefix="rp-bench-storage-"))
    mysql = MySQLStore(MYSQL_URL.rsplit("/", 1)[0] + f"/rp_bench_{tag}")
    cache = RedisCache(REDIS_URL, namespace=f"bench{tag}", socket_timeout_s=30.0)
    influx_databases: list[str] = []
    datasets = {
        "factor_panel": lambda: factor_panel(),
        "prices_year": lambda: price_panel(YEAR),
        "prices_history": lambda: price_panel(N_SESSIONS),
    }
    try:
        for case, make in datasets.items():
            value = make()
            rows, values = codec.value_rows(value), _values(value)
            yield _figure(case, "rows", rows, "rows")
            yield _figure(case, "values", values, "values")
            influx_db = f"rp_bench_{tag}_{case}"
            influx_databases += [influx_db, influx_db + "_gzip_off"]
            stores: dict[str, Store] = {
                "local": FileStore(scratch / "files"),
                "influxdb": InfluxStore(InfluxV1Transport(INFLUX_URL, influx_db)),
                "mysql": mysql,
            }
            if case != "factor_panel":
                stores["influxdb_gzip_off"] = InfluxStore(InfluxV1Transport(INFLUX_URL, influx_db + "_gzip_off"),
                                                          gzip_level=0)
            asset = (case,)
            for backend, store in stores.items():
                yield from _write_read(case, backend, store, asset, value, rows, values)
                if backend == "local":
                    size = float(sum(p.stat().st_size for p in (scratch / "files" / case).iterdir()))
                    yield _figure(f"{case}/{backend}", "disk_bytes", size, "bytes")
                elif backend == "mysql":
                    size = mysql.disk_bytes(asset)
                    if size is not None:
                        yield _figure(f"{case}/{backend}", "disk_bytes", size, "bytes")
            for backend in ("influxdb", "mysql"):
                cached = CachedStore(stores[backend], cache)
                name = f"{case}/{backend}+redis"
                _, cold = _timed(lambda: cached.read(asset, PARTITION))
                back, warm = _timed(lambda: cached.read(asset, PARTITION))
                if not _equal(back, value):
                    raise AssertionError(f"{name}: the cached value differs from the one written")
                yield _figure(name, "cold_read_s", cold, "s")
                yield _figure(name, "warm_read_s", warm, "s")
                yield _figure(name, "cold_over_warm", cold / warm, "x", WARM_TARGET)
            usage = cache.memory_bytes(cached.cache.key(asset, PARTITION, "", cached.scope))
            if usage is not None:
                yield _figure(f"{case}/redis", "memory_bytes", float(usage), "bytes")
            tsm, wal = _influx_bytes(influx_db)
            if tsm is not None:
                yield _figure(f"{case}/influxdb", "disk_bytes", tsm + (wal or 0.0), "bytes")
            for store in stores.values():
                if store is not mysql:
                    store.close()
    finally:
        cache.clear_namespace()
        cache.close()
        _drop(mysql, influx_databases)
        shutil.rmtree(scratch, ignore_errors=True)


def _write_read(case: str, backend: str, store: Store, asset: tuple[str, ...], value: Any, rows: int,
                values: int) -> Iterator[dict[str, Any]]:
    name = f"{case}/{backend}"
    _, seconds = _timed(lambda: store.write(asset, PARTITION, value))
    yield _figure(name, "write_s", seconds, "s")
    metric, target = TARGETS.get(backend, ("", 0.0))
    if backend.startswith("influxdb"):
        yield _figure(name, "write_points_per_s", rows / seconds, "points/s",
                      target if metric == "write_points_per_s" else None)
    else:
        yield _figure(name, "write_rows_per_s", rows / seconds, "rows/s",
                      target if metric == "write_rows_per_s" else None)
    yield _figure(name, "write_values_per_s", values / seconds, "values/s",
                  target if metric == "write_values_per_s" else None)
    back, seconds = _timed(lambda: store.read(asset, PARTITION))
    if not _equal(back, value):
        raise AssertionError(f"{name}: the value read back differs from the one written")
    yield _figure(name, "read_s", seconds, "s")
    yield _figure(name, "read_values_per_s", values / seconds, "values/s")


def _drop(mysql: MySQLStore, influx_databases: list[str]) -> None:
    import requests

    for database in influx_databases:
        try:
            requests.post(INFLUX_URL + "/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=60)
        except requests.RequestException:
            pass
    try:
        mysql.drop_database()
    except Exception:  # noqa: BLE001 - best effort cleanup of a scratch database
        pass
    mysql.close()
