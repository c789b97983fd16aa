"""Raw panel, corporate-action arrays, factor noise and data-ended checks on small hand-made cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rotation_platform.config import load_config
from rotation_platform.config.models import AdjustmentConfig, CapitalConfig, DataConfig, PoolConfig, PoolKind
from rotation_platform.data import quality as q
from rotation_platform.data.corporate_actions import (
    FACTOR_STEP_TOLERANCE,
    SPLIT_MIN,
    ActionPanel,
    action_events,
    build_action_panel,
    compute_adjustment,
    factor_step_action,
)
from rotation_platform.data.pipeline import PoolPrices, load_pool_prices
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices
from rotation_platform.errors import ConfigError, CorporateActionError

SYM, OTHER = "510300", "510500"
TODAY = "2026-11-20"


def _actions(splits=(), dividends=(), factors=None) -> CorporateActions:
    sp = pd.DataFrame(list(splits), columns=["symbol", "date", "ratio"]).astype({"date": "datetime64[ns]"})
    dv = pd.DataFrame(list(dividends), columns=["symbol", "date", "cash"]).astype({"date": "datetime64[ns]"})
    return CorporateActions(factors=factors or {}, splits=sp, dividends=dv)


class MemorySource(PriceSource):
    """Clean canonical frames and corporate actions held in memory (files named as the directory source's)."""

    name = "memory"

    def __init__(self, frames: Mapping[str, pd.DataFrame], actions: CorporateActions | None = None):
        self.frames = dict(frames)
        self.actions = actions or CorporateActions()

    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        return {s: RawPrices(s, self.frames[s].assign(line=np.arange(1, len(self.frames[s]) + 1)),
                             file=f"/mem/{s}.csv", layout="plain") for s in symbols}

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        return self.actions

    def describe(self) -> dict[str, object]:
        return {"source": self.name, "synthetic": False,
                "factor_files": [f"{s}_hfq_factor.csv" for s in self.actions.factors]}


def _pool(symbols=(SYM, OTHER), **extra) -> PoolConfig:
    return PoolConfig(name="TEST", kind=PoolKind.A_SHARE, symbols=symbols, calendar="XSHG", summary_weight=1.0,
                      capital=CapitalConfig(target_capital=1e6, max_single_weight=0.5, max_adv_pct=0.05), **extra)


def _data(**adjustment) -> DataConfig:
    return DataConfig(adjustment=AdjustmentConfig(**adjustment))


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(line=np.arange(1, len(frame) + 1))


def _shift_prices(frame: pd.DataFrame, row: int, *, scale: float = 1.0, minus: float = 0.0) -> None:
    """From ``row`` on, prices become ``(p - minus) * scale`` (volume / scale): a dividend, split or move."""
    cols = ["open", "high", "low", "close"]
    frame.loc[row:, cols] = ((frame.loc[row:, cols] - minus) * scale).round(3)
    frame.loc[row:, "volume"] = frame.loc[row:, "volume"] / scale


def _holder_step(actions: ActionPanel, raw: pd.DataFrame, j: int, t: int) -> float:
    """Value of one share held from the close of t-1 to the close of t: split first, cash per new share."""
    split, cash = actions.split[t, j], actions.dividend[t, j]
    close = raw["close"].iloc[:, j].to_numpy()
    return split * (close[t] + cash) / close[t - 1]


# ----------------------------------------------------------------------------------------- primitives
def test_factor_step_action_thresholds() -> None:
    assert factor_step_action(2.0, 1.0) == ("split", 2.0)
    assert factor_step_action(0.25, 1.0) == ("split", 0.25)            # a consolidation
    assert factor_step_action(0.999, 1.0) == ("split", 0.999)          # below 1: never a payout
    kind, cash = factor_step_action(1.02, 2.0)
    assert kind == "dividend" and cash == pytest.approx(2.0 * (1 - 1 / 1.02), rel=1e-15)
    assert factor_step_action(SPLIT_MIN, 1.0)[0] == "dividend"          # (1, SPLIT_MIN] is a payout
    assert factor_step_action(SPLIT_MIN + 1e-9, 1.0)[0] == "split"


def test_action_panel_empty_and_validation() -> None:
    sessions = pd.DatetimeIndex(["2024-01-02", "2024-01-03"])
    empty = ActionPanel.empty(sessions, ["a", "b"])
    assert empty.shape == (2, 2) and (empty.split == 1.0).all() and (empty.dividend == 0.0).all()
    assert empty.events.empty and list(empty.events.columns) == ["symbol", "session", "kind", "value", "multiplier",
                                                                 "source", "note"]
    assert empty.symbols == ("a", "b") and empty.frame("split").index.equals(empty.sessions)
    with pytest.raises(CorporateActionError, match="shape"):
        ActionPanel(sessions, ("a",), np.ones((2, 2)), np.zeros((2, 1)))
    with pytest.raises(CorporateActionError, match="positive"):
        ActionPanel(sessions, ("a",), np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(CorporateActionError, match="non-negative"):
        ActionPanel(sessions, ("a",), np.ones((2, 1)), -np.ones((2, 1)))


# ------------------------------------------------------------------------------------ the pipeline's views
def test_raw_panel_is_the_clean_rows_and_panel_is_raw_times_factor(kit) -> None:
    a = kit.prices(n=60, seed=1)
    _shift_prices(a, 30, scale=0.5)                                      # a 1:2 split from row 30
    b = kit.prices(n=40, seed=2).iloc[5:].reset_index(drop=True)       # listed later: NaN before
    source = MemorySource({SYM: a, OTHER: b}, _actions(splits=[(SYM, a["date"].iloc[30], 2.0)]))
    loaded = load_pool_prices(source, _pool(), _data(), today=TODAY)
    raw, panel = loaded.raw_panel, loaded.panel
    assert raw.meta["adjusted"] is False and panel.meta["adjusted"] is True
    assert raw.sessions.equals(panel.sessions) and raw.symbols == panel.symbols
    for name in ("open", "high", "low", "close", "volume", "amount"):
        assert raw[name].isna().equals(panel[name].isna())
    np.testing.assert_array_equal(raw["close"][SYM].dropna().to_numpy(), a["close"].to_numpy())
    np.testing.assert_array_equal(raw["volume"][SYM].dropna().to_numpy(), a["volume"].to_numpy())
    factor = loaded.adjustments[SYM].factor.reindex(panel.sessions)
    np.testing.assert_array_equal(panel["close"][SYM].to_numpy(), raw["close"][SYM].to_numpy() * factor.to_numpy())
    # the split in real money: one share becomes two at the open of the split session
    t = panel.sessions.get_loc(a["date"].iloc[30])
    assert loaded.actions.split[t, 0] == 2.0 and (np.delete(loaded.actions.split[:, 0], t) == 1.0).all()
    assert _holder_step(loaded.actions, raw.frames, 0, t) == pytest.approx(
        panel["close"][SYM].iloc[t] / panel["close"][SYM].iloc[t - 1], rel=1e-14)
    # a PoolPrices built from the first five fields derives the same raw panel and actions
    rebuilt = PoolPrices(loaded.panel, loaded.report, loaded.quarantine, loaded.raw, loaded.adjustments)
    for name in ("open", "close", "volume", "amount"):
        np.testing.assert_allclose(rebuilt.raw_panel[name].to_numpy(), raw[name].to_numpy(), rtol=1e-14)
    np.testing.assert_array_equal(rebuilt.actions.split, loaded.actions.split)
    pd.testing.assert_frame_equal(rebuilt.actions.events, loaded.actions.events)


def test_source_without_actions_has_equal_panels_and_no_actions(kit) -> None:
    source = MemorySource({SYM: kit.prices(n=30, seed=3), OTHER: kit.prices(n=30, seed=4)})
    loaded = load_pool_prices(source, _pool(), _data(), today=TODAY)
    assert loaded.panel.equals(loaded.raw_panel)
    assert (loaded.actions.split == 1).all() and (loaded.actions.dividend == 0).all() and loaded.actions.events.empty


# ------------------------------------------------------------------------------------------ hand cases
def test_factor_only_dividend_uses_the_hfq_convention(kit) -> None:
    frame = _rows(kit.prices(n=60, seed=5))
    cash = 0.03
    _shift_prices(frame, 30, minus=cash)
    close = frame["close"].to_numpy()
    m = close[29] / (close[29] - cash)                                  # the vendor's hfq step
    factor = pd.Series(np.where(np.arange(60) >= 30, m, 1.0), index=pd.DatetimeIndex(frame["date"]))
    adj = compute_adjustment(SYM, frame, _actions(factors={SYM: factor}))
    events = action_events(adj, frame.set_index("date")["close"])
    assert events[["kind", "source"]].values.tolist() == [["dividend", "factor"]]
    assert events["session"].iloc[0] == frame["date"].iloc[30]
    assert events["value"].iloc[0] == pytest.approx(cash, rel=1e-12)     # prev close x (1 - 1/m)
    assert events["multiplier"].iloc[0] == pytest.approx(m, rel=1e-15)
    assert "hfq convention" in events["note"].iloc[0]


def test_split_and_dividend_on_one_session_combine(kit) -> None:
    frame = kit.prices(n=40, seed=6)
    day = frame["date"].iloc[20]
    _shift_prices(frame, 20, scale=0.5, minus=0.02)                     # 0.01 per new share, then 1:2
    source = MemorySource({SYM: frame, OTHER: kit.prices(n=40, seed=7)},
                          _actions(splits=[(SYM, day, 2.0)], dividends=[(SYM, day, 0.01)]))
    loaded = load_pool_prices(source, _pool(), _data(), today=TODAY)
    t = loaded.panel.sessions.get_loc(day)
    assert loaded.actions.split[t, 0] == 2.0 and loaded.actions.dividend[t, 0] == 0.01
    ev = loaded.actions.events
    assert ev[["kind", "value", "source"]].values.tolist() == [["split", 2.0, "table"], ["dividend", 0.01, "table"]]
    adj = loaded.panel["close"][SYM]
    # split first, then the cash on each new share: with the table method the adjusted return is exactly that
    assert _holder_step(loaded.actions, loaded.raw_panel.frames, 0, t) == pytest.approx(
        adj.iloc[t] / adj.iloc[t - 1], rel=1e-13)


def test_factor_only_consolidation_and_split(kit) -> None:
    frame = _rows(kit.prices(n=60, seed=8))
    _shift_prices(frame, 20, scale=2.0)                                 # 2:1 consolidation (step 0.5)
    _shift_prices(frame, 40, scale=1 / 3)                               # 1:3 split (step 3)
    steps = np.ones(60)
    steps[20], steps[40] = 0.5, 3.0
    factor = pd.Series(np.cumprod(steps) * 7.0, index=pd.DatetimeIndex(frame["date"]))   # vendor scale is free
    adj = compute_adjustment(SYM, frame, _actions(factors={SYM: factor}))
    panel = build_action_panel(pd.DatetimeIndex(frame["date"]), [SYM], {SYM: adj},
                               {SYM: frame.set_index("date")["close"]})
    assert panel.events["kind"].tolist() == ["split", "split"]
    assert panel.split[20, 0] == pytest.approx(0.5, rel=1e-15) and panel.split[40, 0] == pytest.approx(3.0, rel=1e-15)
    assert (panel.dividend == 0).all()
    close = frame["close"].to_numpy()
    adjusted = close * adj.factor.to_numpy()
    for t in (20, 40):                                                  # splits reproduce the adjusted return
        assert panel.split[t, 0] * close[t] / close[t - 1] == pytest.approx(adjusted[t] / adjusted[t - 1], rel=1e-14)


def _noisy_case(kit, seed: int = 9):
    """300 rows: a 0.03 cash dividend at row 120 (factor only), a table dividend at row 150, a 1:2 split at
    row 200 (factor only), and a vendor factor that otherwise random-walks by ~0.2% on 90% of the days."""
    frame = _rows(kit.prices(n=300, seed=seed, level=2.0))
    _shift_prices(frame, 120, minus=0.03)
    _shift_prices(frame, 150, minus=0.008)
    _shift_prices(frame, 200, scale=0.5)
    close = frame["close"].to_numpy()
    true_steps = np.ones(300)
    true_steps[120] = close[119] / (close[119] - 0.03)
    true_steps[150] = close[149] / (close[149] - 0.008)
    true_steps[200] = 2.0
    rng = np.random.default_rng(seed)
    noise = np.clip(rng.normal(0.0, 0.002, 300), -0.009, 0.009) * (rng.random(300) < 0.9)
    noise[[0, 120, 150, 200]] = 0.0
    vendor = np.cumprod(true_steps) * np.exp(np.cumsum(noise))
    factor = pd.Series(vendor, index=pd.DatetimeIndex(frame["date"]))
    actions = _actions(dividends=[(SYM, frame["date"].iloc[150], 0.008)], factors={SYM: factor})
    return frame, actions, true_steps, noise


def test_noise_is_detected_snapped_and_real_actions_survive(kit) -> None:
    frame, actions, true_steps, noise = _noisy_case(kit)
    adj = compute_adjustment(SYM, frame, actions)
    nz = adj.noise
    assert nz is not None and nz.noisy and nz.share > 0.2 and nz.snapped
    assert (nz.is_noise == (noise != 0)).all()                          # every noise day, nothing else
    assert set(nz.counts()) == {"tolerance", "noise_tolerance", "additive"} and nz.counts()["additive"] == 0
    ev = action_events(adj, frame.set_index("date")["close"])
    assert ev[["session", "kind", "source"]].values.tolist() == [
        [frame["date"].iloc[120], "dividend", "factor"], [frame["date"].iloc[150], "dividend", "table"],
        [frame["date"].iloc[200], "split", "factor"]]
    assert ev["value"].tolist() == pytest.approx([0.03, 0.008, 2.0], rel=1e-9)
    # snapped: the factor is the product of the real steps only; adjusted returns are raw returns elsewhere
    np.testing.assert_allclose(adj.factor.to_numpy(), np.cumprod(true_steps), rtol=1e-12)
    close = frame["close"].to_numpy()
    adjusted = close * adj.factor.to_numpy()
    quiet = np.setdiff1d(np.arange(1, 300), [120, 150, 200])
    np.testing.assert_allclose(adjusted[quiet] / adjusted[quiet - 1], close[quiet] / close[quiet - 1], rtol=1e-13)
    # the vendor factor itself is kept for audit, unsnapped
    np.testing.assert_allclose(adj.vendor_factor.to_numpy(), actions.factors[SYM].to_numpy()
                               / actions.factors[SYM].iloc[0], rtol=1e-13)
    assert (adj.events["status"] == "noise").sum() == int(nz.beyond_tolerance.sum())
    (finding,) = q.check_adjustment_noise(adj, "/mem/510300.csv", "510300_hfq_factor.csv")
    assert finding.check == q.ADJUSTMENT_NOISE and finding.severity is q.Severity.WARN
    assert finding.count == int((noise != 0).sum()) and finding.file == "/mem/510300.csv"
    assert "510300_hfq_factor.csv is noisy" in finding.message and "snapped" in finding.message
    largest = pd.Timestamp(frame["date"].iloc[int(np.argmax(np.abs(noise)))])
    assert finding.dates[0] == str(largest.date()) and f"on {largest.date()}" in finding.message


def test_snap_noise_off_applies_the_vendor_factor_but_keeps_noise_out_of_the_actions(kit) -> None:
    frame, actions, _, noise = _noisy_case(kit)
    adj = compute_adjustment(SYM, frame, actions, AdjustmentConfig(snap_noise=False))
    np.testing.assert_allclose(adj.factor.to_numpy(), adj.vendor_factor.to_numpy(), rtol=0)
    assert adj.noise.noisy and not adj.noise.snapped and adj.noise.days == int((noise != 0).sum())
    ev = action_events(adj, frame.set_index("date")["close"])
    assert ev["kind"].tolist() == ["dividend", "dividend", "split"]
    (finding,) = q.check_adjustment_noise(adj, "/mem/510300.csv", "510300_hfq_factor.csv")
    assert finding.severity is q.Severity.WARN and "applied as is" in finding.message


def test_a_clean_factor_file_is_not_noisy_and_gives_no_finding(kit) -> None:
    frame, actions, true_steps, _ = _noisy_case(kit)
    clean = pd.Series(np.cumprod(true_steps), index=pd.DatetimeIndex(frame["date"]))
    adj = compute_adjustment(SYM, frame, _actions(dividends=[(SYM, frame["date"].iloc[150], 0.008)],
                                                  factors={SYM: clean}))
    assert not adj.noise.noisy and adj.noise.days == 0 and q.check_adjustment_noise(adj) == []
    # the same file is noisy when the threshold is low enough, and not when it is higher
    frame, actions, _, _ = _noisy_case(kit)
    assert not compute_adjustment(SYM, frame, actions, AdjustmentConfig(noise_share=0.95)).noise.noisy


def _additive_case(kit, big_move: bool = True):
    """A vendor whose 'factor' is adjusted / close of an additive adjustment (adjusted = close + cash so far):
    0.1 CNY dividends at rows 60 and 100, and an 8% fall at row 150."""
    frame = _rows(kit.prices(n=200, seed=12, level=1.0))
    _shift_prices(frame, 60, minus=0.1)
    _shift_prices(frame, 100, minus=0.1)
    if big_move:
        _shift_prices(frame, 150, scale=0.92)
    close = frame["close"].to_numpy()
    cash = np.where(np.arange(200) >= 60, 0.1, 0.0) + np.where(np.arange(200) >= 100, 0.1, 0.0)
    adjusted = np.round(close + cash, 3)
    factor = pd.Series(adjusted / close, index=pd.DatetimeIndex(frame["date"]))
    return frame, _actions(factors={SYM: factor})


def test_additive_vendor_factor_big_days_are_noise_and_dividends_stay(kit) -> None:
    frame, actions = _additive_case(kit)
    adj = compute_adjustment(SYM, frame, actions)
    step150 = adj.noise.step[150]
    assert adj.noise.noisy and abs(np.log(step150)) > 0.01                 # beyond noise_tolerance ...
    assert adj.noise.reason[150] == "additive"                            # ... yet noise: it follows the price
    ev = action_events(adj, frame.set_index("date")["close"])
    assert ev["session"].tolist() == [frame["date"].iloc[60], frame["date"].iloc[100]]
    assert ev["kind"].tolist() == ["dividend", "dividend"]
    assert ev["value"].tolist() == pytest.approx([0.1, 0.1], rel=0.2)      # hfq convention on a drifting factor
    # without the additive test the brief's thresholds alone make the fall a fake dividend
    plain = compute_adjustment(SYM, frame, actions, AdjustmentConfig(additive_noise=False))
    ev_plain = action_events(plain, frame.set_index("date")["close"])
    assert frame["date"].iloc[150] in set(ev_plain["session"]) and plain.noise.reason[150] == ""


def test_additive_noise_in_a_clean_file_is_an_info_finding(kit) -> None:
    frame, actions = _additive_case(kit)
    adj = compute_adjustment(SYM, frame, actions, AdjustmentConfig(noise_share=0.99))   # not noisy
    assert not adj.noise.noisy and adj.noise.reason[150] == "additive"
    (finding,) = q.check_adjustment_noise(adj, "/mem/510300.csv")
    assert finding.severity is q.Severity.INFO and "not noisy" in finding.message
    assert "the factor series of 510300" in finding.message


def test_steps_within_the_tolerance_are_noise_in_any_file(kit) -> None:
    frame = _rows(kit.prices(n=50, seed=13))
    steps = np.ones(50)
    steps[10] = 1 + FACTOR_STEP_TOLERANCE / 2
    steps[30] = 1.05
    adj = compute_adjustment(SYM, frame, _actions(factors={SYM: pd.Series(np.cumprod(steps),
                                                                          index=pd.DatetimeIndex(frame["date"]))}))
    assert not adj.noise.noisy and adj.noise.reason[10] == "tolerance" and adj.noise.days == 1
    assert adj.factor.iloc[10] == 1.0 and adj.factor.iloc[30] == pytest.approx(1.05, rel=1e-15)
    assert action_events(adj, frame.set_index("date")["close"])["session"].tolist() == [frame["date"].iloc[30]]
    assert q.check_adjustment_noise(adj) == []                           # below the tolerance: nothing to report


def test_a_table_action_the_factor_disagrees_with_follows_the_factor_file(kit) -> None:
    frame = _rows(kit.prices(n=40, seed=14))
    factor = pd.Series(1.0, index=pd.DatetimeIndex(frame["date"]))
    adj = compute_adjustment(SYM, frame, _actions(dividends=[(SYM, frame["date"].iloc[20], 0.08)],
                                                  factors={SYM: factor}))
    assert adj.disagreements["kind"].tolist() == ["dividend"]
    assert action_events(adj, frame.set_index("date")["close"]).empty   # no cash the prices do not show


# ------------------------------------------------------------------------------------------- data ended
def test_data_ended_by_missing_bars_and_by_a_configured_delisting(kit) -> None:
    long = kit.prices(n=80, seed=15)
    short = kit.prices(n=74, seed=16)                                    # 6 sessions missing at the end
    third = kit.prices(n=80, seed=17)
    source = MemorySource({SYM: long, OTHER: short, "512000": third})
    delisted_on = third["date"].iloc[50].date()
    pool = _pool((SYM, OTHER, "512000"), delisted={"512000": delisted_on})
    loaded = load_pool_prices(source, pool, _data(), today=TODAY)
    found = {f.symbol: f for f in loaded.report.select(q.DATA_ENDED)}
    assert set(found) == {OTHER, "512000"}
    f = found[OTHER]
    assert f.severity is q.Severity.WARN and f.file == "/mem/510500.csv" and f.count == 6
    assert f.dates == (str(short["date"].iloc[-1].date()),)
    assert "510500.csv" in f.message and str(short["date"].iloc[-1].date()) in f.message
    assert "liquidates it at its last price" in f.message and "not select it afterwards" in f.message
    g = found["512000"]
    assert g.dates == (str(delisted_on),) and "pool.delisted" in g.message and g.count == 29
    assert loaded.ended == {OTHER: pd.Timestamp(short["date"].iloc[-1]), "512000": pd.Timestamp(delisted_on)}
    # fewer missing sessions than data.ended_after: not ended; a delisting after the panel's end: not ended
    later = _pool((SYM, OTHER, "512000"), delisted={"512000": "2030-01-02"})
    relaxed = load_pool_prices(source, later, DataConfig(ended_after=7), today=TODAY)
    assert relaxed.report.select(q.DATA_ENDED) == () and relaxed.ended == {}


def test_delisted_must_name_symbols_of_the_pool(tmp_path: Path) -> None:
    capital = {"target_capital": 1e6, "max_single_weight": 0.5, "max_adv_pct": 0.05}
    doc = {"name": "t", "screening": {"min_obs": 3}, "pools": [
        {"name": "A_SHARE", "kind": "A_SHARE", "summary_weight": 0.7, "symbols": ["510300", "510500", "159915"],
         "capital": capital, "delisted": {"510500": "2026-06-08", "999999": "2026-06-08"}},
        {"name": "QDII", "kind": "QDII", "summary_weight": 0.3, "symbols": ["513100", "513500", "159941"],
         "capital": capital}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    (problem,) = info.value.problems
    key, reason = problem
    assert key == "pools[0:A_SHARE].delisted" and "'999999'" in reason and "\n" not in reason
    assert "510500" not in reason and "pool A_SHARE" in reason
    doc["pools"][0]["delisted"] = {"510500": "2026-06-08"}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert str(load_config(path, env={}).pool("A_SHARE").delisted["510500"]) == "2026-06-08"
