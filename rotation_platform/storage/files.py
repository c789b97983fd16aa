"""Embedded file storage: typed values to and from files under a data folder, atomically.

Supported values
----------------
* :class:`~rotation_platform.data.panel.PricePanel` -> Parquet (long form) with its metadata in the
  Parquet key-value metadata;
* :class:`pandas.DataFrame` -> Parquet (index kept);
* JSON-able ``dict`` / ``list`` -> JSON.

Every write goes to a temporary file in the destination folder and is renamed over the target
(``os.replace``), so a reader sees the old file or the new one, never a partial write.

:class:`FileStore` is the embedded default :class:`~rotation_platform.storage.base.Store`: one file
per asset partition at ``<base_dir>/<asset key path>/<partition values...>`` (``_all`` for an
unpartitioned asset; a multi-dimensional key gives one folder level per dimension, in dimension-name
order), with the suffix of the value's type.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    StoredCounts,
    Store,
    WriteReceipt,
    check_asset,
)
from rotation_platform.storage.codec import (
    FILE_SUFFIXES,
    decode_file,
    encode_file,
    file_suffix,
    value_rows,
)
from rotation_platform.storage.errors import StorageError, StorageInputError, StorageNotFoundError

__all__ = ["StorageError", "atomic_write_bytes", "write_value", "read_value", "value_path", "SUFFIXES",
           "FileStore"]

SUFFIXES = (".panel.parquet", ".parquet", ".json")
assert set(SUFFIXES) == set(FILE_SUFFIXES.values())
_TMP_SUFFIX = ".tmp"
STALE_TMP_SECONDS = 3600.0


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def value_path(stem: Path, value: Any) -> Path:
    """The file a value is written to, from its type."""
    try:
        suffix = file_suffix(value)
    except StorageInputError:
        raise StorageError(f"cannot store a value of type {type(value).__name__} at {stem}") from None
    return stem.with_name(stem.name + suffix)


def write_value(stem: Path, value: Any) -> Path:
    """Write ``value`` next to ``stem`` (a path without suffix); return the file written."""
    path = value_path(stem, value)
    _, data = encode_file(value)
    atomic_write_bytes(path, data)
    # remove files of another type for the same stem so a reader never picks a stale one
    for suffix in SUFFIXES:
        other = stem.with_name(stem.name + suffix)
        if other != path and other.exists():
            other.unlink()
    return path


def _find(stem: Path) -> Path | None:
    for suffix in SUFFIXES:
        path = stem.with_name(stem.name + suffix)
        if path.exists():
            return path
    return None


def _suffix_of(path: Path) -> str:
    return next(s for s in SUFFIXES if path.name.endswith(s))


def read_value(stem: Path) -> Any:
    """Read whatever was written at ``stem``."""
    path = _find(stem)
    if path is None:
        raise StorageNotFoundError(f"nothing stored at {stem} (looked for {', '.join(SUFFIXES)})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return decode_file(_suffix_of(path), data, where=str(path))


class FileStore(Store):
    """The embedded default store: one file per asset partition under ``base_dir``."""

    backend = "local"

    def __init__(self, base_dir: str | os.PathLike[str], logger: Any = None):
        self.base_dir = Path(base_dir)
        self.logger = logger

    @property
    def location(self) -> str:
        return str(self.base_dir)

    def stem(self, asset: Sequence[str], partition: Partition) -> Path:
        parts = partition.parts
        bad = [p for p in parts if p.startswith(".") or "/" in p]
        if bad:
            raise StorageInputError(f"asset {'/'.join(asset)}: partition key parts {bad} cannot name a file "
                                    "(no '/' and no leading '.')")
        return self.base_dir.joinpath(*check_asset(asset), *parts)

    def write(self, asset: Sequence[str], partition: Partition, value: Any) -> WriteReceipt:
        t0 = time.perf_counter()
        stem = self.stem(asset, partition)
        suffix, data = encode_file(value)
        path = stem.with_name(stem.name + suffix)
        try:
            atomic_write_bytes(path, data)
            for other in SUFFIXES:
                candidate = stem.with_name(stem.name + other)
                if other != suffix and candidate.exists():
                    candidate.unlink()
        except OSError as exc:
            raise StorageError(f"{self.location}: cannot write {self.describe(asset, partition)} to {path}: {exc}") \
                from exc
        self._remove_stale_temp_files(path.parent)
        return WriteReceipt(self.backend, str(path), partition.key, value_rows(value),
                            hashlib.sha256(data).hexdigest(), 1, time.perf_counter() - t0, len(data))

    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        stem = self.stem(asset, partition)
        if _find(stem) is None:
            raise StorageNotFoundError(f"{self.location}: nothing stored for {self.describe(asset, partition)} "
                                       f"(looked for {stem} with {', '.join(SUFFIXES)}); materialise it first")
        return read_value(stem)

    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        return _find(self.stem(asset, partition)) is not None

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        stem = self.stem(asset, partition)
        for suffix in SUFFIXES:
            stem.with_name(stem.name + suffix).unlink(missing_ok=True)

    def partitions(self, asset: Sequence[str]) -> list[str]:
        root = self.base_dir.joinpath(*check_asset(asset))
        if not root.is_dir():
            return []
        keys = set()
        for path in root.rglob("*"):
            if not path.is_file() or path.name.startswith("."):
                continue
            for suffix in SUFFIXES:
                if path.name.endswith(suffix):
                    rel = path.relative_to(root)
                    parts = list(rel.parts[:-1]) + [path.name[: -len(suffix)]]
                    keys.add("|".join(parts))
                    break
        return sorted(keys)

    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        stem = self.stem(asset, partition)
        path = _find(stem)
        if path is None:
            return StoredCounts(0, 0, 0)
        if path.name.endswith(".parquet"):
            rows = pq.ParquetFile(path).metadata.num_rows
        else:
            rows = 1
        return StoredCounts(rows, rows, rows)

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        """SHA-256 of the partition's file (what :meth:`write` reported)."""
        path = _find(self.stem(asset, partition))
        if path is None:
            return None
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:  # removed since it was found
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc

    def temp_files(self, asset: Sequence[str], partition: Partition) -> list[Path]:
        """Temporary files left beside the partition's file (a writer killed mid-write)."""
        stem = self.stem(asset, partition)
        if not stem.parent.is_dir():
            return []
        return sorted(p for p in stem.parent.iterdir()
                      if p.name.startswith(f".{stem.name}.") and p.name.endswith(_TMP_SUFFIX))

    def health(self) -> list[HealthStatus]:
        t0 = time.perf_counter()
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            probe = self.base_dir / f".health.{os.getpid()}{_TMP_SUFFIX}"
            probe.write_bytes(b"ok")
            probe.unlink()
            stat = os.statvfs(self.base_dir)
            free_gib = stat.f_bavail * stat.f_frsize / 2**30
            return [HealthStatus(self.backend, self.location, True, (time.perf_counter() - t0) * 1000, None,
                                 f"writable, {free_gib:.1f} GiB free")]
        except OSError as exc:
            return [HealthStatus(self.backend, self.location, False, None, None, f"not writable: {exc}")]

    @staticmethod
    def _remove_stale_temp_files(folder: Path) -> None:
        """Temporary files of writers killed mid-write are invisible to readers; remove old ones."""
        cutoff = time.time() - STALE_TMP_SECONDS
        try:
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX) and p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
        except OSError:
            pass

