"""List the kept session snapshots, verify one, or restore one into the configured storage.

    python -m jobs.snapshots [--config FILE] list
    python -m jobs.snapshots [--config FILE] verify 2024-12-31
    python -m jobs.snapshots [--config FILE] restore 2024-12-31

``restore`` checks every value against the snapshot's hashes first, writes them back to the store the
assets use (any backend) and records a materialisation per restored partition in the Dagster instance,
so the UI shows where the values came from. Errors are one line on stderr with an exit code by kind
(2 usage, 3 configuration, 4 data -- a snapshot missing or not matching its hashes --, 5 service, 1 other;
``--debug`` for the trace).
"""

from __future__ import annotations

import sys
from pathlib import Path


def build_parser():
    from jobs.cli import parser

    p = parser("python -m jobs.snapshots", __doc__.splitlines()[0])
    p.add_argument("command", choices=("list", "verify", "restore"))
    p.add_argument("session", nargs="?", help="YYYY-MM-DD (verify, restore)")
    p.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Every error is one line on stderr and an exit code by kind (see ``jobs/cli.py``)."""
    from jobs.cli import run_main

    return run_main(build_parser(), run, argv)


def run(args) -> int:
    from jobs.cli import parse_date
    from rotation_platform.errors import UsageError

    if args.command != "list":
        if not args.session:
            raise UsageError(f"{args.command} needs a session (YYYY-MM-DD); see python -m jobs.snapshots --help")
        args.session = str(parse_date(args.session, "session").date())
    if args.config:
        import os

        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())

    from resources.definitions import resolve_environment, store_resource
    from rotation_platform.config import config_hash, load_config
    from rotation_platform.storage.snapshots import SnapshotStore

    config = load_config()
    snapshots = SnapshotStore(Path(config.storage.data_dir) / "snapshots", keep=config.orchestration.keep_snapshots)
    if args.command == "list":
        for session in snapshots.sessions():
            manifest = snapshots.manifest(session)
            n = sum(len(v) for v in manifest["assets"].values())
            same = "current config" if manifest["config_hash"] == config_hash(config) else "other config"
            print(f"{session}  {n} values  config {manifest['config_hash'][:12]} ({same}){_currency_text(manifest)}")
        return 0
    if args.command == "verify":
        values = snapshots.load(args.session)
        print(f"snapshot {args.session}: {sum(len(v) for v in values.values())} values match their hashes"
              f"{_currency_text(snapshots.manifest(args.session), detail=True)}")
        return 0
    store = store_resource(config.storage, resolve_environment()).open_store()
    try:
        from rotation_platform.production.summary import pool_sessions

        restored = snapshots.restore(args.session, store, {p: s for p, s in pool_sessions(config, args.session).items()
                                                           if s is not None})
    finally:
        store.close()
    _record(restored, args.session)
    print(f"restored {restored.values} values of {args.session}: {', '.join(restored.assets)}")
    return 0


def _currency_text(manifest: dict, detail: bool = False) -> str:
    """The pools that were not current when the snapshot was taken, and its superseded values (kept as the
    previous values, not the session's current ones)."""
    from rotation_platform.storage.snapshots import SnapshotStore

    pools = {p: c for p, c in (manifest.get("pools") or {}).items() if c.get("status") != "ok"}
    superseded = SnapshotStore.superseded_of(manifest)
    if "values" not in manifest:
        return "  (taken before values recorded their data/config hash: currency unknown)"
    if not pools and not superseded:
        return "  all current"
    n = sum(len(a) for a in superseded.values())
    text = f"  {n} superseded (previous, not current)" + "".join(
        f"; {p}: {c['status']}" for p, c in sorted(pools.items()))
    if detail:
        for pool in sorted(set(pools) | set(superseded)):
            status = pools.get(pool, {}).get("status", "ok")
            reason = pools.get(pool, {}).get("reason", "")
            text += f"\n  {pool}: {status}" + (f" - {reason}" if reason else "")
            for asset, why in sorted(superseded.get(pool, {}).items()):
                text += f"\n    {asset}: superseded ({why})"
    return text


def _record(restored, session: str) -> None:
    import dagster as dg

    from jobs.main import ensure_dagster_home

    ensure_dagster_home()
    from rotation_platform.config import load_config

    from assets.partitions import group_of
    from rotation_platform.production.summary import pool_sessions

    config = load_config()
    taken = pool_sessions(config, session)  # a pool on another calendar: its latest session by then
    with dg.DagsterInstance.get() as instance:
        for asset in restored.assets:
            keys = [(dg.AssetKey(asset), session)] if asset == "pool_metrics_summary" else \
                [(group_of(config, p).key(asset), f"{p}|{taken[p].date()}") for p in config.pool_names
                 if taken[p] is not None]
            for asset_key, key in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    asset_key=asset_key, partition=key, description=f"restored from the snapshot of {session}",
                    metadata={"restored_from_snapshot": session}))


if __name__ == "__main__":
    sys.exit(main())
