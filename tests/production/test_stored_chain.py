"""The target from stored upstream values equals the full chain's, and a value from other data or configuration is
refused by name."""

from __future__ import annotations

import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.production.pool_run import PoolRun
from rotation_platform.production.stored_chain import StaleUpstream, TargetFromStored, stored_upstream
from rotation_platform.storage.provenance import record, results_config_hash, with_provenance

SESSIONS = [pd.Timestamp("2025-12-29"), pd.Timestamp("2025-12-30"), pd.Timestamp("2025-12-31")]


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG_DIR / "demo.yaml")


def _stored(run: PoolRun, config_hash: str | None = None):
    """What the full chain stores per session, as the store returns it (with its provenance)."""
    config_hash = config_hash or results_config_hash(run.config)
    bt, cap = run.backtest_frame(), run.capacity_frame()
    out = {}
    for t in run.sessions:
        prov = record(run.data_hash(t), config_hash)
        out[("wfo_result", t)] = with_provenance(run.wfo_record(t), prov)
        out[("backtest", t)] = with_provenance(bt.loc[[t]], prov)
        out[("capacity_report", t)] = with_provenance(cap.loc[pd.IndexSlice[[t], :], :], prov)
    return out


@pytest.mark.parametrize("pool", ["A_SHARE", "QDII", "OTHER"])
def test_the_target_from_stored_values_is_the_full_chains(config, pool) -> None:
    full = PoolRun(config, pool, SESSIONS)
    stored = _stored(full)
    rerun = TargetFromStored(config, pool, SESSIONS, read=lambda asset, t: stored.get((asset, t)))
    pd.testing.assert_frame_equal(rerun.target_frame(), full.target_frame(), check_exact=True)
    with pytest.raises(StaleUpstream):
        rerun.grid_equity  # noqa: B018 - the rerun never simulates the grid


def test_stale_or_missing_upstream_is_named(config) -> None:
    full = PoolRun(config, "QDII", SESSIONS)
    stored = _stored(full)
    t = SESSIONS[1]
    missing = {k: v for k, v in stored.items() if k != ("backtest", t)}
    with pytest.raises(StaleUpstream, match=f"backtest of QDII {t.date()} is not stored"):
        stored_upstream(full, SESSIONS, lambda a, s: missing.get((a, s)))
    other_data = dict(stored)
    other_data[("wfo_result", t)] = with_provenance(full.wfo_record(t), record("0" * 16, results_config_hash(config)))
    with pytest.raises(StaleUpstream, match=f"wfo_result of QDII {t.date()} was computed from other data"):
        stored_upstream(full, SESSIONS, lambda a, s: other_data.get((a, s)))
    other_config = _stored(full, config_hash="another")
    with pytest.raises(StaleUpstream, match="was computed with another configuration"):
        stored_upstream(full, SESSIONS, lambda a, s: other_config.get((a, s)))
