"""MySQL / MariaDB store: tables (screen results, WFO choices, metrics, portfolios ...) as rows.

Layout
------
* ``rp_catalog``: one row per asset partition -- kind, data table, row count, checksum and the
  spec that rebuilds the value (:mod:`.codec`). Primary key ``(asset, partition_key)``.
* One data table per asset (``a_<asset name>``) with ``rp_part`` (canonical partition key),
  ``rp_n`` (row number; primary key ``(rp_part, rp_n)``), ``rp_special`` (``+inf``/``-inf``/``-0.0``
  floats, which SQL ``DOUBLE`` cannot hold) and one column per data column: ``DOUBLE``, ``BIGINT``,
  ``BOOLEAN``, ``LONGTEXT``, ``DATETIME(6)``, ``DATE`` or ``LONGBLOB``. Column names are the data
  column names when they are plain identifiers, otherwise ``c_<sha1>``; a column that an earlier
  write created with another SQL type gets a type suffix. Missing columns are added on first use.
* Every identifier passes :func:`ident` (``[A-Za-z0-9_]``, backquoted); values are bound parameters
  or literals made by :func:`sql_literals` (numbers formatted by Arrow, text escaped for the
  connection's ``sql_mode``, which the store sets without ``NO_BACKSLASH_ESCAPES``).

Writes
------
The schema (database, catalog, data table, new columns) is created on first use. A write is one
transaction: delete the partition's rows, insert the new rows in batched multi-row ``INSERT``
statements (the statement PyMySQL's ``executemany`` builds, encoded column-wise with Arrow instead
of value by value), upsert the catalog row, commit. A failure or a killed process rolls back: the
previous value stays, with no partial partition and no duplicate. Transient failures (connection
refused or lost, deadlock, lock wait timeout) retry the whole transaction with backoff.

Window reads
------------
:meth:`MySQLStore.read_many` reads N partitions in one consistent-snapshot transaction: one catalog
query (``partition_key IN (...)``) and one data query per column layout (``rp_part IN (...)``,
ordered by the primary key), each partition then checked and rebuilt as a single read is.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rotation_platform.storage import codec
from rotation_platform.storage.arrowtext import apply_special, decoded, join, negative_zero, special_column
from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    ProgressCallback,
    RetryPolicy,
    StoredCounts,
    Store,
    WriteReceipt,
    asset_name,
    call_with_retries,
    physical_names,
    unique_partitions,
)
from rotation_platform.storage.errors import (
    StorageError,
    StorageInputError,
    StorageIntegrityError,
    StorageNotFoundError,
)

__all__ = ["MySQLStore", "ident", "table_name", "sql_literals", "mysql_transient", "CATALOG_TABLE"]

CATALOG_TABLE = "rp_catalog"
_IDENT = re.compile(r"^[A-Za-z0-9_]{1,64}$")
TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2014, 2055})
RESERVED = frozenset({"rp_part", "rp_n", "rp_special"})


def ident(name: str) -> str:
    """A checked, backquoted SQL identifier."""
    if not _IDENT.match(name):
        raise StorageInputError(f"{name!r} is not a safe SQL identifier ([A-Za-z0-9_], 1-64 characters)")
    return f"`{name}`"


def table_name(asset: Sequence[str]) -> str:
    """The data table of an asset: ``a_<asset name>``, or a hashed name when that is not a plain
    identifier of at most 64 characters."""
    name = asset_name(asset)
    candidate = "a_" + name
    if _IDENT.match(candidate) and len(candidate) <= 60:
        return candidate
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return "a_" + re.sub(r"[^A-Za-z0-9_]", "_", name)[:40] + "_" + digest


def mysql_transient(exc: BaseException) -> bool:
    import pymysql
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if isinstance(exc, pymysql.err.OperationalError):
        code = exc.args[0] if exc.args else None
        return code in TRANSIENT_CODES
    if isinstance(exc, pymysql.err.InterfaceError):
        return True
    return isinstance(exc, (ConnectionError, TimeoutError, BrokenPipeError))


# --------------------------------------------------------------------------------------- SQL types
@dataclass(frozen=True)
class SqlColumn:
    """One data column: its physical name and SQL kind (``f`` DOUBLE, ``i`` BIGINT, ``u`` BIGINT
    UNSIGNED, ``b`` BOOLEAN, ``s`` LONGTEXT, ``t`` DATETIME(6), ``n`` BIGINT nanoseconds, ``d`` DATE,
    ``x`` LONGBLOB, ``z`` no column: always null)."""

    name: str
    kind: str


SQL_TYPES = {"f": "DOUBLE", "i": "BIGINT", "u": "BIGINT UNSIGNED", "b": "BOOLEAN", "s": "LONGTEXT",
             "t": "DATETIME(6)", "n": "BIGINT", "d": "DATE", "x": "LONGBLOB"}
# how SHOW COLUMNS reports each kind (lower case, without display width)
SHOWN_TYPES = {"f": "double", "i": "bigint", "u": "bigint unsigned", "b": "tinyint", "s": "longtext",
               "t": "datetime(6)", "n": "bigint", "d": "date", "x": "longblob"}
NUMERIC_KINDS = frozenset("fiubtnd")


def _base_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _sql_kind(col: pa.Array, name: str) -> str:
    t = _base_type(col.type)
    if pa.types.is_null(t):
        return "z"
    if pa.types.is_floating(t):
        return "f"
    if pa.types.is_uint64(t):
        return "u"
    if pa.types.is_integer(t):
        return "i"
    if pa.types.is_boolean(t):
        return "b"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_decimal(t):
        return "s"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "x"
    if pa.types.is_date(t):
        return "d"
    if pa.types.is_timestamp(t):
        arr = decoded(col)
        if t.unit == "ns" and len(arr) and np.any(pc.fill_null(arr.cast(pa.int64()), 0).to_numpy() % 1000):
            return "n"  # sub-microsecond values: DATETIME(6) would round them
        try:
            lo, hi = pc.min(arr).as_py(), pc.max(arr).as_py()
        except (pa.ArrowException, ValueError, OverflowError):
            return "n"
        if lo is not None and (lo.year < 1000 or hi.year > 9999):
            return "n"
        return "t"
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return "i"
    raise StorageInputError(f"column {name!r} of type {col.type} cannot be stored in MySQL; "
                            "store this asset on the local backend")


def _escape_text(arr: pa.Array) -> pa.Array:
    """Quoted MySQL string literals (backslash escapes, as without NO_BACKSLASH_ESCAPES)."""
    arr = arr.cast(pa.large_string())
    for old, new in (("\\", "\\\\"), ("'", "\\'"), ("\x00", "\\0"), ("\n", "\\n"), ("\r", "\\r"), ("\x1a", "\\Z")):
        arr = pc.replace_substring(arr, old, new)
    return join("'", arr, "'")


def quote_text(value: str) -> str:
    out = value
    for old, new in (("\\", "\\\\"), ("'", "\\'"), ("\x00", "\\0"), ("\n", "\\n"), ("\r", "\\r"), ("\x1a", "\\Z")):
        out = out.replace(old, new)
    return "'" + out + "'"


def sql_literals(col: pa.Array, kind: str) -> pa.Array:
    """SQL literal text per value of a column stored as ``kind``; ``NULL`` for nulls (and for the
    float values ``rp_special`` records)."""
    col = decoded(col)
    null = pa.scalar("NULL", pa.large_string())
    if kind == "f":
        f = col.cast(pa.float64())
        plain = pc.and_(pc.fill_null(pc.is_finite(f), False), pc.invert(negative_zero(f)))
        text = pc.if_else(plain, f, pa.scalar(None, pa.float64())).cast(pa.large_string())
    elif kind in ("i", "u"):
        t = col.type
        if pa.types.is_time(t) or pa.types.is_duration(t):
            col = col.cast(pa.int64() if (pa.types.is_time64(t) or pa.types.is_duration(t)) else pa.int32())
        text = col.cast(pa.large_string())
    elif kind == "b":
        text = pc.if_else(col, pa.scalar("1", pa.large_string()), pa.scalar("0", pa.large_string()))
    elif kind == "s":
        if pa.types.is_decimal(col.type):
            col = col.cast(pa.string())
        text = _escape_text(col)
    elif kind == "t":
        naive = col.cast(pa.timestamp(col.type.unit)).cast(pa.timestamp("us"))
        text = join("'", pc.strftime(naive, "%Y-%m-%d %H:%M:%S"), "'")
    elif kind == "n":
        text = col.cast(pa.int64()).cast(pa.large_string())
    elif kind == "d":
        text = join("'", col.cast(pa.date32()).cast(pa.string()), "'")
    elif kind == "x":
        text = pa.array([None if v is None else "X'" + bytes(v).hex() + "'" for v in col.to_pylist()],
                        pa.large_string())
    else:
        raise StorageInputError(f"unknown SQL kind {kind!r}")
    return pc.fill_null(text, null)


def _special(table: pa.Table, columns: Sequence[SqlColumn], start: int, n: int) -> pa.Array:
    """``rp_special`` literals: ``'<col>:+;<col>:-;<col>:z'`` or NULL."""
    floats_ = [(i, table.column(i).slice(start, n)) for i, c in enumerate(columns) if c.kind == "f"]
    return pc.fill_null(join("'", special_column(floats_, n), "'"), pa.scalar("NULL", pa.large_string()))


# -------------------------------------------------------------------------------------------- store
@dataclass(frozen=True)
class _Catalog:
    kind: str
    rows: int
    checksum: str
    spec: dict[str, Any]
    data_table: str


class MySQLStore(Store):
    """Asset partitions as rows in MySQL / MariaDB via SQLAlchemy + PyMySQL (see the module
    docstring). ``url`` is a SQLAlchemy URL without password (``mysql+pymysql://user@host:3306/db``);
    ``password`` comes from the environment."""

    backend = "mysql"

    def __init__(self, url: str, password: str | None = None, *, retry: RetryPolicy | None = None,
                 batch_bytes: int = 4 << 20, connect_timeout_s: int = 5, read_timeout_s: int = 600,
                 create_database: bool = True, progress: ProgressCallback | None = None, logger: Any = None):
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if not parsed.drivername.startswith("mysql") and not parsed.drivername.startswith("mariadb"):
            raise StorageInputError(f"MySQL URL must use a mysql driver (mysql+pymysql://...), got {parsed.drivername}")
        if parsed.password:
            raise StorageInputError("MySQL URL carries a password; pass it from the environment instead")
        if not parsed.database or not _IDENT.match(parsed.database):
            raise StorageInputError(f"MySQL URL must name a database ([A-Za-z0-9_]), got {parsed.database!r}")
        self._url = parsed.set(drivername="mysql+pymysql", password=password or None)
        self.database = parsed.database
        host = f"{parsed.host or 'localhost'}:{parsed.port or 3306}"
        self._location = f"MySQL {host}/{parsed.database}"
        self.retry = retry or RetryPolicy()
        self.batch_bytes = batch_bytes
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.create_database = create_database
        self.progress = progress
        self.logger = logger
        self._engine = None
        self._schema_ready = False
        self._columns: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"MySQLStore({self._location!r})"

    @property
    def location(self) -> str:
        return self._location

    # ---------------------------------------------------------------------------- connections
    def _connect_args(self) -> dict[str, Any]:
        return {"connect_timeout": self.connect_timeout_s, "read_timeout": self.read_timeout_s,
                "write_timeout": self.read_timeout_s, "charset": "utf8mb4", "autocommit": False,
                "local_infile": False}

    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy as sa

            engine = sa.create_engine(self._url, pool_pre_ping=True, pool_recycle=1800, pool_size=2,
                                      max_overflow=2, connect_args=self._connect_args())

            @sa.event.listens_for(engine, "connect")
            def _session_settings(dbapi_connection, _record):  # pragma: no branch - runs per connection
                cur = dbapi_connection.cursor()
                cur.execute("SELECT @@SESSION.sql_mode")
                modes = [m for m in (cur.fetchone()[0] or "").split(",") if m and m != "NO_BACKSLASH_ESCAPES"]
                if "STRICT_ALL_TABLES" not in modes:
                    modes.append("STRICT_ALL_TABLES")
                cur.execute("SET SESSION sql_mode = %s, time_zone = '+00:00'", (",".join(modes),))
                cur.close()

            self._engine = engine
        return self._engine

    def _call(self, fn, action: str):
        return call_with_retries(fn, policy=self.retry, transient=mysql_transient, server=self.location,
                                 action=action, logger=self.log)

    def _raw(self):
        return self.engine.raw_connection()

    @staticmethod
    def _discard(conn) -> None:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - the connection is being thrown away
            pass
        try:
            conn.invalidate()
        except Exception:  # noqa: BLE001
            pass

    def _run(self, fn, action: str):
        """Run ``fn(cursor)`` in one transaction on a pooled connection, with retries."""

        def attempt():
            conn = self._raw()
            try:
                cur = conn.cursor()
                result = fn(cur)
                conn.commit()
                cur.close()
                conn.close()
                return result
            except BaseException:
                self._discard(conn)
                raise

        return self._call(attempt, action)

    # ---------------------------------------------------------------------------------- schema
    def _ensure_schema(self, action: str) -> None:
        if self._schema_ready:
            return
        if self.create_database:
            self._call(self._create_database, f"{action}: create database")

        def create(cur):
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {ident(CATALOG_TABLE)} ("
                "`asset` VARCHAR(255) NOT NULL, `partition_key` VARCHAR(255) NOT NULL, "
                "`kind` VARCHAR(32) NOT NULL, `data_table` VARCHAR(64) NOT NULL, `row_count` BIGINT NOT NULL, "
                "`checksum` CHAR(64) NOT NULL, `spec` LONGTEXT NOT NULL, `written_at` DATETIME(6) NOT NULL, "
                "PRIMARY KEY (`asset`, `partition_key`)"
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")

        self._run(create, f"{action}: create catalog")
        self._schema_ready = True

    def _create_database(self) -> None:
        import pymysql

        try:
            conn = pymysql.connect(host=self._url.host or "localhost", port=self._url.port or 3306,
                                   user=self._url.username, password=self._url.password or "",
                                   connect_timeout=self.connect_timeout_s, charset="utf8mb4")
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in (1044, 1045):  # no right to connect without a database
                return
            raise
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {ident(self.database)} "
                            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        except pymysql.err.OperationalError as exc:
            if not (exc.args and exc.args[0] in (1044, 1045)):
                raise
        finally:
            conn.close()

    def _table_columns(self, table: str, action: str, refresh: bool = False) -> dict[str, str]:
        if refresh or table not in self._columns:
            def show(cur):
                cur.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self.database, table))
                return {name.lower(): re.sub(r"\(\d+\)$", "", str(ctype).lower()) if not str(ctype).lower()
                        .startswith("datetime") else str(ctype).lower() for name, ctype in cur.fetchall()}

            self._columns[table] = self._run(show, f"{action}: read columns of {table}")
        return self._columns[table]

    def _plan(self, enc: codec.Encoded, table: str, action: str) -> list[SqlColumn]:
        existing = self._table_columns(table, action)
        names = physical_names(enc.table.column_names, RESERVED)
        columns = []
        for name, physical, col in zip(enc.table.column_names, names, enc.table.columns):
            kind = _sql_kind(col.combine_chunks(), name)
            if kind != "z":
                have = existing.get(physical.lower())
                if have is not None and have != SHOWN_TYPES[kind] and not (kind == "b" and have.startswith("tinyint")):
                    physical = f"{physical}__{kind}"
            columns.append(SqlColumn(physical, kind))
        return columns

    def _ensure_table(self, table: str, columns: Sequence[SqlColumn], action: str) -> None:
        existing = self._table_columns(table, action)
        if not existing:
            def create(cur):
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {ident(table)} ("
                    "`rp_part` VARCHAR(255) NOT NULL, `rp_n` BIGINT NOT NULL, `rp_special` TEXT NULL, "
                    "PRIMARY KEY (`rp_part`, `rp_n`)"
                    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")

            self._run(create, f"{action}: create table {table}")
            existing = self._table_columns(table, action, refresh=True)
        missing = [c for c in columns if c.kind != "z" and c.name.lower() not in existing]
        if missing:
            adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {ident(c.name)} {SQL_TYPES[c.kind]} NULL" for c in missing)
            self._run(lambda cur: cur.execute(f"ALTER TABLE {ident(table)} {adds}"),
                      f"{action}: add columns to {table}")
            self._table_columns(table, action, refresh=True)

    # ----------------------------------------------------------------------------------- write
    def _statements(self, enc: codec.Encoded, table: str, columns: Sequence[SqlColumn],
                    partition_key: str) -> Iterator[tuple[int, str]]:
        stored = [(i, c) for i, c in enumerate(columns) if c.kind != "z"]
        head = (f"INSERT INTO {ident(table)} (`rp_part`, `rp_n`, `rp_special`"
                + "".join(f", {ident(c.name)}" for _, c in stored) + ") VALUES ")
        part_literal = quote_text(partition_key)
        step = 20_000
        for start in range(0, enc.rows, step):
            n = min(step, enc.rows - start)
            numbers = pa.array(np.arange(start, start + n, dtype=np.int64)).cast(pa.large_string())
            parts: list[pa.Array | str] = ["(" + part_literal + ",", numbers, ",",
                                           _special(enc.table, columns, start, n)]
            for i, c in stored:
                parts.append(",")
                parts.append(sql_literals(enc.table.column(i).slice(start, n).combine_chunks(), c.kind))
            parts.append("),")
            rows = join(*parts)
            if rows.null_count:
                raise StorageError("SQL row encoding produced nulls")
            offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset:rows.offset + n + 1]
            data = memoryview(rows.buffers()[2])
            i = 0
            while i < n:
                limit = offsets[i] + self.batch_bytes
                j = max(i + 1, int(np.searchsorted(offsets, limit, side="right")) - 1)
                j = min(j, n)
                body = data[int(offsets[i]):int(offsets[j]) - 1].tobytes().decode("utf-8")
                yield j - i, head + body
                i = j

    def write(self, asset: Sequence[str], partition: Partition, value: Any) -> WriteReceipt:
        t0 = time.perf_counter()
        what = self.describe(asset, partition)
        action = f"write {what}"
        enc = codec.encode(value)
        table = table_name(asset)
        self._ensure_schema(action)
        try:
            columns = self._plan(enc, table, action)
        except StorageInputError as exc:
            raise StorageInputError(f"{self.location}: {action}: {exc}") from exc
        self._ensure_table(table, columns, action)
        checksum = codec.table_checksum(enc.table)
        spec = {**enc.spec, "mysql": {"table": table, "columns": [[c.name, c.kind] for c in columns]}}
        spec_text = json.dumps(spec, separators=(",", ":"))
        key = partition.key
        name = asset_name(asset)
        total = max(1, -(-enc.rows // 20_000))
        counters = {"batches": 0, "bytes": 0}

        def transaction(cur):
            counters["batches"] = counters["bytes"] = 0
            cur.execute(f"DELETE FROM {ident(table)} WHERE `rp_part` = %s", (key,))
            for number, (_, statement) in enumerate(self._statements(enc, table, columns, key), 1):
                cur.execute(statement)
                counters["batches"] = number
                counters["bytes"] += len(statement)
                if self.progress:
                    self.progress(number, max(total, number))
            cur.execute(
                f"INSERT INTO {ident(CATALOG_TABLE)} (`asset`, `partition_key`, `kind`, `data_table`, `row_count`, "
                "`checksum`, `spec`, `written_at`) VALUES (%s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) "
                "ON DUPLICATE KEY UPDATE `kind` = VALUES(`kind`), `data_table` = VALUES(`data_table`), "
                "`row_count` = VALUES(`row_count`), `checksum` = VALUES(`checksum`), `spec` = VALUES(`spec`), "
                "`written_at` = VALUES(`written_at`)",
                (name, key, enc.kind, table, enc.rows, checksum, spec_text))

        try:
            self._run(transaction, action)
        except StorageInputError:
            raise
        except Exception as exc:
            import pymysql

            orig = getattr(exc, "orig", exc)
            if isinstance(orig, (pymysql.err.DataError, pymysql.err.IntegrityError, pymysql.err.ProgrammingError,
                                 pymysql.err.InternalError)):
                raise StorageInputError(f"{self.location}: {action}: the server refused the rows: {orig}; "
                                        "nothing was written") from exc
            if isinstance(orig, pymysql.err.OperationalError) and not mysql_transient(orig):
                raise StorageError(f"{self.location}: {action}: {orig}; nothing was written") from exc
            raise
        return WriteReceipt(self.backend, f"{self.location} table {table}", key, codec.value_rows(value), checksum,
                            counters["batches"], time.perf_counter() - t0, counters["bytes"])

    # ------------------------------------------------------------------------------------ read
    def _catalog(self, cur, asset: Sequence[str], partition: Partition) -> _Catalog | None:
        cur.execute(f"SELECT `kind`, `row_count`, `checksum`, `spec`, `data_table` FROM {ident(CATALOG_TABLE)} "
                    "WHERE `asset` = %s AND `partition_key` = %s", (asset_name(asset), partition.key))
        row = cur.fetchone()
        if row is None:
            return None
        return _Catalog(row[0], int(row[1]), row[2], json.loads(row[3]), row[4])

    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        what = self.describe(asset, partition)
        action = f"read {what}"
        self._ensure_schema(action)

        def fetch(cur):
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            entry = self._catalog(cur, asset, partition)
            if entry is None:
                return None, None, None
            select, numeric, others = self._select_list(
                [SqlColumn(n, k) for n, k in entry.spec["mysql"]["columns"]])
            cur.execute(f"SELECT {', '.join(select)} FROM {ident(entry.data_table)} WHERE `rp_part` = %s "
                        "ORDER BY `rp_n`", (partition.key,))
            return entry, cur.fetchall(), (numeric, others)

        entry, rows, groups = self._run(fetch, action)
        if entry is None:
            raise StorageNotFoundError(f"{self.location}: nothing stored for {what}; materialise it first")
        return self._rebuild(entry, rows, groups, what)

    @staticmethod
    def _select_list(columns: Sequence[SqlColumn]) -> tuple[list[str], list[SqlColumn], list[SqlColumn]]:
        numeric = [c for c in columns if c.kind in NUMERIC_KINDS]
        others = [c for c in columns if c.kind not in NUMERIC_KINDS and c.kind != "z"]
        select = ["`rp_n`", "`rp_special`"]
        if numeric:
            select.append("CONCAT_WS(',', " + ", ".join(f"IFNULL({ident(c.name)}, '')" for c in numeric) + ")")
        select += [ident(c.name) for c in others]
        return select, numeric, others

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *,
                  strict: bool = False) -> dict[str, Any]:
        """A window of partitions in one transaction (a consistent snapshot): one catalog query
        (``partition_key IN (...)``) and one data query per data table and column layout -- one for a
        window whose partitions have the same columns -- ordered by the primary key. Each value is
        checked against its recorded row count and checksum, as :meth:`read` does."""
        wanted = unique_partitions(partitions)
        if not wanted:
            return {}
        keys = [p.key for p in wanted]
        what = f"asset {'/'.join(asset)} partitions {keys[0]} .. {keys[-1]} ({len(keys)})"
        action = f"read {what}"
        self._ensure_schema(action)
        name = asset_name(asset)
        marks = ", ".join(["%s"] * len(keys))

        def fetch(cur):
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute(f"SELECT `partition_key`, `kind`, `row_count`, `checksum`, `spec`, `data_table` "
                        f"FROM {ident(CATALOG_TABLE)} WHERE `asset` = %s AND `partition_key` IN ({marks})",
                        (name, *keys))
            entries = {row[0]: _Catalog(row[1], int(row[2]), row[3], json.loads(row[4]), row[5])
                       for row in cur.fetchall()}
            layouts: dict[tuple[str, str], list[str]] = {}
            for key in keys:
                if key in entries:
                    entry = entries[key]
                    layouts.setdefault((entry.data_table, json.dumps(entry.spec["mysql"]["columns"])), []).append(key)
            rows: dict[str, list[tuple]] = {key: [] for key in entries}
            for (data_table, _), group in layouts.items():
                layout = entries[group[0]].spec["mysql"]["columns"]
                select, _, _ = self._select_list([SqlColumn(n, k) for n, k in layout])
                cur.execute(f"SELECT `rp_part`, {', '.join(select)} FROM {ident(data_table)} WHERE `rp_part` IN "
                            f"({', '.join(['%s'] * len(group))}) ORDER BY `rp_part`, `rp_n`", tuple(group))
                for row in cur.fetchall():
                    if row[0] in rows:
                        rows[row[0]].append(row[1:])
            return entries, rows

        entries, rows = self._run(fetch, action)
        out: dict[str, Any] = {}
        for partition in wanted:
            entry = entries.get(partition.key)
            if entry is None:
                continue
            _, numeric, others = self._select_list([SqlColumn(n, k) for n, k in entry.spec["mysql"]["columns"]])
            out[partition.key] = self._rebuild(entry, rows[partition.key], (numeric, others),
                                               self.describe(asset, partition))
        return self._window_answer(asset, wanted, out, strict)

    def _rebuild(self, entry: _Catalog, rows: list[tuple], groups, what: str) -> Any:
        numeric, others = groups
        schema = codec.schema_of(entry.spec)
        columns = [SqlColumn(n, k) for n, k in entry.spec["mysql"]["columns"]]
        if len(rows) != entry.rows or [r[0] for r in rows] != list(range(entry.rows)):
            raise StorageIntegrityError(f"{self.location}: {what}: table {entry.data_table} holds {len(rows)} rows "
                                        f"numbered otherwise than 0..{entry.rows - 1}; rewrite the partition")
        by_name: dict[str, pa.Array] = {}
        if numeric:
            types = {c.name: _read_type(c.kind) for c in numeric}
            text = ("\n".join(r[2] for r in rows) + "\n").encode() if rows else b""
            parsed = pacsv.read_csv(
                io.BytesIO(text),
                read_options=pacsv.ReadOptions(column_names=[c.name for c in numeric], block_size=1 << 24),
                parse_options=pacsv.ParseOptions(ignore_empty_lines=False, quote_char=False),
                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)) if rows else None
            for c in numeric:
                by_name[c.name] = parsed.column(c.name).combine_chunks() if parsed is not None \
                    else pa.array([], types[c.name])
        offset = 3 if numeric else 2
        for j, c in enumerate(others):
            values = [r[offset + j] for r in rows]
            if c.kind == "x":
                by_name[c.name] = pa.array([None if v is None else bytes(v) for v in values], pa.large_binary())
            else:
                by_name[c.name] = pa.array([None if v is None else (v.decode("utf-8") if isinstance(v, bytes) else v)
                                            for v in values], pa.large_string())
        arrays = []
        for i, c in enumerate(columns):
            target = schema.field(i).type
            if c.kind == "z":
                arrays.append(pa.nulls(entry.rows, target))
            elif c.kind == "t":
                arrays.append(_timestamps(by_name[c.name], target))
            else:
                arrays.append(by_name[c.name])
        special = [r[1] for r in rows]
        if any(special):
            patched = apply_special(dict(enumerate(arrays)), special)
            arrays = [patched[i] for i in range(len(arrays))]
        table = codec.conform(arrays, schema)
        if codec.table_checksum(table) != entry.checksum:
            raise StorageIntegrityError(f"{self.location}: {what}: checksum of the rows read differs from the one "
                                        f"recorded at write (table {entry.data_table}); rewrite the partition")
        return codec.decode(entry.spec, table)

    # ------------------------------------------------------------------------------ the rest
    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        action = f"look up {self.describe(asset, partition)}"
        self._ensure_schema(action)
        return self._run(lambda cur: self._catalog(cur, asset, partition), action) is not None

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        """The checksum the catalog recorded with the partition's rows."""
        action = f"look up {self.describe(asset, partition)}"
        self._ensure_schema(action)
        entry = self._run(lambda cur: self._catalog(cur, asset, partition), action)
        return None if entry is None else entry.checksum

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        action = f"delete {self.describe(asset, partition)}"
        self._ensure_schema(action)
        table = table_name(asset)
        has_table = bool(self._table_columns(table, action, refresh=True))

        def remove(cur):
            if has_table:
                cur.execute(f"DELETE FROM {ident(table)} WHERE `rp_part` = %s", (partition.key,))
            cur.execute(f"DELETE FROM {ident(CATALOG_TABLE)} WHERE `asset` = %s AND `partition_key` = %s",
                        (asset_name(asset), partition.key))

        self._run(remove, action)

    def partitions(self, asset: Sequence[str]) -> list[str]:
        action = f"list partitions of asset {'/'.join(asset)}"
        self._ensure_schema(action)

        def keys(cur):
            cur.execute(f"SELECT `partition_key` FROM {ident(CATALOG_TABLE)} WHERE `asset` = %s "
                        "ORDER BY `partition_key`", (asset_name(asset),))
            return [r[0] for r in cur.fetchall()]

        return self._run(keys, action)

    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        action = f"count {self.describe(asset, partition)}"
        self._ensure_schema(action)
        table = table_name(asset)
        if not self._table_columns(table, action, refresh=True):
            return StoredCounts(0, 0, 0)

        def count(cur):
            entry = self._catalog(cur, asset, partition)
            cur.execute(f"SELECT COUNT(*), COUNT(DISTINCT `rp_n`) FROM {ident(table)} WHERE `rp_part` = %s",
                        (partition.key,))
            physical, distinct = cur.fetchone()
            return StoredCounts(0 if entry is None else entry.rows, int(physical), int(distinct))

        return self._run(count, action)

    def disk_bytes(self, asset: Sequence[str]) -> float | None:
        """Bytes the asset's data table takes: its InnoDB tablespace file when the server's data folder
        is readable here, else data + index length from ``information_schema`` (after ANALYZE)."""
        from pathlib import Path

        table = table_name(asset)

        def size(cur):
            cur.execute("SELECT @@datadir")
            datadir = Path(cur.fetchone()[0])
            cur.execute(f"ANALYZE TABLE {ident(table)}")
            cur.fetchall()
            cur.execute("SELECT data_length + index_length FROM information_schema.TABLES "
                        "WHERE table_schema = %s AND table_name = %s", (self.database, table))
            row = cur.fetchone()
            return datadir, (float(row[0]) if row and row[0] is not None else None)

        datadir, reported = self._run(size, f"measure the size of table {table}")
        try:
            return float((datadir / self.database / f"{table}.ibd").stat().st_size)
        except OSError:
            return reported

    def drop_database(self) -> None:
        """Drop the whole database of this store (scratch databases of tests and benchmarks)."""
        self._run(lambda cur: cur.execute(f"DROP DATABASE IF EXISTS {ident(self.database)}"),
                  f"drop database {self.database}")
        self._schema_ready = False
        self._columns.clear()

    def health(self) -> list[HealthStatus]:
        from rotation_platform.storage.health import check_mysql

        return [check_mysql(self._url.render_as_string(hide_password=False), location=self.location,
                            timeout_s=self.connect_timeout_s)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _read_type(kind: str) -> pa.DataType:
    return {"f": pa.float64(), "i": pa.int64(), "u": pa.uint64(), "b": pa.bool_(), "t": pa.timestamp("us"),
            "n": pa.int64(), "d": pa.date32()}[kind]


def _timestamps(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """DATETIME(6) values (UTC wall time) back to the stored timestamp type."""
    base = _base_type(target)
    if pa.types.is_timestamp(base) and base.tz:
        return arr.cast(pa.timestamp("us", "UTC"))
    return arr
