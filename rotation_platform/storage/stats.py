"""Per-call statistics of the store layer, without any metrics library.

Every read and write of a store is counted per ``(backend, op)``: calls, seconds (sum and a fixed set of
histogram buckets), bytes and errors; the Redis cache adds its hits and misses. ``op`` is ``read``
(``read``, ``read_many``, ``read_window``), ``write`` (``write``, ``write_many``) or ``delete``. Bytes are
what the backend knows without looking at rows: the size of a file read or written, the body of an
InfluxDB answer, the bytes a write sent (:attr:`~.base.WriteReceipt.bytes_sent`), a cache entry's size.
A missing partition (:class:`~.errors.StorageNotFoundError`) is an answer, not an error.

The work is per call (two clock readings, one lock, a few additions), never per row.

Runs happen in other processes than the API. Each process writes its totals, at most once a
second while it works and when it exits, to one JSON file in a folder -- ``<storage.data_dir>/.stats``
(:func:`use_folder`, called when a store is opened; ``ROTATION_STORE_STATS_DIR`` overrides it). The
API adds those files up with :func:`totals`. Files of processes of the same host that have ended are
merged into ``totals.json`` and removed, so the folder stays small and the counts never go down.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import functools
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["BUCKETS", "StoreStats", "RECORDER", "record", "cache_lookups", "add_bytes", "timed", "instrumented",
           "use_folder", "flush", "totals", "FOLDER_ENV"]

#: upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf
BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FOLDER_ENV = "ROTATION_STORE_STATS_DIR"
FLUSH_SECONDS = 1.0
TOTALS_FILE = "totals.json"
FORMAT = 1


def _empty_op() -> dict[str, Any]:
    return {"count": 0, "seconds": 0.0, "bytes": 0, "errors": 0, "buckets": [0] * (len(BUCKETS) + 1)}


def _empty() -> dict[str, Any]:
    return {"ops": {}, "cache": {"hits": 0, "misses": 0}}


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, op in other.get("ops", {}).items():
        mine = into["ops"].setdefault(key, _empty_op())
        for field in ("count", "seconds", "bytes", "errors"):
            mine[field] += op.get(field, 0)
        theirs = op.get("buckets") or []
        if len(theirs) == len(mine["buckets"]):
            mine["buckets"] = [a + b for a, b in zip(mine["buckets"], theirs)]
    for field in ("hits", "misses"):
        into["cache"][field] += other.get("cache", {}).get(field, 0)


class StoreStats:
    """The totals of one process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        self.folder: Path | None = None
        self._forced = False

    def _reset(self) -> None:
        self._data = _empty()
        self._token = uuid.uuid4().hex[:10]
        self._changed = False
        self._last_flush = 0.0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    # ------------------------------------------------------------------------------- counting
    def record(self, backend: str, op: str, seconds: float, nbytes: int = 0, error: bool = False) -> None:
        key = f"{backend}|{op}"
        slot = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            entry = self._data["ops"].get(key)
            if entry is None:
                entry = self._data["ops"][key] = _empty_op()
            entry["count"] += 1
            entry["seconds"] += seconds
            entry["bytes"] += int(nbytes)
            entry["errors"] += 1 if error else 0
            entry["buckets"][slot] += 1
            self._changed = True
        self._maybe_flush()

    def cache_lookups(self, hits: int, misses: int) -> None:
        with self._lock:
            self._data["cache"]["hits"] += hits
            self._data["cache"]["misses"] += misses
            self._changed = True
        self._maybe_flush()

    def snapshot(self) -> dict[str, Any]:
        """A copy of this process's totals: ``{"ops": {"backend|op": {...}}, "cache": {...}}``."""
        with self._lock:
            return json.loads(json.dumps(self._data))

    # ------------------------------------------------------------------------------- the folder
    def use_folder(self, folder: str | os.PathLike[str] | None, *, replace: bool = False) -> None:
        """Where this process writes its totals: the first folder given wins (``replace`` to change it);
        ``ROTATION_STORE_STATS_DIR`` always does."""
        env = os.environ.get(FOLDER_ENV)
        with self._lock:
            if env:
                self.folder = Path(env)
            elif folder is not None and (self.folder is None or replace):
                self.folder = Path(folder)

    @property
    def file_name(self) -> str:
        return f"{_host()}-{os.getpid()}-{self._token}.json"

    def _maybe_flush(self) -> None:
        if self.folder is not None and time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> Path | None:
        """Write this process's totals to its file in the folder (atomically); its path, or None when no
        folder is set or the folder cannot be written (the counts stay in memory)."""
        with self._lock:
            folder = self.folder
            if folder is None:
                return None
            self._last_flush = time.monotonic()
            if not self._changed and (folder / self.file_name).exists():
                return folder / self.file_name
            body = {"format": FORMAT, "host": _host(), "pid": os.getpid(), "updated": time.time(), **self._data}
            text = json.dumps(body, separators=(",", ":"))
            self._changed = False
        path = folder / self.file_name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, text)
        except OSError:
            return None
        return path


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:64] or "host"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


RECORDER = StoreStats()
record = RECORDER.record
cache_lookups = RECORDER.cache_lookups
flush = RECORDER.flush


def use_folder(folder: str | os.PathLike[str] | None, *, replace: bool = False) -> None:
    RECORDER.use_folder(folder, replace=replace)


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        RECORDER.flush()


atexit.register(_at_exit)
try:  # processes started by multiprocessing's fork/forkserver leave by os._exit: flush in its finalisers
    from multiprocessing import util as _mp_util

    _mp_util.Finalize(None, _at_exit, exitpriority=1)
except Exception:  # noqa: BLE001 - pragma: no cover
    pass
if hasattr(os, "register_at_fork"):  # a forked child counts from zero, in its own file
    os.register_at_fork(after_in_child=lambda: RECORDER._after_fork())


# --------------------------------------------------------------------------------- instrumenting
_local = threading.local()


def _active() -> list[list[Any]]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def add_bytes(nbytes: int) -> None:
    """Add ``nbytes`` to the store call running on this thread (no-op outside one)."""
    stack = _active()
    if stack:
        stack[-1][1] += int(nbytes)


def _receipt_bytes(result: Any) -> int:
    if isinstance(result, list):
        return sum(int(getattr(r, "bytes_sent", 0) or 0) for r in result)
    return int(getattr(result, "bytes_sent", 0) or 0)


def instrumented(fn: Callable[..., Any], op: str) -> Callable[..., Any]:
    """``fn`` (a store method) counted as one ``op`` of its store's backend. A call the same store makes
    from inside another counted call (``read_many`` reading partition by partition) is part of it."""
    from rotation_platform.storage.errors import StorageNotFoundError

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        stack = _active()
        if any(frame[0] is self for frame in stack):
            return fn(self, *args, **kwargs)
        frame = [self, 0]
        stack.append(frame)
        error, result = False, None
        t0 = time.perf_counter()
        try:
            result = fn(self, *args, **kwargs)
            return result
        except StorageNotFoundError:
            raise
        except Exception:
            error = True
            raise
        finally:
            seconds = time.perf_counter() - t0
            stack.pop()
            nbytes = frame[1] or (_receipt_bytes(result) if op == "write" else 0)
            RECORDER.record(getattr(self, "backend", "unknown"), op, seconds, nbytes, error)

    wrapper.__stats_op__ = op  # type: ignore[attr-defined]
    return wrapper


@contextlib.contextmanager
def timed(backend: str, op: str) -> Iterator[list[Any]]:
    """Count the block as one ``op`` of ``backend``; ``frame[1] += n`` (or :func:`add_bytes`) adds bytes,
    an exception is an error."""
    frame: list[Any] = [None, 0]
    stack = _active()
    stack.append(frame)
    error = False
    t0 = time.perf_counter()
    try:
        yield frame
    except Exception:
        error = True
        raise
    finally:
        stack.pop()
        RECORDER.record(backend, op, time.perf_counter() - t0, frame[1], error)


# ----------------------------------------------------------------------------------- adding up
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no merging, only adding up
        yield
        return
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def totals(folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """This process's totals plus those every other process left in ``folder`` (default: this
    process's folder); files of ended processes of this host are merged into ``totals.json`` first.
    ``{"ops": {"backend|op": {"count", "seconds", "bytes", "errors", "buckets"}}, "cache": {"hits",
    "misses"}, "processes": files added}``."""
    out = RECORDER.snapshot()
    out["processes"] = 1
    where = Path(folder) if folder is not None else RECORDER.folder
    if where is None or not where.is_dir():
        return out
    own = RECORDER.file_name if where == RECORDER.folder else None
    host = _host()
    with contextlib.suppress(OSError), _folder_lock(where):
        merged = _read(where / TOTALS_FILE) or _empty()
        merged.setdefault("ops", {})
        merged.setdefault("cache", {"hits": 0, "misses": 0})
        ended: list[Path] = []
        live: list[dict[str, Any]] = []
        for path in sorted(where.glob("*.json")):
            if path.name in (TOTALS_FILE, own):
                continue
            body = _read(path)
            if body is None:
                continue
            if body.get("host") == host and isinstance(body.get("pid"), int) and body["pid"] != os.getpid() \
                    and not _alive(body["pid"]):
                _merge(merged, body)
                ended.append(path)
            else:
                live.append(body)
        if ended:
            _atomic_write(where / TOTALS_FILE, json.dumps({"format": FORMAT, **merged}, separators=(",", ":")))
            for path in ended:
                path.unlink(missing_ok=True)
        _merge(out, merged)
        for body in live:
            _merge(out, body)
        out["processes"] += len(live) + len(ended)
    return out
