"""Session snapshots: content hashes of everything produced for a session, with copies of the values
for the last ``keep`` sessions, and restoring one into any store.

Layout under ``root``::

    <session>/manifest.json                 session, config hash, {asset: {pool: hash}}, each value's
                                            currency (``values``) and the pools' statuses (``pools``)
    <session>/<asset>/<pool>.<suffix>       the value (the embedded file format)

A snapshot is written to a temporary folder and renamed into place, so a reader sees a whole snapshot or
none; saving a session again replaces it. :meth:`SnapshotStore.restore` verifies every hash before it
writes anything back. A manifest's hash of a value is :func:`value_hash`; a store that recorded it when
the value was written (:meth:`~rotation_platform.storage.files.FileStore.value_digest`, read with
:func:`stored_digest`) gives it without the value being read again.

The temporary folder ``.<session>.<uuid>`` is held with an OS advisory lock (``fcntl.flock`` on the
folder) while it is written, so a save killed half-way (``SIGKILL``, a power cut) leaves a folder nobody
holds: the next save removes every such folder (:meth:`SnapshotStore.clean_staging`, logged, the names in
``removed_staging``) and keeps the folder of a save still in progress.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.codec import encode, table_checksum
from rotation_platform.storage.errors import StorageIntegrityError, StorageNotFoundError
from rotation_platform.storage.files import read_value, write_value

__all__ = ["SnapshotStore", "value_hash", "stored_digest", "Restored"]

log = logging.getLogger(__name__)
_STAGING = re.compile(r"^\.\d{4}-\d{2}-\d{2}\.[0-9a-f]{32}$")


def value_hash(value: Any) -> str:
    """Content hash of a stored value (the same whichever store holds it)."""
    return table_checksum(encode(value).table)


def stored_digest(store: Store, asset: str, partition: Partition) -> dict[str, Any] | None:
    """``{"value_hash", "provenance"}`` of a stored value as the store recorded them on write, or None
    (the store keeps no digests, nothing trustworthy is recorded, or nothing is stored): then read it."""
    digest = getattr(store, "value_digest", None)
    if digest is None:
        return None
    got = digest((asset,), partition)
    if not got or not isinstance(got.get("value_hash"), str):
        return None
    return got


@dataclass(frozen=True)
class Restored:
    session: str
    values: int
    assets: tuple[str, ...]


class SnapshotStore:
    def __init__(self, root: str | Path, keep: int = 10):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root = Path(root)
        self.keep = int(keep)
        self.removed_staging: list[str] = []

    def clean_staging(self) -> list[str]:
        """Remove the temporary folders of saves that did not finish (their owner is gone: nobody holds
        the folder's lock); return their names. A save in progress keeps its folder."""
        removed = []
        if not self.root.exists():
            return removed
        for path in sorted(self.root.iterdir()):
            if not (path.is_dir() and _STAGING.match(path.name)):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a save in progress holds it
            else:
                shutil.rmtree(path, ignore_errors=True)
                if not path.exists():
                    removed.append(path.name)
            finally:
                os.close(fd)
        if removed:
            log.warning("snapshots under %s: removed %d unfinished save(s) left by a process that ended "
                        "mid-save: %s", self.root, len(removed), ", ".join(removed))
        self.removed_staging += removed
        return removed

    def sessions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    @staticmethod
    def manifest_of(session: str, values: Mapping[str, Mapping[str, Any]], config_hash: str,
                    currency: Mapping[str, Mapping[str, Any]] | None = None,
                    hashes: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, object]:
        """The manifest; ``currency``: pool -> ``rotation_platform.production.summary.pool_currency`` (its
        ``status`` / ``reason`` and each asset's hashes and status: ``current`` or ``superseded``);
        ``hashes``: {asset: {pool: value_hash}} known already (recorded on write), the others are computed."""
        known = hashes or {}

        def hash_of(asset: str, pool: str, v: Any) -> str:
            h = known.get(asset, {}).get(pool)
            return h if h is not None else value_hash(v)

        manifest: dict[str, Any] = {"session": session, "config_hash": config_hash,
                                    "assets": {asset: {pool: hash_of(asset, pool, v)
                                                       for pool, v in sorted(by_pool.items())}
                                               for asset, by_pool in sorted(values.items())}}
        if currency is not None:
            manifest["pools"] = {pool: {"status": c["status"], "reason": c["reason"], "data_hash": c["data_hash"]}
                                 for pool, c in sorted(currency.items())}
            manifest["values"] = {asset: {pool: dict(currency[pool]["assets"][asset]) for pool in sorted(by_pool)
                                          if asset in currency.get(pool, {}).get("assets", {})}
                                  for asset, by_pool in sorted(values.items())}
        return manifest

    @staticmethod
    def superseded_of(manifest: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """``{pool: {asset: reason}}`` of the snapshot's values that were not current when it was taken
        (kept readable as the previous values, never as the session's current ones)."""
        out: dict[str, dict[str, str]] = {}
        for asset, by_pool in (manifest.get("values") or {}).items():
            for pool, entry in by_pool.items():
                if entry.get("status") == "superseded":
                    out.setdefault(pool, {})[asset] = str(entry.get("reason", ""))
        return out

    def save(self, session: str, values: Mapping[str, Mapping[str, Any]], config_hash: str,
             currency: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, object]:
        """Store ``values`` ({asset: {pool: value}}) as the snapshot of ``session``; prune to ``keep``."""
        manifest = self.manifest_of(session, values, config_hash, currency)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_staging()
        tmp = self.root / f".{session}.{uuid.uuid4().hex}"
        tmp.mkdir()
        owner = os.open(tmp, os.O_RDONLY)
        fcntl.flock(owner, fcntl.LOCK_EX)  # held until the folder is renamed or removed: see clean_staging
        try:
            for asset, by_pool in values.items():
                for pool, value in by_pool.items():
                    write_value(tmp / asset / pool, value)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            final = self.root / session
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            os.close(owner)
        self.prune()
        return manifest

    def prune(self) -> list[str]:
        """Delete all but the newest ``keep`` snapshots; return the sessions removed."""
        sessions = self.sessions()
        gone = sessions[: max(len(sessions) - self.keep, 0)]
        for s in gone:
            shutil.rmtree(self.root / s)
        return gone

    def manifest(self, session: str) -> dict[str, Any]:
        path = self.root / session / "manifest.json"
        if not path.exists():
            raise StorageNotFoundError(f"no snapshot for session {session} under {self.root}; kept: {self.sessions()}")
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, session: str) -> dict[str, dict[str, Any]]:
        """The snapshot's values, each verified against the manifest's hash."""
        manifest = self.manifest(session)
        out: dict[str, dict[str, Any]] = {}
        for asset, by_pool in manifest["assets"].items():
            for pool, expected in by_pool.items():
                value = read_value(self.root / session / asset / pool)
                got = value_hash(value)
                if got != expected:
                    raise StorageIntegrityError(f"snapshot {session}: {asset}/{pool} hashes to {got[:12]}, "
                                                f"the manifest says {expected[:12]}; not restoring")
                out.setdefault(asset, {})[pool] = value
        return out

    def restore(self, session: str, store: Store, pool_sessions: Mapping[str, object] | None = None) -> Restored:
        """Write the snapshot of ``session`` back into ``store`` (all values verified first). The values
        carry their own data and config hashes, so a superseded value stays superseded; each restored
        pool's run record says where its values came from. ``pool_sessions``: pool -> the session its
        values are of when it is not ``session`` (a pool on another calendar: its latest session on or
        before it)."""
        from rotation_platform.storage.provenance import provenance_of, run_record, write_run_record

        values = self.load(session)
        n = 0
        day = str(pd.Timestamp(session).date())
        def day_of(pool: str) -> str:
            given = (pool_sessions or {}).get(pool)
            return day if given is None else str(pd.Timestamp(given).date())

        for asset, by_pool in values.items():
            for pool, value in by_pool.items():
                partition = Partition.single(day) if pool == "_session" else \
                    Partition.multi({"pool": pool, "session": day_of(pool)})
                store.write((asset,), partition, value)
                n += 1
        for pool, value in values.get("prices", {}).items():
            write_run_record(store, Partition.multi({"pool": pool, "session": day_of(pool)}),
                             run_record("restored", provenance_of(value), from_snapshot=day))
        return Restored(session, n, tuple(sorted(values)))
