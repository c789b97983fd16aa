"""List the kept session snapshots, verify one, or restore one into the configured storage.

    python -m jobs.snapshots [--config FILE] list
    python -m jobs.snapshots [--config FILE] verify 2024-12-31
    python -m jobs.snapshots [--config FILE] restore 2024-12-31

``restore`` checks every value against the snapshot's hashes first, writes them back to the store the
assets use (any backend) and records a materialisation per restored partition in the Dagster instance,
so the UI shows where the values came from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.snapshots", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("list", "verify", "restore"))
    parser.add_argument("session", nargs="?", help="YYYY-MM-DD (verify, restore)")
    parser.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    args = parser.parse_args(argv)
    if args.config:
        import os

        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())

    from resources.definitions import resolve_environment, store_resource
    from rotation_platform.config import config_hash, load_config
    from rotation_platform.storage.errors import StorageError
    from rotation_platform.storage.snapshots import SnapshotStore

    config = load_config()
    snapshots = SnapshotStore(Path(config.storage.data_dir) / "snapshots", keep=config.orchestration.keep_snapshots)
    if args.command == "list":
        for session in snapshots.sessions():
            manifest = snapshots.manifest(session)
            n = sum(len(v) for v in manifest["assets"].values())
            same = "current config" if manifest["config_hash"] == config_hash(config) else "other config"
            print(f"{session}  {n} values  config {manifest['config_hash'][:12]} ({same})")
        return 0
    if not args.session:
        parser.error(f"{args.command} needs a session")
    try:
        if args.command == "verify":
            values = snapshots.load(args.session)
            print(f"snapshot {args.session}: {sum(len(v) for v in values.values())} values match their hashes")
            return 0
        store = store_resource(config.storage, resolve_environment()).open_store()
        try:
            restored = snapshots.restore(args.session, store)
        finally:
            store.close()
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _record(restored, args.session)
    print(f"restored {restored.values} values of {args.session}: {', '.join(restored.assets)}")
    return 0


def _record(restored, session: str) -> None:
    import dagster as dg

    from jobs.main import ensure_dagster_home

    ensure_dagster_home()
    from rotation_platform.config import load_config

    pools = load_config().pool_names
    with dg.DagsterInstance.get() as instance:
        for asset in restored.assets:
            keys = [session] if asset == "pool_metrics_summary" else [f"{p}|{session}" for p in pools]
            for key in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    asset_key=asset, partition=key, description=f"restored from the snapshot of {session}",
                    metadata={"restored_from_snapshot": session}))


if __name__ == "__main__":
    sys.exit(main())
