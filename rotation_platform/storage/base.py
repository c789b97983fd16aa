"""The storage interface every backend implements, and what the backends share.

A :class:`Store` keeps one value per *asset partition*: an asset is a path of names (``("prices",)``),
a partition is a :class:`Partition` (unpartitioned, one key such as ``"A_SHARE"`` or ``"2024-01-02"``,
or one key per dimension such as ``pool=A_SHARE, session=2024-01-02``). Values are a
:class:`~rotation_platform.data.panel.PricePanel`, a :class:`pandas.DataFrame` or a JSON-able
``dict``/``list`` (see :mod:`.codec`).

Contract of every implementation
--------------------------------
* ``write`` replaces the partition as a whole: a reader sees the previous value or the new one,
  never a mix, and a rewrite leaves no duplicate rows or points behind.
* ``read`` returns a value equal to what the embedded default (:class:`~.files.FileStore`) returns
  for the same write.
* ``read_many`` (a window of partitions, e.g. the sessions of one pool a lookback needs) returns for
  each partition what ``read`` returns, leaves out (or, ``strict``, names) the partitions with nothing
  stored, and costs a fixed number of round trips whatever the window's length; ``read_window``
  returns the window combined into one value (:func:`~.partitioning.combine_values`).
* Transient server failures are retried with exponential backoff (:class:`RetryPolicy`); when the
  attempts are spent a :class:`~.errors.StorageUnavailableError` names the server, the asset and the
  partition.
* Names that reach a query language (tables, columns, measurements, tags) come only from
  :func:`check_asset`, :func:`physical_name` or fixed strings, never from unchecked input.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from rotation_platform.storage.errors import StorageInputError, StorageUnavailableError

__all__ = [
    "AssetPath",
    "Partition",
    "WriteReceipt",
    "StoredCounts",
    "HealthStatus",
    "RetryPolicy",
    "Store",
    "check_asset",
    "asset_name",
    "physical_name",
    "physical_names",
    "call_with_retries",
    "ProgressCallback",
    "unique_partitions",
    "missing_keys",
]

log = logging.getLogger("rotation_platform.storage")

AssetPath = tuple[str, ...]
ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(batches_done, batches_total)`` after each batch a server acknowledged."""

_ASSET_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
ALL_KEY = "_all"
MAX_KEY_LENGTH = 200


def check_asset(asset: Sequence[str]) -> AssetPath:
    """Validate an asset path (Dagster asset key segments); return it as a tuple."""
    path = tuple(str(s) for s in asset)
    if not path:
        raise StorageInputError("empty asset key; name the asset")
    bad = [s for s in path if not _ASSET_SEGMENT.match(s)]
    if bad:
        raise StorageInputError(f"asset key {'/'.join(path)!r}: segments {bad} must match "
                                f"{_ASSET_SEGMENT.pattern} (letters, digits, '_' and '-')")
    return path


def asset_name(asset: Sequence[str]) -> str:
    """The asset as one name (segments joined by ``__``), as stores name tables and measurements."""
    return "__".join(check_asset(asset))


def _check_key(value: str, what: str) -> str:
    value = str(value)
    if not value or len(value) > MAX_KEY_LENGTH or _BAD_KEY_CHARS.search(value) or value == ALL_KEY:
        raise StorageInputError(
            f"{what} {value!r} cannot be stored: a partition key must be 1-{MAX_KEY_LENGTH} characters "
            f"without control characters or backslashes, and not {ALL_KEY!r}")
    return value


@dataclass(frozen=True)
class Partition:
    """One partition of an asset.

    ``dims`` holds ``(dimension, value)`` pairs sorted by dimension; ``()`` is the single partition of
    an unpartitioned asset and ``(("", key),)`` a one-dimensional key.
    """

    dims: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        dims = tuple(sorted((str(d), _check_key(v, f"partition key {'' if not d else d + '='}")) for d, v in self.dims))
        names = [d for d, _ in dims]
        if len(set(names)) != len(names):
            raise StorageInputError(f"partition dimensions repeat: {names}")
        if len(dims) > 1 and not all(re.match(r"^[A-Za-z][A-Za-z0-9_]{0,31}$", d) for d in names):
            raise StorageInputError(f"partition dimension names {names} must be identifiers")
        object.__setattr__(self, "dims", dims)

    @classmethod
    def unpartitioned(cls) -> "Partition":
        return cls(())

    @classmethod
    def single(cls, key: str) -> "Partition":
        return cls((("", str(key)),))

    @classmethod
    def multi(cls, keys_by_dimension: Mapping[str, str]) -> "Partition":
        if len(keys_by_dimension) == 1:
            ((dim, value),) = keys_by_dimension.items()
            return cls(((dim, str(value)),))
        return cls(tuple((str(d), str(v)) for d, v in keys_by_dimension.items()))

    @property
    def is_partitioned(self) -> bool:
        return bool(self.dims)

    @property
    def key(self) -> str:
        """Canonical key: ``_all``, the key itself, or the values joined by ``|`` in dimension order
        (Dagster's ``MultiPartitionKey`` string)."""
        if not self.dims:
            return ALL_KEY
        return "|".join(v for _, v in self.dims)

    @property
    def parts(self) -> list[str]:
        """Path segments of the partition (file stores)."""
        return [ALL_KEY] if not self.dims else [v for _, v in self.dims]

    @property
    def tags(self) -> dict[str, str]:
        """Named dimensions, for servers that index them (one-dimensional keys have no name)."""
        return {d: v for d, v in self.dims if d}

    def __str__(self) -> str:
        if not self.dims:
            return "(unpartitioned)"
        if len(self.dims) == 1:
            return self.dims[0][1]
        return ", ".join(f"{d}={v}" for d, v in self.dims)


@dataclass(frozen=True)
class WriteReceipt:
    """What one write stored."""

    backend: str
    location: str
    partition: str
    rows: int
    checksum: str
    batches: int = 1
    seconds: float = 0.0
    bytes_sent: int = 0


@dataclass(frozen=True)
class StoredCounts:
    """Physical content of one partition, for audits: ``visible`` rows a reader gets, ``physical``
    rows/points the server holds for the partition (other generations included), ``distinct`` the
    distinct row numbers among them."""

    visible: int
    physical: int
    distinct: int


@dataclass(frozen=True)
class HealthStatus:
    """The answer of one server to a health check; ``server`` never carries a secret."""

    backend: str
    server: str
    ok: bool
    latency_ms: float | None = None
    version: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "server": self.server, "ok": self.ok,
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
                "version": self.version, "detail": self.detail}


# ---------------------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``attempts`` tries, waits ``base_delay * multiplier**i`` capped at
    ``max_delay`` seconds, with +-``jitter`` relative noise."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.base_delay * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1.0 + random.uniform(-self.jitter, self.jitter)))


T = TypeVar("T")


def call_with_retries(fn: Callable[[], T], *, policy: RetryPolicy, transient: Callable[[BaseException], bool],
                      server: str, action: str, logger: Any = None) -> T:
    """Run ``fn``; retry transient failures with backoff; raise :class:`StorageUnavailableError` when
    the attempts are spent. Other exceptions pass through unchanged."""
    logger = logger or log
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not transient(exc):
                raise
            reason = _short_reason(exc)
            if attempt == policy.attempts:
                raise StorageUnavailableError(
                    f"{server}: {action} failed after {policy.attempts} attempts over "
                    f"{time.monotonic() - started:.1f}s ({reason}); check that the server is running and "
                    f"reachable, then rerun") from exc
            wait = policy.delay(attempt)
            logger.warning(f"{server}: {action} failed (attempt {attempt}/{policy.attempts}: {reason}); "
                           f"retrying in {wait:.2f}s")
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ------------------------------------------------------------------------------------ physical names
_SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
RESERVED_PREFIX = "rp_"


def physical_name(name: str, reserved: frozenset[str] = frozenset()) -> str:
    """A server-side column/field name for a data column: the name itself when it is a plain
    identifier (letters, digits, ``_``; at most 48 characters; not starting with the reserved prefix
    ``rp_``; not in ``reserved``), otherwise ``c_`` and 12 hex digits of its SHA-1."""
    if _SAFE_NAME.match(name) and not name.lower().startswith(RESERVED_PREFIX) and name.lower() not in reserved:
        return name
    return "c_" + hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def physical_names(names: Sequence[str], reserved: frozenset[str] = frozenset()) -> list[str]:
    """:func:`physical_name` for each column, made unique case-insensitively (servers such as MySQL
    compare column names without case): a later clash gets the hashed name, then a numbered one."""
    used: set[str] = set()
    out: list[str] = []
    for i, name in enumerate(names):
        candidate = physical_name(name, reserved)
        if candidate.lower() in used:
            candidate = "c_" + hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        if candidate.lower() in used:
            candidate = f"c_{i}_" + hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        used.add(candidate.lower())
        out.append(candidate)
    return out


# ------------------------------------------------------------------------------------------ windows
def unique_partitions(partitions: Sequence[Partition]) -> list[Partition]:
    """``partitions`` without repeats (by key), in order."""
    seen: set[str] = set()
    out = []
    for p in partitions:
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


def missing_keys(partitions: Sequence[Partition], found: Mapping[str, Any]) -> list[str]:
    """Keys of the requested ``partitions`` that a :meth:`Store.read_many` answer lacks, in order."""
    return [p.key for p in unique_partitions(partitions) if p.key not in found]


# ------------------------------------------------------------------------------------------ the store
#: store methods counted by :mod:`.stats`, and the operation each one is
COUNTED_METHODS = {"read": "read", "read_many": "read", "read_window": "read", "write": "write",
                   "write_many": "write", "delete": "delete"}


class Store(ABC):
    """A place to keep asset partitions. See the module docstring for the contract."""

    backend: ClassVar[str] = "abstract"
    logger: Any = None
    #: True for stores that only hand calls to other stores (cache, routing): those stores count them
    delegates: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every implementation's reads and writes are counted per call (:mod:`.stats`)."""
        super().__init_subclass__(**kwargs)
        if cls.delegates:
            return
        from rotation_platform.storage import stats

        for name, op in COUNTED_METHODS.items():
            fn = cls.__dict__.get(name)
            if callable(fn) and not getattr(fn, "__stats_op__", None) and not getattr(fn, "__isabstractmethod__", False):
                setattr(cls, name, stats.instrumented(fn, op))

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives (URL and database, or folder), without secrets."""

    @abstractmethod
    def write(self, asset: Sequence[str], partition: Partition, value: Any) -> WriteReceipt:
        """Replace the partition with ``value``."""

    @abstractmethod
    def read(self, asset: Sequence[str], partition: Partition) -> Any:
        """The value stored for the partition; :class:`~.errors.StorageNotFoundError` when none."""

    @abstractmethod
    def exists(self, asset: Sequence[str], partition: Partition) -> bool:
        """Whether a value is stored for the partition."""

    @abstractmethod
    def delete(self, asset: Sequence[str], partition: Partition) -> None:
        """Remove the partition (no error when it is absent)."""

    @abstractmethod
    def partitions(self, asset: Sequence[str]) -> list[str]:
        """Canonical keys of the stored partitions of an asset, sorted."""

    @abstractmethod
    def counts(self, asset: Sequence[str], partition: Partition) -> StoredCounts:
        """Physical row/point counts of a partition (audits, tests)."""

    @abstractmethod
    def health(self) -> list[HealthStatus]:
        """Health of every server this store uses."""

    def read_many(self, asset: Sequence[str], partitions: Sequence[Partition], *,
                  strict: bool = False) -> dict[str, Any]:
        """The values of a window of partitions (e.g. the N sessions of one pool a lookback needs),
        ``{partition key: value}`` in the order of ``partitions`` (repeats read once), each equal to
        what :meth:`read` returns for it -- values, dtypes, index and provenance.

        A partition with nothing stored is left out of the answer (compare the keys, or see
        :func:`missing_keys`); with ``strict`` a :class:`~.errors.StorageNotFoundError` names the missing
        ones instead. Server stores load the window in one round trip (one catalog query and one data
        query, one cache ``MGET``); this default reads the partitions one by one."""
        from rotation_platform.storage.errors import StorageNotFoundError

        out: dict[str, Any] = {}
        for partition in unique_partitions(partitions):
            try:
                out[partition.key] = self.read(asset, partition)
            except StorageNotFoundError:
                continue
        return self._window_answer(asset, partitions, out, strict)

    def read_window(self, asset: Sequence[str], partitions: Sequence[Partition]) -> Any:
        """The window as one value -- what a consumer of several partitions loads: the partitions of
        :meth:`read_many` combined by :func:`~.partitioning.combine_values` (price panels joined over
        sessions, frames concatenated in partition order, other values as ``{key: value}``). A
        partition with nothing stored is a :class:`~.errors.StorageNotFoundError` naming it."""
        from rotation_platform.storage.partitioning import PartitionSlice, combine_values

        values = self.read_many(asset, partitions, strict=True)
        if not values:
            from rotation_platform.storage.errors import StorageInputError

            raise StorageInputError(f"asset {'/'.join(asset)}: a window read needs at least one partition")
        return combine_values([(PartitionSlice(p), values[p.key]) for p in unique_partitions(partitions)])

    def _window_answer(self, asset: Sequence[str], partitions: Sequence[Partition], found: dict[str, Any],
                       strict: bool) -> dict[str, Any]:
        """``found`` in the order of ``partitions``; with ``strict``, an error naming what is missing."""
        ordered = {p.key: found[p.key] for p in unique_partitions(partitions) if p.key in found}
        missing = missing_keys(partitions, ordered)
        if strict and missing:
            from rotation_platform.storage.errors import StorageNotFoundError

            shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} in all)" if len(missing) > 5 else "")
            raise StorageNotFoundError(f"{self.location}: asset {'/'.join(asset)}: nothing stored for partitions "
                                       f"[{shown}] of the {len(ordered) + len(missing)} requested; materialise them "
                                       "first")
        return ordered

    def checksum(self, asset: Sequence[str], partition: Partition) -> str | None:
        """The checksum of the stored value as the write that stored it reported it
        (:attr:`WriteReceipt.checksum`, which the IO managers record in Dagster); None when nothing is
        stored. This default reads the value: stores that keep the checksum in a catalog override it."""
        from rotation_platform.storage import codec
        from rotation_platform.storage.errors import StorageNotFoundError

        try:
            value = self.read(asset, partition)
        except StorageNotFoundError:
            return None
        return codec.table_checksum(codec.encode(value).table)

    def close(self) -> None:
        """Release connections."""

    def servers(self) -> list[str]:
        return [self.location]

    # -------------------------------------------------------------------------------- logging
    @property
    def log(self) -> Any:
        return self.logger or log

    @contextlib.contextmanager
    def logging_to(self, logger: Any) -> Iterator[None]:
        """Send this store's warnings to ``logger`` (e.g. a Dagster run's log) for the block."""
        previous = self.logger
        self.logger = logger
        for child in self._children():
            child.logger = logger
        try:
            yield
        finally:
            self.logger = previous
            for child in self._children():
                child.logger = previous

    def _children(self) -> list["Store"]:
        return []

    def describe(self, asset: Sequence[str], partition: Partition) -> str:
        return f"asset {'/'.join(asset)} partition {partition}"
