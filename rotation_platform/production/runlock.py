"""Run exclusivity: one writer at a time per data folder and pool (and for the cross-pool summary).

A lock is a file ``<data_dir>/.locks/<scope>.lock`` held with an OS advisory lock (``fcntl.flock``): the
kernel releases it when the holding process ends, however it ends (``SIGKILL`` included), so a killed
run never leaves a stuck lock. The file's content names the holder -- pid, host, run id, config file,
started_at -- for the message of a run that finds it taken; the content of a file nobody holds means
nothing.

Scopes: ``pool-<POOL>`` for the per-pool assets of a pool (every session of it), ``summary`` for the
per-session summary and the session snapshots (they read every pool and write per-session partitions).

Locks are re-entrant within a process: the command line takes a pool's lock before it runs the pool's
job in process, and the IO manager of that run asks for the same lock again when it writes; the second
request is counted, not blocked. A lock taken in another process (a run launched from the UI, another
command line) blocks or fails the request.

Delegation: on the multiprocess and Celery executors the steps of the command line's runs write from other
processes while the command line holds the locks for them. A request made with ``delegated_by`` -- the
holder run id of the command-line invocation that launched the run (:func:`cli_holder_run_id`, the runs
carry its ``rotation/cli_run`` tag) -- proceeds without taking the lock when the lock is held by exactly
that holder and the holder's process is alive (checked by pid on the same host; on another host the held
lock itself says its holder lives, as the kernel drops it with its process). The request holds nothing
then (:attr:`RunLock.delegated`) and is made again at the next write, so a step that outlives its
command line takes the lock itself or stops as busy. Any other holder makes the request busy as before.

Pure library code: no Dagster here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rotation_platform.errors import ServiceError

__all__ = [
    "LOCK_DIR",
    "SUMMARY_SCOPE",
    "WRITE_SCOPE_TAG",
    "LockHolder",
    "RunLock",
    "RunLockBusy",
    "acquire_all",
    "cli_holder_run_id",
    "lock_path",
    "pool_scope",
    "scope_of_partition",
]

LOCK_DIR = ".locks"
SUMMARY_SCOPE = "summary"
#: run tag naming what a run writes (``pool:<POOL>`` or ``summary``); the Dagster instance's run queue
#: lets one run per value be in progress (configs/dagster.yaml, deploy/dagster.yaml)
WRITE_SCOPE_TAG = "rotation/writes"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_POLL_S = 0.2


def pool_scope(pool: str) -> str:
    return f"pool-{pool}"


def cli_holder_run_id(cli_run: str) -> str:
    """The run id ``python -m jobs.main`` records in the locks it holds for the invocation ``cli_run`` (the
    value of its runs' ``rotation/cli_run`` tag)."""
    return f"jobs.main {cli_run}"


def scope_of_partition(dims: dict[str, str]) -> str | None:
    """The lock scope of a stored partition: its pool's for pool x session partitions, the summary's for
    per-session ones, none for an unpartitioned value."""
    if "pool" in dims:
        return pool_scope(str(dims["pool"]))
    if dims:
        return SUMMARY_SCOPE
    return None


def lock_path(data_dir: str | os.PathLike, scope: str) -> Path:
    """``<data_dir>/.locks/<scope>.lock`` (the data folder resolved, so every spelling of it agrees)."""
    return Path(data_dir).expanduser().resolve() / LOCK_DIR / f"{_SAFE.sub('_', scope)}.lock"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as its file records it."""

    pid: int | None
    host: str
    run_id: str
    config: str
    started_at: str

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host or '?'}, run {self.run_id or '?'}, config {self.config or '?'}, "
                f"since {self.started_at or '?'}")


class RunLockBusy(ServiceError):
    """Another run holds the lock: names the lock file, the holder and what to do (exit code 5)."""

    def __init__(self, path: Path, scope: str, holder: LockHolder | None, waited_s: float):
        self.path, self.scope, self.holder, self.waited_s = path, scope, holder, waited_s
        who = holder.describe() if holder else "a process that has not recorded itself yet"
        waited = f" after waiting {waited_s:g}s" if waited_s > 0 else ""
        what = "the summary and snapshots" if scope == SUMMARY_SCOPE else f"pool {scope.removeprefix('pool-')}"
        super().__init__(f"{what} of {path.parent.parent} is being written by another run ({who}; lock {path})"
                         f"{waited}", file=str(path),
                         hint="wait for it to finish, or pass --wait SECONDS to queue behind it")


# process-wide registry of held locks: re-entrancy within the process, one file descriptor per lock
_held: dict[Path, list] = {}  # path -> [fd, count, holder]
_registry_lock = threading.RLock()


def _read_holder(path: Path) -> LockHolder | None:
    """The holder the file names (retried briefly: a new holder writes it just after taking the lock)."""
    for _ in range(5):
        try:
            doc = json.loads(path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict):
            return LockHolder(pid=doc.get("pid"), host=str(doc.get("host", "")), run_id=str(doc.get("run_id", "")),
                              config=str(doc.get("config", "")), started_at=str(doc.get("started_at", "")))
        time.sleep(0.05)
    return None


def _alive(holder: LockHolder) -> bool:
    """Whether the holder's process runs: by pid on this host; on another host the lock is held, which
    the kernel keeps only while its process lives."""
    if holder.host != socket.gethostname():
        return True
    if not holder.pid or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


class RunLock:
    """The lock of one ``scope`` under ``data_dir``; ``acquire(wait_s)`` takes it or raises
    :class:`RunLockBusy`; ``release()`` lets it go (also on exit of a ``with`` block)."""

    def __init__(self, data_dir: str | os.PathLike, scope: str, *, run_id: str = "", config: str = "",
                 delegated_by: str | None = None):
        self.scope = scope
        self.path = lock_path(data_dir, scope)
        self.run_id = run_id
        self.config = config
        #: the holder run id that may hold this lock for the request (see the module: delegation)
        self.delegated_by = delegated_by or None
        #: the last acquire found the lock held by ``delegated_by`` and took nothing
        self.delegated = False
        self._owned = False

    def holder(self) -> LockHolder | None:
        """The holder recorded in the file, when the lock is held (by any process); None when it is free."""
        with _registry_lock:
            if self.path in _held:
                return _held[self.path][2]
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            return _read_holder(self.path)
        finally:
            os.close(fd)  # closing drops the lock taken for the probe
        return None

    def acquire(self, wait_s: float = 0.0, on_wait: Callable[[RunLockBusy], None] | None = None) -> "RunLock":
        """Take the lock, waiting up to ``wait_s`` seconds for its holder; ``on_wait`` is called once, with
        the holder's description, when the lock is taken and waiting begins. Held by ``delegated_by``
        (alive), it returns at once holding nothing, with :attr:`delegated` set."""
        if self._owned:
            return self
        self.delegated = False
        with _registry_lock:
            entry = _held.get(self.path)
            if entry is not None:  # this process holds it already: count the nested request
                entry[1] += 1
                self._owned = True
                return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        start = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    if self.delegated_by is not None and self._held_for_me():
                        os.close(fd)
                        self.delegated = True
                        return self
                    waited = time.monotonic() - start
                    if waited >= wait_s:
                        raise RunLockBusy(self.path, self.scope, _read_holder(self.path), round(wait_s, 1)) from None
                    if on_wait is not None:
                        on_wait(RunLockBusy(self.path, self.scope, _read_holder(self.path), 0.0))
                        on_wait = None
                    time.sleep(min(_POLL_S, max(wait_s - waited, 0.01)))
        except BaseException:
            os.close(fd)
            raise
        holder = LockHolder(pid=os.getpid(), host=socket.gethostname(), run_id=self.run_id, config=self.config,
                            started_at=dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds"))
        text = json.dumps({"pid": holder.pid, "host": holder.host, "run_id": holder.run_id,
                           "config": holder.config, "started_at": holder.started_at, "scope": self.scope})
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)
        with _registry_lock:
            _held[self.path] = [fd, 1, holder]
        self._owned = True
        return self

    def _held_for_me(self) -> bool:
        """Whether the lock's recorded holder is exactly ``delegated_by`` and its process is alive."""
        holder = _read_holder(self.path)
        return holder is not None and holder.run_id == self.delegated_by and _alive(holder)

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        with _registry_lock:
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[self.path]
        fd = entry[0]
        try:
            os.ftruncate(fd, 0)  # the content would name a holder that is gone
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._owned

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def acquire_all(data_dir: str | os.PathLike, scopes: Iterable[str], *, wait_s: float = 0.0, run_id: str = "",
                config: str = "", on_wait: Callable[[RunLockBusy], None] | None = None) -> Iterator[list[RunLock]]:
    """Hold the locks of every scope (taken in name order, so two runs never wait for each other in a
    cycle) for the ``with`` block; ``wait_s`` is the total time to wait for all of them."""
    deadline = time.monotonic() + max(wait_s, 0.0)
    locks: list[RunLock] = []
    try:
        for scope in sorted(set(scopes)):
            lock = RunLock(data_dir, scope, run_id=run_id, config=config)
            lock.acquire(max(deadline - time.monotonic(), 0.0), on_wait)
            locks.append(lock)
        yield locks
    finally:
        for lock in reversed(locks):
            lock.release()
