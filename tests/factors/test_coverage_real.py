"""The factor set on the real A_SHARE pool (26 funds, loaded by the official ingest): coverage of at
least 90 % and no zero-variance factor over the pool's common history (the sessions where every
fund of the pool has data), and the two entry points agreeing on the last session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rotation_platform.config import load_config
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.factors import compute_cross_section, compute_panel, select_factors

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "cn_etf"


@pytest.fixture(scope="module")
def a_share():
    if not (DATA / "510300.csv").is_file():
        pytest.fail(f"the shared real data is missing: expected the cn_etf folder at {DATA}")
    cfg = load_config(REPO / "configs" / "cn_etf.yaml", env={})
    pool = cfg.pool("A_SHARE")
    prices = load_pool_prices(DirectorySource(DATA), pool, cfg.data)
    return cfg, pool, prices.panel


def test_coverage_and_variance_over_the_common_history(a_share) -> None:
    cfg, pool, panel = a_share
    assert panel.symbols == list(pool.symbols) and len(panel.symbols) == 26
    factors = compute_panel(panel, cfg.factors)
    assert factors.n_factors == len(select_factors()) >= 209
    common = np.isfinite(panel.array("close")).all(axis=1)
    sessions = panel.sessions[common]
    assert len(sessions) > 500
    stats = factors.select(start=sessions[0], end=sessions[-1]).stats()
    low = stats[stats.coverage < 0.9]
    assert low.empty, low[["coverage", "min_history"]].to_string()
    flat = stats[stats.zero_variance]
    assert flat.empty, flat[["std", "cs_std"]].to_string()
    assert stats.meets_min_coverage.all()


def test_cross_section_on_the_pool(a_share) -> None:
    cfg, _, panel = a_share
    factors = compute_panel(panel, cfg.factors, names=["roc_20", "macd_signal_12_26_9", "cs_rank_rsi_14"])
    t = len(panel.sessions) - 1
    cs = compute_cross_section(panel, panel.sessions[t], cfg.factors,
                               names=["roc_20", "macd_signal_12_26_9", "cs_rank_rsi_14"])
    assert np.array_equal(cs.data[:, 0], factors.data[:, t], equal_nan=True)
    assert np.isfinite(cs.data[:, 0]).sum() > 40
