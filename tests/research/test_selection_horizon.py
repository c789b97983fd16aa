"""Screening at the holding horizon: a planted slow factor, the auto cadence -> horizon rule, the IC of the
selected factors out of sample, and point in time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config.models import BacktestConfig, CapitalConfig, ScreeningConfig, WFOConfig, WFOGrid
from rotation_platform.data.panel import PRICE_FIELDS, PricePanel
from rotation_platform.errors import ResearchError
from rotation_platform.research import StrategyContext, StrategyParams, StrategySpec, grid_params, walk_forward
from rotation_platform.research.screen import resolve_selection_horizon
from rotation_platform.research.wfo import selection_ic
from tests.research.realdata import perturb_after

N_S, N_F, BLOCK = 900, 25, 20
HORIZONS = (1, 5, 10, 20)
NAMES = ["slow", "fast", "noise_a", "noise_b", "noise_c"]


def _case(seed: int = 11) -> tuple[PricePanel, np.ndarray]:
    """Prices whose daily return on session ``t`` is ``0.004 * m[block(t)] + 0.004 * e[t] + noise``.

    ``m`` is a per-fund drift redrawn every 20-session block and absent from each block's first session;
    ``e`` is iid. Factor ``slow`` at row ``s`` is the drift of the NEXT block: it predicts the 20-session
    return from ``s`` (about half of those sessions carry that drift) but is independent of the 1-session
    return from ``s`` (that session is in the current block, or is the next block's drift-free first
    session). Factor ``fast`` at row ``s`` is ``e[s + 1]``: it predicts the 1-session return only.
    """
    rng = np.random.default_rng(seed)
    n_blocks = N_S // BLOCK + 2
    m = rng.normal(size=(n_blocks, N_F))
    e = rng.normal(size=(N_S + 1, N_F))
    t = np.arange(N_S)
    block = t // BLOCK
    drift = np.where((t % BLOCK != 0)[:, None], m[block], 0.0)
    rets = 0.004 * drift + 0.004 * e[:N_S] + rng.normal(0.0, 0.01, (N_S, N_F))
    rets[0] = 0.0
    close = 10.0 * np.exp(np.cumsum(rets, axis=0))
    sessions = pd.bdate_range("2019-01-02", periods=N_S, name="session")
    symbols = [f"F{i:02d}" for i in range(N_F)]
    frame = pd.DataFrame(close, index=sessions, columns=symbols)
    frames = {"open": frame, "high": frame * 1.001, "low": frame * 0.999, "close": frame,
              "volume": frame * 0 + 1e6, "amount": frame * 0 + 1e9}
    panel = PricePanel({f: frames[f] for f in PRICE_FIELDS}, {"source": "test", "synthetic": True})
    values = np.empty((N_S, N_F, len(NAMES)))
    values[:, :, 0] = m[block + 1]
    values[:, :, 1] = e[1: N_S + 1]
    values[:, :, 2:] = rng.normal(size=(N_S, N_F, 3))
    return panel, values


def _spec(selection_horizon: object = "auto", top_k: int = 1) -> StrategySpec:
    screening = ScreeningConfig(horizons=HORIZONS, ic_lookback=120, top_k=top_k, correlation_threshold=0.8,
                                selection_horizon=selection_horizon)
    return StrategySpec(capital=CapitalConfig(target_capital=1_000_000, max_single_weight=0.5, max_adv_pct=0.05),
                        screening=screening, backtest=BacktestConfig(trade_at="close"))


@pytest.fixture(scope="module")
def case() -> tuple[PricePanel, np.ndarray]:
    return _case()


@pytest.fixture(scope="module")
def ctx(case) -> StrategyContext:
    panel, values = case
    return StrategyContext((values, NAMES), panel, _spec())


ROWS = np.arange(300, N_S - 1, 37, dtype=np.int64)


def test_planted_factor_is_selected_at_horizon_20_and_not_at_horizon_1(ctx) -> None:
    at20 = ctx.selections(120, ROWS, 20)
    at1 = ctx.selections(120, ROWS, 1)
    slow, fast = NAMES.index("slow"), NAMES.index("fast")
    assert (at20.kept[:, 0] == slow).all() and (at20.sign[:, 0] == 1).all()
    assert (at1.kept[:, 0] == fast).all()
    assert not (at1.kept == slow).any()
    # the screen statistics say why: slow has no 1-session IC, a strong 20-session one
    res = ctx.screen.screen(int(ROWS[-1]), ctx.spec.screening, selection_horizon=1)
    assert abs(res.stats.loc["slow", "ic_mean_1"]) < 0.05 < 0.2 < res.stats.loc["slow", "ic_mean_20"]
    assert res.selected_names == ["fast"]
    # auto: a 20-session cadence screens at 20, a daily one at 1
    assert ctx.selection_at(StrategyParams(2, 20, 120), ctx.sessions[int(ROWS[0]) + 1]).at(0)[0].name == "slow"
    assert ctx.selection_at(StrategyParams(2, 1, 120), ctx.sessions[int(ROWS[0]) + 1]).at(0)[0].name == "fast"


@pytest.mark.parametrize("cadence, expected", [(1, 1), (2, 1), (3, 1), (4, 5), (5, 5), (7, 5), (8, 10), (10, 10),
                                               (15, 10), (16, 20), (20, 20), (60, 20)])
def test_auto_maps_cadence_to_the_closest_horizon_ties_to_the_shorter(cadence: int, expected: int) -> None:
    assert resolve_selection_horizon("auto", HORIZONS, cadence) == expected
    assert _spec("auto").horizon_for(StrategyParams(2, cadence, 60)) == expected
    assert _spec(5).horizon_for(StrategyParams(2, cadence, 60)) == 5  # a fixed horizon ignores the cadence


def test_fixed_horizon_must_be_screened() -> None:
    with pytest.raises(ValueError, match=r"screening.selection_horizon 7 is not among screening.horizons"):
        ScreeningConfig(horizons=HORIZONS, selection_horizon=7)
    with pytest.raises(ResearchError, match="screening.selection_horizon 7"):
        resolve_selection_horizon(7, HORIZONS, 5)
    assert ScreeningConfig().selection_horizon == "auto"


def test_context_without_horizon_in_auto_mode_refuses(ctx) -> None:
    with pytest.raises(ResearchError, match="selection_horizon is auto"):
        ctx.selections(120, ROWS)


def test_default_config_screens_every_grid_cadence() -> None:
    from pathlib import Path

    from rotation_platform.config import load_config

    repo = Path(__file__).resolve().parents[2]
    for name in ("cn_etf.yaml", "demo.yaml"):
        cfg = load_config(repo / "configs" / name, env={})
        assert set(cfg.wfo.grid.rebalance_sessions) <= set(cfg.screening.horizons), name


def test_oos_ic_of_the_selection_shows_no_bias_for_a_real_factor_and_bias_for_noise(case) -> None:
    panel, values = case
    ctx = StrategyContext((values, NAMES), panel, _spec())
    p20 = StrategyParams(2, 20, 120)
    rec = selection_ic(ctx, p20, 500, 501, 563, N_S - 1)
    assert rec["selection_horizon"] == 20 and rec["factors"] == ["slow"] and rec["oos_sessions"] == 63
    assert rec["is_ic"] > 0.2 and rec["oos_ic"] > 0.2  # a real effect holds out of sample
    # only noise to choose from: top-1 of three noise factors looks good in sample, not after
    noise = StrategyContext((values[:, :, 2:], NAMES[2:]), panel, _spec())
    gaps = []
    for r in range(300, 820, 63):
        x = selection_ic(noise, p20, r, r + 1, r + 63, N_S - 1)
        gaps.append(x["is_ic"] - x["oos_ic"])
    assert np.mean(gaps) > 0.0
    # the OOS IC equals a direct computation from the daily ICs
    ic = ctx.screen.ic.frame(20)["slow"]
    assert rec["oos_ic"] == pytest.approx(float(ic.iloc[501:564].mean()), abs=1e-12)
    assert rec["is_ic"] == pytest.approx(float(ic.iloc[500 - 20 - 120 + 1: 500 - 20 + 1].mean()), abs=1e-12)
    partial = selection_ic(ctx, p20, 500, 501, 563, 530)  # at row 530 only label rows <= 510 are realised
    assert partial["oos_sessions"] == 10
    assert partial["oos_ic"] == pytest.approx(float(ic.iloc[501:511].mean()), abs=1e-12)


WFO = WFOConfig(train_sessions=252, test_sessions=63, embargo_sessions=5,
                grid=WFOGrid(top_n=(2,), rebalance_sessions=(1, 5, 20), ic_lookback=(60, 120), weighting=("equal",),
                             buffer=(0,)))


def test_walk_forward_selects_each_set_at_its_cadence_horizon(ctx) -> None:
    res = walk_forward(ctx, WFO)
    w = res.windows
    assert (w["selection_horizon"] == [ctx.spec.horizon_for(int(c)) for c in w["rebalance_sessions"]]).all()
    assert {"is_ic", "oos_ic", "oos_ic_sessions"} <= set(w.columns)
    assert w["oos_ic"].notna().all()
    # every set of the grid can trade from the start: each (longest lookback, horizon) has a selection
    start = ctx.grid_start_row(grid_params(WFO.grid))
    for h in (1, 5, 20):
        assert ctx.selections(120, np.array([start - 1]), h).kept[0, 0] >= 0


def test_point_in_time_prices_after_t_change_no_selection_or_oos_ic_at_or_before_t(case) -> None:
    panel, values = case
    t = 640
    moved = perturb_after(panel, t)
    a = StrategyContext((values, NAMES), panel, _spec(top_k=2))
    b = StrategyContext((values, NAMES), moved, _spec(top_k=2))
    rows = np.arange(200, t + 1, 7, dtype=np.int64)
    for lb in (60, 120):
        for h in HORIZONS:
            pa, pb = a.selections(lb, rows, h), b.selections(lb, rows, h)
            np.testing.assert_array_equal(pa.kept, pb.kept)
            np.testing.assert_array_equal(pa.sign, pb.sign)
            np.testing.assert_array_equal(pa.icir, pb.icir)
    for r in (300, 450, 577):
        for cadence in (1, 5, 20):
            p = StrategyParams(2, cadence, 120)
            assert selection_ic(a, p, r, r + 1, r + 63, t) == selection_ic(b, p, r, r + 1, r + 63, t)
    wa, wb = walk_forward(a, WFO, end=t), walk_forward(b, WFO, end=t)
    pd.testing.assert_frame_equal(wa.windows, wb.windows)
    # the as-of lag is exact: the 20-session label of row t + 1 - 20 is realised at t + 1 and enters then
    sa = a.screen.screen(t + 1, a.spec.screening, selection_horizon=20)
    sb = b.screen.screen(t + 1, b.spec.screening, selection_horizon=20)
    assert not np.allclose(sa.stats["ic_mean_20"], sb.stats["ic_mean_20"])
    same = a.screen.screen(t, a.spec.screening, selection_horizon=20).stats["ic_mean_20"]
    pd.testing.assert_series_equal(same, b.screen.screen(t, b.spec.screening, selection_horizon=20).stats["ic_mean_20"])
