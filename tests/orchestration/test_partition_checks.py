"""What the UI reads per pool × session partition: each partition's own check results, the run's latest
session recorded last, numbers keyed by pool, the asset's metadata above the storage bookkeeping.

One run over two pools × three sessions of the small config, with one crafted fault in one partition.
"""

from __future__ import annotations

import os

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.base import PartitionKeyFilter

import rotation_platform.production.pool_run as pool_run_module
from rotation_platform.factors import FactorPanel, compute_panel
from tests.orchestration.conftest import (
    QUIET,
    SMALL_SESSIONS,
    fresh_defs,
    materialised_assets,
    small_env,
    without_data_hash,
)

POOLS = ("EQUITY", "OVERSEAS")
SESSIONS = SMALL_SESSIONS[1:4]  # 2025-09-23 .. 2025-09-25
BAD_POOL, BAD_SESSION = "OVERSEAS", SESSIONS[1]
KEYS = [f"{p}|{s}" for s in SESSIONS for p in POOLS]  # session order, pools in turn
POOL_ASSETS = ("prices", "price_quarantine", "factor_panel", "factor_screen", "wfo_result", "backtest",
               "capacity_report", "target_portfolio")
#: what the IO managers add (resources.io_managers)
STORAGE_KEYS = {"storage_backend", "storage_location", "rows", "partitions_written", "write_seconds",
                "storage_health", "checksum", "path", "cache"}
ERROR_CHECKS = {"quality_gate", "index_normalisation", "t_plus_one", "coverage", "zero_variance", "effective_factors",
                "monthly_returns", "target_vol_scaling", "metadata_completeness"}


def _environment(mp: pytest.MonkeyPatch, tmp) -> None:
    env = small_env(tmp)
    for key in [k for k in os.environ if k.startswith("ROTATION_") and k != "ROTATION_ENV"]:
        mp.delenv(key)
    for key in ("ROTATION_CONFIG", "DAGSTER_HOME"):
        mp.setenv(key, env[key])


def _two_pool_run(defs, instance, **kwargs):
    return defs.resolve_job_def("daily").execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": f"{POOLS[0]}|{SESSIONS[0]}",
              "dagster/asset_partition_range_end": f"{POOLS[-1]}|{SESSIONS[-1]}"}, **kwargs)


@pytest.fixture(scope="module")
def two_pools(tmp_path_factory):
    """The run, its instance and every materialisation record of the pool assets."""
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, tmp_path_factory.mktemp("partition_checks"))
        mp.setattr(pool_run_module.PoolRun, "run_metadata", without_data_hash(BAD_POOL, BAD_SESSION))
        defs = fresh_defs()
        with dg.DagsterInstance.get() as instance:
            result = _two_pool_run(defs, instance)
            records = {asset: instance.fetch_materializations(dg.AssetKey(asset), limit=100, ascending=True).records
                       for asset in POOL_ASSETS}
            yield result, instance, records


def test_every_partition_has_its_own_check_results(two_pools) -> None:
    result, instance, _ = two_pools
    assert not result.success  # metadata_completeness is a blocking ERROR check
    evaluations = result.get_asset_check_evaluations()
    by_key = {}
    for e in evaluations:
        by_key.setdefault((e.asset_key.to_user_string(), e.check_name), []).append(e)
    assert len(by_key) == 16  # the eight fuses, the gate, five thresholds, beats_equal_weight, capacity
    for (asset, check), evs in by_key.items():
        # one result per partition of the run, recorded in session order (pools in turn)
        assert [str(e.partition) for e in evs] == KEYS, (asset, check)
    failed = {(a, c, str(e.partition)) for (a, c), evs in by_key.items() for e in evs
              if not e.passed and c in ERROR_CHECKS}
    assert failed == {("target_portfolio", "metadata_completeness", f"{BAD_POOL}|{BAD_SESSION}")}
    bad = next(e for e in by_key[("target_portfolio", "metadata_completeness")] if not e.passed)
    assert bad.description.startswith(f"METADATA INCOMPLETE at {BAD_SESSION}: data_hash missing")
    assert bad.severity == dg.AssetCheckSeverity.ERROR and bad.blocking
    good = next(e for e in by_key[("target_portfolio", "metadata_completeness")]
                if str(e.partition) == f"EQUITY|{BAD_SESSION}")
    assert good.passed and BAD_SESSION in good.description
    # each result carries its partition's own figures
    for e in by_key[("factor_panel", "coverage")]:
        assert e.metadata["session"].value == str(e.partition).split("|")[1]
        assert e.metadata["pool"].value == str(e.partition).split("|")[0]
        assert 0 < e.metadata["coverage"].value <= 1
    vol = {str(e.partition): e.metadata["ex_ante_volatility"].value for e in by_key[("target_portfolio",
                                                                                     "target_vol_scaling")]}
    assert len(set(vol.values())) == len(KEYS), vol

    # the instance keeps each partition's result and history
    check = dg.AssetCheckKey(dg.AssetKey("target_portfolio"), "metadata_completeness")
    storage = instance.event_log_storage
    for key in KEYS:
        latest = storage.get_latest_asset_check_execution_by_key([check], partition_filter=PartitionKeyFilter(key=key))
        record = latest[check]
        assert record.partition == key and record.run_id == result.run_id
        want = AssetCheckExecutionRecordStatus.FAILED if key == f"{BAD_POOL}|{BAD_SESSION}" else \
            AssetCheckExecutionRecordStatus.SUCCEEDED
        assert record.status == want, key
        history = storage.get_asset_check_execution_history(check, limit=10,
                                                            partition_filter=PartitionKeyFilter(key=key))
        assert [h.partition for h in history] == [key]
    # each result points at the materialisation of its own partition
    mats = {r.partition_key: r.storage_id for r in two_pools[2]["target_portfolio"]}
    for e in by_key[("target_portfolio", "metadata_completeness")]:
        assert e.target_materialization_data.storage_id == mats[str(e.partition)]


def test_blocking_check_of_one_session_stops_the_pools_later_steps(tmp_path, monkeypatch) -> None:
    """A hole in OVERSEAS's factors on one session: that partition's coverage fails, every other
    partition's passes, and nothing after factor_panel runs."""

    def holes(panel, config=None, **kwargs):
        fp = compute_panel(panel, config, **kwargs)
        data = np.array(fp.data, copy=True)
        if "DQ01" in list(panel.symbols) and pd.Timestamp(BAD_SESSION) in fp.sessions:
            data[: data.shape[0] // 2, fp.sessions.get_loc(pd.Timestamp(BAD_SESSION)), :] = np.nan
        return FactorPanel(data, fp.names, fp.sessions, fp.symbols, fp.available, fp.meta)

    _environment(monkeypatch, tmp_path)
    monkeypatch.setattr(pool_run_module, "compute_panel", holes)
    defs = fresh_defs()
    with dg.DagsterInstance.get() as instance:
        result = _two_pool_run(defs, instance)
    assert not result.success
    coverage = {str(e.partition): e for e in result.get_asset_check_evaluations() if e.check_name == "coverage"}
    assert list(coverage) == KEYS
    assert {k for k, e in coverage.items() if not e.passed} == {f"{BAD_POOL}|{BAD_SESSION}"}
    assert coverage[f"{BAD_POOL}|{BAD_SESSION}"].description.startswith(f"COVERAGE FAILED at {BAD_SESSION}")
    # the chain stops after the factor panel: nothing later is computed, for any pool of the run
    assert {k.split("/")[-1] for k in materialised_assets(result)} == {"prices", "price_quarantine", "factor_panel"}


def test_latest_session_is_recorded_last(two_pools) -> None:
    _, instance, records = two_pools
    for asset in POOL_ASSETS:
        assert [r.partition_key for r in records[asset]] == KEYS, asset
        entry = instance.get_asset_records([dg.AssetKey(asset)])[0].asset_entry
        assert entry.last_materialization.dagster_event.partition == KEYS[-1], asset
        for pool in POOLS:  # each pool's latest materialisation is its latest session
            latest = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[k for k in KEYS if
                                                                                       k.startswith(pool)]),
                limit=1).records[0]
            assert latest.partition_key == f"{pool}|{SESSIONS[-1]}", (asset, pool)


def test_numbers_carry_the_pool_and_come_before_the_storage_metadata(two_pools) -> None:
    _, _, records = two_pools
    for asset in POOL_ASSETS:
        for record in records[asset]:
            pool = record.partition_key.split("|")[0]
            meta = record.asset_materialization.metadata
            keys = list(meta)
            own = [k for k in keys if k not in STORAGE_KEYS]
            assert own and keys[: len(own)] == own, (asset, keys)  # the asset's entries first
            assert {"storage_backend", "rows", "storage_health"} <= set(keys[len(own):]), (asset, keys)
            for key in own:  # every number is the pool's: the UI plots one series per key
                if isinstance(meta[key], dg.IntMetadataValue | dg.FloatMetadataValue):
                    assert key.endswith(f" · {pool}"), (asset, key)
    backtest = {r.partition_key: r.asset_materialization.metadata for r in records["backtest"]}
    assert isinstance(backtest[f"EQUITY|{SESSIONS[0]}"]["sharpe · EQUITY"].value, float)
    assert "sharpe" not in backtest[f"EQUITY|{SESSIONS[0]}"]
    assert "sharpe · OVERSEAS" in backtest[f"OVERSEAS|{SESSIONS[0]}"]


def test_every_partition_has_its_own_tables_and_the_latest_the_pictures(two_pools) -> None:
    _, _, records = two_pools
    meta = {asset: {r.partition_key: r.asset_materialization.metadata for r in records[asset]} for asset in POOL_ASSETS}
    for key in KEYS:
        pool, session = key.split("|")
        latest = session == SESSIONS[-1]
        assert list(meta["factor_screen"][key])[0] == "top_factors"
        assert meta["factor_screen"][key]["top_factors"].value.startswith("| factor | sign |")
        assert ("ic_decay" in meta["factor_screen"][key]) == latest
        choice = meta["wfo_result"][key]["choice"].value
        assert choice.startswith("**live parameter set**") and "| oos_start |" in choice
        assert meta["backtest"][key]["metrics_vs_thresholds"].value.startswith("| metric | value | threshold |")
        assert ("equity_curve" in meta["backtest"][key]) == latest
        assert meta["capacity_report"][key]["holdings"].value.startswith("capacity ")
        target = meta["target_portfolio"][key]["target"].value
        assert target.startswith("**Target for ") and "| symbol |" in target
        assert ("DA0" if pool == "EQUITY" else "DQ0") in target
        assert meta["target_portfolio"][key]["session"].value == session
    # the summaries of different sessions differ (each its own table, not the latest's)
    assert len({meta["target_portfolio"][k]["target"].value for k in KEYS}) > 1


def test_a_long_range_records_its_latest_sessions_and_every_error(tmp_path, monkeypatch) -> None:
    """Beyond the run's latest sessions (60; 1 here) a check records a result only where an ERROR check
    failed; the metadata tail is the same."""
    _environment(monkeypatch, tmp_path)
    monkeypatch.setattr(pool_run_module.PoolRun, "run_metadata", without_data_hash(BAD_POOL, BAD_SESSION))
    defs = fresh_defs()
    import assets._metadata as metadata_module

    monkeypatch.setattr(metadata_module, "PER_PARTITION_METADATA", 1)
    with dg.DagsterInstance.get() as instance:
        result = _two_pool_run(defs, instance)
        records = instance.fetch_materializations(dg.AssetKey("backtest"), limit=100, ascending=True).records
    latest = [f"{p}|{SESSIONS[-1]}" for p in POOLS]
    by_check: dict[str, list[str]] = {}
    for e in result.get_asset_check_evaluations():
        by_check.setdefault(e.check_name, []).append(str(e.partition))
    assert len(by_check) == 16
    for check, keys in by_check.items():
        want = [f"{BAD_POOL}|{BAD_SESSION}", *latest] if check == "metadata_completeness" else latest
        assert keys == want, (check, keys)
    meta = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert [k for k in KEYS if "sharpe · " + k.split("|")[0] in meta[k]] == latest
    assert all("storage_backend" in m for m in meta.values())  # the bookkeeping on every partition
