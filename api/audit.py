"""The append-only audit log: one JSON line per orders read and per launch, fsync'd before the answer
leaves the API.

Each record: ``time`` (UTC, ISO 8601), ``key_id`` (never the key), ``role``, ``method``, ``path``, ``query``
(the session asked for), ``status`` (the HTTP status answered), ``client`` (address) and, for a launch,
``run_ids``. The file is opened with ``O_APPEND`` for every write, so lines of concurrent writers (the
server's worker processes) do not interleave and nothing is ever rewritten; rotate it by renaming (the next
write starts a new file).

Group commit: the records of requests answered at the same time are written and synced together. A
record is queued; the first caller that finds no write in progress writes every queued line in one
``write`` and one ``fsync`` while the others wait; each caller returns only once its own line is synced
(and raises if that write failed). Under load one ``fsync`` serves many answers; alone it is one each.
The server's requests use :meth:`AuditLog.arecord`, the same on the event loop: the lines queued while a
write is in progress go out in the next one, written in a worker thread, and each request's answer waits
for its own line -- one thread hand-off per write instead of one per request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cv = threading.Condition()
        self._pending: list[bytes] = []
        self._queued = 0  # records queued so far (their sequence numbers are 1..queued)
        self._synced = 0  # every record up to this number is written and synced (or failed, below)
        self._writing = False
        self._failed: list[tuple[int, int, BaseException]] = []  # (first, last, error) of failed writes
        self.writes = 0  # how many write+fsync calls were made (the group commits)
        self._loop_queues: dict[Any, list[tuple[bytes, asyncio.Future]]] = {}  # arecord: lines waiting, per loop
        self._loop_writers: dict[Any, asyncio.Task] = {}

    @staticmethod
    def _line(fields: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        rec = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), **fields}
        return rec, (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()

    async def arecord(self, **fields: Any) -> dict[str, Any]:
        """:meth:`record` for a caller on the event loop: returns once the line is written and synced."""
        rec, line = self._line(fields)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        queue = self._loop_queues.setdefault(loop, [])
        queue.append((line, done))
        if len(queue) == 1 and loop not in self._loop_writers:
            self._loop_writers[loop] = loop.create_task(self._write_queued(loop))
        await asyncio.shield(done)  # a caller that goes away leaves its line to be written
        return rec

    async def _write_queued(self, loop) -> None:
        try:
            while self._loop_queues.get(loop):
                batch = self._loop_queues.pop(loop)
                try:
                    await loop.run_in_executor(None, self._write, b"".join(line for line, _ in batch))
                except BaseException as exc:  # noqa: BLE001 - every caller of the batch is told
                    error = OSError(f"the audit log {self.path} could not be written: {exc}")
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._loop_writers.pop(loop, None)

    def record(self, **fields: Any) -> dict[str, Any]:
        rec, line = self._line(fields)
        with self._cv:
            self._pending.append(line)
            self._queued += 1
            mine = self._queued
            while self._synced < mine:
                if self._writing:
                    self._cv.wait()
                    continue
                batch, first, last = self._pending, self._synced + 1, self._queued
                self._pending, self._writing = [], True
                self._cv.release()
                error: BaseException | None = None
                try:
                    self._write(b"".join(batch))
                except BaseException as exc:  # noqa: BLE001 - every caller of the batch is told below
                    error = exc
                finally:
                    self._cv.acquire()
                    self._writing = False
                    self._synced = last
                    if error is not None:
                        self._failed = [*self._failed[-15:], (first, last, error)]
                    self._cv.notify_all()
            for first, last, error in self._failed:
                if first <= mine <= last:
                    raise OSError(f"the audit log {self.path} could not be written: {error}") from error
        return rec

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:  # a short write continues where it stopped
                view = view[os.write(fd, view):]
            os.fsync(fd)
            self.writes += 1
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
