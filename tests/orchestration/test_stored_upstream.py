"""The pool chain is one step that can be subset: a rerun of ``target_portfolio`` for stored sessions reads the
stored ``wfo_result``, ``backtest`` and ``capacity_report`` instead of simulating the walk-forward grid and
the backtest again, and stores the value the full chain stored, byte for byte; a stale upstream is
computed, never read."""

from __future__ import annotations

import dagster as dg
import pytest

import rotation_platform.production.pool_run as pool_run_module
from tests.orchestration.conftest import QUIET, SESSION, fresh_defs, materialised_assets, run_daily, stored_files

POOL = "QDII"
SESSIONS = ["2024-12-27", "2024-12-30", SESSION]


def _targets(data) -> dict[str, bytes]:
    """The stored target values (the store's own bookkeeping files beside them left out)."""
    return {k: v for k, v in stored_files(data).items()
            if k.startswith("target_portfolio/") and not k.rsplit("/", 1)[-1].startswith(".")}


def _count(monkeypatch, cls, name: str) -> dict[str, int]:
    """Count how often ``cls.name`` (a cached property) is computed."""
    calls = {"n": 0}
    original = cls.__dict__[name]
    func = original.func

    def counted(self):
        calls["n"] += 1
        return func(self)

    prop = type(original)(counted)
    prop.__set_name__(cls, name)
    monkeypatch.setattr(cls, name, prop)
    return calls


def _target_only(defs, instance, sessions, **kwargs):
    from assets.partitions import pool_session_key

    job = defs.resolve_implicit_global_asset_job_def() if hasattr(defs, "resolve_implicit_global_asset_job_def") \
        else defs.get_implicit_global_asset_job_def()
    keys = [pool_session_key(POOL, s) for s in sessions]
    tags = {} if len(keys) == 1 else {"dagster/asset_partition_range_start": str(keys[0]),
                                      "dagster/asset_partition_range_end": str(keys[-1])}
    return job.execute_in_process(instance=instance, run_config=QUIET, asset_selection=[dg.AssetKey("target_portfolio")],
                                  partition_key=keys[0] if len(keys) == 1 else None, tags=tags, **kwargs)


@pytest.mark.parametrize("sessions", [[SESSION], SESSIONS], ids=["one_session", "range"])
def test_target_rerun_reads_the_stored_upstream(demo_env, monkeypatch, sessions) -> None:
    defs = fresh_defs()
    with dg.instance_for_test(temp_dir=str(demo_env / "home")) as instance:
        assert run_daily(defs, instance, POOL, sessions).success
        data = demo_env / "data"
        full = _targets(data)
        assert len(full) == len(sessions)
        for path in data.joinpath("target_portfolio").rglob("*.parquet"):
            path.unlink()  # the rerun must write them again

        grid = _count(monkeypatch, pool_run_module.PoolRun, "grid_equity")
        backtest = _count(monkeypatch, pool_run_module.PoolRun, "backtest")
        result = _target_only(defs, instance, sessions)
        assert result.success
        assert materialised_assets(result) == {"target_portfolio"}
        assert grid["n"] == 0 and backtest["n"] == 0  # neither the grid nor the backtest was simulated
        again = _targets(data)
        assert again == full  # byte for byte what the full chain stored
        last = [m for m in result.get_asset_materialization_events()][-1].materialization
        assert last.metadata["upstream"].value == "stored wfo_result, backtest, capacity_report"


def test_a_stale_upstream_is_computed_not_read(demo_env, monkeypatch) -> None:
    defs = fresh_defs()
    with dg.instance_for_test(temp_dir=str(demo_env / "home")) as instance:
        assert run_daily(defs, instance, POOL, [SESSION]).success
        data = demo_env / "data"
        full = _targets(data)
        # the stored backtest of the session disappears: the rerun computes the chain and says why
        for path in data.joinpath("backtest").rglob(f"{SESSION}*"):
            path.unlink()
        grid = _count(monkeypatch, pool_run_module.PoolRun, "grid_equity")
        result = _target_only(defs, instance, [SESSION])
        assert result.success and grid["n"] == 1
        note = [m for m in result.get_asset_materialization_events()][-1].materialization.metadata["upstream"].value
        assert note == f"computed: backtest of {POOL} {SESSION} is not stored", note
        again = _targets(data)
        assert again == full


def test_a_full_run_is_one_step(demo_env) -> None:
    defs = fresh_defs()
    with dg.instance_for_test(temp_dir=str(demo_env / "home")) as instance:
        result = run_daily(defs, instance, POOL, [SESSION])
        assert result.success
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
        assert steps == {"pool_chain"}
        assert materialised_assets(result) == {"prices", "price_quarantine", "factor_panel", "factor_screen",
                                               "wfo_result", "backtest", "capacity_report", "target_portfolio"}
        last = [m for m in result.get_asset_materialization_events()
                if m.asset_key.path[-1] == "target_portfolio"][-1].materialization
        assert last.metadata["upstream"].value == "computed in this run"
