"""Run the daily job for every pool on the configured storage and print what it produced.

    python -m jobs.main [--config configs/demo.yaml] [--pools A_SHARE QDII]

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (default: ``.dagster_home`` in the
repository), so the UI started with ``scripts/ui.sh`` shows them and the stored assets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the console summary below reports failures itself; Dagster's own log stays in the instance (UI)
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ensure_dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    yaml_file = home / "dagster.yaml"
    if not yaml_file.exists():
        yaml_file.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.main", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $ROTATION_CONFIG or configs/demo.yaml)")
    parser.add_argument("--pools", nargs="*", help="pools to run (default: all configured pools)")
    args = parser.parse_args(argv)
    if args.config:
        os.environ["ROTATION_CONFIG"] = str(Path(args.config).resolve())
    home = ensure_dagster_home()

    import dagster as dg

    from rotation_platform.config import config_hash, load_config
    from rotation_platform.reports.console import render_run_summary

    config = load_config()
    from definitions import defs

    job = defs.resolve_job_def("daily")
    pools = args.pools or list(config.pool_names)
    unknown = [p for p in pools if p not in config.pool_names]
    if unknown:
        parser.error(f"unknown pools {unknown}; configured: {list(config.pool_names)}")

    print(f"rotation platform · config {config.name} ({config_hash(config)[:12]}) · storage {config.storage.backend} "
          f"at {config.storage.data_dir}")
    results = {}
    failed = []
    with dg.DagsterInstance.get() as instance:
        for i, pool in enumerate(pools, 1):
            tty = sys.stdout.isatty()
            if tty:
                print(f"[{i}/{len(pools)}] {pool}: running ...", end="", flush=True)
            t0 = time.perf_counter()
            result = job.execute_in_process(partition_key=pool, instance=instance, raise_on_error=False,
                                            run_config=QUIET_LOGS)
            dt = time.perf_counter() - t0
            status = "ok" if result.success else "FAILED"
            print(f"{chr(13) if tty else ''}[{i}/{len(pools)}] {pool}: {status} in {dt:.1f}s (run {result.run_id[:8]})")
            if not result.success:
                failed.append(pool)
                _print_failure(result)
                continue
            results[pool] = {
                "prices": result.output_for_node("prices", "prices"),
                "price_quarantine": result.output_for_node("prices", "price_quarantine"),
            }
    print()
    print(render_run_summary(config, results))
    print(f"\nDagster instance: {home}  (open the UI on it: scripts/ui.sh)")
    return 1 if failed else 0


def _print_failure(result) -> None:
    """Why a run failed: failed checks with their findings, else the step errors."""
    failed_checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
    for check in failed_checks:
        print(f"    check {check.asset_key.to_user_string()}:{check.check_name} failed ({check.severity.value})")
        meta = check.metadata
        if "counts" in meta:
            counts = meta["counts"].value
            print("      findings: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        if "findings" in meta:
            table = str(meta["findings"].value).splitlines()
            for line in table[:12]:
                print("      " + line)
            if len(table) > 12:
                print(f"      ... {len(table) - 12} more lines in the UI")
    if not failed_checks:
        for event in result.all_events:
            if event.is_step_failure:
                print(f"    {event.step_key}: {event.event_specific_data.error.message.strip()}")


if __name__ == "__main__":
    sys.exit(main())
