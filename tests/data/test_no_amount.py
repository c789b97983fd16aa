"""Funds whose files have no amount (turnover) column: data.amount estimate | drop_factors | require.

Generated files in tmp_path for the load itself; the real QDII pool of configs/cn_etf.yaml
(../shared/data/cn_etf) rewritten without its amount column for the pool runs end to end."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.config import CONFIG_DIR, load_config
from rotation_platform.data import quality as q
from rotation_platform.data.panel import PricePanel
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.errors import DataQualityError
from rotation_platform.factors import compute_panel
from rotation_platform.factors.registry import AMOUNT_FACTORS, get, select_factors
from rotation_platform.production import fuses
from rotation_platform.production.pool_run import PoolRun
from rotation_platform.research.capacity import adv_frame, capacity_report

BARE, PARTIAL, FULL = "510300", "510500", "512880"
POOL = "QDII"
SESSION = "2026-03-31"


def write_plain(frame: pd.DataFrame, path: Path, amount: bool) -> None:
    """The plain layout (date,open,high,low,close,volume in shares[,amount])."""
    out = pd.DataFrame({"date": frame["date"].dt.strftime("%Y-%m-%d"), "open": frame["open"], "high": frame["high"],
                        "low": frame["low"], "close": frame["close"], "volume": frame["volume"]})
    if amount:
        out["amount"] = frame["amount"]
    out.to_csv(path, index=False, lineterminator="\n")


@pytest.fixture()
def folder(tmp_path: Path, kit) -> Path:
    """BARE without any amount, PARTIAL with its amount blank on rows 10..14, FULL complete."""
    write_plain(kit.prices(n=120, seed=1), tmp_path / f"{BARE}.csv", amount=False)
    partial = kit.prices(n=120, seed=2)
    partial.loc[9:13, "amount"] = np.nan
    write_plain(partial, tmp_path / f"{PARTIAL}.csv", amount=True)
    kit.write_csv(kit.prices(n=120, seed=3), tmp_path / f"{FULL}.csv")
    return tmp_path


def load(kit, folder: Path, amount: str, symbols: tuple[str, ...] = (BARE, PARTIAL, FULL)):
    cfg = kit.data_config(folder).model_copy(update={"amount": amount})
    return load_pool_prices(DirectorySource(folder), kit.pool(symbols), cfg)


def test_estimate_fills_a_missing_amount_column_with_volume_times_typical_price(folder: Path, kit) -> None:
    loaded = load(kit, folder, "estimate")
    raw = loaded.raw[BARE].frame
    assert raw["amount"].isna().all()          # the records stay as read
    typical = (raw["high"] + raw["low"] + raw["close"]) / 3
    expected = pd.Series((raw["volume"] * typical).to_numpy(), index=pd.DatetimeIndex(raw["date"]))
    got = loaded.raw_panel["amount"][BARE]
    np.testing.assert_allclose(got.to_numpy(), expected.reindex(got.index).to_numpy(), rtol=1e-12)
    pd.testing.assert_series_equal(loaded.panel["amount"][BARE], got)    # turnover is not adjusted
    assert loaded.panel.meta["amount_estimated"] == [BARE] and loaded.raw_panel.meta["amount_estimated"] == [BARE]
    assert loaded.panel.meta["amount"] == {"setting": "estimate", "without_amount": [BARE], "estimated": [BARE],
                                           "factors_left_out": 0}
    (finding,) = loaded.report.select(q.AMOUNT_ESTIMATED)
    assert finding.symbol == BARE and finding.severity is q.Severity.WARN and finding.count == 120
    assert f"no amount column in {BARE}.csv" in finding.message and "data.amount: estimate" in finding.message
    # a fund with only SOME amounts missing is not estimated: those rows keep NaN and their finding
    assert loaded.panel["amount"][PARTIAL].isna().sum() == 5
    (partial,) = loaded.report.select(q.MISSING_AMOUNT, symbol=PARTIAL)
    assert partial.severity is q.Severity.WARN and partial.count == 5
    pd.testing.assert_series_equal(loaded.panel["amount"][FULL],
                                   load(kit, folder, "require", (PARTIAL, FULL)).panel["amount"][FULL])
    # the factors have values for the estimated fund, and ADV is flagged as estimated
    fp = compute_panel(loaded.panel, names=["log_amount_20", "roc_20"])
    assert np.isfinite(np.asarray(fp.values)[-1, loaded.panel.symbols.index(BARE)]).all()
    assert adv_frame(loaded.panel).attrs["estimated"] == [BARE]


def test_drop_factors_leaves_the_amount_factors_out_and_counts_bars_without_amount(folder: Path, kit) -> None:
    dropped = load(kit, folder, "drop_factors")
    assert dropped.panel["amount"][BARE].isna().all()
    assert dropped.panel.meta["amount_factors_left_out"] == list(AMOUNT_FACTORS)
    assert dropped.panel.meta["amount_estimated"] == []
    (finding,) = dropped.report.select(q.AMOUNT_FACTORS_LEFT_OUT)
    assert finding.symbol is None and finding.severity is q.Severity.WARN and finding.count == len(AMOUNT_FACTORS)
    assert f"{BARE} ({BARE}.csv)" in finding.message and "amount_ratio_5_20" in finding.message
    assert "backtest.liquidity_filter" in finding.message
    fp = compute_panel(dropped.panel)
    assert not set(fp.names) & set(AMOUNT_FACTORS)
    assert set(fp.names) == {s.name for s in select_factors()} - set(AMOUNT_FACTORS)
    assert fp.meta["amount_factors_left_out"] == list(AMOUNT_FACTORS)
    # bars count without amount: the fund without it has every other time-series factor, equal to the
    # estimate's (the cross-sectional ones differ where PARTIAL's rows without amount count as bars here)
    series = [s.name for s in select_factors() if not s.cross_sectional and s.name not in AMOUNT_FACTORS]
    mine = compute_panel(dropped.panel, names=series)
    same = compute_panel(load(kit, folder, "estimate").panel, names=series)
    j = dropped.panel.symbols.index(BARE)
    np.testing.assert_array_equal(np.asarray(mine.values)[:, j], np.asarray(same.values)[:, j])
    short = [i for i, n in enumerate(fp.names) if get(n).min_history < 100]
    assert np.isfinite(np.asarray(fp.values)[-1, j, short]).all()     # every factor its history allows
    k = dropped.panel.symbols.index(PARTIAL)
    assert mine.available[:, k].sum() == same.available[:, k].sum() + 5


def test_require_fails_with_one_line_naming_the_funds_and_both_settings(folder: Path, kit) -> None:
    with pytest.raises(DataQualityError) as info:
        load(kit, folder, "require")
    text = str(info.value)
    assert "\n" not in text
    assert f"{BARE} ({BARE}.csv)" in text and PARTIAL not in text and FULL not in text
    assert "data.amount: estimate" in text and "data.amount: drop_factors" in text
    assert info.value.symbol == BARE and info.value.file.endswith(f"{BARE}.csv")
    (fatal,) = info.value.report.select(q.MISSING_AMOUNT, symbol=BARE)
    assert fatal.severity is q.Severity.FATAL
    # funds that all have amounts load as before
    assert load(kit, folder, "require", (PARTIAL, FULL)).panel.meta["amount"]["without_amount"] == []


def test_amount_cause_names_the_files_and_the_setting(folder: Path, kit) -> None:
    loaded = load(kit, folder, "drop_factors")
    panel = PricePanel(loaded.panel.frames, {**loaded.panel.meta, "amount_factors_left_out": []})
    cause = fuses.amount_cause(panel)
    assert f"no amount column in {BARE} ({BARE}.csv); set data.amount: estimate" in cause
    assert f"{PARTIAL} (5 bar(s) in {PARTIAL}.csv)" in cause
    assert fuses.amount_cause(loaded.panel) == ""          # left out on purpose: nothing is lost
    fp = compute_panel(panel, names=["roc_20"])
    assert fp.meta["bars_without_amount"] == {BARE: 120, PARTIAL: 5}


# ------------------------------------------------------------------------------- the pool, end to end
@pytest.fixture(scope="module")
def config(shared_data: Path):
    return load_config(CONFIG_DIR / "cn_etf.yaml", env={})


@pytest.fixture(scope="module")
def no_amount_folder(config, shared_data: Path, tmp_path_factory) -> Path:
    """The QDII pool's real files in the plain layout without an amount column, beside its factor files and
    the split and dividend tables."""
    folder = tmp_path_factory.mktemp("qdii_without_amount")
    source = DirectorySource(shared_data)
    for symbol in config.pool(POOL).symbols:
        write_plain(source.read([symbol])[symbol].frame, folder / f"{symbol}.csv", amount=False)
        for path in shared_data.glob(f"{symbol}_hfq_factor.csv"):
            shutil.copy(path, folder / path.name)
    for name in ("platform_splits.csv", "platform_dividends.csv"):
        shutil.copy(shared_data / name, folder / name)
    return folder


def _run(config, folder: Path, amount: str, liquidity_filter: bool = True) -> PoolRun:
    cfg = config.model_copy(update={
        "data": config.data.model_copy(update={"amount": amount, "directory": folder}),
        "backtest": config.backtest.model_copy(update={"liquidity_filter": liquidity_filter})})
    return PoolRun(cfg, POOL, [SESSION], source=DirectorySource(folder))


def _gates(run: PoolRun) -> dict[str, fuses.FuseResult]:
    return {f.__name__: f(run) for f in (fuses.quality_gate, fuses.t_plus_one, fuses.coverage, fuses.zero_variance,
                                         fuses.effective_factors, fuses.index_normalisation)}


def test_a_pool_without_amount_runs_end_to_end_on_the_estimate(config, no_amount_folder: Path) -> None:
    run = _run(config, no_amount_folder, "estimate")
    symbols = list(config.pool(POOL).symbols)
    assert sorted(run.panel.meta["amount_estimated"]) == sorted(symbols)
    assert {f.symbol for f in run.prices.report.select(q.AMOUNT_ESTIMATED)} == set(symbols)
    for name, result in _gates(run).items():
        assert result.passed, (name, result.summary)
    assert run.coverage.loc[SESSION] > 0.95
    assert set(AMOUNT_FACTORS) <= set(run.factors.names)
    target = run.target_frame().loc[pd.Timestamp(SESSION)]
    assert target["target_weight"].sum() > 0
    # capacity does not present the estimate as real turnover
    cap = fuses.capacity(run)
    assert "ADV from estimated turnover" in cap.summary and sorted(cap.details["adv_estimated"]) == sorted(symbols)
    report = capacity_report(run.backtest, run.panel, run.pool.capital, window=config.backtest.adv_window)
    assert report.adv_estimated and set(report.adv_estimated) <= set(symbols)
    assert report.notes and report.notes[0].startswith("ADV from estimated turnover")


def test_a_pool_without_amount_runs_end_to_end_with_the_amount_factors_left_out(config, no_amount_folder: Path
                                                                                ) -> None:
    run = _run(config, no_amount_folder, "drop_factors", liquidity_filter=False)
    assert not set(run.factors.names) & set(AMOUNT_FACTORS)
    (finding,) = run.prices.report.select(q.AMOUNT_FACTORS_LEFT_OUT)
    assert f"pool {POOL}" in finding.message and "no amount column" in finding.message
    for name, result in _gates(run).items():
        assert result.passed, (name, result.summary)
    assert run.coverage.loc[SESSION] > 0.95
    assert run.target_frame().loc[pd.Timestamp(SESSION)]["target_weight"].sum() > 0
    cap = fuses.capacity(run)
    assert cap.details["adv_estimated"] == [] and cap.details["positions_without_adv"] > 0


def test_a_pool_without_amount_fails_its_gate_in_one_line_under_require(config, no_amount_folder: Path) -> None:
    run = _run(config, no_amount_folder, "require")
    with pytest.raises(DataQualityError) as info:
        run.prices  # noqa: B018 - the load is the gate
    text = info.value.one_line()
    assert text == str(info.value)
    assert text.startswith(f"file {no_amount_folder / '513100.csv'}, symbol 513100: pool {POOL}: no amount column")
    for symbol in config.pool(POOL).symbols:
        assert f"{symbol} ({symbol}.csv)" in text
    assert "set data.amount: estimate" in text and "data.amount: drop_factors" in text


def test_a_coverage_failure_from_missing_amounts_names_the_cause(config, shared_data: Path, no_amount_folder: Path,
                                                                 tmp_path: Path) -> None:
    # 159920 keeps its amount on its first rows only: not a missing column, so nothing is estimated, and its
    # bars without amount are lost to every factor
    folder = tmp_path / "partial"
    shutil.copytree(no_amount_folder, folder)
    frame = DirectorySource(shared_data).read(["159920"])["159920"].frame.copy()
    frame.loc[frame.index[20:], "amount"] = np.nan
    write_plain(frame, folder / "159920.csv", amount=True)
    run = _run(config, folder, "estimate")
    assert "159920" not in run.panel.meta["amount_estimated"]
    cov = fuses.coverage(run)
    assert not cov.passed and cov.summary.startswith(f"COVERAGE FAILED at {SESSION}")
    assert "amount is the cause" in cov.summary and "159920 (" in cov.summary and "159920.csv" in cov.summary
    assert "amount is the cause" in cov.verdict(SESSION).summary
