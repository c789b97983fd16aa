"""Back-adjustment from factors or split/dividend tables, and jump classification."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data import quality as q
from rotation_platform.data.corporate_actions import (
    adjust_prices,
    apply_adjustment,
    compute_adjustment,
    detect_jumps,
    factor_on_dates,
)
from rotation_platform.data.sources.base import CorporateActions
from rotation_platform.errors import CorporateActionError

SYM = "510300"


def _actions(splits=(), dividends=(), factors=None) -> CorporateActions:
    sp = pd.DataFrame(list(splits), columns=["symbol", "date", "ratio"]).astype({"date": "datetime64[ns]"})
    dv = pd.DataFrame(list(dividends), columns=["symbol", "date", "cash"]).astype({"date": "datetime64[ns]"})
    return CorporateActions(factors=factors or {}, splits=sp, dividends=dv)


def _split_frame(kit, row: int, ratio: float) -> pd.DataFrame:
    """Clean records where one unit becomes ``ratio`` units from ``row`` (0-based) on."""
    frame = kit.prices(n=60, seed=1).assign(line=np.arange(1, 61))
    frame.loc[row:, ["open", "high", "low", "close"]] /= ratio
    frame.loc[row:, "volume"] *= ratio
    return frame


def _returns(values: pd.Series | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[1:] / v[:-1] - 1


def test_factor_is_carried_forward_and_back() -> None:
    factor = pd.Series([2.0, 4.0], index=pd.to_datetime(["2024-01-03", "2024-01-08"]))
    dates = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-05", "2024-01-08", "2024-01-31"])
    np.testing.assert_array_equal(factor_on_dates(dates, factor), [2.0, 2.0, 2.0, 4.0, 4.0])


def test_split_from_the_table_removes_the_jump_and_keeps_turnover_consistent(kit) -> None:
    original = kit.prices(n=60, seed=1)
    frame = _split_frame(kit, 30, 4.0)
    split_day = frame["date"].iloc[30]
    adjusted, adj = adjust_prices(SYM, frame, _actions(splits=[(SYM, split_day, 4.0)]))
    assert adj.method == "actions"
    assert adj.events["status"].tolist() == ["applied"] and adj.events["row_date"].iloc[0] == split_day
    # adjusted prices are the pre-split history continued: returns equal the unsplit series'
    np.testing.assert_allclose(_returns(adjusted["close"]), _returns(original["close"]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(adjusted["close"].iloc[:30], frame["close"].iloc[:30])  # F = 1 before the split
    # volume moves the other way, amount stays: adjusted price x adjusted volume == raw price x raw volume
    np.testing.assert_allclose(adjusted["close"] * adjusted["volume"], frame["close"] * frame["volume"])
    np.testing.assert_array_equal(adjusted["amount"], frame["amount"])
    np.testing.assert_allclose(adjusted["volume"], original["volume"])


def test_dividend_adjusted_return_is_the_total_return(kit) -> None:
    frame = kit.prices(n=40, seed=2).assign(line=np.arange(1, 41))
    cash = 0.05
    frame.loc[20:, ["open", "high", "low", "close"]] -= cash
    adjusted, adj = adjust_prices(SYM, frame, _actions(dividends=[(SYM, frame["date"].iloc[20], cash)]))
    p_prev, p_ex = frame["close"].iloc[19], frame["close"].iloc[20]
    r = adjusted["close"].iloc[20] / adjusted["close"].iloc[19] - 1
    assert r == pytest.approx((p_ex + cash) / p_prev - 1, rel=1e-12)
    assert adj.events["multiplier"].iloc[0] == pytest.approx(1 + cash / p_ex)


def test_split_and_dividend_on_one_day_combine(kit) -> None:
    frame = _split_frame(kit, 10, 2.0)
    day = frame["date"].iloc[10]
    adjusted, _ = adjust_prices(SYM, frame, _actions(splits=[(SYM, day, 2.0)], dividends=[(SYM, day, 0.01)]))
    p_prev, p_ex = frame["close"].iloc[9], frame["close"].iloc[10]
    r = adjusted["close"].iloc[10] / adjusted["close"].iloc[9] - 1
    assert r == pytest.approx(2.0 * (p_ex + 0.01) / p_prev - 1, rel=1e-12)


def test_actions_outside_the_history_change_nothing(kit) -> None:
    frame = kit.prices(n=20, seed=3).assign(line=np.arange(1, 21))
    actions = _actions(splits=[(SYM, "2020-01-02", 2.0), (SYM, "2030-01-02", 3.0),
                               (SYM, frame["date"].iloc[0], 5.0)])
    adjusted, adj = adjust_prices(SYM, frame, actions)
    assert adj.method == "none" and (adj.factor == 1.0).all()
    assert adj.events["status"].tolist() == ["ignored"] * 3
    assert adj.events["row_date"].isna().all()
    pd.testing.assert_frame_equal(adjusted, frame)


def test_event_on_a_suspended_day_applies_to_the_next_row(kit) -> None:
    frame = _split_frame(kit, 30, 2.0).drop(index=[29, 30]).reset_index(drop=True)   # suspended two sessions
    suspended_day = kit.prices(n=60, seed=1)["date"].iloc[30]
    adj = compute_adjustment(SYM, frame, _actions(splits=[(SYM, suspended_day, 2.0)]))
    assert adj.events["row_date"].iloc[0] == frame["date"].iloc[29]
    assert adj.factor.iloc[28] == 1.0 and adj.factor.iloc[29] == 2.0


def test_hfq_factor_normalised_to_the_first_row_with_gaps_and_ends(kit) -> None:
    frame = _split_frame(kit, 30, 2.0)
    dates = frame["date"]
    # the vendor's factor starts late, skips the split day's own row, ends early and is scaled by 0.01
    fdates = dates.iloc[5:50].drop(index=30)
    fvalues = np.where(fdates >= dates.iloc[30], 0.02, 0.01)
    factor = pd.Series(fvalues, index=pd.DatetimeIndex(fdates))
    adjusted, adj = adjust_prices(SYM, frame, _actions(factors={SYM: factor}))
    assert adj.method == "hfq_factor" and adj.factor_range == (str(dates.iloc[5].date()), str(dates.iloc[49].date()))
    assert adj.factor.iloc[0] == 1.0 and adj.factor.iloc[-1] == 2.0
    # the step lands on the first row after the factor's last pre-split entry: the split row itself is absent from
    # the factor file, so the pre-split factor is carried onto it and the step shows one row late
    assert adj.factor.iloc[30] == 1.0 and adj.factor.iloc[31] == 2.0
    assert any("first factor" in n for n in adj.notes) and any("last factor" in n for n in adj.notes)


def test_table_actions_after_the_factor_file_are_chained(kit) -> None:
    frame = _split_frame(kit, 50, 2.0)
    dates = frame["date"]
    factor = pd.Series(1.0, index=pd.DatetimeIndex(dates.iloc[:40]))
    adjusted, adj = adjust_prices(SYM, frame, _actions(splits=[(SYM, dates.iloc[50], 2.0)], factors={SYM: factor}))
    assert adj.method == "hfq_factor+actions"
    assert adj.events.loc[0, "status"] == "applied"
    assert abs(adjusted["close"].iloc[50] / adjusted["close"].iloc[49] - 1) < 0.05


def test_table_and_factor_disagreement_is_reported_and_the_factor_wins(kit) -> None:
    frame = kit.prices(n=40, seed=5).assign(line=np.arange(1, 41))
    factor = pd.Series(1.0, index=pd.DatetimeIndex(frame["date"]))
    adj = compute_adjustment(SYM, frame, _actions(dividends=[(SYM, frame["date"].iloc[20], 0.08)],
                                                  factors={SYM: factor}))
    assert adj.method == "hfq_factor" and (adj.factor == 1.0).all()
    assert adj.disagreements["kind"].tolist() == ["dividend"]
    (finding,) = q.check_adjustment(adj, "f.csv")
    assert finding.check == q.ACTION_TABLE_DISAGREES and finding.severity is q.Severity.WARN
    assert finding.dates == (str(frame["date"].iloc[20].date()),)


def test_jump_kinds(kit) -> None:
    frame = _split_frame(kit, 20, 2.0)
    frame.loc[40:, ["open", "high", "low", "close"]] *= 1.5          # an unexplained +50% move
    day = frame["date"]
    actions = _actions(splits=[(SYM, day.iloc[20], 2.0), (SYM, day.iloc[30], 3.0)])   # the second is wrong
    adjusted, adj = adjust_prices(SYM, frame, actions)
    jumps = detect_jumps(SYM, frame, adjusted, adj, 0.2)
    assert jumps["kind"].tolist() == ["explained", "action_mismatch", "unexplained"]
    assert jumps["date"].tolist() == [day.iloc[20], day.iloc[30], day.iloc[40]]
    assert jumps["line"].tolist() == [21, 31, 41]
    assert "split 3" in jumps["action"].iloc[1]
    findings = {f.check: f for f in q.check_jumps(SYM, frame, adjusted, adj, 0.2, "f.csv")}
    assert findings[q.EXPLAINED_JUMP].severity is q.Severity.INFO
    assert findings[q.ACTION_MISMATCH].severity is q.Severity.ERROR
    assert findings[q.UNEXPLAINED_JUMP].lines == (41,)


def test_adjusted_history_does_not_depend_on_later_rows_or_actions(kit) -> None:
    frame = _split_frame(kit, 20, 2.0)
    day = frame["date"]
    full, _ = adjust_prices(SYM, frame, _actions(splits=[(SYM, day.iloc[20], 2.0)],
                                                 dividends=[(SYM, day.iloc[45], 0.02)]))
    head, _ = adjust_prices(SYM, frame.iloc[:40], _actions(splits=[(SYM, day.iloc[20], 2.0)]))
    pd.testing.assert_frame_equal(full.iloc[:40], head)


def test_rows_must_be_sorted_and_unique(kit) -> None:
    frame = kit.prices(n=10).assign(line=np.arange(1, 11))
    with pytest.raises(CorporateActionError, match="sorted by unique date"):
        compute_adjustment(SYM, frame.iloc[::-1], _actions())
    adj = compute_adjustment(SYM, frame, _actions())
    with pytest.raises(CorporateActionError, match="other rows"):
        apply_adjustment(frame.iloc[1:], adj)
    with pytest.raises(CorporateActionError, match="invalid split"):
        compute_adjustment(SYM, frame, _actions(splits=[(SYM, frame["date"].iloc[3], -2.0)]))


@pytest.mark.parametrize("symbol, day", [("513100", "2022-01-14"), ("159928", "2021-06-25"),
                                         ("512010", "2021-06-28"), ("510500", "2015-04-15")])
def test_real_split_tables_agree_with_the_factor_files(real_source, symbol: str, day: str) -> None:
    """On the real data the split table alone removes each split the factor file removes."""
    raw = real_source.read([symbol])[symbol].frame
    actions = real_source.corporate_actions([symbol])
    by_factor, adj_f = adjust_prices(symbol, raw, actions)
    by_table, adj_t = adjust_prices(symbol, raw, CorporateActions(splits=actions.splits, dividends=actions.dividends))
    assert adj_f.method.startswith("hfq_factor") and adj_t.method == "actions"
    i = int(np.flatnonzero(raw["date"] == pd.Timestamp(day))[0])
    raw_r = raw["close"].iloc[i] / raw["close"].iloc[i - 1] - 1
    r_f = by_factor["close"].iloc[i] / by_factor["close"].iloc[i - 1] - 1
    r_t = by_table["close"].iloc[i] / by_table["close"].iloc[i - 1] - 1
    assert abs(raw_r) > 0.4 and abs(r_f) < 0.1 and abs(r_t) < 0.1
    assert r_f == pytest.approx(r_t, abs=2e-3)


def test_a_split_and_a_dividend_on_one_row_match_the_factor_files_combined_step(kit) -> None:
    frame = _split_frame(kit, 25, 2.0)
    day = frame["date"].iloc[25]
    step = 2.0 * (1 + 0.01 / frame["close"].iloc[25])
    factor = pd.Series(np.where(frame["date"] >= day, step, 1.0), index=pd.DatetimeIndex(frame["date"]))
    adj = compute_adjustment(SYM, frame, _actions(splits=[(SYM, day, 2.0)], dividends=[(SYM, day, 0.01)],
                                                  factors={SYM: factor}))
    assert adj.events["status"].tolist() == ["in_factor", "in_factor"] and adj.disagreements.empty
