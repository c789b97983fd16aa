"""Check that the store, the Dagster instance and the session snapshots agree on every asset partition,
and (``--fix``) make them agree without computing anything again.

    python -m jobs.verify [--config FILE] [--pools P ...] [--assets A ...] [--sessions FROM..TO]
                          [--deep] [--fix] [--json]

For each asset and partition in scope (what the store holds or Dagster recorded, within ``--pools``,
``--assets`` and ``--sessions``; with ``--sessions`` every partition of the range, so leftovers of
writes that were never committed are found too) it compares the store's catalog, the latest
materialisation Dagster recorded in ``$DAGSTER_HOME`` (default ``.dagster_home``) with the checksum the
IO manager put in its metadata, and the content hashes of the kept snapshots
(:mod:`rotation_platform.storage.reconcile`). One line per disagreement, then a summary line:

``unrecorded``  stored, no materialisation recorded (a run killed between the write and the event)
``lost``        recorded, not in the store
``mismatch``    unreadable/partial, or the checksum or content hash differs from the record or snapshot
``duplicated``  more rows/points stored than the value has (leftovers of an uncommitted write)

Stored values are read when a snapshot applies to them, or all of them with ``--deep``. Exit 0 when all
agree, 1 when something disagrees, 2 usage, 3 configuration, 4 a stored value, 5 a server down.

``--fix`` (run it while no run is in progress): an unrecorded value that checks out is recorded as a
materialisation (metadata ``checksum``, ``reconciled_by: jobs.verify``); a lost, mismatched or
untrusted value is written back from a verified snapshot copy and recorded; leftovers are removed by
rewriting the value; an untrusted value without a copy is removed from the store. Nothing is computed
again and no run is launched: what only a run can restore is listed with the exact
``python -m jobs.main`` command, and verify exits 1 until it has run. A second ``--fix`` finds nothing
to do.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from jobs.cli import EXIT_OK, EXIT_OTHER, parse_date, parser, run_main
from rotation_platform.errors import UsageError

RECONCILED_BY = "jobs.verify"


def build_parser():
    p = parser("python -m jobs.verify", __doc__.splitlines()[0])
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    p.add_argument("--pools", nargs="*", help="pools to check (default: all configured pools)")
    p.add_argument("--assets", nargs="*", help="assets to check (default: every stored asset)")
    p.add_argument("--sessions", metavar="FROM..TO", help="sessions to check (one date, or a range FROM..TO)")
    p.add_argument("--deep", action="store_true", help="read every stored value (integrity checks, row counts)")
    p.add_argument("--fix", action="store_true", help="make the store and Dagster agree (see above)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), run, argv)


def _session_range(text: str | None):
    if not text:
        return None
    first, _, last = text.partition("..")
    start = parse_date(first, "--sessions")
    end = parse_date(last, "--sessions") if last else start
    if end < start:
        raise UsageError(f"--sessions {text}: the range ends before it starts; give FROM..TO")
    return start, end


def run(args) -> int:
    if args.config:
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())
    window = _session_range(args.sessions)

    from jobs.main import ensure_dagster_home

    home = ensure_dagster_home()

    from rotation_platform.config import config_hash, default_config_path, load_config

    config_file = str(Path(default_config_path()).resolve())
    config = load_config(config_file)
    pools = list(args.pools) if args.pools else list(config.pool_names)
    unknown = [p for p in pools if p not in config.pool_names]
    if unknown:
        raise UsageError(f"--pools: unknown pools {unknown}; configured in {config_file}: {list(config.pool_names)}")

    import dagster as dg

    from definitions import build_defs

    defs = build_defs(config_file)
    dims_by_asset = _asset_dimensions(defs)
    names = list(args.assets) if args.assets else sorted(dims_by_asset)
    bad = [a for a in names if a not in dims_by_asset]
    if bad:
        raise UsageError(f"--assets: unknown assets {bad}; the definitions of {config_file} have "
                         f"{sorted(dims_by_asset)}")

    from resources.definitions import PROFILES, resolve_environment
    from rotation_platform import __version__
    from rotation_platform.storage import open_store
    from rotation_platform.storage.codec import FORMAT_VERSION
    from rotation_platform.storage.reconcile import SnapshotIndex

    store = open_store(config.storage, retry=PROFILES[resolve_environment()].retry_policy(),
                       cache_namespace=config_hash(config)[:16], code_version=f"{__version__}.{FORMAT_VERSION}")
    snapshots = SnapshotIndex(Path(config.storage.data_dir) / "snapshots", config_hash(config))
    scope = _Scope(pools, config.pool_names, window, defs)
    try:
        with dg.DagsterInstance.get() as instance:
            findings, tally, context = _compare(store, instance, names, dims_by_asset, scope, snapshots, args.deep)
            actions, remaining, after = [], findings, tally
            if args.fix and findings:
                actions = _fix(store, instance, findings, context, snapshots, config)
                touched = {(a.finding.asset, a.finding.key) for a in actions}
                remaining, after, _ = _compare(store, instance, sorted({a for a, _ in touched}), dims_by_asset,
                                               scope, snapshots, args.deep, only=touched)
    finally:
        store.close()
    # only a run restores a lost partition without a verified snapshot copy
    reruns = _rerun_commands(config_file, config, [f for f in remaining if f.kind == "lost" and not f.snapshot],
                             dims_by_asset)
    _print(args, config, store, home, findings, tally, actions, remaining, reruns, snapshots)
    return EXIT_OK if not remaining else EXIT_OTHER


# ------------------------------------------------------------------------------------------ scope
def _asset_dimensions(defs) -> dict[str, tuple[str, ...]]:
    """The partition dimensions of every materialisable asset: ``("pool", "session")``, ``("",)`` for
    a one-dimensional key, ``()`` unpartitioned."""
    import dagster as dg

    from rotation_platform.calendars import storage_key

    out = {}
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        pdef = graph.get(key).partitions_def
        if pdef is None:
            dims: tuple[str, ...] = ()
        elif isinstance(pdef, dg.MultiPartitionsDefinition):
            dims = tuple(sorted(d.name for d in pdef.partitions_defs))
        else:
            dims = ("",)
        # a calendar group's copy (xnys/prices) is stored under the plain name: one asset to verify
        out["/".join(storage_key(key.path))] = dims
    return out


class _Scope:
    def __init__(self, pools: Sequence[str], configured: Sequence[str], window, defs):
        self.pools = set(pools)
        self.configured = set(configured)
        self.window = window
        self.defs = defs
        self.outside: dict[str, int] = {}

    def keep(self, asset: str, key: str, dims: tuple[str, ...]) -> bool:
        import pandas as pd

        values = dict(zip(dims, key.split("|"))) if dims and dims != ("",) else {"session": key} if dims else {}
        pool = values.get("pool")
        if pool is not None and pool not in self.configured:
            self.outside[asset] = self.outside.get(asset, 0) + 1
            return False
        if pool is not None and pool not in self.pools:
            return False
        session = values.get("session")
        if self.window is not None and session is not None:
            try:
                day = pd.Timestamp(session)
            except ValueError:
                return False
            return self.window[0] <= day <= self.window[1]
        return True

    def all_keys(self, asset: str) -> list[str]:
        """Every partition key of the asset within the session window (only with ``--sessions``)."""
        if self.window is None:
            return []
        import dagster as dg

        from rotation_platform.calendars import storage_key

        graph = self.defs.resolve_asset_graph()
        out: list[str] = []
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.path):  # each calendar group's copy
            if storage_key(key.path) != (asset,):
                continue
            pdef = graph.get(key).partitions_def
            if pdef is not None:
                out += [str(k) for k in pdef.get_partition_keys() if self.keep(asset, str(k), _dims_of(pdef))]
        return list(dict.fromkeys(out))


def _dims_of(pdef) -> tuple[str, ...]:
    import dagster as dg

    if isinstance(pdef, dg.MultiPartitionsDefinition):
        return tuple(sorted(d.name for d in pdef.partitions_defs))
    return ("",)


# -------------------------------------------------------------------------------------- Dagster side
def _records(instance, asset: str, keys: Iterable[str] | None = None):
    """The latest materialisation of every recorded partition of ``asset`` (``keys``: only those)."""
    import dagster as dg

    from rotation_platform.storage.reconcile import Record

    out: dict[str, Record] = {}
    for asset_key in _dagster_keys(instance, asset):  # a market group's copy (xnys/prices) stores as prices
        out.update(_records_of(instance, asset_key, keys))
    return out


def _dagster_keys(instance, asset: str) -> list:
    """The Dagster keys whose values are stored as ``asset``: the plain key and each calendar group's
    prefixed copy (``rotation_platform.calendars.storage_key``)."""
    import dagster as dg

    from rotation_platform.calendars import storage_key

    found = [k for k in instance.get_asset_keys() if storage_key(k.path) == (asset,) and k != dg.AssetKey(asset)]
    return [dg.AssetKey(asset), *sorted(found, key=lambda k: k.path)]


def _records_of(instance, asset_key, keys: Iterable[str] | None = None):
    import dagster as dg

    from rotation_platform.storage.reconcile import Record

    wanted = set(instance.get_materialized_partitions(asset_key)) if keys is None else set(keys)
    wanted &= set(instance.get_materialized_partitions(asset_key))
    out: dict[str, Record] = {}
    cursor = None
    while len(out) < len(wanted):
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key), limit=1000,
                                                 cursor=cursor)
        for rec in result.records:
            mat = rec.asset_materialization
            key = None if mat is None or mat.partition is None else str(mat.partition)
            if key is None or key not in wanted or key in out:
                continue
            meta = mat.metadata or {}
            out[key] = Record(timestamp=rec.timestamp, checksum=_meta(meta, "checksum"),
                              backend=_meta(meta, "storage_backend"), rows=_meta(meta, "rows"),
                              run_id=rec.run_id or "", partitions_written=_meta(meta, "partitions_written"))
        if not result.has_more:
            break
        cursor = result.cursor
    return out


def _meta(meta, key: str):
    value = meta.get(key)
    return getattr(value, "value", value)


def _compare(store, instance, assets, dims_by_asset, scope, snapshots, deep, only=None):
    from rotation_platform.storage.reconcile import Tally, compare_asset, unwrap

    findings, tally, context = [], Tally(), {}
    inner = unwrap(store)
    for asset in assets:
        dims = dims_by_asset[asset]
        stored = inner.partitions((asset,))
        recorded = _records(instance, asset)
        keys = {k for k in set(stored) | set(recorded) | set(scope.all_keys(asset)) if scope.keep(asset, k, dims)}
        if only is not None:
            keys = {k for k in keys if (asset, k) in only} | {k for a, k in only if a == asset}
        if not keys:
            continue
        found, t = compare_asset(inner, asset, dims, keys, recorded, snapshots, stored_keys=stored, deep=deep)
        findings.extend(found)
        tally.add(t)
        context[asset] = (dims, recorded)
    return findings, tally, context


def _fix(store, instance, findings, context, snapshots, config=None):
    """Carry out the plan: the store's part, then a materialisation for each value now stored whose
    record is missing or different."""
    import dagster as dg

    from rotation_platform.storage.reconcile import apply_store_fix, plan_fix, unwrap

    actions = plan_fix(findings)
    for action in actions:
        f = action.finding
        dims, recorded = context[f.asset]
        checksum = apply_store_fix(store, action, dims, snapshots)
        if action.action in ("record", "restore", "compact+record") or (
                action.action == "compact" and f.asset in context and f.key in recorded):
            if checksum is None:
                continue
            previous = recorded.get(f.key)
            if action.action == "compact" and previous is not None and previous.checksum == checksum:
                continue
            metadata = {
                "checksum": dg.MetadataValue.text(checksum),
                "storage_backend": dg.MetadataValue.text(unwrap(store).backend),
                "reconciled_by": dg.MetadataValue.text(RECONCILED_BY),
                "reconciled": dg.MetadataValue.text(f"{f.kind}: {action.action}"),
            }
            if action.action == "restore":
                metadata["restored_from_snapshot"] = dg.MetadataValue.text(str(f.snapshot))
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=_group_key(config, f.asset, f.key), partition=f.key, metadata=metadata,
                description=f"reconciled by {RECONCILED_BY}: {action.note}"))
    return actions


def _group_key(config, asset: str, key: str):
    """The Dagster key of ``asset`` for partition ``key``: the pool's calendar group's (``xnys/prices`` for
    a pool outside the main calendar), the plain key otherwise."""
    import dagster as dg

    from assets.partitions import group_of

    pool = key.split("|")[0] if "|" in key else None
    if pool is None or config is None or pool not in config.pool_names:
        return dg.AssetKey(asset)
    return group_of(config, pool).key(asset)


# ------------------------------------------------------------------------------------------ output
def _rerun_commands(config_file: str, config, lost, dims_by_asset) -> list[str]:
    """The ``python -m jobs.main`` commands that compute the lost partitions again: one per pool over
    the sessions from its first to its last lost one (the session summary and snapshot are part of every
    run), one for all pools when only per-session values are lost."""
    import pandas as pd

    from rotation_platform.calendars import get_calendar

    by_pool: dict[str | None, set[pd.Timestamp]] = {}
    for f in lost:
        dims = dims_by_asset.get(f.asset, ())
        values = dict(zip(dims, f.key.split("|"))) if dims and dims != ("",) else {"session": f.key}
        by_pool.setdefault(values.get("pool"), set()).add(pd.Timestamp(values["session"]))
    sessions_everywhere = by_pool.pop(None, set())
    if sessions_everywhere and not by_pool:
        by_pool = {None: sessions_everywhere}
    elif sessions_everywhere:
        for days in by_pool.values():
            days |= sessions_everywhere
    commands = []
    for pool, days in sorted(by_pool.items(), key=lambda kv: kv[0] or ""):
        first, last = min(days), max(days)
        code = config.pool(pool).calendar if pool is not None and pool in config.pool_names else \
            (config.orchestration.calendar or config.calendars[0])
        n = len(get_calendar(code).sessions(first, last))  # the pool's own calendar's sessions
        cmd = f"python -m jobs.main --config {config_file}"
        if pool is not None:
            cmd += f" --pools {pool}"
        cmd += f" --session {last.date()}" + (f" --sessions {n}" if n > 1 else "")
        commands.append(cmd)
    return commands


def _summary(tally, findings) -> dict[str, int]:
    counts = {k: 0 for k in tally.by_kind}
    for f in findings:
        counts[f.kind] += 1
    return counts


def _print(args, config, store, home, findings, tally, actions, remaining, reruns, snapshots) -> None:
    counts = _summary(tally, findings)
    left = _summary(tally, remaining)
    if args.json:
        doc = {
            "config": config.name, "storage": config.storage.backend, "dagster_home": str(home),
            "checked": {"partitions": tally.partitions, "read": tally.read,
                        "against_snapshots": tally.snapshot_compared,
                        "against_recorded_checksums": tally.recorded_compared},
            "disagreements": counts, "findings": [f.as_dict() for f in findings],
            "rows": {"lost": sum(f.rows for f in findings if f.kind == "lost"),
                     "duplicated": sum(f.rows for f in findings if f.kind == "duplicated")},
            "fixed": [{"asset": a.finding.asset, "key": a.finding.key, "kind": a.finding.kind, "action": a.action,
                       "note": a.note} for a in actions] if args.fix else None,
            "remaining": left if args.fix else counts,
            "rerun": reruns,
            "snapshots_of_another_config": snapshots.other_config,
        }
        print(json.dumps(doc, indent=2, default=str))
        return
    for f in findings:
        print(f.line())
    for a in actions:
        print(f"fixed      {a.finding.asset} {a.finding.key} ({a.finding.kind}): {a.action} -- {a.note}")
    total = sum(counts.values())
    print(f"checked {tally.partitions} partitions on {config.storage.backend} against {home} "
          f"({tally.read} read, {tally.snapshot_compared} against snapshots, {tally.recorded_compared} against "
          f"recorded checksums): {total} disagreements -- " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if args.fix and findings:
        n_left = sum(left.values())
        print(f"after --fix: {n_left} disagreements" + (" -- " + ", ".join(f"{v} {k}" for k, v in left.items()
                                                                          if v) if n_left else ""))
    if findings and not args.fix:
        print(f"to make them agree: python -m jobs.verify{' --config ' + args.config if args.config else ''} --fix")
    if reruns:
        print("lost partitions without a verified snapshot copy; only a run computes them again:" if not args.fix
              else "to compute the lost partitions again, run:")
        for cmd in reruns:
            print(f"  {cmd}")


if __name__ == "__main__":
    sys.exit(main())
