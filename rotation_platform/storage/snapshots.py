"""Session snapshots: content hashes of everything produced for a session, with copies of the values
for the last ``keep`` sessions, and restoring one into any store.

Layout under ``root``::

    <session>/manifest.json                 session, config hash, {asset: {pool: hash}}
    <session>/<asset>/<pool>.<suffix>       the value (the embedded file format)

A snapshot is written to a temporary folder and renamed into place, so a reader sees a whole snapshot or
none; saving a session again replaces it. :meth:`SnapshotStore.restore` verifies every hash before it
writes anything back.
"""

from __future__ import annotations

import json
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

__all__ = ["SnapshotStore", "value_hash", "Restored"]


def value_hash(value: Any) -> str:
    """Content hash of a stored value (the same whichever store holds it)."""
    return table_checksum(encode(value).table)


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

    def sessions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    @staticmethod
    def manifest_of(session: str, values: Mapping[str, Mapping[str, Any]], config_hash: str) -> dict[str, object]:
        return {"session": session, "config_hash": config_hash,
                "assets": {asset: {pool: value_hash(v) for pool, v in sorted(by_pool.items())}
                           for asset, by_pool in sorted(values.items())}}

    def save(self, session: str, values: Mapping[str, Mapping[str, Any]], config_hash: str) -> dict[str, object]:
        """Store ``values`` ({asset: {pool: value}}) as the snapshot of ``session``; prune to ``keep``."""
        manifest = self.manifest_of(session, values, config_hash)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{session}.{uuid.uuid4().hex}"
        tmp.mkdir()
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

    def restore(self, session: str, store: Store) -> Restored:
        """Write the snapshot of ``session`` back into ``store`` (all values verified first)."""
        values = self.load(session)
        n = 0
        day = str(pd.Timestamp(session).date())
        for asset, by_pool in values.items():
            for pool, value in by_pool.items():
                partition = Partition.single(day) if pool == "_session" else \
                    Partition.multi({"pool": pool, "session": day})
                store.write((asset,), partition, value)
                n += 1
        return Restored(session, n, tuple(sorted(values)))
