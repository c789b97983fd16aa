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

Window reads (``range_read_<backend>_<layout>/<data>_<sessions>``): a 16-fund pool's ``prices``
partitions (one session's bars each) and factor-panel partitions (16 funds x 212 factors each) over
windows of 250 and 2,500 consecutive sessions. ``n_single_reads_s`` -- the window read one partition at
a time -- is the ``baseline`` of every ``read_many_s`` / ``window_s`` (``ratio`` = value / baseline).
Layouts of the embedded store: ``files`` (the store: file per partition; ``read_many`` gives the N
values, ``read_window`` the combined one), ``duckdb_files`` (DuckDB ``read_parquet`` over the same
files), ``dataset_month`` (one Parquet file per pool and month in hive folders, read with
``pyarrow.dataset`` filters; a partition write rewrites its month), ``duckdb_month`` (DuckDB over those
files with a session filter) and ``arcticdb`` (ArcticDB on LMDB, a library per asset and a symbol per
pool, date-range reads; reported ``available`` 0 when it is not installed). Each layout also reports
``write_s_per_partition`` and ``disk_bytes``, and every read is checked against the single reads. The
server backends report the same window through ``read_many`` and through the Redis cache (cold, warm).
``ROTATION_BENCH_STORAGE_ONLY=range_reads`` runs only these cases.

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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
ONLY = os.environ.get("ROTATION_BENCH_STORAGE_ONLY", "")  # "range_reads": only the window-read cases
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
    if ONLY == "range_reads":
        datasets = {}
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
        yield from range_reads(scratch)
        influx_databases.append(f"rp_bench_{tag}_range")
        influx = InfluxStore(InfluxV1Transport(INFLUX_URL, influx_databases[-1]))
        try:
            yield from range_reads_servers(mysql, influx, cache)
        finally:
            influx.close()
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


# -------------------------------------------------------------------------------------- range reads
RANGE_FUNDS, RANGE_FACTORS = 16, 212
RANGE_WINDOWS = tuple(max(2, int(n * SCALE)) for n in (250, 2500))
RANGE_POOL = "BENCH"
WRITE_SAMPLE = 20


def _range_symbols() -> list[str]:
    return [f"5{i:05d}" for i in range(RANGE_FUNDS)]


def _range_values(sessions: int) -> dict[str, Any]:
    """A 16-fund pool's prices and a 16 x 212 factor panel over ``sessions`` sessions, with provenance."""
    rng = np.random.default_rng(15)
    days = pd.bdate_range("2015-01-05", periods=sessions, name="session")
    symbols = _range_symbols()
    close = 1.0 + np.cumsum(rng.normal(0, 0.01, (sessions, RANGE_FUNDS)), axis=0).clip(-0.9) + 1.0
    close[: sessions // 10, 3] = np.nan  # a late listing
    frames = {"close": close, "open": close * (1 + rng.normal(0, 0.002, close.shape)), "high": close * 1.01,
              "low": close * 0.99, "volume": rng.integers(10**4, 10**8, close.shape).astype(float),
              "amount": rng.integers(10**6, 10**10, close.shape).astype(float)}
    prices = PricePanel({f: pd.DataFrame(frames[f], index=days, columns=symbols) for f in PRICE_FIELDS},
                        {"source": "benchmark", "synthetic": True})
    index = pd.MultiIndex.from_product([days, symbols], names=["session", "symbol"])
    values = rng.standard_normal((len(index), RANGE_FACTORS))
    values[rng.random(values.shape) < 0.05] = np.nan
    factors = pd.DataFrame(values, index=index, columns=[f"f{k:03d}" for k in range(RANGE_FACTORS)])
    return {"prices": prices, "factors": factors}


def _session_slices(days: pd.DatetimeIndex) -> list[Any]:
    from rotation_platform.storage.partitioning import PartitionSlice

    return [PartitionSlice(Partition.multi({"pool": RANGE_POOL, "session": str(t.date())}),
                           (pd.Timestamp(t, tz="UTC"), pd.Timestamp(t, tz="UTC") + pd.Timedelta(days=1)),
                           {"pool": RANGE_POOL}) for t in days]


def _long_table(value: Any) -> pa.Table:
    """The rows of a window as one table with a ``session`` column (the consolidated layouts' form)."""
    if isinstance(value, PricePanel):
        return pa.Table.from_pandas(value.to_long(), preserve_index=False)
    return pa.Table.from_pandas(value.reset_index(), preserve_index=False)


def _from_long(table: pa.Table, kind: str, days: pd.DatetimeIndex) -> Any:
    """A consolidated layout's rows back to the window value (the data of the baseline's combined value;
    the per-partition metadata -- provenance, attrs -- is not in these layouts)."""
    if kind == "prices":
        return codec.panel_from_table(_session_ns(table), days, _range_symbols(),
                                      {"source": "benchmark", "synthetic": True})
    frame = table.to_pandas()
    return frame.set_index(["session", "symbol"]).sort_index(level=["session", "symbol"], sort_remaining=False)


def _same_data(a: Any, b: Any) -> bool:
    if isinstance(a, PricePanel):
        return isinstance(b, PricePanel) and a.content_hash() == b.content_hash()
    if not (isinstance(b, pd.DataFrame) and a.shape == b.shape and a.index.equals(b.index)):
        return False
    return bool(np.array_equal(a.to_numpy(), b[a.columns].to_numpy(), equal_nan=True))


class _MonthDataset:
    """One Parquet file per pool and month (hive folders ``pool=<pool>/month=<YYYY-MM>``) read with
    ``pyarrow.dataset`` filters; a partition write rewrites its month file."""

    def __init__(self, root: Path):
        self.root = root

    def _file(self, month: str) -> Path:
        return self.root / f"pool={RANGE_POOL}" / f"month={month}" / "part.parquet"

    def bulk(self, table: pa.Table) -> None:
        months = pc.strftime(table.column("session"), "%Y-%m")
        for month in pc.unique(months).to_pylist():
            part = table.filter(pc.equal(months, month))
            path = self._file(month)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, path, compression="zstd")

    def upsert(self, session: pd.Timestamp, rows: pa.Table) -> None:
        """Replace one session's rows (idempotent): read the month, drop the session, add, rewrite atomically."""
        from rotation_platform.storage.files import atomic_write_bytes

        path = self._file(session.strftime("%Y-%m"))
        stamp = pa.array([session], rows.schema.field("session").type)[0]
        old = pq.read_table(path) if path.exists() else rows.slice(0, 0)
        kept = old.filter(pc.not_equal(old.column("session"), stamp))
        merged = pa.concat_tables([kept, rows.select(kept.column_names)])
        merged = merged.take(pc.sort_indices(merged, sort_keys=[("session", "ascending"), ("symbol", "ascending")]))
        sink = pa.BufferOutputStream()
        pq.write_table(merged, sink, compression="zstd")
        atomic_write_bytes(path, sink.getvalue().to_pybytes())

    def read(self, first: pd.Timestamp, last: pd.Timestamp) -> pa.Table:
        import pyarrow.dataset as ds

        dataset = ds.dataset(self.root, format="parquet", partitioning="hive")
        months = [m.strftime("%Y-%m") for m in pd.period_range(first, last, freq="M")]
        session = ds.field("session")
        flt = (ds.field("pool") == RANGE_POOL) & ds.field("month").isin(months) \
            & (session >= pa.array([first], pa.timestamp("ns"))[0]) \
            & (session <= pa.array([last], pa.timestamp("ns"))[0])
        table = dataset.to_table(filter=flt)
        return table.drop_columns([c for c in ("pool", "month") if c in table.column_names])


def _has_duckdb() -> bool:
    """DuckDB comes with the ``dev`` extra; without it its cases report ``available`` 0."""
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def _duckdb_read(root: Path, first: pd.Timestamp, last: pd.Timestamp) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        glob = str(root / f"pool={RANGE_POOL}" / "*" / "*.parquet")
        table = con.sql("SELECT * EXCLUDE (pool, month) FROM read_parquet($glob, hive_partitioning = true) "
                        "WHERE session BETWEEN $first AND $last ORDER BY session, symbol",
                        params={"glob": glob, "first": first.to_pydatetime(),
                                "last": last.to_pydatetime()}).to_arrow_table()
    finally:
        con.close()
    return _session_ns(table)


def _session_ns(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([pa.field(f.name, pa.timestamp("ns")) if f.name == "session" else f
                                 for f in table.schema]))


def _duckdb_files(paths: list[Path]) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        return _session_ns(con.sql("SELECT * FROM read_parquet($paths, union_by_name = true)",
                                   params={"paths": [str(p) for p in paths]}).to_arrow_table())
    finally:
        con.close()


def _range_case(backend: str, layout: str, kind: str, n: int) -> str:
    return f"range_read_{backend}_{layout}/{kind}_{n}"


def range_reads(scratch: Path) -> Iterator[dict[str, Any]]:
    """Window reads of N consecutive sessions of one pool, per layout of the embedded store."""
    for n in RANGE_WINDOWS:
        data = _range_values(n)
        days = data["prices"].sessions
        slices = _session_slices(days)
        partitions = [s.partition for s in slices]
        from rotation_platform.storage.partitioning import PartitionSlice, combine_values, split_value

        for kind, value in data.items():
            asset = (f"range_{kind}_{n}",)
            files = FileStore(scratch / "range_files")
            pieces = split_value(value, slices, kind)
            _, seconds = _timed(lambda: [files.write(asset, s.partition, v) for s, v in pieces])
            yield _figure(_range_case("local", "files", kind, n), "write_s_per_partition", seconds / n, "s")
            yield _figure(_range_case("local", "files", kind, n), "disk_bytes",
                          float(_folder_bytes(scratch / "range_files" / asset[0])), "bytes")
            singles, base = _timed(lambda: [files.read(asset, p) for p in partitions])
            reference = combine_values([(PartitionSlice(p), v) for p, v in zip(partitions, singles)])
            yield _figure(_range_case("local", "files", kind, n), "n_single_reads_s", base, "s")
            many, seconds = _timed(lambda: files.read_many(asset, partitions))
            if list(many) != [p.key for p in partitions] or not all(
                    _equal(many[p.key], v) for p, v in zip(partitions, singles)):
                raise AssertionError(f"{asset[0]}: read_many differs from the single reads")
            yield _figure(_range_case("local", "files", kind, n), "read_many_s", seconds, "s", base)
            window, seconds = _timed(lambda: files.read_window(asset, partitions))
            if not _equal(window, reference):
                raise AssertionError(f"{asset[0]}: read_window differs from the combined single reads")
            yield _figure(_range_case("local", "files", kind, n), "window_s", seconds, "s", base)

            paths = [files.stem(asset, s.partition).with_name(files.stem(asset, s.partition).name
                                                              + codec.file_suffix(v)) for s, v in pieces]
            if _has_duckdb():
                table, seconds = _timed(lambda: _from_long(_duckdb_files(paths), kind, days))
                if not _same_data(reference, table):
                    raise AssertionError(f"{asset[0]}: DuckDB over the partition files read other data")
                yield _figure(_range_case("local", "duckdb_files", kind, n), "window_s", seconds, "s", base)
            else:
                yield _figure(_range_case("local", "duckdb_files", kind, n), "available", 0.0, "bool")

            month = _MonthDataset(scratch / "range_month" / asset[0])
            long = _long_table(value)
            month.bulk(long)
            sample = slices[n // 2: n // 2 + min(WRITE_SAMPLE, n // 2)]
            sample_rows = [(pd.Timestamp(s.window[0].tz_localize(None)), _long_table(v))
                           for s, v in pieces[n // 2: n // 2 + len(sample)]]
            _, seconds = _timed(lambda: [month.upsert(t, rows) for t, rows in sample_rows])
            yield _figure(_range_case("local", "dataset_month", kind, n), "write_s_per_partition",
                          seconds / len(sample_rows), "s")
            yield _figure(_range_case("local", "dataset_month", kind, n), "disk_bytes",
                          float(_folder_bytes(month.root)), "bytes")
            got, seconds = _timed(lambda: _from_long(month.read(days[0], days[-1]), kind, days))
            if not _same_data(reference, got):
                raise AssertionError(f"{asset[0]}: the month dataset read other data")
            yield _figure(_range_case("local", "dataset_month", kind, n), "window_s", seconds, "s", base)
            if _has_duckdb():
                got, seconds = _timed(lambda: _from_long(_duckdb_read(month.root, days[0], days[-1]), kind, days))
                if not _same_data(reference, got):
                    raise AssertionError(f"{asset[0]}: DuckDB over the month dataset read other data")
                yield _figure(_range_case("local", "duckdb_month", kind, n), "window_s", seconds, "s", base)
            else:
                yield _figure(_range_case("local", "duckdb_month", kind, n), "available", 0.0, "bool")

            yield from _arctic_case(scratch, kind, n, value, pieces, days, reference, base)


def _arctic_case(scratch: Path, kind: str, n: int, value: Any, pieces: list, days: pd.DatetimeIndex,
                 reference: Any, base: float) -> Iterator[dict[str, Any]]:
    """ArcticDB on LMDB: a library per asset, a symbol per pool, rows indexed by session."""
    try:
        import arcticdb
    except ImportError:
        yield _figure(_range_case("local", "arcticdb", kind, n), "available", 0.0, "bool")
        return
    root = scratch / "range_arctic" / f"{kind}_{n}"
    root.mkdir(parents=True, exist_ok=True)
    arctic = arcticdb.Arctic(f"lmdb://{root}?map_size=8GB")
    library = arctic.get_library(f"range_{kind}", create_if_missing=True)

    def frame_of(v: Any) -> pd.DataFrame:
        flat = v.to_long() if isinstance(v, PricePanel) else v.reset_index()
        return flat.set_index("session")

    library.write(RANGE_POOL, frame_of(value))
    sample = pieces[n // 2: n // 2 + min(WRITE_SAMPLE, n // 2)]
    frames = [frame_of(v) for _, v in sample]
    _, seconds = _timed(lambda: [library.update(RANGE_POOL, f) for f in frames])
    yield _figure(_range_case("local", "arcticdb", kind, n), "write_s_per_partition", seconds / len(frames), "s")
    yield _figure(_range_case("local", "arcticdb", kind, n), "disk_bytes", float(_folder_bytes(root)), "bytes")

    def read() -> Any:
        frame = library.read(RANGE_POOL, date_range=(days[0], days[-1])).data.reset_index()
        return _from_long(pa.Table.from_pandas(frame, preserve_index=False), kind, days)

    got, seconds = _timed(read)
    if not _same_data(reference, got):
        raise AssertionError(f"range_{kind}_{n}: ArcticDB read other data")
    yield _figure(_range_case("local", "arcticdb", kind, n), "window_s", seconds, "s", base)


def range_reads_servers(mysql: MySQLStore, influx: InfluxStore, cache: RedisCache) -> Iterator[dict[str, Any]]:
    """Window reads on the server backends: N single reads (baseline) against one ``read_many``."""
    n = RANGE_WINDOWS[0]
    data = _range_values(n)
    slices = _session_slices(data["prices"].sessions)
    partitions = [s.partition for s in slices]
    from rotation_platform.storage.partitioning import split_value

    for kind, value in data.items():
        asset = (f"range_{kind}_{n}",)
        pieces = split_value(value, slices, kind)
        for backend, store in (("mysql", mysql), ("influxdb", influx)):
            _, seconds = _timed(lambda: [store.write(asset, s.partition, v) for s, v in pieces])
            yield _figure(_range_case(backend, "store", kind, n), "write_s_per_partition", seconds / n, "s")
            singles, base = _timed(lambda: [store.read(asset, p) for p in partitions])
            yield _figure(_range_case(backend, "store", kind, n), "n_single_reads_s", base, "s")
            many, seconds = _timed(lambda: store.read_many(asset, partitions))
            if not all(_equal(many[p.key], v) for p, v in zip(partitions, singles)):
                raise AssertionError(f"{backend} {asset[0]}: read_many differs from the single reads")
            yield _figure(_range_case(backend, "store", kind, n), "read_many_s", seconds, "s", base)
            cached = CachedStore(store, cache)
            _, cold = _timed(lambda: cached.read_many(asset, partitions, version="range"))
            warm_values, warm = _timed(lambda: cached.read_many(asset, partitions, version="range"))
            if not all(_equal(warm_values[p.key], v) for p, v in zip(partitions, singles)):
                raise AssertionError(f"{backend}+redis {asset[0]}: cached read_many differs from the single reads")
            yield _figure(_range_case(f"{backend}+redis", "store", kind, n), "cold_read_many_s", cold, "s", base)
            yield _figure(_range_case(f"{backend}+redis", "store", kind, n), "warm_read_many_s", warm, "s", base)


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
