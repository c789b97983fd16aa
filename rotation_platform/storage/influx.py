"""InfluxDB store: time series as points, one measurement per asset, over the v1 HTTP API.

Layout
------
* Measurement: the asset name (:func:`~.base.asset_name`). One point per table row.
* Time: the row's session/timestamp for price panels and frames indexed by time; when a frame has
  no time axis, or (time, tags) would not be unique, the row number (``1970-01-01`` + *n* ns) and
  the time column becomes an integer field ("ordinal" layout).
* Tags: ``rp_part`` (canonical partition key), ``rp_gen`` (write generation), one tag per named
  partition dimension (``pool=A_SHARE``), and the frame's text index levels whose values are clean
  (non-empty, no control characters or backslashes, at most 256 characters), e.g. ``symbol``. An
  index level with a NaN or an odd value is stored as a field instead -- never corrupted.
* Fields: the data columns (floats, ``i`` integers, booleans, strings), ``rp_n`` (row number, always
  present, so all-NaN rows survive) and ``rp_special`` where a float is ``+inf``, ``-inf`` or ``-0.0``
  (see :mod:`.arrowtext`). NaN/null values are left out of the point.
* Field keys are the column names when they are plain identifiers, otherwise ``c_<sha1>``
  (:func:`~.base.physical_names`); a column whose name the measurement already has with another
  field type gets a type suffix. Identifiers in InfluxQL are double-quoted and escaped; values are
  single-quoted and escaped.

Atomic, idempotent rewrites
---------------------------
A write sends the partition's points under a new generation tag in gzip-compressed, batched
line-protocol requests, checks that the server holds exactly that many points, then commits by
writing the partition's catalog point (measurement ``rp_catalog``: generation, spec, row count,
checksum; fixed timestamp, so a rewrite overwrites it) and finally drops the series of older
generations. Readers follow the catalog, so a writer killed or failing mid-write leaves the previous
value visible and no partial partition; the next write of the partition removes its leftovers.
Generations are ordered by time: of two writers of one partition the later one wins, and a reader
that meets a generation a concurrent writer removed gets an integrity error (never mixed rows);
Dagster runs one step per partition at a time, so this needs two runs racing on one partition.

Line protocol is built a column at a time with Arrow and sent by two threads while the next rows
are encoded; reads split the partition into time windows of about two million values, queried
concurrently (CSV answers for numeric data, chunked JSON when text is involved), and verify the
row numbers and the checksum recorded at write. A window of partitions (:meth:`InfluxStore.read_many`)
is one catalog query and one data query (``rp_part`` one of the keys, a time range), split only
when the window holds more than :data:`READ_VALUES_PER_QUERY` values. A database the store creates gets 52-week shard
groups (InfluxDB's default of one week wastes most of the bytes of daily data on block headers).

Transports
----------
:class:`InfluxV1Transport` speaks the v1 HTTP API (``/ping``, ``/write``, ``/query``) of InfluxDB
1.x, and the v1-compatible endpoints of 2.x/3.x (deletes then go through ``/api/v2/delete``).
:mod:`.influx_v2` provides the same transport over the ``influxdb-client`` v2 API.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rotation_platform.storage import codec, stats
from rotation_platform.storage.arrowtext import apply_special, has_special, join, negative_zero, special_column
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

__all__ = [
    "TAG_PART",
    "TAG_GEN",
    "FIELD_N",
    "FIELD_SPECIAL",
    "CATALOG",
    "InfluxLayout",
    "plan_layout",
    "encode_lines",
    "line_batches",
    "quote_ident",
    "quote_literal",
    "escape_tag",
    "escape_string_field",
    "InfluxTransport",
    "InfluxV1Transport",
    "InfluxHTTPError",
    "InfluxStore",
    "READ_VALUES_PER_QUERY",
]

TAG_PART = "rp_part"
TAG_GEN = "rp_gen"
FIELD_N = "rp_n"
FIELD_SPECIAL = "rp_special"
CATALOG = "rp_catalog"
CATALOG_ASSET_TAG = "asset"
SPEC_CHUNK = 30_000
MAX_TAG_LENGTH = 256
MAX_STRING_BYTES = 64_000
RESERVED = frozenset({"time", "_field", "_measurement", "_value", "_time", "_start", "_stop"})
_CLEAN_TAG = r"^[^\x00-\x1f\x7f\\]+$"

# ------------------------------------------------------------------------------------------ quoting


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes (``"`` and ``\\`` escaped)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL string literal in single quotes (``'`` and ``\\`` escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def escape_tag(value: str) -> str:
    """A tag key or value for line protocol (commas, equals signs and spaces escaped)."""
    if not value or re.search(r"[\x00-\x1f\x7f\\]", value):
        raise StorageInputError(f"tag value {value!r} is empty or has control characters or backslashes")
    return value.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_tag_array(arr: pa.Array) -> pa.Array:
    for ch in (",", "=", " "):
        arr = pc.replace_substring(arr, ch, "\\" + ch)
    return arr


def _escape_string_array(arr: pa.Array) -> pa.Array:
    arr = pc.replace_substring(arr, "\\", "\\\\")
    arr = pc.replace_substring(arr, '"', '\\"')
    return join('"', arr, '"')


# ------------------------------------------------------------------------------------------- layout
def _influx_kind(t: pa.DataType) -> str | None:
    """How a column of Arrow type ``t`` is stored as a field; None when it cannot be."""
    if pa.types.is_dictionary(t):
        return _influx_kind(t.value_type)
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_decimal(t):
        return "string"
    if (pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t)):
        return "integer"
    if pa.types.is_null(t):
        return "null"
    return None


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _index_columns(enc: codec.Encoded) -> list[str]:
    if enc.kind == codec.KIND_PANEL:
        return ["session", "symbol"]
    if enc.kind != codec.KIND_FRAME:
        return []
    meta = enc.table.schema.pandas_metadata or {}
    return [c for c in meta.get("index_columns", []) if isinstance(c, str)]


@dataclass(frozen=True)
class InfluxLayout:
    """How an encoded table maps onto points of one measurement."""

    measurement: str
    time_column: int | None
    tag_columns: tuple[int, ...]
    field_columns: tuple[int, ...]
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    special: bool

    @property
    def has_strings(self) -> bool:
        return self.special or any(self.kinds[i] == "string" for i in self.field_columns)

    def to_spec(self) -> dict[str, Any]:
        return {"measurement": self.measurement, "time_column": self.time_column,
                "tag_columns": list(self.tag_columns), "field_columns": list(self.field_columns),
                "names": list(self.names), "kinds": list(self.kinds), "special": self.special}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "InfluxLayout":
        return cls(spec["measurement"], spec["time_column"], tuple(spec["tag_columns"]), tuple(spec["field_columns"]),
                   tuple(spec["names"]), tuple(spec["kinds"]), bool(spec["special"]))


def _time_ns(col: pa.Array) -> pa.Array | None:
    """Nanoseconds since the epoch (UTC) of a timestamp column; None when it has nulls or cannot be
    expressed in nanoseconds."""
    if not pa.types.is_timestamp(col.type) or col.null_count:
        return None
    try:
        return col.cast(pa.timestamp("ns", col.type.tz)).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def plan_layout(enc: codec.Encoded, measurement: str, partition: Partition,
                existing_fields: Mapping[str, str] | None = None) -> InfluxLayout:
    """Decide time, tag and field columns and their physical names for one write."""
    table = enc.table
    names = table.column_names
    kinds: list[str] = []
    for name, col in zip(names, table.columns):
        kind = _influx_kind(col.type)
        if kind is None:
            raise StorageInputError(f"column {name!r} of type {col.type} cannot be stored in InfluxDB; "
                                    "store this asset on the local or mysql backend")
        kinds.append(kind)
    index_cols = [names.index(c) for c in _index_columns(enc) if c in names]

    time_col: int | None = None
    for i in index_cols:
        if _time_ns(table.column(i).combine_chunks()) is not None:
            time_col = i
            break
    tag_cols: list[int] = []
    for i in index_cols:
        if i == time_col or not _is_text(table.column(i).type):
            continue
        col = table.column(i).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if col.null_count or len(col) == 0:
            continue
        clean = pc.all(pc.match_substring_regex(col, _CLEAN_TAG)).as_py()
        if clean and pc.max(pc.utf8_length(col)).as_py() <= MAX_TAG_LENGTH:
            tag_cols.append(i)
    if time_col is not None:
        keys = pd.DataFrame({f"k{j}": table.column(i).to_numpy() for j, i in enumerate([time_col, *tag_cols])})
        if keys.duplicated().any():
            time_col = None  # rows are not unique per (time, tags): number them instead

    reserved = RESERVED | {d.lower() for d in partition.tags}
    physical = physical_names(names, reserved)
    existing = dict(existing_fields or {})
    field_cols = [i for i in range(len(names)) if i != time_col and i not in tag_cols]
    final = list(physical)
    for i in field_cols:
        kind = "integer" if i == time_col else kinds[i]
        if kind == "null":
            continue
        have = existing.get(final[i])
        if have is not None and have != kind:
            final[i] = f"{final[i]}__{kind[0]}"
    special = any(kinds[i] == "float" and has_special(table.column(i)) for i in field_cols)
    return InfluxLayout(measurement, time_col, tuple(tag_cols), tuple(field_cols), tuple(final), tuple(kinds), special)


# ----------------------------------------------------------------------------------- line protocol
def _field_text(col: pa.Array, kind: str, key: str, name: str) -> pa.Array | None:
    """``key=value`` per row, null where the value is null/NaN/infinite (left out of the point)."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    prefix = key + "="
    if kind == "null":
        return None
    if kind == "float":
        col = col.cast(pa.float64())
        plain = pc.and_(pc.fill_null(pc.is_finite(col), False), pc.invert(negative_zero(col)))
        col = pc.if_else(plain, col, pa.scalar(None, pa.float64()))
        return join(prefix, col.cast(pa.string()))
    if kind == "integer":
        t = col.type
        if pa.types.is_uint64(t) and (pc.max(col).as_py() or 0) > np.iinfo(np.int64).max:
            raise StorageInputError(f"column {name!r} has unsigned values above 2**63-1, which InfluxDB "
                                    "integer fields cannot hold")
        if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t) or pa.types.is_time64(t):
            col = col.cast(pa.int64())
        elif pa.types.is_date32(t) or pa.types.is_time32(t):
            col = col.cast(pa.int32())
        return join(prefix, col.cast(pa.int64()).cast(pa.string()), "i")
    if kind == "boolean":
        return join(prefix, col.cast(pa.string()))
    if kind == "string":
        if pa.types.is_decimal(col.type):
            col = col.cast(pa.string())
        col = col.cast(pa.large_string())
        if len(col) and (pc.max(pc.binary_length(col)).as_py() or 0) > MAX_STRING_BYTES:
            raise StorageInputError(f"column {name!r} has a value longer than {MAX_STRING_BYTES} bytes, the "
                                    "InfluxDB string field limit; store this asset on the mysql or local backend")
        return join(prefix, _escape_string_array(col))
    raise StorageInputError(f"column {name!r}: unsupported field kind {kind}")


def _special_text(table: pa.Table, layout: InfluxLayout, start: int, stop: int) -> pa.Array:
    """``rp_special="<col>:<mark>;..."`` for rows with +-inf or -0.0 floats, null elsewhere."""
    n = stop - start
    floats_ = [(i, table.column(i).slice(start, n)) for i in layout.field_columns if layout.kinds[i] == "float"]
    return join(FIELD_SPECIAL + '="', special_column(floats_, n), '"')


def encode_lines(table: pa.Table, layout: InfluxLayout, static_tags: Mapping[str, str], start: int,
                 stop: int) -> pa.Array:
    """Line protocol for rows ``[start, stop)``: one string per row, each ending in a newline."""
    n = stop - start
    head = escape_tag(layout.measurement) + "".join(
        f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(static_tags.items()))
    parts: list[pa.Array | str] = [head]
    for i in sorted(layout.tag_columns, key=lambda j: layout.names[j]):
        col = table.column(i).slice(start, n).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        parts.append("," + escape_tag(layout.names[i]) + "=")
        parts.append(_escape_tag_array(col.cast(pa.large_string())))
    parts.append(" ")
    numbers = pa.array(np.arange(start, stop, dtype=np.int64))
    fields: list[pa.Array] = [join(FIELD_N + "=", numbers.cast(pa.string()), "i")]
    for i in layout.field_columns:
        text = _field_text(table.column(i).slice(start, n).combine_chunks(),
                           "integer" if i == layout.time_column else layout.kinds[i],
                           layout.names[i], table.column_names[i])
        if text is not None:
            fields.append(text)
    if layout.special:
        fields.append(_special_text(table, layout, start, stop))
    parts.append(join(*fields, sep=",", skip_nulls=True))  # rp_n first: never null
    if layout.time_column is None:
        stamps = numbers
    else:
        stamps = _time_ns(table.column(layout.time_column).slice(start, n).combine_chunks())
    parts.append(" ")
    parts.append(stamps.cast(pa.string()))
    parts.append("\n")
    lines = join(*parts)
    if len(lines) != n or lines.null_count:
        raise StorageError(f"line protocol encoding produced {len(lines)} lines ({lines.null_count} null) for {n} rows")
    return lines


def line_batches(lines: pa.Array, max_lines: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Split encoded lines into ``(n_lines, body)`` batches of at most ``max_lines`` lines and about
    ``max_bytes`` bytes, slicing the Arrow buffer without copying line by line."""
    lines = lines.cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    data = memoryview(lines.buffers()[2]) if len(lines) else memoryview(b"")
    i = 0
    n = len(lines)
    while i < n:
        j = min(n, i + max_lines)
        limit = offsets[i] + max_bytes
        if offsets[j] > limit:
            j = max(i + 1, int(np.searchsorted(offsets, limit, side="right")) - 1)
        yield j - i, data[int(offsets[i]):int(offsets[j])].tobytes()
        i = j


# ---------------------------------------------------------------------------------------- transport
class InfluxHTTPError(StorageError):
    """An InfluxDB HTTP request was refused; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)


class InfluxDatabaseMissing(InfluxHTTPError):
    """The database does not exist (yet): reads see it as empty."""


def influx_transient(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, InfluxHTTPError):
        return exc.status == 0 or exc.status >= 500 or exc.status == 429
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


@dataclass(frozen=True)
class Column:
    """A column to read: physical name, 'field' or 'tag', Arrow type to parse as."""

    name: str
    role: str
    type: pa.DataType


class InfluxTransport(ABC):
    """What :class:`InfluxStore` needs from a server. ``where`` maps tag keys to required values."""

    server: str
    database: str
    gzip_inside: bool = False  # True when the client compresses request bodies itself

    @abstractmethod
    def ping(self) -> str:
        """Server version; raises when the server does not answer."""

    @abstractmethod
    def ensure_database(self) -> None: ...

    @abstractmethod
    def write(self, body: bytes, compressed: bool) -> None:
        """Send line protocol (``body`` gzip-compressed when ``compressed``)."""

    @abstractmethod
    def select(self, measurement: str, where: Mapping[str, str], columns: Sequence[Column],
               strings: bool, time_range: tuple[int, int] | None = None,
               any_of: tuple[str, Sequence[str]] | None = None) -> pa.Table:
        """Rows of a measurement: column ``time`` (int64 ns) then ``columns`` in order; with
        ``time_range`` only points with ``start <= time < stop`` (ns); with ``any_of = (tag, values)``
        only points whose tag has one of the values (a window of partitions in one query)."""

    @abstractmethod
    def count(self, measurement: str, where: Mapping[str, str], field: str) -> int: ...

    @abstractmethod
    def tag_values(self, measurement: str, key: str, where: Mapping[str, str]) -> list[str]: ...

    @abstractmethod
    def drop(self, measurement: str, where: Mapping[str, str]) -> None:
        """Delete every point of the series matching ``where`` (equality on tags)."""

    @abstractmethod
    def field_types(self, measurement: str) -> dict[str, str]: ...

    def close(self) -> None:
        pass


class InfluxV1Transport(InfluxTransport):
    """The v1 HTTP API over ``requests``: InfluxDB 1.x, and 2.x/3.x v1-compatible endpoints.

    Authentication: ``username``/``password`` (HTTP basic) or ``token`` (``Authorization: Token``).
    Secrets are kept out of URLs, error messages and ``repr``.
    """

    def __init__(self, url: str, database: str, *, username: str | None = None, password: str | None = None,
                 token: str | None = None, org: str | None = None, timeout_s: float = 30.0,
                 retention_policy: str | None = None, shard_duration: str = "52w"):
        self.url = url.rstrip("/")
        self.database = database
        self.server = f"InfluxDB {self.url} (database {database})"
        self.timeout = (min(5.0, timeout_s), timeout_s)
        self.retention_policy = retention_policy
        if not re.match(r"^\d+[hdw]$", shard_duration):
            raise StorageInputError(f"shard duration {shard_duration!r} must look like 52w, 30d or 24h")
        self.shard_duration = shard_duration
        self.org = org
        self._username = username
        self._password = password
        self._token = token
        self._local = threading.local()
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"InfluxV1Transport({self.url!r}, database={self.database!r})"

    # ------------------------------------------------------------------------------ HTTP plumbing
    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self._token:
                session.headers["Authorization"] = f"Token {self._token}"
            elif self._username:
                session.auth = (self._username, self._password or "")
            self._local.session = session
        return session

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, data: Any = None,
                 headers: Mapping[str, str] | None = None, stream: bool = False):
        import requests

        try:
            response = self._session().request(method, self.url + path, params=params, data=data, headers=headers,
                                               timeout=self.timeout, stream=stream)
        except requests.RequestException as exc:
            raise InfluxHTTPError(f"{self.server}: no answer to {method} {path}: {type(exc).__name__}", 0) from exc
        if response.status_code >= 300:
            body = response.text[:500].strip()
            raise InfluxHTTPError(f"{self.server}: {method} {path} answered HTTP {response.status_code}: {body}",
                                  response.status_code)
        return response

    def _query(self, q: str, *, post: bool = False, epoch: bool = True, accept: str | None = None,
               chunked: bool = False):
        params = {"db": self.database, "q": q}
        if epoch:
            params["epoch"] = "ns"
        if self.retention_policy:
            params["rp"] = self.retention_policy
        if chunked:
            params["chunked"] = "true"
            params["chunk_size"] = "20000"
        # large answers: the server's gzip costs more CPU than the loopback/LAN transfer saves
        headers = {"Accept": accept, "Accept-Encoding": "identity"} if accept else None
        if post:
            return self._request("POST", "/query", data=params, headers=headers, stream=chunked)
        return self._request("GET", "/query", params=params, headers=headers, stream=chunked)

    @staticmethod
    def _results(payload: Mapping[str, Any], q: str) -> list[dict[str, Any]]:
        results = payload.get("results", [])
        errors = [r["error"] for r in results if "error" in r] + ([payload["error"]] if "error" in payload else [])
        for error in errors:
            cls = InfluxDatabaseMissing if str(error).startswith("database not found") else InfluxHTTPError
            raise cls(f"query failed: {error} (query: {q[:300]})", 400)
        return results

    def _series(self, q: str, post: bool = False) -> list[dict[str, Any]]:
        """The series a statement answers; none when the database does not exist yet."""
        response = self._query(q, post=post)
        out = []
        try:
            results = self._results(response.json(), q)
        except InfluxDatabaseMissing:
            return []
        for r in results:
            out.extend(r.get("series", []))
        return out

    # ------------------------------------------------------------------------------------ API
    def ping(self) -> str:
        response = self._request("GET", "/ping")
        self._version = response.headers.get("X-Influxdb-Version", "unknown")
        return self._version

    @property
    def is_v2(self) -> bool:
        version = self._version or self.ping()
        return version.lstrip("v").startswith(("2", "3"))

    def ensure_database(self) -> None:
        """Create the database on first use. Its default retention policy gets ``shard_duration``
        shard groups: daily data in InfluxDB's default one-week shards spends more bytes on block
        headers and index keys than on values. An existing database is left as it is."""
        if self.is_v2:
            return  # 2.x/3.x: the bucket (mapped to this database) must exist; it is not created here
        names = {row[0] for s in self._series("SHOW DATABASES") for row in s.get("values", [])}
        if self.database in names:
            return
        self._query(f"CREATE DATABASE {quote_ident(self.database)} WITH SHARD DURATION {self.shard_duration}",
                    post=True, epoch=False)

    def write(self, body: bytes, compressed: bool) -> None:
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        self._request("POST", "/write", params=params, data=body, headers=headers)

    @staticmethod
    def _where(where: Mapping[str, str]) -> str:
        if not where:
            return ""
        return " WHERE " + " AND ".join(f"{quote_ident(k)} = {quote_literal(v)}" for k, v in sorted(where.items()))

    def _from(self, measurement: str) -> str:
        return quote_ident(measurement)

    def select(self, measurement: str, where: Mapping[str, str], columns: Sequence[Column],
               strings: bool, time_range: tuple[int, int] | None = None,
               any_of: tuple[str, Sequence[str]] | None = None) -> pa.Table:
        cols = ", ".join(f"{quote_ident(c.name)}::{c.role}" for c in columns)
        q = f"SELECT {cols} FROM {self._from(measurement)}{self._where(where)}"
        terms = []
        if any_of is not None:
            tag, values = any_of
            if not values:
                return self._empty(columns)
            terms.append("(" + " OR ".join(f"{quote_ident(tag)} = {quote_literal(v)}" for v in values) + ")")
        if time_range is not None:
            start, stop = (int(x) for x in time_range)
            terms.append(f"time >= {start} AND time < {stop}")
        if terms:
            q += (" AND " if where else " WHERE ") + " AND ".join(terms)
        if not strings and all(not _is_text(c.type) or c.role == "tag" for c in columns):
            return self._select_csv(q, columns)
        return self._select_json(q, columns)

    @staticmethod
    def _empty(columns: Sequence[Column]) -> pa.Table:
        return pa.table({"time": pa.array([], pa.int64()),
                         **{c.name: pa.array([], c.type if c.role == "field" else pa.string()) for c in columns}})

    def _select_csv(self, q: str, columns: Sequence[Column]) -> pa.Table:
        try:
            response = self._query(q, post=True, accept="application/csv")
        except InfluxHTTPError as exc:
            if "database not found" in str(exc):
                return self._empty(columns)
            raise
        raw = response.content
        stats.add_bytes(len(raw))
        types = {"name": pa.string(), "tags": pa.string(), "time": pa.int64()}
        for c in columns:
            types[c.name] = pa.string() if c.role == "tag" else c.type
        if not raw.strip():
            return pa.table({"time": pa.array([], pa.int64()),
                             **{c.name: pa.array([], types[c.name]) for c in columns}})
        # CSV answers repeat the header when a result spans several series: keep data rows only
        text = raw
        header = raw.split(b"\n", 1)[0]
        if raw.count(header + b"\n") > 1:
            text = header + b"\n" + raw.replace(header + b"\n", b"")
        got = header.decode().split(",")
        if got[:3] != ["name", "tags", "time"]:
            raise InfluxHTTPError(f"{self.server}: query failed: {raw[:300].decode(errors='replace')!r} "
                                  f"(query: {q[:300]})", 400)
        missing = [c.name for c in columns if c.name not in got]
        table = pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types={k: v for k, v in types.items() if k in got},
                                                 strings_can_be_null=True, quoted_strings_can_be_null=False,
                                                 true_values=["true"], false_values=["false"]))
        data = {"time": table.column("time")}
        for c in columns:
            data[c.name] = table.column(c.name) if c.name not in missing else pa.nulls(table.num_rows, types[c.name])
        return pa.table(data)

    def _select_json(self, q: str, columns: Sequence[Column]) -> pa.Table:
        response = self._query(q, post=True, chunked=True)
        values: list[list[Any]] = []
        header: list[str] | None = None
        for line in response.iter_lines():
            if not line:
                continue
            stats.add_bytes(len(line))
            payload = json.loads(line)
            try:
                results = self._results(payload, q)
            except InfluxDatabaseMissing:
                return self._empty(columns)
            for r in results:
                for series in r.get("series", []):
                    header = series["columns"]
                    values.extend(series.get("values", []))
        pos = {name: i for i, name in enumerate(header or [])}
        data: dict[str, pa.Array] = {"time": pa.array([row[pos["time"]] for row in values] if header else [],
                                                      pa.int64())}
        for c in columns:
            if c.name in pos:
                j = pos[c.name]
                data[c.name] = _json_column([row[j] for row in values], c.type if c.role == "field" else pa.string())
            else:
                data[c.name] = pa.nulls(len(values), c.type if c.role == "field" else pa.string())
        return pa.table(data)

    def count(self, measurement: str, where: Mapping[str, str], field: str) -> int:
        series = self._series(f"SELECT count({quote_ident(field)}) FROM {self._from(measurement)}{self._where(where)}")
        if not series:
            return 0
        return int(series[0]["values"][0][1] or 0)

    def tag_values(self, measurement: str, key: str, where: Mapping[str, str]) -> list[str]:
        q = f"SHOW TAG VALUES FROM {self._from(measurement)} WITH KEY = {quote_ident(key)}{self._where(where)}"
        series = self._series(q)
        return sorted({row[1] for s in series for row in s.get("values", [])})

    def drop(self, measurement: str, where: Mapping[str, str]) -> None:
        if self.is_v2:
            self._delete_v2(measurement, where)
            return
        self._series(f"DROP SERIES FROM {self._from(measurement)}{self._where(where)}", post=True)

    def _delete_v2(self, measurement: str, where: Mapping[str, str]) -> None:
        from rotation_platform.storage.influx_v2 import delete_predicate

        body = {"start": "1677-09-21T00:12:43.145224194Z", "stop": "2262-04-11T23:47:16.854775806Z",
                "predicate": delete_predicate(measurement, where)}
        params = {"bucket": self.database}
        if self.org:
            params["org"] = self.org
        self._request("POST", "/api/v2/delete", params=params, data=json.dumps(body),
                      headers={"Content-Type": "application/json"})

    def field_types(self, measurement: str) -> dict[str, str]:
        series = self._series(f"SHOW FIELD KEYS FROM {self._from(measurement)}")
        return {row[0]: row[1] for s in series for row in s.get("values", [])}

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def _json_column(values: list[Any], t: pa.DataType) -> pa.Array:
    if pa.types.is_floating(t):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if pa.types.is_integer(t):
        return pa.array(values, pa.int64())
    if pa.types.is_boolean(t):
        return pa.array(values, pa.bool_())
    return pa.array(values, pa.large_string())


READ_VALUES_PER_QUERY = 2_000_000
#: spec chunks a window's catalog query asks for (a spec longer than this takes a second query)
CATALOG_CHUNKS_READ = 8


def _split_parts(raw: pa.Table, generations: Mapping[str, str]) -> dict[str, pa.Table]:
    """The rows of each partition's committed generation, from the answer of a window query (the tag
    columns ``rp_part``/``rp_gen`` removed); a partition without rows gets an empty table."""
    parts = raw.column(TAG_PART).combine_chunks()
    gens = raw.column(TAG_GEN).combine_chunks()
    body = raw.drop_columns([TAG_PART, TAG_GEN])
    codes, labels = pd.factorize(np.asarray(parts.to_numpy(zero_copy_only=False), dtype=object))
    gen_values = np.asarray(gens.to_numpy(zero_copy_only=False), dtype=object)
    order = np.argsort(codes, kind="stable")
    cuts = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    out = {key: body.slice(0, 0) for key in generations}
    for j, key in enumerate(labels):
        if key not in generations:
            continue
        rows = order[cuts[j]:cuts[j + 1]]
        rows = rows[gen_values[rows] == generations[key]]
        out[key] = body.take(pa.array(rows, pa.int64()))
    return out


def read_windows(table: pa.Table, layout: InfluxLayout) -> list[list[int]]:
    """Time ranges ``[start, stop)`` (ns) that split a partition's points into queries of about
    :data:`READ_VALUES_PER_QUERY` values, read concurrently."""
    if table.num_rows == 0:
        return []
    if layout.time_column is None:
        stamps = np.arange(table.num_rows, dtype=np.int64)
    else:
        stamps = _time_ns(table.column(layout.time_column).combine_chunks()).to_numpy()
    rows_per_query = max(1_000, READ_VALUES_PER_QUERY // (len(layout.field_columns) + 1))
    ordered = np.sort(stamps)
    cuts = np.unique(ordered[rows_per_query::rows_per_query])
    edges = [int(ordered[0]), *[int(c) for c in cuts if c > ordered[0]], int(ordered[-1]) + 1]
    return [[a, b] for a, b in zip(edges[:-1], edges[1:])]


# -------------------------------------------------------------------------------------------- store
@dataclass(frozen=True)
class CatalogEntry:
    gen: str
    kind: str
    rows: int
    checksum: str
    spec: dict[str, Any]


def new_generation() -> str:
    """A write generation: sortable by time, unique across writers."""
    return f"{time.time_ns():020d}{secrets.token_hex(3)}"


class InfluxStore(Store):
    """Asset partitions as points in InfluxDB (see the module docstring)."""

    backend = "influxdb"

    def __init__(self, transport: InfluxTransport, *, retry: RetryPolicy | None = None,
                 batch_lines: int = 5_000, batch_bytes: int = 4 << 20, encode_rows: int = 50_000,
                 concurrency: int = 2, gzip_level: int = 1, progress: ProgressCallback | None = None,
                 logger: Any = None):
        self.transport = transport
        self.retry = retry or RetryPolicy()
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self.encode_rows = encode_rows
        self.concurrency = max(1, concurrency)
        self.gzip_level = gzip_level
        self.progress = progress
        self.logger = logger
        self._database_ready = False

    @property
    def location(self) -> str:
        return self.transport.server

    def _call(self, fn, action: str):
        return call_with_retries(fn, policy=self.retry, transient=influx_transient, server=self.location,
                                 action=action, logger=self.log)

    def _ensure_database(self, action: str) -> None:
        if not self._database_ready:
            self._call(self.transport.ensure_database, f"{action}: create database")
            self._database_ready = True

    # -------------------------------------------------------------------------------- catalog
    def _catalog(self, measurement: str, partition: Partition, action: str) -> CatalogEntry | None:
        where = {CATALOG_ASSET_TAG: measurement, TAG_PART: partition.key}
        probe = [Column("gen", "field", pa.string()), Column("spec_n", "field", pa.int64())]
        head = self._call(lambda: self.transport.select(CATALOG, where, probe, True), f"{action}: read catalog")
        if head.num_rows == 0 or head.column("gen")[0].as_py() is None:
            return None
        n = int(head.column("spec_n")[0].as_py())
        cols = [Column("gen", "field", pa.string()), Column("kind", "field", pa.string()),
                Column("rows", "field", pa.int64()), Column("checksum", "field", pa.string()),
                *[Column(f"s{i}", "field", pa.string()) for i in range(n)]]
        row = self._call(lambda: self.transport.select(CATALOG, where, cols, True), f"{action}: read catalog")
        text = "".join(row.column(f"s{i}")[0].as_py() or "" for i in range(n))
        return CatalogEntry(row.column("gen")[0].as_py(), row.column("kind")[0].as_py(),
                            int(row.column("rows")[0].as_py()), row.column("checksum")[0].as_py(),
                            codec.spec_from_text(text))

    def _commit(self, measurement: str, partition: Partition, entry: CatalogEntry, action: str) -> None:
        text = codec.spec_to_text(entry.spec)
        chunks = [text[i:i + SPEC_CHUNK] for i in range(0, len(text), SPEC_CHUNK)] or [""]
        fields = [f"gen={escape_string_field(entry.gen)}", f"kind={escape_string_field(entry.kind)}",
                  f"rows={entry.rows}i", f"checksum={escape_string_field(entry.checksum)}",
                  f"spec_n={len(chunks)}i", f"written_at={time.time_ns()}i",
                  *[f"s{i}={escape_string_field(c)}" for i, c in enumerate(chunks)]]
        line = (f"{CATALOG},{CATALOG_ASSET_TAG}={escape_tag(measurement)},{TAG_PART}={escape_tag(partition.key)} "
                + ",".join(fields) + " 0\n").encode()
        self._call(lambda: self.transport.write(line, False), f"{action}: commit")

    # ---------------------------------------------------------------------------------- write
    def write(self, asset: Sequence[str], partition: Partition, value: Any) -> WriteReceipt:
        t0 = time.perf_counter()
        measurement = asset_name(asset)
        what = self.describe(asset, partition)
        action = f"write {what}"
        enc = codec.encode(value)
        self._ensure_database(action)
        existing = self._call(lambda: self.transport.field_types(measurement), f"{action}: read field types")
        with self._naming(action):
            layout = plan_layout(enc, measurement, partition, existing)
        gen = new_generation()
        static_tags = {**partition.tags, TAG_PART: partition.key, TAG_GEN: gen}
        checksum = codec.table_checksum(enc.table)
        rows = codec.value_rows(value)
        where = {TAG_PART: partition.key, TAG_GEN: gen}
        try:
            with self._naming(action):
                batches, sent = self._send(enc.table, layout, static_tags, action)
            stored = self._call(lambda: self.transport.count(measurement, where, FIELD_N),
                                f"{action}: verify") if enc.rows else 0
        except BaseException:
            self._discard_generation(measurement, where)
            raise
        if stored != enc.rows:
            self._discard_generation(measurement, where)
            raise StorageIntegrityError(
                f"{self.location}: {action}: the server holds {stored} of the {enc.rows} points sent "
                f"(generation {gen}); nothing was committed, the previous value stays visible; rerun")
        current = self._catalog(measurement, partition, action)
        if current is not None and current.gen > gen:
            self.log.warning(f"{self.location}: {action}: a newer write (generation {current.gen}) committed "
                             "first; this write is discarded")
            self._discard_generation(measurement, where)
            return WriteReceipt(self.backend, self.location, partition.key, rows, current.checksum, batches,
                                time.perf_counter() - t0, sent)
        spec = {**enc.spec, "influx": {**layout.to_spec(), "windows": read_windows(enc.table, layout)}}
        self._commit(measurement, partition, CatalogEntry(gen, enc.kind, enc.rows, checksum, spec), action)
        self._drop_generations(measurement, partition, keep=gen, action=action)
        return WriteReceipt(self.backend, f"{self.location} measurement {measurement}", partition.key, rows,
                            checksum, batches, time.perf_counter() - t0, sent)

    @contextlib.contextmanager
    def _naming(self, action: str) -> Iterator[None]:
        """Prefix input errors with the server, asset and partition."""
        try:
            yield
        except StorageInputError as exc:
            if self.location in str(exc):
                raise
            raise StorageInputError(f"{self.location}: {action}: {exc}") from exc

    def _discard_generation(self, measurement: str, where: Mapping[str, str]) -> None:
        """Best effort: remove the points of a write that will not be committed (readers never see
        them; the next write of the partition removes them if this fails)."""
        try:
            self.transport.drop(measurement, where)
        except Exception:  # noqa: BLE001 - the server may be the reason the write failed
            pass

    def _batches(self, table: pa.Table, layout: InfluxLayout, static_tags: Mapping[str, str]
                 ) -> Iterator[tuple[int, bytes]]:
        for start in range(0, table.num_rows, self.encode_rows):
            stop = min(table.num_rows, start + self.encode_rows)
            lines = encode_lines(table, layout, static_tags, start, stop)
            yield from line_batches(lines, self.batch_lines, self.batch_bytes)

    def _send(self, table: pa.Table, layout: InfluxLayout, static_tags: Mapping[str, str],
              action: str) -> tuple[int, int]:
        if table.num_rows == 0:
            return 0, 0
        total = -(-table.num_rows // self.batch_lines)
        done = 0
        sent = 0

        def send(n_lines: int, body: bytes, number: int) -> int:
            payload = body
            compressed = self.gzip_level > 0 and not self.transport.gzip_inside
            if compressed:
                gz = zlib.compressobj(self.gzip_level, zlib.DEFLATED, 31)
                payload = gz.compress(body) + gz.flush()
            what = f"{action}: batch {number} ({n_lines} points)"
            try:
                self._call(lambda: self.transport.write(payload, compressed), what)
            except InfluxHTTPError as exc:
                raise StorageInputError(f"{self.location}: {what} refused ({exc}); nothing was committed, "
                                        "the previous value stays visible") from exc
            return len(payload)

        pending: list[Future] = []
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="influx-write") as pool:
            try:
                for number, (n_lines, body) in enumerate(self._batches(table, layout, static_tags), 1):
                    pending.append(pool.submit(send, n_lines, body, number))
                    while len(pending) >= 2 * self.concurrency:
                        sent += pending.pop(0).result()
                        done += 1
                        if self.progress:
                            self.progress(done, max(total, done))
                while pending:
                    sent += pending.pop(0).result()
                    done += 1
                    if self.progress:
                        self.progress(done, max(total, done))
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        return done, sent

    def _drop_generations(self, measurement: str, partition: Partition, keep: str, action: str) -> None:
        """Drop the points of generations older than ``keep`` (replaced values and the leftovers of
        failed writes). Newer ones may belong to a writer still at work and are left to it."""
        gens = self._call(lambda: self.transport.tag_values(measurement, TAG_GEN, {TAG_PART: partition.key}),
                          f"{action}: list generations")
        for gen in gens:
            if gen < keep:
                self._call(lambda g=gen: self.transport.drop(measurement, {TAG_PART: partition.key, TAG_GEN: g}),
                           f"{action}: drop generation {gen}")

    # ----------------------------------------------------------------------------------- read
    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        measurement = asset_name(asset)
        what = self.describe(asset, partition)
        action = f"read {what}"
        entry = self._catalog(measurement, partition, action)
        if entry is None:
            raise StorageNotFoundError(f"{self.location}: nothing stored for {what}; materialise it first")
        spec = entry.spec
        layout = InfluxLayout.from_spec(spec["influx"])
        schema = codec.schema_of(spec)
        if entry.rows == 0:
            table = schema.empty_table()
            return codec.decode(spec, table)
        columns = self._read_columns(layout)
        where = {TAG_PART: partition.key, TAG_GEN: entry.gen}
        windows = [tuple(w) for w in spec["influx"].get("windows") or [None]]

        def fetch(window: tuple[int, int] | None) -> pa.Table:
            return self._call(lambda: self.transport.select(measurement, where, columns, layout.has_strings, window),
                              action)

        if len(windows) == 1:
            raw = fetch(windows[0])
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="influx-read") as pool:
                raw = pa.concat_tables(list(pool.map(fetch, windows)))
        return self._rebuild(raw, entry, layout, schema, what)

    def _catalogs(self, measurement: str, keys: Sequence[str], action: str) -> dict[str, CatalogEntry]:
        """Catalog entries of many partitions in one query (a second one only for specs longer than
        :data:`CATALOG_CHUNKS_READ` chunks)."""
        def query(wanted: Sequence[str], n_chunks: int) -> pa.Table:
            cols = [Column(TAG_PART, "tag", pa.string()), Column("gen", "field", pa.string()),
                    Column("kind", "field", pa.string()), Column("rows", "field", pa.int64()),
                    Column("checksum", "field", pa.string()), Column("spec_n", "field", pa.int64()),
                    *[Column(f"s{i}", "field", pa.string()) for i in range(n_chunks)]]
            return self._call(lambda: self.transport.select(CATALOG, {CATALOG_ASSET_TAG: measurement}, cols, True,
                                                            any_of=(TAG_PART, list(wanted))),
                              f"{action}: read catalog")

        table = query(keys, CATALOG_CHUNKS_READ)
        rows = table.to_pylist()
        longer = [r[TAG_PART] for r in rows if r["gen"] is not None and int(r["spec_n"] or 0) > CATALOG_CHUNKS_READ]
        if longer:
            n = max(int(r["spec_n"]) for r in rows if r[TAG_PART] in set(longer))
            again = {r[TAG_PART]: r for r in query(longer, n).to_pylist()}
            rows = [again.get(r[TAG_PART], r) for r in rows]
        out = {}
        for r in rows:
            if r["gen"] is None or r[TAG_PART] is None:
                continue
            text = "".join(r.get(f"s{i}") or "" for i in range(int(r["spec_n"] or 0)))
            out[r[TAG_PART]] = CatalogEntry(r["gen"], r["kind"], int(r["rows"]), r["checksum"],
                                            codec.spec_from_text(text))
        return out

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *,
                  strict: bool = False) -> dict[str, Any]:
        """A window of partitions: one catalog query for all of them, then one data query
        (``rp_part`` one of the keys, time between the window's first and last point) per column
        layout -- split into concurrent queries of about :data:`READ_VALUES_PER_QUERY` values when the
        window is larger. Points of generations the catalog does not name (a writer at work, leftovers
        of a failed write) are dropped; each value is checked as :meth:`read` checks it."""
        wanted = unique_partitions(partitions)
        if not wanted:
            return {}
        measurement = asset_name(asset)
        keys = [p.key for p in wanted]
        by_key = {p.key: p for p in wanted}
        action = f"read asset {'/'.join(asset)} partitions {keys[0]} .. {keys[-1]} ({len(keys)})"
        entries = self._catalogs(measurement, keys, action)
        out: dict[str, Any] = {}
        groups: dict[str, list[str]] = {}
        for key in keys:
            entry = entries.get(key)
            if entry is None:
                continue
            if entry.rows == 0:
                out[key] = codec.decode(entry.spec, codec.schema_of(entry.spec).empty_table())
                continue
            layout_spec = {k: v for k, v in entry.spec["influx"].items() if k != "windows"}
            groups.setdefault(json.dumps(layout_spec, sort_keys=True), []).append(key)
        for group in groups.values():
            layout = InfluxLayout.from_spec(entries[group[0]].spec["influx"])
            columns = [*self._read_columns(layout), Column(TAG_PART, "tag", pa.string()),
                       Column(TAG_GEN, "tag", pa.string())]
            batches, batch, values = [], [], 0
            per_row = len(layout.field_columns) + 1
            for key in group:
                if batch and values + entries[key].rows * per_row > READ_VALUES_PER_QUERY:
                    batches.append(batch)
                    batch, values = [], 0
                batch.append(key)
                values += entries[key].rows * per_row
            batches.append(batch)

            def fetch(batch_keys: list[str], layout=layout, columns=columns) -> pa.Table:
                spans = [w for k in batch_keys for w in (entries[k].spec["influx"].get("windows") or [])]
                window = (min(w[0] for w in spans), max(w[1] for w in spans)) if spans else None
                return self._call(lambda: self.transport.select(measurement, {}, columns, layout.has_strings, window,
                                                                any_of=(TAG_PART, batch_keys)), action)

            if len(batches) == 1:
                raws = [fetch(batches[0])]
            else:
                with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="influx-read") as pool:
                    raws = list(pool.map(fetch, batches))
            for batch_keys, raw in zip(batches, raws):
                for key, part in _split_parts(raw, {k: entries[k].gen for k in batch_keys}).items():
                    entry = entries[key]
                    out[key] = self._rebuild(part, entry, InfluxLayout.from_spec(entry.spec["influx"]),
                                             codec.schema_of(entry.spec), self.describe(asset, by_key[key]))
        return self._window_answer(asset, wanted, out, strict)

    @staticmethod
    def _read_columns(layout: InfluxLayout) -> list[Column]:
        columns = [Column(FIELD_N, "field", pa.int64())]
        for i in layout.field_columns:
            kind = "integer" if i == layout.time_column else layout.kinds[i]
            if kind == "null":
                continue
            columns.append(Column(layout.names[i], "field", _read_type(kind)))
        for i in layout.tag_columns:
            columns.append(Column(layout.names[i], "tag", pa.string()))
        if layout.special:
            columns.append(Column(FIELD_SPECIAL, "field", pa.string()))
        return columns

    def _rebuild(self, raw: pa.Table, entry: CatalogEntry, layout: InfluxLayout, schema: pa.Schema,
                 what: str) -> Any:
        n = raw.column(FIELD_N).combine_chunks()
        if len(n) != entry.rows or n.null_count:
            raise StorageIntegrityError(f"{self.location}: {what}: read {len(n)} points, the catalog records "
                                        f"{entry.rows} (generation {entry.gen}); rewrite the partition")
        order = pc.sort_indices(n)
        raw = raw.take(order)
        numbers = raw.column(FIELD_N).to_numpy()
        if not np.array_equal(numbers, np.arange(entry.rows)):
            raise StorageIntegrityError(f"{self.location}: {what}: row numbers are not 0..{entry.rows - 1} "
                                        f"(generation {entry.gen}); rewrite the partition")
        by_position: dict[int, pa.Array] = {}
        for i in layout.field_columns:
            kind = "integer" if i == layout.time_column else layout.kinds[i]
            if kind == "null":
                by_position[i] = pa.nulls(entry.rows, schema.field(i).type)
            else:
                by_position[i] = raw.column(layout.names[i]).combine_chunks()
        for i in layout.tag_columns:
            by_position[i] = raw.column(layout.names[i]).combine_chunks()
        if layout.time_column is not None and layout.time_column not in by_position:
            stamps = raw.column("time").combine_chunks().cast(pa.int64())
            target = schema.field(layout.time_column).type
            by_position[layout.time_column] = stamps.cast(pa.timestamp("ns", target.tz))
        if layout.special:
            by_position = apply_special(by_position, raw.column(FIELD_SPECIAL).to_pylist())
        table = codec.conform([by_position[i] for i in range(len(schema))], schema)
        if codec.table_checksum(table) != entry.checksum:
            raise StorageIntegrityError(f"{self.location}: {what}: checksum of the points read differs from the "
                                        f"one recorded at write (generation {entry.gen}); rewrite the partition")
        return codec.decode(entry.spec, table)

    # ------------------------------------------------------------------------------ the rest
    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        return self._catalog(asset_name(asset), partition, f"look up {self.describe(asset, partition)}") is not None

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        """The checksum the catalog recorded when the partition was committed."""
        entry = self._catalog(asset_name(asset), partition, f"look up {self.describe(asset, partition)}")
        return None if entry is None else entry.checksum

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        measurement = asset_name(asset)
        action = f"delete {self.describe(asset, partition)}"
        self._call(lambda: self.transport.drop(CATALOG, {CATALOG_ASSET_TAG: measurement, TAG_PART: partition.key}),
                   action)
        self._call(lambda: self.transport.drop(measurement, {TAG_PART: partition.key}), action)

    def partitions(self, asset: Sequence[str]) -> list[str]:
        measurement = asset_name(asset)
        return self._call(lambda: self.transport.tag_values(CATALOG, TAG_PART, {CATALOG_ASSET_TAG: measurement}),
                          f"list partitions of asset {'/'.join(asset)}")

    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        measurement = asset_name(asset)
        action = f"count {self.describe(asset, partition)}"
        entry = self._catalog(measurement, partition, action)
        physical = self._call(lambda: self.transport.count(measurement, {TAG_PART: partition.key}, FIELD_N), action)
        if entry is None:
            return StoredCounts(0, physical, 0)
        visible = self._call(lambda: self.transport.count(measurement, {TAG_PART: partition.key, TAG_GEN: entry.gen},
                                                          FIELD_N), action)
        return StoredCounts(visible, physical, visible)

    def health(self) -> list[HealthStatus]:
        t0 = time.perf_counter()
        try:
            version = self.transport.ping()
            latency = (time.perf_counter() - t0) * 1000
            return [HealthStatus(self.backend, self.location, True, latency, version, "ping ok")]
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return [HealthStatus(self.backend, self.location, False, None, None, f"no answer: {type(exc).__name__}")]

    def close(self) -> None:
        self.transport.close()


def _read_type(kind: str) -> pa.DataType:
    return {"float": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_(), "string": pa.large_string()}[kind]
