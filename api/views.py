"""Read-only views of the stored results: what the API answers, from the configured store and the
Dagster instance only -- nothing is recomputed.

* :func:`pool_state` -- whether the pool's stored values of a session are current (``ok``), ``stale``
  (computed from other data or another config), ``failed`` (the latest run stopped before the target) or
  ``missing``: :func:`rotation_platform.production.summary.pool_currency` on the stored values, the run
  record and what the instance knows of the latest run (as the session summary judges it);
* :func:`orders_view` -- the target portfolio and its orders (:func:`rotation_platform.reports.orders.
  pool_result`, the shape of the run result file, docs/orders.md) with the state;
* :func:`metrics_view` -- the strategy's figures beside its baselines and the thresholds;
* :func:`verdicts_view` -- every fuse's latest evaluation for the partition, from the instance;
* :func:`findings_view` -- the data-quality findings: quarantined rows, excluded funds, the gate;
* :func:`snapshots_view` / :func:`verify_snapshot` -- the kept session snapshots and their hashes.

Money is in raw units of the pool's currency (``currency``), as stored.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pandas as pd

from rotation_platform.config.models import PlatformConfig
from rotation_platform.production.fuses import THRESHOLDS
from rotation_platform.production.summary import CURRENCY_ASSETS, pool_currency
from rotation_platform.reports.orders import METRICS, baselines_of, pool_result, value_added_of, with_checks
from rotation_platform.storage.base import Partition, Store
from rotation_platform.storage.errors import StorageNotFoundError
from rotation_platform.storage.files import read_value
from rotation_platform.storage.provenance import (PROVENANCE_KEY, RUN_RECORD_ASSET, RUN_START_ASSET,
                                                  read_run_record, results_config_hash)
from rotation_platform.storage.snapshots import SnapshotStore, stored_digest, value_hash

__all__ = ["NotFound", "stored_sessions", "resolve_session", "pool_state", "orders_view", "metrics_view",
           "verdicts_view", "findings_view", "snapshots_view", "verify_snapshot", "check_evaluations", "clean",
           "ORDERS_INPUTS", "stored_version", "AnswerCache"]


class NotFound(LookupError):
    """Nothing stored for what was asked (answered 404 with the message)."""


def clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, timestamps -> ISO text."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, pd.Timestamp):
        return None if pd.isna(x) else (str(x.date()) if x == x.normalize() and x.tzinfo is None else x.isoformat())
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is pd.NaT:
        return None
    return x


def _partition(pool: str, session: str) -> Partition:
    return Partition.multi({"pool": pool, "session": session})


def _read(store: Store, asset: str, pool: str, session: str):
    try:
        return store.read((asset,), _partition(pool, session))
    except StorageNotFoundError:
        return None


#: per store: (asset, pool) -> (the listing, its sessions of the pool) -- derived once per listing
_sessions_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stored_sessions(store: Store, asset: str, pool: str) -> list[str]:
    """The sessions of ``pool`` the store holds ``asset`` for, oldest first. A file store's listing is the
    same object while unchanged (``partition_keys``): its sessions are picked out once, not per request."""
    keys = getattr(store, "partition_keys", None)
    listing = keys((asset,), (pool,)) if keys is not None else tuple(store.partitions((asset,)))
    memo = _sessions_of.setdefault(store, {})
    kept = memo.get((asset, pool))
    if kept is not None and kept[0] is listing:
        return list(kept[1])
    out = []
    for key in listing:
        name, _, day = str(key).partition("|")
        if name == pool and day:
            out.append(day)
    out.sort()
    memo[(asset, pool)] = (listing, tuple(out))
    return out


def resolve_session(config: PlatformConfig, store: Store, pool: str, session: str | None, asset: str) -> str:
    """The session asked for (checked: ``YYYY-MM-DD``, a session of the pool's calendar), or the latest
    stored one of ``asset``."""
    if pool not in config.pool_names:
        raise NotFound(f"no pool {pool!r}; the configured pools are {', '.join(config.pool_names)}")
    if session is None:
        days = stored_sessions(store, asset, pool)
        if not days:
            raise NotFound(f"nothing stored for {asset} of pool {pool}; run `python -m jobs.main --pools {pool}`")
        return days[-1]
    try:
        day = pd.Timestamp(session)
    except (ValueError, TypeError):
        raise ValueError(f"session={session!r} is not a date; give YYYY-MM-DD") from None
    from rotation_platform.calendars import get_calendar

    cal = get_calendar(config.pool(pool).calendar)
    if not cal.is_session(day):
        raise ValueError(f"session={day.date()} is not a {cal.code} session (pool {pool}); give a trading session")
    return str(day.date())


def run_failure(instance, run_end_key, pool: str, session: str) -> str | None:
    """Why the latest run planned to materialise the pool's target for the session has not, as the session
    summary asks it (:func:`assets.summary.run_failure`)."""
    if instance is None:
        return None
    from assets.summary import run_failure as summary_run_failure

    return summary_run_failure(instance, pool, pd.Timestamp(session), run_end_key)


def _provenance_only(store: Store, asset: str, pool: str, session: str):
    """What :func:`pool_currency` needs of a stored value: a stand-in ``{"provenance": ...}`` from the digest
    the store recorded on write (no decoding), else the value itself (None when nothing is stored)."""
    digest = stored_digest(store, asset, _partition(pool, session))
    if digest is not None and isinstance(digest.get("provenance"), dict):
        return {PROVENANCE_KEY: digest["provenance"]}
    return _read(store, asset, pool, session)


def pool_state(config: PlatformConfig, store: Store, pool: str, session: str, values: dict | None = None,
               instance=None, run_end_key=None) -> dict[str, Any]:
    values = dict(values or {})
    for asset in CURRENCY_ASSETS:
        if asset not in values:
            values[asset] = _provenance_only(store, asset, pool, session)
    run = read_run_record(store, _partition(pool, session))
    failure = run_failure(instance, run_end_key, pool, session) if run_end_key is not None else None
    judged = pool_currency(results_config_hash(config), values, run, failure)
    return {"status": judged["status"], "current": judged["status"] == "ok", "reason": judged["reason"] or None,
            "data_hash": judged["data_hash"], "config_hash": judged["config_hash"],
            "assets": {a: {"status": e["status"], "reason": e["reason"] or None} for a, e in judged["assets"].items()}}


# ------------------------------------------------------------------------------------- check evaluations
def check_evaluations(instance, check_keys: list, pool: str, session: str) -> list[dict[str, Any]]:
    """The latest evaluation of every check of the pool's partition ``pool|session`` recorded in the
    instance: ``{asset, check, status, passed, severity, description, run_id, evaluated_at, metadata}``;
    a check never evaluated for it has status ``not evaluated``."""
    from dagster._core.event_api import PartitionKeyFilter

    got = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        check_keys, partition_filter=PartitionKeyFilter(key=f"{pool}|{session}"))
    out = []
    for key in check_keys:
        asset = key.asset_key.path[-1]
        rec = got.get(key)
        data = rec.event.dagster_event.event_specific_data if rec is not None and rec.event is not None and \
            rec.event.dagster_event is not None else None
        if rec is None or data is None or not hasattr(data, "passed"):
            out.append({"asset": asset, "check": key.name, "status": "not evaluated" if rec is None
                        else rec.status.value.lower(), "passed": None, "severity": None, "description": None,
                        "run_id": rec.run_id if rec is not None else None, "evaluated_at": None, "metadata": {}})
            continue
        meta = {}
        for name, value in (data.metadata or {}).items():
            if name == "run_details":
                continue
            meta[name] = clean(getattr(value, "value", value))
        out.append({"asset": asset, "check": key.name, "status": "passed" if data.passed else "failed",
                    "passed": bool(data.passed), "severity": data.severity.value,
                    "description": data.description or None, "run_id": rec.run_id,
                    "evaluated_at": pd.Timestamp(rec.create_timestamp, unit="s", tz="UTC").isoformat(),
                    "metadata": meta})
    return out


def verdicts_view(config, store, instance, check_keys, pool: str, session: str, state: dict) -> dict[str, Any]:
    checks = check_evaluations(instance, check_keys, pool, session)
    failed = [c for c in checks if c["passed"] is False and c["severity"] == "ERROR"]
    warned = [c for c in checks if c["passed"] is False and c["severity"] == "WARN"]
    return {"pool": pool, "session": session, "state": state,
            "verdict": "failed" if failed else ("not evaluated" if all(c["passed"] is None for c in checks) else
                                                "passed"),
            "failed": [f"{c['asset']}:{c['check']}" for c in failed],
            "warnings": [f"{c['asset']}:{c['check']}" for c in warned], "checks": checks}


def _as_tuples(checks: list[dict]) -> list[tuple[str, str, bool, str, str]]:
    return [(c["asset"], c["check"], bool(c["passed"]), c["severity"], c["description"] or "")
            for c in checks if c["passed"] is not None]


# ------------------------------------------------------------------------------------------------ views
def _backtest_row(frame, session: str) -> dict | None:
    t = pd.Timestamp(session)
    if not isinstance(frame, pd.DataFrame) or t not in frame.index:
        return None
    return frame.loc[t].to_dict()


def _capacity(table, frame, session: str) -> dict | None:
    from rotation_platform.research.capacity import capacity_by_session

    t = pd.Timestamp(session)
    if not isinstance(table, pd.DataFrame) or not isinstance(frame, pd.DataFrame):
        return None
    try:
        block = table.loc[pd.IndexSlice[[t], :], :]
        return capacity_by_session(block, frame["equity"]).iloc[-1].to_dict()
    except (KeyError, IndexError):
        return None


#: the stored values an orders answer is made of (with the run record and the pool state's values)
ORDERS_INPUTS = (("target_portfolio",), ("backtest",), ("capacity_report",), ("wfo_result",), (RUN_START_ASSET,),
                 RUN_RECORD_ASSET)


def stored_version(store: Store, pool: str, session: str, assets=ORDERS_INPUTS) -> tuple[str, ...] | None:
    """The value hashes the store recorded on write for these values of the partition: they change whenever
    one is written again. None when the store keeps no digests or one is missing (then nothing is reused)."""
    digest = getattr(store, "value_digest", None)
    if digest is None:
        return None
    out = []
    partition = _partition(pool, session)
    for asset in assets:
        got = digest(tuple(asset), partition)
        if not got or not isinstance(got.get("value_hash"), str):
            return None
        out.append(got["value_hash"])
    return tuple(out)


def encode_json(answer: Any) -> bytes:
    """The JSON bytes FastAPI answers for ``answer`` (``jsonable_encoder``, then ``JSONResponse``'s
    rendering): made once per kept answer instead of once per request."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse

    return JSONResponse(jsonable_encoder(answer)).body


class AnswerCache:
    """Answers kept per ``key`` while the stored values they were made of are unchanged (the same
    :func:`stored_version`) and for at most ``ttl`` seconds: what they take from the Dagster instance (fuse
    evaluations, a failed run) is read again after that. One request makes a missing answer; the others
    asking for it meanwhile wait for it instead of making it too."""

    def __init__(self, ttl: float = 1.0, size: int = 256, clock=time.monotonic):
        self.ttl, self.size, self._clock = float(ttl), int(size), clock
        self._entries: dict[Any, tuple[tuple, float, Any]] = {}
        self._lock = threading.Lock()
        self._flights: dict[Any, asyncio.Future] = {}  # aget_or_make: the answers being made

    async def aget_or_make(self, key, version: tuple | None, make):
        """The kept answer for ``key`` at ``version``, else ``await make()`` (kept when ``version`` is not
        None). The requests that ask for a missing answer while it is being made wait for that one making
        (each is told its error) instead of making it too. On the event loop."""
        hit = self.get(key, version)
        if hit is not None:
            return hit
        if version is None:
            return await make()
        flight = self._flights.get((key, version))
        if flight is None:
            made = self._clock()
            flight = asyncio.ensure_future(make())
            self._flights[(key, version)] = flight

            def settle(task, key=key, version=version, made=made) -> None:
                self._flights.pop((key, version), None)
                if not task.cancelled() and task.exception() is None:
                    self.put(key, version, task.result(), made)

            flight.add_done_callback(settle)
        return await asyncio.shield(flight)  # a request that goes away does not stop the others' answer

    def get(self, key, version: tuple | None):
        if version is None:
            return None
        with self._lock:
            hit = self._entries.get(key)
        if hit is None or hit[0] != version or self._clock() - hit[1] > self.ttl:
            return None
        return hit[2]

    def put(self, key, version: tuple | None, answer: Any, made: float) -> None:
        """``made``: the clock when the answer's reads started."""
        if version is None:
            return
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (version, made, answer)


def orders_stored(store, pool: str, session: str) -> dict[str, Any]:
    """What the orders answer takes from the stored values alone (target, backtest row, capacity,
    walk-forward result), not yet judged by the fuses or the pool's state (:func:`orders_judged`)."""
    target = _read(store, "target_portfolio", pool, session)
    if target is None:
        raise NotFound(f"no target portfolio stored for pool {pool} session {session}; run "
                       f"`python -m jobs.main --pools {pool} --session {session}`")
    frame = _read(store, "backtest", pool, session)
    row = _backtest_row(frame, session)
    cap = _capacity(_read(store, "capacity_report", pool, session), frame, session)
    wfo = _read(store, "wfo_result", pool, session)
    if isinstance(wfo, dict) and "dsr" not in wfo:
        wfo = None
    return pool_result(pool, session, target, row, (), capacity=cap, wfo=wfo)


def orders_judged(stored: dict[str, Any], state: dict, checks: list[dict]) -> dict[str, Any]:
    """The orders answer: :func:`orders_stored` judged by the fuse ``checks`` and the pool's ``state``
    (never shown as current when it is not); ``stored`` is left as it is."""
    out = with_checks(stored, _as_tuples(checks))
    out["state"] = state
    if not state["current"]:  # never shown as current: the pool's status says why
        out["status"] = state["status"]
        out["reason"] = "; ".join(filter(None, [state["reason"], out.get("reason")]))
    out.pop("fuses", None)
    out["fuses"] = {"failed": [f"{c['asset']}:{c['check']}" for c in checks
                               if c["passed"] is False and c["severity"] == "ERROR"]}
    return clean(out)


def orders_view(config, store, pool: str, session: str, state: dict, checks: list[dict]) -> dict[str, Any]:
    return orders_judged(orders_stored(store, pool, session), state, checks)


def metrics_view(config, store, pool: str, session: str, state: dict) -> dict[str, Any]:
    frame = _read(store, "backtest", pool, session)
    row = _backtest_row(frame, session)
    if row is None:
        raise NotFound(f"no backtest stored for pool {pool} session {session}")
    cap = _capacity(_read(store, "capacity_report", pool, session), frame, session)
    thresholds = {}
    for metric, key, op in THRESHOLDS:
        v = row.get(metric)
        lim = float(getattr(config.fuses, key))
        ok = v is not None and math.isfinite(float(v)) and (float(v) >= lim if op == ">=" else float(v) <= lim)
        thresholds[metric] = {"value": v, "limit": lim, "op": op, "ok": bool(ok)}
    return clean({"pool": pool, "session": session, "currency": config.pool_currency(pool), "state": state,
                  "strategy": {"params": str(row.get("params")), "equity": row.get("equity"),
                               **{k: row.get(k) for k in METRICS}},
                  "baselines": baselines_of(row), "value_added": value_added_of(row),
                  "capacity": None if cap is None else {"capacity": cap.get("capacity", cap.get("capacity_cny")),
                                                        "max_utilisation": cap.get("max_utilisation"),
                                                        "positions_without_adv": cap.get("positions_without_adv")},
                  "thresholds": thresholds})


def findings_view(config, store, pool: str, session: str, state: dict, checks: list[dict]) -> dict[str, Any]:
    quarantine = _read(store, "price_quarantine", pool, session)
    prices = _read(store, "prices", pool, session)
    if prices is None:
        raise NotFound(f"no prices stored for pool {pool} session {session}")
    rows = []
    if isinstance(quarantine, pd.DataFrame):
        rows = [clean(r) for r in quarantine.to_dict(orient="records")]
    meta = getattr(prices, "meta", {}) or {}
    import ast

    def parsed(name: str):
        try:
            return ast.literal_eval(meta[name]) if isinstance(meta.get(name), str) else meta.get(name)
        except (ValueError, SyntaxError):
            return meta.get(name)

    gate = next((c for c in checks if c["check"] == "quality_gate"), None)
    universe = parsed("universe") or {}
    return clean({"pool": pool, "session": session, "state": state,
                  "gate": gate, "quarantined_rows": rows,
                  "excluded": universe.get("excluded", {}) if isinstance(universe, dict) else universe,
                  "amount": parsed("amount"), "source": meta.get("source"),
                  "synthetic": str(meta.get("synthetic", "")).lower() == "true"})


def _snapshots(config) -> SnapshotStore:
    return SnapshotStore(Path(config.storage.data_dir) / "snapshots", keep=config.orchestration.keep_snapshots)


def snapshots_view(config) -> dict[str, Any]:
    snaps = _snapshots(config)
    out = []
    for day in snaps.sessions():
        m = snaps.manifest(day)
        out.append({"session": day, "config_hash": m.get("config_hash"),
                    "values": sum(len(v) for v in m.get("assets", {}).values()),
                    "pools": {p: (c or {}).get("status") for p, c in (m.get("pools") or {}).items()}})
    return {"root": str(snaps.root), "keep": snaps.keep, "snapshots": out}


def verify_snapshot(config, session: str) -> dict[str, Any]:
    """Every value of the snapshot hashed again against its manifest."""
    snaps = _snapshots(config)
    try:
        manifest = snaps.manifest(session)
    except StorageNotFoundError as exc:
        raise NotFound(str(exc)) from None
    values, bad = 0, []
    for asset, by_pool in manifest["assets"].items():
        for pool, expected in by_pool.items():
            values += 1
            try:
                got = value_hash(read_value(snaps.root / session / asset / pool))
            except Exception as exc:  # noqa: BLE001 - reported per value
                bad.append({"asset": asset, "pool": pool, "problem": f"unreadable: {type(exc).__name__}"})
                continue
            if got != expected:
                bad.append({"asset": asset, "pool": pool, "problem": f"hashes to {got[:12]}, manifest {expected[:12]}"})
    return {"session": session, "ok": not bad, "values": values, "mismatches": bad,
            "config_hash": manifest.get("config_hash")}
