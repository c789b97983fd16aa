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

Value digests
-------------
:meth:`FileStore.write` also records each value's digest -- its content hash (what
:func:`~rotation_platform.storage.snapshots.value_hash` gives for it) and its provenance record -- under
the SHA-256 of the file's bytes, in the data folder's hidden ``.digests`` folder (``digest_dir``; no
asset name starts with a dot, and nothing is written outside the configured folder). Both are functions of the bytes, so an entry is right wherever and whenever a file with those
bytes is found (a data folder moved, copied or restored included) and nothing has to be removed with a
value. :meth:`FileStore.value_digest` hashes the file's bytes and returns the entry, or None when there
is none (the reader decodes the value). The store keeps the answer with the file's identity (inode, size,
times) and its folder's modification time, and gives it again while both are unchanged and older than
:data:`LISTING_SETTLE_NS`: the file is the same file with the same bytes (a replace is a new inode, a
rewrite in place moves its times, a file of another suffix moves the folder's time), so its entry is the
same. A reader asking again and again (the API) stats a folder and a file instead of hashing the value. The session snapshots of a backfill use it instead of reading
and re-hashing every stored value.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rotation_platform.data.panel import PricePanel
from rotation_platform.storage import codec, stats

from rotation_platform.storage.base import (
    HealthStatus,
    Partition,
    StoredCounts,
    Store,
    WriteReceipt,
    check_asset,
    unique_partitions,
)
from rotation_platform.storage.codec import (
    FILE_SUFFIXES,
    decode_file,
    encode_file,
    file_suffix,
    value_rows,
)
from rotation_platform.storage.errors import StorageError, StorageInputError, StorageNotFoundError
from rotation_platform.storage.partitioning import PartitionSlice, combine_values
from rotation_platform.storage.provenance import PROVENANCE_KEY, provenance_of, with_provenance

__all__ = ["StorageError", "atomic_write_bytes", "write_value", "read_value", "value_path", "SUFFIXES",
           "FileStore", "encode_file_with_hash", "default_digest_dir"]

SUFFIXES = (".panel.parquet", ".parquet", ".json")
assert set(SUFFIXES) == set(FILE_SUFFIXES.values())
_TMP_SUFFIX = ".tmp"
STALE_TMP_SECONDS = 3600.0
#: the data folder's bookkeeping folder of value digests (a dot: never an asset's folder)
DIGEST_FOLDER = ".digests"
def default_digest_dir(base_dir: str | os.PathLike[str]) -> Path:
    """Where a data folder's value digests are kept by default: its hidden ``.digests`` folder."""
    return Path(base_dir).absolute() / DIGEST_FOLDER


def encode_file_with_hash(value: Any) -> tuple[str, bytes, str]:
    """``(suffix, bytes, value hash)``: :func:`~.codec.encode_file` and the value's content hash
    (``table_checksum(encode(value).table)``) from the one Arrow table both are made of."""
    kind = codec.kind_of(value)
    suffix = FILE_SUFFIXES[kind]
    if kind == codec.KIND_PANEL:
        table, meta = codec._panel_table(value)
        entry = json.dumps({"kind": "price_panel", **meta}).encode()
        stored = table.replace_schema_metadata({**(table.schema.metadata or {}), codec.PANEL_META_KEY: entry})
        return suffix, codec._parquet_bytes(stored), codec.table_checksum(table)
    if kind == codec.KIND_FRAME:
        table = codec._frame_table(value)
        return suffix, codec._parquet_bytes(table), codec.table_checksum(table)
    text = codec._json_text(value)
    chunks = [text[i:i + codec.JSON_CHUNK_CHARS] for i in range(0, len(text), codec.JSON_CHUNK_CHARS)] or [""]
    return suffix, text.encode(), codec.table_checksum(pa.table({"chunk": pa.array(chunks, pa.string())}))


def _write_digest(digest_dir: Path, data: bytes, vhash: str, prov: Any) -> None:
    """The digest of a value just written, under the SHA-256 of its file's bytes (renamed into place, not
    synced: a digest lost in a crash only makes a reader decode the value)."""
    sha = hashlib.sha256(data).hexdigest()
    target = digest_dir / sha[:2] / f"{sha}.json"
    if target.exists():
        return  # the same bytes were written before: the same digest
    text = json.dumps({"value_hash": vhash, "provenance": prov}, sort_keys=True, default=str)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TMP_SUFFIX, dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError:
        pass  # the digest is an optimisation for readers; the value itself is written


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
    stats.add_bytes(len(data))
    return decode_file(_suffix_of(path), data, where=str(path))


# ------------------------------------------------------------------------------- window combining
def _without_meta_key(table: pa.Table, section: bytes, key: str | None) -> tuple[pa.Table, Any]:
    """``table`` without one entry of its schema metadata (``key`` inside the JSON of ``section``, or
    the whole section when ``key`` is None), and the entry's value."""
    metadata = dict(table.schema.metadata or {})
    if section not in metadata:
        return table, None
    if key is None:
        value = json.loads(metadata.pop(section))
    else:
        doc = json.loads(metadata[section])
        value = doc.pop(key, None)
        metadata[section] = json.dumps(doc).encode()
    return table.replace_schema_metadata(metadata), value


def _has_dictionary(schema: pa.Schema) -> bool:
    return any(pa.types.is_dictionary(f.type) for f in schema)


def _combine_frames(tables: list[tuple[str, pa.Table]]) -> pd.DataFrame | None:
    """:func:`~.partitioning.combine_values` of the frames the tables hold, from one ``to_pandas``;
    None when the tables differ in columns or types (or hold categoricals, which pandas and Arrow
    unify differently)."""
    bare, attrs = [], []
    for _, table in tables:
        t, a = _without_meta_key(table, b"pandas", "attributes")
        bare.append(t)
        attrs.append(a if isinstance(a, dict) else {})
    first = bare[0].schema
    if _has_dictionary(first) or not all(t.schema.equals(first, check_metadata=True) for t in bare[1:]):
        return None
    frame = pa.concat_tables(bare).to_pandas()
    # the attrs pandas gives the concatenation of the parts (and the provenance records of the parts),
    # worked out on empty frames that carry the parts' attrs
    empties = []
    for a in attrs:
        empty = pd.DataFrame()
        empty.attrs = a
        empties.append(empty)
    records = {key: provenance_of(e) for (key, _), e in zip(tables, empties)}
    stripped = [with_provenance(e, None) if PROVENANCE_KEY in e.attrs else e for e in empties]
    frame.attrs = pd.concat(stripped, axis=0).attrs if stripped else {}
    if all(r is None for r in records.values()):
        return frame
    return with_provenance(frame, {"partitions": records})


def _combine_panels(tables: list[tuple[str, pa.Table]]) -> PricePanel | None:
    """:func:`~.partitioning.combine_values` of the price panels the tables hold, decoded once; None
    when the panels differ in funds or columns, or overlap in sessions."""
    bare, metas = [], []
    for _, table in tables:
        t, m = _without_meta_key(table, codec.PANEL_META_KEY, None)
        if m is None:
            return None
        bare.append(t)
        metas.append(m)
    first = bare[0].schema
    symbols = metas[0]["symbols"]
    if _has_dictionary(first) or not all(t.schema.equals(first, check_metadata=True) for t in bare[1:]) \
            or any(m["symbols"] != symbols for m in metas[1:]):
        return None
    sessions = [s for m in metas for s in m["sessions"]]
    if len(set(sessions)) != len(sessions):
        return None
    # a panel's provenance is the entry of its meta (what provenance_of reads from the panel)
    records = {key: provenance_of(dict(m["meta"] or {})) for (key, _), m in zip(tables, metas)}
    parts = [{k: x for k, x in (m["meta"] or {}).items() if k != PROVENANCE_KEY} for m in metas]
    meta = parts[0] if all(m == parts[0] for m in parts) else {**parts[-1], "partitions": [k for k, _ in tables]}
    order = sorted(sessions, key=pd.Timestamp)
    panel = codec.panel_from_table(pa.concat_tables(bare), order, symbols, meta)
    return with_provenance(panel, None if all(r is None for r in records.values()) else {"partitions": records})


#: a kept partition listing is reused only when its folders last changed longer ago than this (ns)
LISTING_SETTLE_NS = 2_000_000_000


#: how many value digests a store keeps (:meth:`FileStore.value_digest`)
DIGESTS_KEPT = 4096


def _file_id(path: str | Path) -> tuple[int, int, int, int] | None:
    """What changes whenever a file is replaced or rewritten: inode, size, modification and change time
    (an atomic replace is a new inode; a rewrite in place moves the times). None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, max(st.st_mtime_ns, st.st_ctime_ns), st.st_dev


def _folder_time(folder: str | Path) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def _folders_unchanged(folders: dict[str, int]) -> bool:
    settled = time.time_ns() - LISTING_SETTLE_NS
    for folder, mtime in folders.items():
        try:
            now = os.stat(folder).st_mtime_ns
        except FileNotFoundError:
            return False
        if now != mtime or now > settled:
            return False
    return True


class FileStore(Store):
    """The embedded default store: one file per asset partition under ``base_dir``."""

    backend = "local"

    def __init__(self, base_dir: str | os.PathLike[str], logger: Any = None,
                 digest_dir: str | os.PathLike[str] | None = None):
        self.base_dir = Path(base_dir)
        self.logger = logger
        self.digest_dir = Path(digest_dir) if digest_dir is not None else default_digest_dir(base_dir)
        stats.use_folder(self.base_dir / ".stats")  # the process's store statistics, for the API
        self._listings: dict[Path, tuple[dict[str, int], tuple[str, ...]]] = {}  # partitions(), see there
        self._digests: dict[Path, tuple] = {}  # value_digest(), see there

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
        suffix, data, vhash = encode_file_with_hash(value)
        path = stem.with_name(stem.name + suffix)
        try:
            atomic_write_bytes(path, data)
            _write_digest(self.digest_dir, data, vhash, provenance_of(value))
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

    #: files written per group by :meth:`write_many` (bounds the open descriptors and the bytes held)
    WRITE_GROUP = 64

    def write_many(self, asset: Sequence[str], items: Sequence[tuple[Partition, Any]]) -> list[WriteReceipt]:
        """:meth:`write` of many partitions of one asset (a range run's output), with the same files, digests
        and atomicity: each file goes to a temporary file that is flushed to disk (``fsync``) before it is
        renamed over its target. The group's temporary files are all written first and then synced one
        after the other, which lets the file system commit them together (about a third of the time of
        one write, sync and rename after the other for a partition's small files)."""
        receipts: list[WriteReceipt] = []
        for start in range(0, len(items), self.WRITE_GROUP):
            receipts += self._write_group(asset, items[start:start + self.WRITE_GROUP])
        return receipts

    def _write_group(self, asset: Sequence[str], items: Sequence[tuple[Partition, Any]]) -> list[WriteReceipt]:
        t0 = time.perf_counter()
        staged: list[tuple[Partition, Any, Path, str, bytes, str, str]] = []
        try:
            for partition, value in items:
                stem = self.stem(asset, partition)
                suffix, data, vhash = encode_file_with_hash(value)
                path = stem.with_name(stem.name + suffix)
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
                staged.append((partition, value, path, tmp, data, vhash, suffix))
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            for *_, tmp, _, _, _ in staged:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            for partition, value, path, tmp, data, vhash, suffix in staged:
                os.replace(tmp, path)
                _write_digest(self.digest_dir, data, vhash, provenance_of(value))
                stem = path.with_name(path.name[: -len(suffix)])
                for other in SUFFIXES:
                    candidate = stem.with_name(stem.name + other)
                    if other != suffix and candidate.exists():
                        candidate.unlink()
        except OSError as exc:
            for *_, tmp, _, _, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            where = staged[-1][2] if staged else self.base_dir
            raise StorageError(f"{self.location}: cannot write {len(items)} partition(s) of {'/'.join(asset)} "
                               f"(at {where}): {exc}") from exc
        except BaseException:
            for *_, tmp, _, _, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        for folder in {path.parent for _, _, path, *_ in staged}:
            self._remove_stale_temp_files(folder)
        share = (time.perf_counter() - t0) / max(len(staged), 1)
        return [WriteReceipt(self.backend, str(path), partition.key, value_rows(value),
                             hashlib.sha256(data).hexdigest(), 1, share, len(data))
                for partition, value, path, _, data, _, _ in staged]

    def value_digest(self, asset: Sequence[str], partition: Partition) -> dict[str, Any] | None:
        """``{"value_hash", "provenance"}`` of the stored value, recorded when a file with its bytes was
        written; None when nothing is stored or no digest was recorded (the caller reads the value)."""
        memo = (tuple(asset), partition)
        kept = self._digests.get(memo)
        if kept is not None:  # the same folder listing and the same file as when it was read: the same bytes
            path, folder, folder_time, file_id, answer = kept
            if _folder_time(folder) == folder_time and _file_id(path) == file_id:
                return dict(answer)
        path = _find(self.stem(asset, partition))
        if path is None:
            return None
        try:
            folder_time, file_id = _folder_time(path.parent), _file_id(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            entry = json.loads((self.digest_dir / sha[:2] / f"{sha}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict):
            return None
        answer = {"value_hash": entry.get("value_hash"), "provenance": entry.get("provenance")}
        settled = time.time_ns() - LISTING_SETTLE_NS
        if folder_time is not None and file_id is not None and max(folder_time, file_id[2]) < settled:
            if len(self._digests) >= DIGESTS_KEPT:
                self._digests.pop(next(iter(self._digests)))
            self._digests[memo] = (str(path), str(path.parent), folder_time, file_id, answer)
        return dict(answer)

    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        stem = self.stem(asset, partition)
        if _find(stem) is None:
            raise StorageNotFoundError(f"{self.location}: nothing stored for {self.describe(asset, partition)} "
                                       f"(looked for {stem} with {', '.join(SUFFIXES)}); materialise it first")
        return read_value(stem)

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *,
                  strict: bool = False) -> dict[str, Any]:
        """A window of partitions: each partition's file read once and decoded as :meth:`read` decodes
        it. File per partition stays the layout; the README ("Window reads") has the measurements
        against a Parquet dataset per pool and month, DuckDB and ArcticDB, and why. A consumer of the
        whole window should call :meth:`read_window`, which builds one value instead of N."""
        out: dict[str, Any] = {}
        for partition in unique_partitions(partitions):
            path = _find(self.stem(asset, partition))
            if path is None:
                continue
            try:
                data = path.read_bytes()
                stats.add_bytes(len(data))
            except FileNotFoundError:  # deleted since it was found
                continue
            except OSError as exc:
                raise StorageError(f"{self.location}: cannot read {self.describe(asset, partition)} from {path}: "
                                   f"{exc}") from exc
            out[partition.key] = decode_file(_suffix_of(path), data, where=str(path))
        return self._window_answer(asset, partitions, out, strict)

    def read_window(self, asset: Sequence[str], partitions: Sequence[Partition]) -> Any:
        """The window as one value, equal to :meth:`Store.read_window` (the partitions read one by one
        and combined). Partitions of one kind with the same columns are concatenated as Arrow tables and
        converted to pandas once -- a partition's value is not built only to be concatenated, which is
        most of the cost of a window of small partitions; anything else takes the general path."""
        wanted = unique_partitions(partitions)
        if not wanted:
            raise StorageInputError(f"asset {'/'.join(asset)}: a window read needs at least one partition")
        found: dict[str, tuple[str, bytes]] = {}
        for partition in wanted:
            path = _find(self.stem(asset, partition))
            try:
                if path is not None:
                    found[partition.key] = (_suffix_of(path), path.read_bytes())
                    stats.add_bytes(len(found[partition.key][1]))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"{self.location}: cannot read {self.describe(asset, partition)} from {path}: "
                                   f"{exc}") from exc
        self._window_answer(asset, wanted, found, strict=True)
        suffixes = {suffix for suffix, _ in found.values()}
        where = {p.key: str(self.stem(asset, p)) for p in wanted}
        if len(wanted) > 1 and len(suffixes) == 1 and suffixes <= {FILE_SUFFIXES[codec.KIND_PANEL],
                                                                   FILE_SUFFIXES[codec.KIND_FRAME]}:
            (suffix,) = suffixes
            tables = [(p.key, codec.read_parquet_bytes(found[p.key][1], where[p.key])) for p in wanted]
            fast = _combine_panels(tables) if suffix == FILE_SUFFIXES[codec.KIND_PANEL] else _combine_frames(tables)
            if fast is not None:
                return fast
            values = [(p, codec.decode_table(suffix, t, where[p.key])) for p, (_, t) in zip(wanted, tables)]
        else:
            values = [(p, decode_file(found[p.key][0], found[p.key][1], where[p.key])) for p in wanted]
        return combine_values([(PartitionSlice(p), v) for p, v in values])

    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        return _find(self.stem(asset, partition)) is not None

    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        stem = self.stem(asset, partition)
        for suffix in SUFFIXES:
            stem.with_name(stem.name + suffix).unlink(missing_ok=True)

    def partitions(self, asset: Sequence[str]) -> list[str]:
        """The stored partition keys of ``asset``, sorted (see :meth:`partition_keys`)."""
        return list(self.partition_keys(asset))

    def partition_keys(self, asset: Sequence[str], prefix: Sequence[str] = ()) -> tuple[str, ...]:
        """The stored partition keys of ``asset``, sorted -- only those whose first key parts are ``prefix``
        (e.g. one pool's): the same tuple object while the listing is unchanged, so a reader can keep what
        it derived from it (the API's latest session per pool).

        The listing is kept with the modification time of every folder it walked and reused while none
        of them has changed (a file written, replaced or removed changes its folder's time), so a reader
        asking again and again (the API's latest session) stats a few folders instead of walking thousands
        of files. A listing is only reused when every folder's time is older than
        :data:`LISTING_SETTLE_NS`: a change within the file system's timestamp granularity of the listing
        cannot go unseen."""
        root = self.base_dir.joinpath(*check_asset(asset))
        start = root.joinpath(*prefix) if prefix else root
        kept = self._listings.get(start)
        if kept is not None and _folders_unchanged(kept[0]):
            return kept[1]
        if any(not part or part.startswith(".") or "/" in part for part in prefix) or not start.is_dir():
            return ()
        keys = set()
        folders: dict[str, int] = {}
        for folder, dirs, files in os.walk(start):
            try:
                folders[folder] = os.stat(folder).st_mtime_ns
            except FileNotFoundError:
                continue
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(folder).relative_to(root).parts
            for name in files:
                if name.startswith("."):
                    continue
                for suffix in SUFFIXES:
                    if name.endswith(suffix):
                        keys.add("|".join([*rel, name[: -len(suffix)]]))
                        break
        out = tuple(sorted(keys))
        self._listings[start] = (folders, out)
        return out

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

