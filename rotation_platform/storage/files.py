"""Embedded file storage: typed values to and from files under a data folder, atomically.

Supported values
----------------
* :class:`~rotation_platform.data.panel.PricePanel` -> Parquet (long form) with its metadata in the
  Parquet key-value metadata;
* :class:`pandas.DataFrame` -> Parquet (index kept);
* JSON-able ``dict`` / ``list`` -> JSON.

Every write goes to a temporary file in the destination folder and is renamed over the target
(``os.replace``), so a reader sees the old file or the new one, never a partial write.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rotation_platform.data.panel import PricePanel
from rotation_platform.errors import RotationError

__all__ = ["StorageError", "atomic_write_bytes", "write_value", "read_value", "value_path", "SUFFIXES"]

_META_KEY = b"rotation_platform"
SUFFIXES = (".panel.parquet", ".parquet", ".json")


class StorageError(RotationError):
    """A stored value is missing, unreadable or of an unsupported type."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _table_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def value_path(stem: Path, value: Any) -> Path:
    """The file a value is written to, from its type."""
    if isinstance(value, PricePanel):
        return stem.with_name(stem.name + ".panel.parquet")
    if isinstance(value, pd.DataFrame):
        return stem.with_name(stem.name + ".parquet")
    if isinstance(value, (dict, list)):
        return stem.with_name(stem.name + ".json")
    raise StorageError(f"cannot store a value of type {type(value).__name__} at {stem}")


def write_value(stem: Path, value: Any) -> Path:
    """Write ``value`` next to ``stem`` (a path without suffix); return the file written."""
    path = value_path(stem, value)
    if isinstance(value, PricePanel):
        table = pa.Table.from_pandas(value.to_long(), preserve_index=False)
        meta = {"kind": "price_panel", "meta": value.meta,
                "sessions": [str(s.date()) for s in value.sessions], "symbols": value.symbols}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               _META_KEY: json.dumps(meta, default=str).encode()})
        data = _table_bytes(table)
    elif isinstance(value, pd.DataFrame):
        data = _table_bytes(pa.Table.from_pandas(value, preserve_index=True))
    else:
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
    # remove files of another type for the same stem so a reader never picks a stale one
    for suffix in SUFFIXES:
        other = stem.with_name(stem.name + suffix)
        if other != path and other.exists():
            other.unlink()
    atomic_write_bytes(path, data)
    return path


def read_value(stem: Path) -> Any:
    """Read whatever was written at ``stem``."""
    for suffix in SUFFIXES:
        path = stem.with_name(stem.name + suffix)
        if path.exists():
            break
    else:
        raise StorageError(f"nothing stored at {stem} (looked for {', '.join(SUFFIXES)})")
    try:
        if suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        table = pq.read_table(path)
        if suffix == ".panel.parquet":
            meta = json.loads((table.schema.metadata or {})[_META_KEY])
            return PricePanel.from_long(table.to_pandas(), sessions=pd.DatetimeIndex(pd.to_datetime(meta["sessions"])),
                                        symbols=meta["symbols"], meta=meta["meta"])
        return table.to_pandas()
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
