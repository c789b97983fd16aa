"""Shared set-up: the demo configuration on temporary storage and helpers to run the jobs."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
SESSION = "2024-12-31"  # the demo data end used by these tests


def fresh_defs():
    """Import the definitions again, so environment overrides set by the test apply."""
    for name in list(sys.modules):
        if name == "definitions" or name.split(".")[0] in {"assets", "resources", "jobs"}:
            del sys.modules[name]
    return importlib.import_module("definitions").defs


@pytest.fixture()
def demo_env(tmp_path, monkeypatch):
    """Demo config with storage in a temporary folder; the synthetic range is fixed."""
    monkeypatch.setenv("ROTATION_CONFIG", str(CONFIG_DIR / "demo.yaml"))
    monkeypatch.setenv("ROTATION_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROTATION_DATA__SYNTHETIC__END", SESSION)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    shutil.copy(ROOT / "configs" / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    return tmp_path


def run_daily(defs, instance, pool: str, sessions: list[str], **kwargs):
    """The daily job for ``pool`` over ``sessions``: one partition, or one single run over the range."""
    from assets.partitions import pool_session_key

    job = defs.resolve_job_def("daily")
    if len(sessions) == 1:
        return job.execute_in_process(partition_key=pool_session_key(pool, sessions[0]), instance=instance,
                                      run_config=QUIET, **kwargs)
    return job.execute_in_process(instance=instance, run_config=QUIET, tags={
        "dagster/asset_partition_range_start": str(pool_session_key(pool, sessions[0])),
        "dagster/asset_partition_range_end": str(pool_session_key(pool, sessions[-1]))}, **kwargs)


def run_summary(defs, instance, sessions: list[str], **kwargs):
    job = defs.resolve_job_def("session_summary")
    if len(sessions) == 1:
        return job.execute_in_process(partition_key=sessions[0], instance=instance, run_config=QUIET, **kwargs)
    return job.execute_in_process(instance=instance, run_config=QUIET, tags={
        "dagster/asset_partition_range_start": sessions[0], "dagster/asset_partition_range_end": sessions[-1]},
        **kwargs)


def sessions_between(start: str, end: str) -> list[str]:
    from rotation_platform.calendars import get_calendar

    return [str(d.date()) for d in get_calendar("XSHG").sessions(pd.Timestamp(start), pd.Timestamp(end))]


def materialised_assets(result) -> set[str]:
    """Assets the run materialised."""
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def check_outcomes(result) -> dict[str, bool]:
    """``asset:check`` -> passed, for every check the run evaluated."""
    return {f"{c.asset_key.to_user_string()}:{c.check_name}": bool(c.passed)
            for c in result.get_asset_check_evaluations()}


# ---------------------------------------------------------------- a small config with other pool names
#: pools named unlike configs/demo.yaml (the demo's synthetic D* funds), so nothing can lean on its names
SMALL_POOLS = {"EQUITY": ("A_SHARE", 0.7, [f"DA{i:02d}" for i in range(1, 9)]),
               "OVERSEAS": ("QDII", 0.3, [f"DQ{i:02d}" for i in range(1, 7)]),
               "OTHERS": ("OTHER", 0.0, [f"DO{i:02d}" for i in range(1, 6)])}
SMALL_END = "2025-09-30"  # the synthetic data end of the small config
SMALL_SESSIONS = ["2025-09-22", "2025-09-23", "2025-09-24", "2025-09-25", "2025-09-26"]


def write_small_config(folder: Path, *, data_dir: Path, synthetic_end: str | None = SMALL_END,
                       first_session: str = "2025-06-03", orchestration: dict | None = None) -> Path:
    """A config extending configs/base.yaml: the synthetic source, pools EQUITY / OVERSEAS / OTHERS, a
    short walk-forward (a year of training, a small grid) so a pool-session runs in a few seconds."""
    import yaml

    pools = [{"name": name, "kind": kind, "summary_weight": weight, "symbols": symbols,
              "capital": {"target_capital": 3_000_000, "max_single_weight": 0.3, "max_adv_pct": 0.05}}
             for name, (kind, weight, symbols) in SMALL_POOLS.items()]
    synthetic = {"seed": 7, "start": "2022-01-04"}
    if synthetic_end:
        synthetic["end"] = synthetic_end
    doc = {
        "extends": str(CONFIG_DIR / "base.yaml"),
        "name": "small",
        "data": {"source": "synthetic", "synthetic": synthetic},
        "storage": {"data_dir": str(data_dir)},
        "orchestration": {"first_session": first_session, **(orchestration or {})},
        "wfo": {"train_sessions": 250, "test_sessions": 40, "embargo_sessions": 5,
                "grid": {"top_n": [2, 3], "rebalance_sessions": [5, 10], "ic_lookback": [60], "weighting": ["equal"],
                         "buffer": [0]}},
        "pools": pools,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def small_env(tmp_path: Path, **config) -> dict[str, str]:
    """A process environment for the small config: its own config file, data dir and DAGSTER_HOME, no
    ROTATION_* override from the caller's environment."""
    import os

    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "configs" / "dagster.yaml", home / "dagster.yaml")
    path = write_small_config(tmp_path / "config", data_dir=tmp_path / "data", **config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_") or k == "ROTATION_ENV"}
    env.update({"ROTATION_CONFIG": str(path), "DAGSTER_HOME": str(home),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    return env


def stored_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path, but the store's operation counts (``.stats/``: what each
    process read and wrote, not what was computed)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".stats" not in p.relative_to(root).parts}


def pool_files(files: dict[str, bytes], pool: str) -> dict[str, bytes]:
    """The files of one pool's partitions (``<asset>/<pool>/<session>.*``)."""
    return {name: data for name, data in files.items() if name.split("/")[1:2] == [pool]}


def without_data_hash(pool: str, session: str):
    """A ``PoolRun.run_metadata`` that leaves out the data hash of one pool's session, so the
    metadata-completeness fuse fails for that partition only (patch it in with monkeypatch)."""
    import rotation_platform.production.pool_run as pool_run_module

    original = pool_run_module.PoolRun.run_metadata

    def run_metadata(self, day, generated_at=None):
        meta = original(self, day, generated_at)
        if self.pool.name == pool and meta["session"] == session:
            meta["data_hash"] = ""
        return meta

    return run_metadata

