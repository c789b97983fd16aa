"""A single-run backfill over a session range writes exactly what the daily runs of those sessions write."""

from __future__ import annotations

import dagster as dg

from tests.orchestration.conftest import fresh_defs, materialised_assets, run_daily, run_summary, sessions_between

POOL = "QDII"
# crosses a month end, so the range holds a re-optimisation (2024-12-02) and sessions reusing two results
SESSIONS = sessions_between("2024-11-26", "2024-12-04")


def _files(root):
    """Every stored file's bytes (values and the pools' run records) but the run locks (``.locks/``, who
    ran, not what was computed) and the store's operation counts (``.stats/``)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not {".locks", ".stats"} & set(p.relative_to(root).parts)}


def test_backfill_range_equals_daily_runs_byte_for_byte(demo_env) -> None:
    assert len(SESSIONS) == 7
    # both write to the same folder (the storage settings are part of the config hash), moved aside after
    data, backfill_dir, daily_dir = demo_env / "data", demo_env / "backfill", demo_env / "daily"
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = run_daily(defs, instance, POOL, SESSIONS)
        assert result.success
        # one run, every partition materialised by it
        keys = {e.event_specific_data.materialization.partition for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "backtest"}
        assert keys == {f"{POOL}|{s}" for s in SESSIONS}
        assert run_summary(defs, instance, SESSIONS).success
    data.rename(backfill_dir)

    with dg.DagsterInstance.get() as instance:
        for session in SESSIONS:
            result = run_daily(defs, instance, POOL, [session])
            assert result.success and "target_portfolio" in materialised_assets(result)
            assert run_summary(defs, instance, [session]).success
    data.rename(daily_dir)

    backfill, daily = _files(backfill_dir), _files(daily_dir)
    assert sorted(backfill) == sorted(daily)
    expected = {f"{asset}/{POOL}/{s}" for asset in ("prices", "factor_panel", "backtest") for s in SESSIONS}
    stems = {name.split(".")[0] for name in backfill}
    assert expected <= stems
    different = [name for name in backfill if backfill[name] != daily[name]]
    assert different == []
    wfo = [name for name in backfill if name.startswith(f"wfo_result/{POOL}/")]
    assert len(wfo) == len(SESSIONS)
    assert b'"reoptimised_at": "2024-11-01"' in backfill[f"wfo_result/{POOL}/2024-11-29.json"]
    assert b'"reoptimised_at": "2024-12-02"' in backfill[f"wfo_result/{POOL}/2024-12-04.json"]


def test_one_run_over_several_pools_equals_their_daily_runs(demo_env) -> None:
    """A backfill launched for several pools at once (Dagster may give one run the pool x session product)."""
    from assets.partitions import pool_session_key

    sessions = sessions_between("2024-12-27", "2024-12-31")
    data, together_dir, apart_dir = demo_env / "data", demo_env / "together", demo_env / "apart"
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("daily").execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": str(pool_session_key("A_SHARE", sessions[0])),
            "dagster/asset_partition_range_end": str(pool_session_key("QDII", sessions[-1]))})
        assert result.success
        keys = {e.event_specific_data.materialization.partition for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "target_portfolio"}
        assert keys == {f"{p}|{s}" for p in ("A_SHARE", "QDII") for s in sessions}
        checks = {c.check_name for c in result.get_asset_check_evaluations()}
        assert {"quality_gate", "t_plus_one", "effective_factors", "metadata_completeness"} <= checks
    data.rename(together_dir)
    with dg.DagsterInstance.get() as instance:
        for pool in ("A_SHARE", "QDII"):
            for session in sessions:
                assert run_daily(defs, instance, pool, [session]).success
    data.rename(apart_dir)
    together, apart = _files(together_dir), _files(apart_dir)
    assert sorted(together) == sorted(apart)
    values = [name for name in together if not name.startswith(("_records/", ".digests/"))]
    records = [name for name in together if name.startswith("_records/")]
    assert len(values) == 2 * 3 * 8 and len(records) == 2 * 3  # one run record per pool-session
    assert {n for n in together if n.startswith(".digests/")}  # each value's digest, the same both ways
    assert [name for name in together if together[name] != apart[name]] == []
