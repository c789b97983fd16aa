"""Codecs: the stored types to and from Arrow tables, Parquet bytes and JSON.

Stored types
------------
* :class:`~rotation_platform.data.panel.PricePanel` -- kind ``price_panel``: the long form (one row
  per session and symbol with a close; :meth:`PricePanel.to_long`) plus ``meta``, ``sessions`` and
  ``symbols`` so sessions or funds with no data survive;
* :class:`pandas.DataFrame` -- kind ``frame``: ``pyarrow.Table.from_pandas(preserve_index=True)``;
  the pandas metadata in the Arrow schema restores index, dtypes, column names and ``frame.attrs``
  (where a value keeps its provenance, :mod:`.provenance`);
* JSON-able ``dict`` / ``list`` -- kind ``json``: the text ``json.dumps(indent=2, sort_keys=True,
  default=str)`` in chunks of at most :data:`JSON_CHUNK_CHARS` characters.

Table-based stores (InfluxDB, MySQL) keep :attr:`Encoded.table` in their own layout and
:attr:`Encoded.spec` (JSON-able: the kind, the serialised Arrow schema, the panel's frame data) in
their catalog; :func:`decode` casts what they read back to the recorded schema, so every store
returns exactly what the embedded Parquet files return. :func:`table_checksum` is a content hash of a
table that stores record on write and verify on read.

The embedded file format (:func:`encode_file` / :func:`decode_file`) is the reference; caches keep
LZ4-compressed Arrow IPC (:func:`to_bytes` / :func:`from_bytes`), which decodes faster and to the
same values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.storage.errors import StorageError, StorageInputError

__all__ = [
    "KIND_PANEL",
    "KIND_FRAME",
    "KIND_JSON",
    "FORMAT_VERSION",
    "JSON_CHUNK_CHARS",
    "Encoded",
    "encode",
    "decode",
    "conform",
    "kind_of",
    "is_timeseries",
    "time_axis",
    "value_rows",
    "table_checksum",
    "spec_to_text",
    "spec_from_text",
    "encode_file",
    "decode_file",
    "file_suffix",
    "to_bytes",
    "from_bytes",
    "FILE_SUFFIXES",
    "panel_from_table",
    "read_parquet_bytes",
    "decode_table",
    "panel_meta",
]

KIND_PANEL = "price_panel"
KIND_FRAME = "frame"
KIND_JSON = "json"
FORMAT_VERSION = 1
JSON_CHUNK_CHARS = 16_000  # at most 64,000 UTF-8 bytes: below InfluxDB 1.x's 64 KiB string limit

_PARQUET_META_KEY = b"rotation_platform"
PANEL_META_KEY = _PARQUET_META_KEY  # the Parquet key-value metadata entry of a stored price panel
FILE_SUFFIXES = {KIND_PANEL: ".panel.parquet", KIND_FRAME: ".parquet", KIND_JSON: ".json"}


def kind_of(value: Any) -> str:
    if isinstance(value, PricePanel):
        return KIND_PANEL
    if isinstance(value, pd.DataFrame):
        return KIND_FRAME
    if isinstance(value, (dict, list)):
        return KIND_JSON
    raise StorageInputError(f"cannot store a value of type {type(value).__name__}; "
                            "stores keep a PricePanel, a pandas DataFrame or a JSON-able dict/list")


def time_axis(frame: pd.DataFrame) -> str | int | None:
    """The index level holding time in a frame: ``0`` for a ``DatetimeIndex``; for a ``MultiIndex``
    the name (or position) of its datetime level, preferring ``session``/``date``/``time``;
    ``None`` when the index carries no time."""
    index = frame.index
    if isinstance(index, pd.DatetimeIndex):
        return 0
    if isinstance(index, pd.MultiIndex):
        levels = [i for i, lvl in enumerate(index.levels) if isinstance(lvl, pd.DatetimeIndex)]
        if not levels:
            return None
        for preferred in ("session", "date", "time", "timestamp"):
            for i in levels:
                if index.names[i] == preferred:
                    return preferred
        return index.names[levels[0]] if index.names[levels[0]] is not None else levels[0]
    return None


def is_timeseries(value: Any) -> bool:
    """Price panels and frames indexed by time (a ``DatetimeIndex`` or a datetime level)."""
    if isinstance(value, PricePanel):
        return True
    return isinstance(value, pd.DataFrame) and time_axis(value) is not None


def value_rows(value: Any) -> int:
    if isinstance(value, PricePanel):
        return int(np.count_nonzero(~np.isnan(value["close"].to_numpy())))
    if isinstance(value, pd.DataFrame):
        return len(value)
    return 1


# --------------------------------------------------------------------------------------- table form
@dataclass(frozen=True)
class Encoded:
    """A value as an Arrow table plus the JSON-able ``spec`` needed to rebuild it."""

    kind: str
    table: pa.Table
    spec: dict[str, Any]

    @property
    def rows(self) -> int:
        return self.table.num_rows


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True, default=str, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise StorageInputError(f"value is not JSON-able: {exc}") from exc


def _panel_table(panel: PricePanel) -> tuple[pa.Table, dict[str, Any]]:
    table = pa.Table.from_pandas(panel.to_long(), preserve_index=False)
    meta = json.loads(json.dumps({"meta": panel.meta, "sessions": [str(s.date()) for s in panel.sessions],
                                  "symbols": panel.symbols}, default=str))
    return table, meta


def panel_from_table(table: pa.Table, sessions: Sequence[Any], symbols: Sequence[str],
                     meta: Mapping[str, Any] | None = None) -> PricePanel:
    """A price panel on ``sessions`` x ``symbols`` from its long form (columns ``session``, ``symbol``
    and the price fields), as :meth:`PricePanel.from_long` builds it; rows outside the grid are left out."""
    return _panel_from(table, {"sessions": [str(pd.Timestamp(t).date()) for t in sessions],
                               "symbols": list(symbols), "meta": dict(meta or {})})


def _panel_from(table: pa.Table, meta: dict[str, Any]) -> PricePanel:
    """The panel from its long form: the same value as :meth:`PricePanel.from_long` (which pivots each
    field through pandas, 60 ms for a one-session partition), placed by position in one pass."""
    sessions = pd.DatetimeIndex(pd.to_datetime(meta["sessions"]), name="session")
    symbols = [str(s) for s in meta["symbols"]]
    names = set(table.column_names)
    if not {"session", "symbol", *PRICE_FIELDS} <= names:
        return PricePanel.from_long(table.to_pandas(), sessions=sessions, symbols=symbols, meta=meta["meta"])
    stamps = table.column("session").combine_chunks()
    if not pa.types.is_timestamp(stamps.type) or stamps.type.tz is not None or stamps.null_count:
        return PricePanel.from_long(table.to_pandas(), sessions=sessions, symbols=symbols, meta=meta["meta"])
    labels = table.column("symbol").combine_chunks()
    if pa.types.is_dictionary(labels.type):
        labels = labels.dictionary_decode()
    rows = pd.DatetimeIndex(stamps.cast(pa.timestamp("ns")).to_numpy()).as_unit("ns")
    row_pos = sessions.as_unit("ns").get_indexer(rows)
    col_pos = pd.Index(symbols, dtype=object).get_indexer(pd.Index(labels.to_pylist(), dtype=object).astype(str))
    flat = row_pos.astype(np.int64) * len(symbols) + col_pos
    if len(np.unique(flat[(row_pos >= 0) & (col_pos >= 0)])) != int(((row_pos >= 0) & (col_pos >= 0)).sum()) \
            or len(sessions) != len(set(sessions.asi8)) or len(symbols) != len(set(symbols)):
        # duplicates: let from_long name the offending row
        return PricePanel.from_long(table.to_pandas(), sessions=sessions, symbols=symbols, meta=meta["meta"])
    keep = (row_pos >= 0) & (col_pos >= 0)
    frames = {}
    for name in PRICE_FIELDS:
        block = np.full(len(sessions) * len(symbols), np.nan, dtype=np.float64)
        values = table.column(name).combine_chunks()
        block[flat[keep]] = np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False))[keep]
        frames[name] = pd.DataFrame(block.reshape(len(sessions), len(symbols)), index=sessions,
                                    columns=pd.Index(symbols, name="symbol", dtype=object))
    return PricePanel(frames, dict(meta["meta"] or {}))


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as a table; ``frame.attrs`` (e.g. the value's provenance, :mod:`.provenance`) travel in
    the pandas metadata of the schema, which every store keeps, and come back on ``to_pandas``."""
    attrs = dict(frame.attrs)
    if attrs:
        frame = frame.copy(deep=False)
        frame.attrs = {}
    try:
        if all(isinstance(n, str) for n in frame.index.names) and len(set(frame.index.names)) == frame.index.nlevels \
                and all(isinstance(c, str) for c in frame.columns) and frame.columns.nlevels == 1 \
                and not set(frame.index.names) & set(frame.columns):
            table = _named_index_frame_table(frame)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise StorageInputError(f"cannot convert the DataFrame to a table: {exc}") from exc
    return _with_attrs(table, attrs) if attrs else table


def _with_attrs(table: pa.Table, attrs: dict[str, Any]) -> pa.Table:
    """``table`` whose pandas metadata restores ``attrs`` (JSON-able) on ``to_pandas``."""
    metadata = dict(table.schema.metadata or {})
    meta = json.loads(metadata.get(b"pandas", b"{}"))
    try:
        meta["attributes"] = json.loads(json.dumps(attrs, default=str))
    except (TypeError, ValueError) as exc:
        raise StorageInputError(f"the DataFrame's attrs are not JSON-able: {exc}") from exc
    metadata[b"pandas"] = json.dumps(meta).encode()
    return table.replace_schema_metadata(metadata)


_SCHEMA_CACHE: dict[tuple, pa.Schema] = {}
_SCHEMA_CACHE_MAX = 64


def _typed_by_values(dtypes: list[Any]) -> bool:
    """Whether a column or index level of these dtypes takes its stored type or pandas metadata from its
    values, not its dtype: Python objects (pyarrow infers the type; all missing: a null column of pandas
    type ``empty``) or categories (their number is in the metadata)."""
    return any(d == object or isinstance(d, pd.CategoricalDtype) for d in dtypes)


def _named_index_frame_table(frame: pd.DataFrame) -> pa.Table:
    """``Table.from_pandas(frame, preserve_index=True)`` for a frame whose index levels are all named.
    Frames of the same shape (columns, dtypes, index levels) reuse the schema of the first: the columns
    are then converted one array at a time. A shape with a column or level typed by its values
    (:func:`_typed_by_values`) is converted from scratch every time, never with an earlier frame's
    schema, so its bytes do not depend on what was written before. A MultiIndex frame converted from
    scratch is built from the flat frame (pyarrow converts a wide frame with a MultiIndex several times
    slower); the result is the same table with the same pandas metadata."""
    names = list(frame.index.names)
    multi = isinstance(frame.index, pd.MultiIndex)
    column_dtypes = frame.dtypes.tolist()
    dtypes = tuple(map(str, column_dtypes))
    levels = frame.index.levels if multi else [frame.index]
    cached = not _typed_by_values([*column_dtypes, *(level.dtype for level in levels)])
    key = (multi, tuple(frame.columns), dtypes, tuple(names), tuple(str(level.dtype) for level in levels),
           frame.columns.name, str(frame.columns.dtype))
    schema = _SCHEMA_CACHE.get(key) if cached else None
    if schema is not None:
        try:
            return pa.Table.from_arrays(_frame_arrays(frame, schema, dtypes), schema=schema)
        except (pa.ArrowException, TypeError, ValueError):
            pass  # a value the cached types cannot hold: convert from scratch
    if multi:
        flat = frame.reset_index()
        flat = flat[[c for c in flat.columns if c not in names] + names]
        table = pa.Table.from_pandas(flat, preserve_index=False)
        meta = json.loads(table.schema.metadata[b"pandas"])
        meta["index_columns"] = names
        name = frame.columns.name
        meta["column_indexes"] = [{"name": name, "field_name": None if name is None else str(name),
                                   "pandas_type": "unicode", "numpy_type": str(frame.columns.dtype),
                                   "metadata": {"encoding": "UTF-8"}}]
        table = table.replace_schema_metadata({**table.schema.metadata, b"pandas": json.dumps(meta).encode()})
    else:
        table = pa.Table.from_pandas(frame, preserve_index=True)
    if cached and len(_SCHEMA_CACHE) < _SCHEMA_CACHE_MAX:
        _SCHEMA_CACHE[key] = table.schema
    return table


def _column(frame: pd.DataFrame, j: int) -> Any:
    """The values of the frame's ``j``-th column (a numpy or extension array) without building a Series
    (``iloc[:, j]`` costs 40-80 times as much: most of a small frame's conversion)."""
    try:
        return frame._get_column_array(j)
    except AttributeError:  # a pandas without it
        return frame.iloc[:, j].array


#: a frame whose data columns all share one of these dtypes is converted from one transposed block
_NUMPY_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool"})


def _frame_arrays(frame: pd.DataFrame, schema: pa.Schema, dtypes: tuple[str, ...]) -> list[pa.Array]:
    """The columns of ``frame`` (data columns, then index levels) as arrays of ``schema``'s types.

    A frame whose data columns share one numpy dtype is converted from a single transposed copy of
    its values (one contiguous row per column), not column by column through pandas."""
    n_cols = frame.shape[1]
    fields = list(schema)
    arrays: list[pa.Array] = []
    if n_cols and len(set(dtypes)) == 1 and dtypes[0] in _NUMPY_DTYPES:
        block = np.ascontiguousarray(frame.to_numpy().T)
        arrays = [pa.array(block[j], type=fields[j].type, from_pandas=True) for j in range(n_cols)]
    else:
        for j in range(n_cols):
            arrays.append(pa.array(_column(frame, j), type=fields[j].type, from_pandas=True))
    for i in range(frame.index.nlevels):
        arrays.append(pa.array(frame.index.get_level_values(i), type=fields[n_cols + i].type, from_pandas=True))
    return arrays


def encode(value: Any) -> Encoded:
    kind = kind_of(value)
    spec: dict[str, Any] = {"format": FORMAT_VERSION, "kind": kind}
    if kind == KIND_PANEL:
        table, panel_meta = _panel_table(value)
        spec["panel"] = panel_meta
    elif kind == KIND_FRAME:
        table = _frame_table(value)
    else:
        text = _json_text(value)
        chunks = [text[i:i + JSON_CHUNK_CHARS] for i in range(0, len(text), JSON_CHUNK_CHARS)] or [""]
        table = pa.table({"chunk": pa.array(chunks, pa.string())})
    table = table.combine_chunks()
    spec["schema"] = base64.b64encode(table.schema.serialize().to_pybytes()).decode("ascii")
    spec["rows"] = table.num_rows
    return Encoded(kind, table, spec)


def schema_of(spec: dict[str, Any]) -> pa.Schema:
    try:
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(spec["schema"])))
    except (KeyError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"stored spec has no readable schema: {exc}") from exc


def conform(columns: list[pa.Array | pa.ChunkedArray], schema: pa.Schema) -> pa.Table:
    """Cast read-back columns (in schema order) to the recorded types and build the table."""
    if len(columns) != len(schema):
        raise StorageError(f"read {len(columns)} columns, the stored schema has {len(schema)}")
    arrays = []
    for col, fld in zip(columns, schema):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if not col.type.equals(fld.type):
            col = _cast(col, fld.type, fld.name)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(col: pa.Array, target: pa.DataType, name: str) -> pa.Array:
    try:
        if pa.types.is_dictionary(target):
            return _cast(col, target.value_type, name).dictionary_encode().cast(target)
        if pa.types.is_timestamp(target) and pa.types.is_timestamp(col.type) and target.tz and not col.type.tz:
            col = col.cast(pa.timestamp(col.type.unit, "UTC"))
        if (pa.types.is_date32(target) or pa.types.is_time32(target)) and pa.types.is_integer(col.type):
            col = col.cast(pa.int32())
        if (pa.types.is_date64(target) or pa.types.is_time64(target) or pa.types.is_timestamp(target)
                or pa.types.is_duration(target)) and pa.types.is_integer(col.type):
            col = col.cast(pa.int64())
        if pa.types.is_null(col.type):
            return pa.nulls(len(col), target)
        return col.cast(target)
    except (pa.ArrowException, ValueError) as exc:
        raise StorageError(f"column {name!r}: cannot restore type {target} from {col.type}: {exc}") from exc


def decode(spec: dict[str, Any], table: pa.Table) -> Any:
    """Rebuild the value from a table already conformed to the spec's schema."""
    kind = spec.get("kind")
    if kind == KIND_JSON:
        return json.loads("".join(table.column("chunk").to_pylist()))
    if kind == KIND_FRAME:
        return table.to_pandas()
    if kind == KIND_PANEL:
        return _panel_from(table, spec["panel"])
    raise StorageError(f"unknown stored kind {kind!r}")


# --------------------------------------------------------------------------------------- checksums
def _column_bytes(arr: pa.Array) -> list[bytes]:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    out = [valid.tobytes()]
    if pa.types.is_floating(t):
        out.append(np.ascontiguousarray(pc.fill_null(arr, pa.scalar(0.0, t)).to_numpy()).tobytes())
    elif pa.types.is_integer(t):
        out.append(np.ascontiguousarray(pc.fill_null(arr, pa.scalar(0, t)).to_numpy()).tobytes())
    elif pa.types.is_boolean(t):
        out.append(np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=np.bool_).tobytes())
    elif pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_date64(t) or pa.types.is_time64(t):
        out.append(np.ascontiguousarray(pc.fill_null(arr.cast(pa.int64()), 0).to_numpy()).tobytes())
    elif pa.types.is_date32(t) or pa.types.is_time32(t):
        out.append(np.ascontiguousarray(pc.fill_null(arr.cast(pa.int32()), 0).to_numpy()).tobytes())
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        lengths, payload = _binary_payload(arr)
        out.append(lengths.tobytes())
        out.append(payload)
    elif pa.types.is_decimal(t):
        lengths, payload = _binary_payload(arr.cast(pa.string()))
        out.append(lengths.tobytes())
        out.append(payload)
    else:
        out.append(repr(arr.to_pylist()).encode())
    return out


def _binary_payload(arr: pa.Array) -> tuple[np.ndarray, bytes]:
    """Value lengths and the concatenated bytes of a string/binary array (nulls as empty)."""
    binary = pc.fill_null(arr.cast(pa.large_binary()), pa.scalar(b"", pa.large_binary()))
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[binary.offset:binary.offset + len(binary) + 1]
    data = binary.buffers()[2]
    if data is None or len(offsets) == 0:
        return np.zeros(len(binary), dtype=np.int64), b""
    return np.diff(offsets), memoryview(data)[int(offsets[0]):int(offsets[-1])].tobytes()


def table_checksum(table: pa.Table) -> str:
    """SHA-256 over the table's row count, column names, types, validity and values."""
    h = hashlib.sha256()
    h.update(str(table.num_rows).encode())
    for name, col in zip(table.column_names, table.columns):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        h.update(b"\x1e" + name.encode("utf-8", "surrogatepass") + b"\x1f" + str(arr.type).encode())
        for part in _column_bytes(arr):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
    return h.hexdigest()


# ----------------------------------------------------------------------------------- spec as text
def spec_to_text(spec: dict[str, Any]) -> str:
    """The spec as compact ASCII (zlib-compressed JSON in base64) for catalogs with size limits."""
    raw = json.dumps(spec, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def spec_from_text(text: str) -> dict[str, Any]:
    try:
        return json.loads(zlib.decompress(base64.b64decode(text)))
    except (ValueError, zlib.error) as exc:
        raise StorageError(f"stored spec is unreadable: {exc}") from exc


# ------------------------------------------------------------------------------- embedded file form
def file_suffix(value: Any) -> str:
    return FILE_SUFFIXES[kind_of(value)]


#: below this many bytes of data a table is written without compression, column statistics or
#: dictionaries for non-text columns: for one partition's few rows they cost more time than they save
#: space (a 16 x 212 factor partition: 7 ms less per write, 128 kB instead of 158 kB)
SMALL_TABLE_BYTES = 1 << 20


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    if table.nbytes < SMALL_TABLE_BYTES:
        text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                or pa.types.is_dictionary(f.type)]
        pq.write_table(table, sink, compression="none", use_dictionary=text, write_statistics=False)
    else:
        pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def encode_file(value: Any) -> tuple[str, bytes]:
    """``(suffix, bytes)`` of the embedded file format."""
    kind = kind_of(value)
    if kind == KIND_PANEL:
        table, meta = _panel_table(value)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               _PARQUET_META_KEY: json.dumps({"kind": "price_panel", **meta}).encode()})
        return FILE_SUFFIXES[kind], _parquet_bytes(table)
    if kind == KIND_FRAME:
        return FILE_SUFFIXES[kind], _parquet_bytes(_frame_table(value))
    return FILE_SUFFIXES[kind], _json_text(value).encode()


def read_parquet_bytes(data: bytes, where: str = "<bytes>") -> pa.Table:
    """The table of an embedded Parquet file. ``ParquetFile.read`` without threads for a partition's
    small file: ``pq.read_table`` goes through the dataset layer, 3x slower for a 16 x 212 frame."""
    try:
        return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=len(data) >= SMALL_TABLE_BYTES)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {where}: {exc}") from exc


def panel_meta(table: pa.Table) -> dict[str, Any]:
    """The panel metadata (``meta``, ``sessions``, ``symbols``) an embedded panel file carries."""
    return json.loads((table.schema.metadata or {})[_PARQUET_META_KEY])


def decode_table(suffix: str, table: pa.Table, where: str = "<bytes>") -> Any:
    """The value of an embedded Parquet file from its table (:func:`read_parquet_bytes`)."""
    try:
        if suffix == FILE_SUFFIXES[KIND_PANEL]:
            return _panel_from(table, panel_meta(table))
        if suffix == FILE_SUFFIXES[KIND_FRAME]:
            return table.to_pandas()
    except (OSError, ValueError, KeyError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {where}: {exc}") from exc
    raise StorageError(f"cannot read {where}: unknown suffix {suffix!r}")


def decode_file(suffix: str, data: bytes, where: str = "<bytes>") -> Any:
    if suffix == FILE_SUFFIXES[KIND_JSON]:
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StorageError(f"cannot read {where}: {exc}") from exc
    if suffix not in (FILE_SUFFIXES[KIND_PANEL], FILE_SUFFIXES[KIND_FRAME]):
        raise StorageError(f"cannot read {where}: unknown suffix {suffix!r}")
    return decode_table(suffix, read_parquet_bytes(data, where), where)


_BYTES_MAGIC = b"RPC2"
_SEP = "\x1f"


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def to_bytes(value: Any) -> bytes:
    """The value as cache bytes: a 5-byte header, then LZ4-compressed Arrow IPC (price panels in
    their wide form, one column per field and fund, so reading needs no pivot) or the JSON text.
    :func:`from_bytes` returns exactly what the embedded files return for the same value."""
    kind = kind_of(value)
    if kind == KIND_PANEL:
        meta = json.dumps({"meta": value.meta, "symbols": value.symbols}, default=str)
        columns: dict[str, Any] = {"session": pa.array(value.sessions.to_numpy(), pa.timestamp("ns"))}
        for f in PRICE_FIELDS:
            block = value.array(f)
            for j, sym in enumerate(value.symbols):
                columns[f"{f}{_SEP}{j}"] = pa.array(block[:, j], pa.float64())
        table = pa.table(columns).replace_schema_metadata({_PARQUET_META_KEY: meta.encode()})
        return _BYTES_MAGIC + b"P" + _ipc(table)
    if kind == KIND_FRAME:
        return _BYTES_MAGIC + b"F" + _ipc(_frame_table(value))
    return _BYTES_MAGIC + b"J" + _json_text(value).encode()


def from_bytes(data: bytes) -> Any:
    if len(data) < 5 or data[:4] != _BYTES_MAGIC or data[4:5] not in (b"P", b"F", b"J"):
        raise StorageError("cached bytes have an unknown header")
    code, body = data[4:5], data[5:]
    try:
        if code == b"J":
            return json.loads(body.decode("utf-8"))
        table = _from_ipc(body)
        if code == b"F":
            return table.to_pandas()
        meta = json.loads(table.schema.metadata[_PARQUET_META_KEY])
        symbols = meta["symbols"]
        sessions = pd.DatetimeIndex(table.column("session").to_numpy(), name="session")
        frames = {}
        for f in PRICE_FIELDS:
            block = np.empty((len(sessions), len(symbols)), dtype=np.float64)
            for j in range(len(symbols)):
                block[:, j] = table.column(f"{f}{_SEP}{j}").to_numpy(zero_copy_only=False)
            frames[f] = pd.DataFrame(block, index=sessions, columns=pd.Index(symbols, name="symbol"))
        return PricePanel(frames, meta["meta"])
    except (OSError, ValueError, KeyError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read cached value: {exc}") from exc
