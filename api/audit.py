"""The append-only audit log: one JSON line per orders read and per launch, fsync'd before the answer
leaves the API.

Each record: ``time`` (UTC, ISO 8601), ``key_id`` (never the key), ``role``, ``method``, ``path``, ``query``
(the session asked for), ``status`` (the HTTP status answered), ``client`` (address) and, for a launch,
``run_ids``. The file is opened with ``O_APPEND`` for every record, so lines of concurrent writers do not
interleave and nothing is ever rewritten; rotate it by renaming (the next record starts a new file).
"""

from __future__ import annotations

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
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> dict[str, Any]:
        rec = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), **fields}
        line = (json.dumps(rec, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return rec

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
