"""Walk-forward optimisation: windows, point-in-time choices, the stitched run, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest

from rotation_platform.config.models import WFOConfig, WFOGrid
from rotation_platform.errors import ResearchError
from rotation_platform.research import (
    StrategyContext,
    backtest,
    grid_params,
    objective_matrix,
    split_windows,
    walk_forward,
)
from tests.research.realdata import perturb_after, price_factors

GRID = WFOGrid(top_n=(2, 4), rebalance_sessions=(10, 20), ic_lookback=(60, 120), weighting=("equal", "ic"),
               buffer=(0, 1))
CONFIG = WFOConfig(train_sessions=252, test_sessions=63, embargo_sessions=5, grid=GRID)


def test_rolling_and_expanding_windows_by_hand() -> None:
    rolling = split_windows(20, 0, train=5, test=3, embargo=2, kind="rolling")
    assert [(w.is_start, w.is_end, w.oos_start, w.oos_end) for w in rolling] == [
        (0, 4, 7, 9), (3, 7, 10, 12), (6, 10, 13, 15), (9, 13, 16, 18), (12, 16, 19, 19)]
    expanding = split_windows(20, 0, train=5, test=3, embargo=2, kind="expanding")
    assert [(w.is_start, w.is_end, w.oos_start, w.oos_end) for w in expanding] == [
        (0, 4, 7, 9), (0, 7, 10, 12), (0, 10, 13, 15), (0, 13, 16, 18), (0, 16, 19, 19)]
    for w in rolling:
        assert w.oos_start - w.is_end - 1 == 2  # the embargo
    with pytest.raises(ResearchError, match="splitter"):
        split_windows(20, 0, train=5, test=3, embargo=2, kind="anchored")


@pytest.fixture(scope="module")
def wfo(context):
    return walk_forward(context, CONFIG)


def test_choice_is_the_in_sample_best_and_oos_follows_it(wfo, context) -> None:
    params = grid_params(GRID)
    assert len(params) == 32 and wfo.is_objective.shape == (len(wfo.windows), 32)
    assert len(wfo.windows) >= 30
    np.testing.assert_array_equal(wfo.chosen, np.nanargmax(wfo.is_objective, axis=1))
    # the stitched run trades the chosen set during each out-of-sample window
    active = wfo.plan.active
    for j, row in wfo.windows.iterrows():
        a = context.sessions.get_loc(row["oos_start"])
        b = context.sessions.get_loc(row["oos_end"])
        assert (active[a: b + 1] == wfo.chosen[j]).all()
    assert (active[: context.sessions.get_loc(wfo.windows["oos_start"].iloc[0])] == -1).all()
    # in-sample objective recomputed from a single run of the chosen set over the same sessions
    j = len(wfo.windows) // 2
    w = wfo.windows.iloc[j]
    run = context.run(params[wfo.chosen[j]], start=context.first_signal_row([120]))
    eq = run.equity_series().loc[w["is_start"]: w["is_end"]]
    assert objective_matrix((eq.pct_change().iloc[1:]).to_numpy()[None, :], "sharpe")[0] == \
        pytest.approx(wfo.is_objective[j, wfo.chosen[j]], rel=1e-9)
    # stitched out-of-sample returns tile the windows without gaps
    assert wfo.oos_returns.index[0] == wfo.windows["oos_start"].iloc[0]
    assert wfo.oos_returns.index[-1] == wfo.windows["oos_end"].iloc[-1]
    total = np.prod(1 + wfo.windows["oos_return"]) - 1
    assert total == pytest.approx(np.prod(1 + wfo.oos_returns) - 1, rel=1e-9)


def test_diagnostics_are_consistent(wfo) -> None:
    assert wfo.efficiency == pytest.approx(wfo.windows["oos_objective"].mean() / wfo.windows["is_objective"].mean())
    assert set(wfo.stability.index) == {"top_n", "rebalance_sessions", "ic_lookback", "weighting", "buffer",
                                       "trend_filter"}
    assert ((wfo.stability["mode_share"] > 0) & (wfo.stability["mode_share"] <= 1)).all()
    assert -1 <= wfo.rank_stability <= 1
    assert 0 <= wfo.pbo.pbo <= 1 and wfo.pbo.n_splits == 12870 and wfo.pbo.n_configs == 32
    assert 0 <= wfo.dsr.dsr <= 1 and wfo.dsr.n_trials == 32
    assert wfo.dsr.n_obs == len(wfo.oos_returns)


def test_stitched_plan_backtests_through_vectorbt(wfo, real_panel) -> None:
    res = backtest(wfo.plan, real_panel, benchmark="510300")
    np.testing.assert_allclose(res.equity.to_numpy(), wfo.plan.equity, rtol=1e-9)
    first_oos = wfo.windows["oos_start"].iloc[0]
    assert res.start == first_oos
    oos = res.returns.loc[first_oos:]
    np.testing.assert_allclose(oos.to_numpy(), wfo.oos_returns.to_numpy(), rtol=1e-9, atol=1e-15)


def test_wfo_choices_at_t_ignore_returns_after_t(real_panel, spec) -> None:
    base_ctx = StrategyContext(price_factors(real_panel), real_panel, spec)
    base = walk_forward(base_ctx, CONFIG)
    j = len(base.windows) // 2
    t_date = base.windows["is_end"].iloc[j]
    t = real_panel.sessions.get_loc(t_date)
    moved_panel = perturb_after(real_panel, t)
    moved = walk_forward(StrategyContext(price_factors(moved_panel), moved_panel, spec), CONFIG)
    done = base.windows["is_end"] <= t_date
    assert done.sum() == j + 1
    np.testing.assert_array_equal(base.chosen[done.to_numpy()], moved.chosen[done.to_numpy()])
    np.testing.assert_array_equal(base.is_objective[done.to_numpy()], moved.is_objective[done.to_numpy()])
    assert base.choice_at(t_date) == moved.choice_at(t_date)
    # the stitched portfolio up to t is identical, orders included
    np.testing.assert_array_equal(base.plan.orders[: t + 1], moved.plan.orders[: t + 1])
    np.testing.assert_array_equal(base.plan.equity[: t + 1], moved.plan.equity[: t + 1])
    # control: later windows did see the change
    assert not np.array_equal(base.is_objective[~done.to_numpy()], moved.is_objective[~done.to_numpy()])


def test_no_window_fits_is_an_error(context) -> None:
    with pytest.raises(ResearchError, match="no walk-forward window fits"):
        walk_forward(context, WFOConfig(train_sessions=5000, test_sessions=63, embargo_sessions=5, grid=GRID))
