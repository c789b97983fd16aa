"""InfluxDB 2.x transport over ``influxdb-client`` (the v2 API: token, organisation, bucket).

:class:`InfluxV2Transport` gives :class:`~.influx.InfluxStore` the same operations as the v1
transport, in Flux: selects pivot fields into columns and carry the timestamp as integer
nanoseconds; counts, tag values and field types come from Flux queries; deletes go through the v2
delete API with an equality predicate. Writes are line protocol sent by the client, gzip-compressed
by it (``enable_gzip=True``), at nanosecond precision.

The query and predicate builders are plain functions so their output can be checked without a
server; values are escaped for Flux string literals (backslash, double quote, ``${``) and for delete
predicates (backslash, double quote).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv

from rotation_platform.storage.influx import Column, InfluxHTTPError, InfluxTransport, _is_text

__all__ = [
    "InfluxV2Transport",
    "flux_string",
    "flux_select",
    "flux_count",
    "flux_tag_values",
    "flux_field_types",
    "delete_predicate",
    "MIN_TIME_NS",
    "MAX_TIME_NS",
]

MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806
DELETE_START = "1677-09-21T00:12:43.145224194Z"
DELETE_STOP = "2262-04-11T23:47:16.854775806Z"


def flux_string(value: str) -> str:
    """A Flux string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _record(key: str) -> str:
    return f"r[{flux_string(key)}]"


def _filter(measurement: str, where: Mapping[str, str]) -> str:
    terms = [f"r._measurement == {flux_string(measurement)}"]
    terms += [f"{_record(k)} == {flux_string(v)}" for k, v in sorted(where.items())]
    return " and ".join(terms)


def _range(time_range: tuple[int, int] | None) -> str:
    start, stop = time_range if time_range is not None else (MIN_TIME_NS, MAX_TIME_NS)
    return f"range(start: time(v: {int(start)}), stop: time(v: {int(stop)}))"


def flux_select(bucket: str, measurement: str, where: Mapping[str, str], columns: Sequence[Column],
                time_range: tuple[int, int] | None = None,
                any_of: tuple[str, Sequence[str]] | None = None) -> str:
    """Points of a measurement as one table: ``rp_time`` (int ns), then the fields and tags; with
    ``any_of = (tag, values)`` only the points whose tag has one of the values."""
    if any_of is not None:
        tag, values = any_of
        where_text = _filter(measurement, where) + (
            f" and contains(value: {_record(tag)}, set: [{', '.join(flux_string(v) for v in values)}])")
    else:
        where_text = _filter(measurement, where)
    fields = [c.name for c in columns if c.role == "field"]
    tags = [c.name for c in columns if c.role == "tag"]
    field_terms = " or ".join(f"r._field == {flux_string(f)}" for f in fields) or "false"
    keep = ", ".join(flux_string(n) for n in ["rp_time", *fields, *tags])
    return (f"from(bucket: {flux_string(bucket)})\n"
            f"  |> {_range(time_range)}\n"
            f"  |> filter(fn: (r) => {where_text})\n"
            f"  |> filter(fn: (r) => {field_terms})\n"
            f'  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            f"  |> map(fn: (r) => ({{r with rp_time: int(v: r._time)}}))\n"
            f"  |> group()\n"
            f"  |> keep(columns: [{keep}])")


def flux_count(bucket: str, measurement: str, where: Mapping[str, str], field: str) -> str:
    return (f"from(bucket: {flux_string(bucket)})\n"
            f"  |> {_range(None)}\n"
            f"  |> filter(fn: (r) => {_filter(measurement, where)} and r._field == {flux_string(field)})\n"
            f"  |> group()\n"
            f"  |> count()")


def flux_tag_values(bucket: str, measurement: str, key: str, where: Mapping[str, str]) -> str:
    return ('import "influxdata/influxdb/schema"\n'
            f"schema.tagValues(bucket: {flux_string(bucket)}, tag: {flux_string(key)}, "
            f"predicate: (r) => {_filter(measurement, where)}, start: time(v: {MIN_TIME_NS}))")


def flux_field_types(bucket: str, measurement: str) -> str:
    return (f"from(bucket: {flux_string(bucket)})\n"
            f"  |> {_range(None)}\n"
            f"  |> filter(fn: (r) => r._measurement == {flux_string(measurement)})\n"
            f'  |> group(columns: ["_field"])\n'
            f"  |> first()")


def delete_predicate(measurement: str, where: Mapping[str, str]) -> str:
    """The v2 delete API predicate: equality on the measurement and tags, joined by AND."""
    def quoted(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    terms = [f"_measurement={quoted(measurement)}"] + [f"{k}={quoted(v)}" for k, v in sorted(where.items())]
    for k in where:
        if not k.replace("_", "").isalnum():
            raise ValueError(f"tag key {k!r} cannot appear in a delete predicate")
    return " AND ".join(terms)


_PY_TYPES = {float: "float", int: "integer", bool: "boolean", str: "string"}


class InfluxV2Transport(InfluxTransport):
    """``influxdb-client`` against InfluxDB 2.x: ``database`` is the bucket, ``org`` the organisation."""

    gzip_inside = True

    def __init__(self, url: str, bucket: str, *, token: str, org: str, timeout_s: float = 30.0,
                 create_bucket: bool = True):
        from influxdb_client import InfluxDBClient

        self.url = url.rstrip("/")
        self.database = bucket
        self.org = org
        self.server = f"InfluxDB {self.url} (org {org}, bucket {bucket})"
        self.create_bucket = create_bucket
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=True)
        self._write_api = None

    def __repr__(self) -> str:
        return f"InfluxV2Transport({self.url!r}, org={self.org!r}, bucket={self.database!r})"

    def _wrap(self, exc: Exception, what: str) -> InfluxHTTPError:
        status = int(getattr(exc, "status", 0) or 0)
        body = " ".join(str(getattr(exc, "body", "") or exc).split())[:400]
        return InfluxHTTPError(f"{self.server}: {what} failed (HTTP {status or 'no answer'}): {body}", status)

    def _do(self, what: str, fn):
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            raise self._wrap(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise InfluxHTTPError(f"{self.server}: {what}: no answer ({type(exc).__name__})", 0) from exc

    def ping(self) -> str:
        def ping() -> str:
            if not self._client.ping():
                raise InfluxHTTPError(f"{self.server}: ping failed", 0)
            return self._client.version()

        return self._do("ping", ping)

    def ensure_database(self) -> None:
        def ensure() -> None:
            buckets = self._client.buckets_api()
            if buckets.find_bucket_by_name(self.database) is None:
                if not self.create_bucket:
                    raise InfluxHTTPError(f"{self.server}: bucket {self.database!r} does not exist", 404)
                buckets.create_bucket(bucket_name=self.database, org=self.org)

        self._do("create bucket", ensure)

    def write(self, body: bytes, compressed: bool) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        if compressed:
            raise ValueError("the v2 client compresses line protocol itself; pass it uncompressed")
        if self._write_api is None:
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._do("write", lambda: self._write_api.write(bucket=self.database, org=self.org, record=body,
                                                         write_precision=WritePrecision.NS))

    def select(self, measurement: str, where: Mapping[str, str], columns: Sequence[Column],
               strings: bool, time_range: tuple[int, int] | None = None,
               any_of: tuple[str, Sequence[str]] | None = None) -> pa.Table:
        if any_of is not None and not any_of[1]:
            return pa.table({"time": pa.array([], pa.int64()),
                             **{c.name: pa.array([], c.type if c.role == "field" else pa.string()) for c in columns}})
        q = flux_select(self.database, measurement, where, columns, time_range, any_of)
        if strings or any(_is_text(c.type) and c.role == "field" for c in columns):
            return self._select_records(q, columns)
        return self._select_csv(q, columns)

    def _select_records(self, q: str, columns: Sequence[Column]) -> pa.Table:
        tables = self._do("query", lambda: self._client.query_api().query(q, org=self.org))
        rows = [record.values for table in tables for record in table.records]
        data: dict[str, pa.Array] = {"time": pa.array([r.get("rp_time") for r in rows], pa.int64())}
        for c in columns:
            t = c.type if c.role == "field" else pa.string()
            values = [r.get(c.name) for r in rows]
            data[c.name] = pa.array(values, pa.large_string() if _is_text(t) else t)
        return pa.table(data)

    def _select_csv(self, q: str, columns: Sequence[Column]) -> pa.Table:
        dialect = {"header": True, "delimiter": ",", "annotations": [], "comment_prefix": "#",
                   "date_time_format": "RFC3339Nano"}
        response = self._do("query", lambda: self._client.query_api().query_raw(q, org=self.org, dialect=dialect))
        raw = response.data if hasattr(response, "data") else response.read()
        types = {"rp_time": pa.int64(), **{c.name: (c.type if c.role == "field" else pa.string()) for c in columns}}
        if not raw.strip():
            return pa.table({"time": pa.array([], pa.int64()),
                             **{c.name: pa.array([], types[c.name]) for c in columns}})
        table = pacsv.read_csv(io.BytesIO(raw), convert_options=pacsv.ConvertOptions(
            column_types=types, true_values=["true"], false_values=["false"], strings_can_be_null=True))
        data = {"time": table.column("rp_time")}
        for c in columns:
            data[c.name] = table.column(c.name) if c.name in table.column_names else pa.nulls(table.num_rows,
                                                                                                types[c.name])
        return pa.table(data)

    def count(self, measurement: str, where: Mapping[str, str], field: str) -> int:
        tables = self._do("count", lambda: self._client.query_api().query(
            flux_count(self.database, measurement, where, field), org=self.org))
        for table in tables:
            for record in table.records:
                return int(record.get_value() or 0)
        return 0

    def tag_values(self, measurement: str, key: str, where: Mapping[str, str]) -> list[str]:
        tables = self._do("tag values", lambda: self._client.query_api().query(
            flux_tag_values(self.database, measurement, key, where), org=self.org))
        return sorted({str(record.get_value()) for table in tables for record in table.records})

    def drop(self, measurement: str, where: Mapping[str, str]) -> None:
        self._do("delete", lambda: self._client.delete_api().delete(
            DELETE_START, DELETE_STOP, delete_predicate(measurement, where), bucket=self.database, org=self.org))

    def field_types(self, measurement: str) -> dict[str, str]:
        tables = self._do("field types", lambda: self._client.query_api().query(
            flux_field_types(self.database, measurement), org=self.org))
        out: dict[str, str] = {}
        for table in tables:
            for record in table.records:
                out[str(record.get_field())] = _PY_TYPES.get(type(record.get_value()), "string")
        return out

    def close(self) -> None:
        self._client.close()

