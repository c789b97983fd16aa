"""Reconcile what a store holds with what the orchestrator recorded and with the session snapshots.

For every partition of an asset in scope, three accounts are compared:

* the store's catalog -- :meth:`~.base.Store.partitions`, the checksum of the stored value
  (:meth:`~.base.Store.checksum`), its row/point counts (:meth:`~.base.Store.counts`) and, when read,
  whether the value passes the store's own integrity checks;
* the orchestrator's record of the partition's latest materialisation (:class:`Record`: the checksum
  and backend the IO manager recorded, when, and by which run) -- gathered by the caller, so this module
  does not depend on the orchestrator;
* the content hashes of the kept session snapshots (:class:`~.snapshots.SnapshotStore`).

What disagrees is one :class:`Finding` of a kind:

``unrecorded``  the store holds a committed value the orchestrator has no record of (a run killed
                between the write and the event);
``lost``        the orchestrator recorded it, the store does not hold it;
``mismatch``    the stored value is unreadable or partial, or its checksum differs from the one recorded
                at materialisation, or its content hash differs from the snapshot's;
``duplicated``  the store holds more rows/points for the partition than its value has (leftovers of a
                write that was not committed), where the backend can tell.

:func:`plan_fix` says how each finding is resolved without computing anything again: record the stored
value (``record``), write back a verified snapshot copy (``restore``), rewrite the stored value so the
leftovers go (``compact``), remove an untrusted value (``delete``) or ask for the partition to be run
again (``rerun``). :func:`apply_store_fix` carries out the store's part; recording in the orchestrator is
the caller's.

A snapshot copy counts as verified when its hashes check out (:meth:`SnapshotStore.load`), it was made
with the current configuration (same config hash) and no later materialisation of the partition was
recorded (the snapshot may otherwise predate the value on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.errors import StorageError, StorageNotFoundError, StorageUnavailableError

__all__ = [
    "KINDS",
    "Record",
    "Finding",
    "Action",
    "Tally",
    "SnapshotIndex",
    "partition_of",
    "unwrap",
    "compare_asset",
    "plan_fix",
    "apply_store_fix",
]

KINDS = ("unrecorded", "lost", "mismatch", "duplicated")
SESSION_ONLY = "_session"  # the snapshot manifests' pool name of a per-session value


@dataclass(frozen=True)
class Record:
    """The orchestrator's latest materialisation of one partition."""

    timestamp: float
    checksum: str | None = None
    backend: str | None = None
    rows: int | None = None
    run_id: str = ""
    partitions_written: int | None = None


@dataclass(frozen=True)
class Finding:
    kind: str
    asset: str
    key: str
    detail: str
    trusted: bool = False        # the stored value is whole and agrees with every account that could be checked
    snapshot: str | None = None  # session of a verified snapshot copy of the partition
    rows: int = 0                # rows the finding concerns (lost rows; extra rows/points)

    def line(self) -> str:
        return f"{self.kind:<10} {self.asset} {self.key}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Action:
    finding: Finding
    action: str  # record | restore | compact | delete | rerun
    note: str = ""


@dataclass
class Tally:
    """What was checked, for the summary line."""

    partitions: int = 0
    read: int = 0
    snapshot_compared: int = 0
    recorded_compared: int = 0
    rows_stored: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})

    def add(self, other: "Tally") -> None:
        self.partitions += other.partitions
        self.read += other.read
        self.snapshot_compared += other.snapshot_compared
        self.recorded_compared += other.recorded_compared
        self.rows_stored += other.rows_stored
        for k, v in other.by_kind.items():
            self.by_kind[k] = self.by_kind.get(k, 0) + v


def partition_of(key: str, dims: Sequence[str]) -> Partition:
    """The partition of a canonical key (``pool|session`` for ``dims=("pool", "session")``, the key
    itself for ``dims=("",)``)."""
    if not dims:
        return Partition.unpartitioned()
    if tuple(dims) == ("",):
        return Partition.single(key)
    values = key.split("|")
    if len(values) != len(dims):
        raise StorageError(f"partition key {key!r} does not have the dimensions {list(dims)}")
    return Partition.multi(dict(zip(dims, values)))


def unwrap(store: Store) -> Store:
    """The store behind a read-through cache (what reconciliation must look at)."""
    from rotation_platform.storage.cache import CachedStore

    while isinstance(store, CachedStore):
        store = store.inner
    return store


class SnapshotIndex:
    """The kept snapshots' content hashes, by asset and partition key, with the verified copies."""

    def __init__(self, root: str | Path, config_hash: str):
        from rotation_platform.storage.snapshots import SnapshotStore

        self.snapshots = SnapshotStore(root)
        self.config_hash = config_hash
        self._manifests: dict[str, dict[str, Any]] = {}
        self._made: dict[str, float] = {}
        self._loaded: dict[str, dict[str, dict[str, Any]] | None] = {}
        self.other_config: list[str] = []
        for session in self.snapshots.sessions():
            manifest = self.snapshots.manifest(session)
            if manifest.get("config_hash") != config_hash:
                self.other_config.append(session)
                continue
            self._manifests[session] = manifest
            self._made[session] = (self.snapshots.root / session / "manifest.json").stat().st_mtime

    @staticmethod
    def _locate(key: str) -> tuple[str, str]:
        """``(session, pool)`` of a partition key as the manifests name it."""
        if "|" in key:
            pool, session = key.split("|", 1)
            return session, pool
        return key, SESSION_ONLY

    def expected(self, asset: str, key: str, record: Record | None) -> tuple[str, str] | None:
        """``(session, hash)`` the snapshot holds for the partition, when it applies: same config and
        not older than the partition's latest recorded materialisation."""
        session, pool = self._locate(key)
        manifest = self._manifests.get(session)
        if manifest is None:
            return None
        digest = manifest.get("assets", {}).get(asset, {}).get(pool)
        if digest is None:
            return None
        if record is not None and record.timestamp > self._made[session]:
            return None
        return session, digest

    def copy(self, asset: str, key: str) -> Any:
        """The verified copy of a partition's value from its session's snapshot (None when none)."""
        session, pool = self._locate(key)
        if session not in self._manifests:
            return None
        if session not in self._loaded:
            try:
                self._loaded[session] = self.snapshots.load(session)
            except StorageError:  # a hash does not check out: no copy from this snapshot is trusted
                self._loaded[session] = None
        values = self._loaded[session]
        return None if values is None else values.get(asset, {}).get(pool)


def _value_hash(value: Any) -> str:
    from rotation_platform.storage.snapshots import value_hash

    return value_hash(value)


def compare_asset(store: Store, asset: str, dims: Sequence[str], keys: Iterable[str],
                  recorded: Mapping[str, Record], snapshots: SnapshotIndex | None = None, *,
                  stored_keys: Iterable[str] | None = None, deep: bool = False) -> tuple[list[Finding], Tally]:
    """Compare the accounts of ``asset`` for ``keys`` (the partitions in scope).

    ``stored_keys``: the store's partition list when the caller has it (else asked here). A stored value
    is read (integrity checks, content hash) when ``deep`` or when a snapshot applies to it. Raises
    :class:`~.errors.StorageUnavailableError` when a server does not answer.
    """
    store = unwrap(store)
    path = (asset,)
    stored = set(store.partitions(path) if stored_keys is None else stored_keys)
    findings: list[Finding] = []
    tally = Tally()
    for key in sorted(set(keys)):
        tally.partitions += 1
        partition = partition_of(key, dims)
        record = recorded.get(key)
        expected = snapshots.expected(asset, key, record) if snapshots is not None else None
        copy_session = None
        if expected is not None and snapshots is not None and snapshots.copy(asset, key) is not None:
            copy_session = expected[0]
        counts = store.counts(path, partition)
        if key not in stored:
            if record is not None:
                if copy_session is None and snapshots is not None:  # an older snapshot is a copy of the value
                    session, pool = SnapshotIndex._locate(key)
                    if snapshots.copy(asset, key) is not None and _copy_matches(store, snapshots, asset, key,
                                                                                record):
                        copy_session = session
                findings.append(Finding("lost", asset, key, "recorded as materialised"
                                        + (f" (run {record.run_id[:8]})" if record.run_id else "")
                                        + " but not in the store", snapshot=copy_session,
                                        rows=_recorded_rows(record)))
            if counts.physical:
                findings.append(Finding("duplicated", asset, key, f"{counts.physical} rows/points of an uncommitted "
                                        "write, invisible to readers", rows=counts.physical))
            continue
        problems: list[str] = []
        trusted = True
        checksum = store.checksum(path, partition)
        value_rows = None
        if deep or expected is not None:
            tally.read += 1
            try:
                value = store.read(path, partition)
            except StorageUnavailableError:
                raise
            except StorageNotFoundError:
                value = None
                problems.append("listed in the store's catalog but not readable as stored")
                trusted = False
            except StorageError as exc:
                value = None
                problems.append(f"unreadable or partial: {_first_line(exc)}")
                trusted = False
            if value is not None:
                from rotation_platform.storage.codec import value_rows as rows_of

                value_rows = rows_of(value)
                tally.rows_stored += value_rows
                if expected is not None:
                    tally.snapshot_compared += 1
                    got = _value_hash(value)
                    if got != expected[1]:
                        problems.append(f"content hash {got[:12]} differs from the snapshot of {expected[0]} "
                                        f"({expected[1][:12]})")
                        trusted = False
        if record is not None and record.checksum and record.backend == store.backend:
            tally.recorded_compared += 1
            if checksum != record.checksum:
                problems.append(f"checksum {str(checksum)[:12]} differs from the one recorded at materialisation "
                                f"({record.checksum[:12]})")
                trusted = False
        if record is None:
            detail = "in the store but no materialisation is recorded"
            if problems:
                detail += "; " + "; ".join(problems)
            findings.append(Finding("unrecorded", asset, key, detail, trusted=trusted, snapshot=copy_session,
                                    rows=value_rows or 0))
        elif problems:
            findings.append(Finding("mismatch", asset, key, "; ".join(problems), trusted=False, snapshot=copy_session))
        extra = max(counts.physical - counts.visible, counts.physical - counts.distinct, 0)
        if extra:
            findings.append(Finding("duplicated", asset, key, f"{counts.physical} rows/points stored for "
                                    f"{counts.visible} visible ({counts.distinct} distinct)",
                                    trusted=trusted and not problems, snapshot=copy_session, rows=extra))
    for f in findings:
        tally.by_kind[f.kind] += 1
    return findings, tally


def _copy_matches(store: Store, snapshots: SnapshotIndex, asset: str, key: str, record: Record) -> bool:
    """Whether an older snapshot's copy is the value the orchestrator recorded (same checksum as a
    store of this backend reports for it)."""
    if not record.checksum or record.backend != store.backend:
        return False
    value = snapshots.copy(asset, key)
    if store.backend == "local":
        import hashlib

        from rotation_platform.storage.codec import encode_file

        return hashlib.sha256(encode_file(value)[1]).hexdigest() == record.checksum
    return _value_hash(value) == record.checksum


def _recorded_rows(record: Record) -> int:
    if record.rows is None:
        return 0
    if record.partitions_written and record.partitions_written > 1:
        return 0  # a range's row total is not split per partition; counted by the caller
    return int(record.rows)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def plan_fix(findings: Sequence[Finding]) -> list[Action]:
    """How each finding is resolved (see the module docstring)."""
    actions = []
    for f in findings:
        if f.kind == "unrecorded":
            if f.trusted:
                actions.append(Action(f, "record", "record the stored value's materialisation"))
            elif f.snapshot:
                actions.append(Action(f, "restore", f"write back the copy of the snapshot of {f.snapshot}, record it"))
            else:
                actions.append(Action(f, "delete", "the stored value cannot be trusted: removed, run the partition "
                                                   "again"))
        elif f.kind in ("lost", "mismatch"):
            if f.snapshot:
                actions.append(Action(f, "restore", f"write back the copy of the snapshot of {f.snapshot}, record it"))
            elif f.kind == "mismatch":
                actions.append(Action(f, "delete", "no verified copy: the stored value is removed, run the partition "
                                                   "again"))
            else:
                actions.append(Action(f, "rerun", "no verified copy: run the partition again"))
        elif f.kind == "duplicated":
            if f.trusted:
                actions.append(Action(f, "compact", "rewrite the stored value: the extra rows/points go"))
            else:
                actions.append(Action(f, "delete", "remove the partition's rows/points"
                                      + (" (its value is resolved above)" if _resolved_elsewhere(f, findings) else
                                         ", run the partition again")))
    return _merge(actions)


def _resolved_elsewhere(f: Finding, findings: Sequence[Finding]) -> bool:
    return any(g is not f and g.asset == f.asset and g.key == f.key for g in findings)


def _merge(actions: list[Action]) -> list[Action]:
    """One store action per partition: a restore or delete also removes extra rows/points."""
    by_partition: dict[tuple[str, str], list[Action]] = {}
    for a in actions:
        by_partition.setdefault((a.finding.asset, a.finding.key), []).append(a)
    out: list[Action] = []
    for group in by_partition.values():
        main = [a for a in group if a.finding.kind != "duplicated"]
        extra = [a for a in group if a.finding.kind == "duplicated"]
        if main and extra:
            if main[0].action in ("record",):
                # the value is fine but has leftovers: rewrite it, then record it
                out.append(Action(main[0].finding, "compact+record", "rewrite the stored value (the extra rows/points "
                                                                      "go) and record it"))
                continue
            if main[0].action in ("restore", "delete"):
                out.extend(main)
                continue
            # lost (rerun): the leftovers of the partition go; the rerun writes it whole
            out.append(Action(extra[0].finding, "delete", "remove the leftover rows/points"))
            out.extend(main)
            continue
        out.extend(group)
    return out


def apply_store_fix(store: Store, action: Action, dims: Sequence[str], snapshots: SnapshotIndex | None) -> str | None:
    """Carry out the store's part of ``action``; the checksum of the value now stored (None when the
    partition is now absent)."""
    from rotation_platform.storage.cache import CachedStore

    inner = unwrap(store)
    f = action.finding
    path = (f.asset,)
    partition = partition_of(f.key, dims)
    kind = action.action
    if kind in ("record", "rerun"):
        return inner.checksum(path, partition)
    if kind == "restore":
        value = snapshots.copy(f.asset, f.key) if snapshots is not None else None
        if value is None:
            raise StorageError(f"asset {f.asset} partition {f.key}: the snapshot copy of {f.snapshot} is no longer "
                               "available; run the partition again")
        inner.write(path, partition, value)
    elif kind in ("compact", "compact+record"):
        try:
            value = inner.read(path, partition)
        except StorageUnavailableError:
            raise
        except StorageError:  # the value itself does not check out: nothing to keep
            value = None
        if value is None:
            inner.delete(path, partition)
        else:
            inner.write(path, partition, value)  # a write replaces the partition, every generation
    elif kind == "delete":
        inner.delete(path, partition)
    if isinstance(store, CachedStore):
        store.invalidate(path, partition)
    return inner.checksum(path, partition)
