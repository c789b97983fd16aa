"""Split proposals: an unexplained overnight move of a unit-split ratio with volume moving inversely is
proposed as a split with the exact line to add to platform_splits.csv (data.splits: propose), or applied as
if it were in the table (data.splits: apply); crashes stay unexplained jumps.

Generated files in tmp_path (cn_etf layout, volume in lots) for the planted cases; the real data of
../shared/data/cn_etf, copied without its splits table and factor files, for the real splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.calendars import get_calendar
from rotation_platform.data import quality as q
from rotation_platform.data.corporate_actions import SPLIT_RATIOS, propose_splits
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource, read_splits_table

SYMBOL = "512880"
PEER = "510300"
N = 120
K = 70  # first row on the new basis


def planted(price_factor: float = 1.0, volume_factor: float = 1.0, seed: int = 3, level: float = 5.0) -> pd.DataFrame:
    """Canonical records (XSHG sessions, 0.001 tick, whole lots) whose prices from row K on are multiplied by
    ``price_factor`` and volumes by ``volume_factor`` (a split of ratio r: 1/r and r)."""
    sessions = get_calendar("XSHG").sessions("2024-01-02", "2026-12-31")[:N]
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0, 0.01, N)
    ret[K] = 0.002                                   # a quiet market on the day of the event
    close = level * np.exp(np.cumsum(ret))
    open_ = close * (1 + rng.normal(0.0, 0.003, N))
    scale = np.where(np.arange(N) >= K, price_factor, 1.0)
    close, open_ = np.round(close * scale, 3), np.round(open_ * scale, 3)
    high = np.round(np.maximum(open_, close) * 1.004, 3)
    low = np.round(np.minimum(open_, close) * 0.996, 3)
    lots = np.round(50_000 * np.exp(rng.normal(0.0, 0.1, N)) * np.where(np.arange(N) >= K, volume_factor, 1.0))
    volume = lots * 100
    amount = np.round(volume * (open_ + high + low + close) / 4, 2)
    return pd.DataFrame({"date": pd.DatetimeIndex(sessions).astype("datetime64[ns]"), "open": open_, "high": high,
                         "low": low, "close": close, "volume": volume, "amount": amount})


def load(kit, folder: Path, frame: pd.DataFrame, splits: str = "propose", table: str | None = None,
         jump_threshold: float = 0.2):
    folder.mkdir(parents=True, exist_ok=True)
    kit.write_csv(frame, folder / f"{SYMBOL}.csv")
    kit.write_csv(planted(seed=11), folder / f"{PEER}.csv")
    if table is not None:
        (folder / "platform_splits.csv").write_text("code,split_date,split_ratio\n" + table + "\n")
    cfg = kit.data_config(folder).model_copy(update={"splits": splits})
    return load_pool_prices(DirectorySource(folder), kit.pool((SYMBOL, PEER), jump_threshold), cfg)


def session(k: int) -> str:
    return str(get_calendar("XSHG").sessions("2024-01-02", "2026-12-31")[k].date())


@pytest.mark.parametrize("ratio", [2.0, 10.0, 0.1], ids=["1:2", "1:10", "10:1"])
def test_a_planted_split_is_proposed_with_the_line_to_add(tmp_path: Path, kit, ratio: float) -> None:
    loaded = load(kit, tmp_path, planted(1 / ratio, ratio))
    text = f"{ratio:.10g}"
    line = f"{SYMBOL},{session(K - 1)},{text}"
    (proposal,) = loaded.report.select(q.SPLIT_PROPOSED, symbol=SYMBOL)
    assert proposal.severity is q.Severity.INFO and proposal.dates == (session(K),) and proposal.count == 1
    assert f"add the line '{line}' to platform_splits.csv" in proposal.message
    assert f"a 1:{text} unit split" in proposal.message and "first session on the new basis" in proposal.message
    # nothing changes silently: the move is still the unexplained jump, and its message points to the proposal
    (jump,) = loaded.report.select(q.UNEXPLAINED_JUMP, symbol=SYMBOL)
    assert jump.severity is q.Severity.ERROR
    assert "see the split_proposed finding" in jump.message and line in jump.message
    assert loaded.panel.meta["splits"] == {"setting": "propose",
                                           "proposed": {SYMBOL: [{"date": session(K), "ratio": float(text),
                                                                  "line": line}]}}
    assert not loaded.report.select(q.SPLIT_PROPOSED, symbol=PEER)
    # the line, added to the table, is read back as that split on that session
    (tmp_path / "platform_splits.csv").write_text("code,split_date,split_ratio\n" + line + "\n")
    table = read_splits_table(tmp_path / "platform_splits.csv")
    assert table["date"].tolist() == [pd.Timestamp(session(K))] and table["ratio"].tolist() == [float(text)]


@pytest.mark.parametrize("move", [0.8, 0.5], ids=["-20% crash", "-50% on unchanged volume"])
def test_a_crash_with_unchanged_volume_stays_a_jump_and_is_never_proposed(tmp_path: Path, kit, move: float) -> None:
    loaded = load(kit, tmp_path, planted(move, 1.0), jump_threshold=0.15)
    assert not loaded.report.select(q.SPLIT_PROPOSED) and not loaded.report.select(q.SPLIT_INFERRED)
    (jump,) = loaded.report.select(q.UNEXPLAINED_JUMP, symbol=SYMBOL)
    assert jump.dates == (session(K),) and "split" not in jump.message
    assert loaded.panel.meta["splits"]["proposed"] == {}
    # the same under apply: nothing is inferred, the prices stay as they are
    applied = load(kit, tmp_path / "apply", planted(move, 1.0), splits="apply", jump_threshold=0.15)
    assert not applied.report.select(q.SPLIT_INFERRED)
    pd.testing.assert_frame_equal(applied.panel["close"], loaded.panel["close"], check_exact=True)


def test_a_split_move_on_a_volume_that_moved_the_wrong_way_is_not_proposed(tmp_path: Path, kit) -> None:
    # prices halve but volume halves too: that is a crash on thin trading, not a 1:2 split
    loaded = load(kit, tmp_path, planted(0.5, 0.5))
    assert not loaded.report.select(q.SPLIT_PROPOSED)
    assert loaded.report.select(q.UNEXPLAINED_JUMP, symbol=SYMBOL)


@pytest.mark.parametrize("ratio", [2.0, 0.1], ids=["1:2", "10:1"])
def test_apply_gives_the_panel_of_the_same_split_in_the_table(tmp_path: Path, kit, ratio: float) -> None:
    frame = planted(1 / ratio, ratio)
    applied = load(kit, tmp_path / "apply", frame, splits="apply")
    line = f"{SYMBOL},{session(K - 1)},{ratio:.10g}"
    tabled = load(kit, tmp_path / "table", frame, table=line)
    for name in ("open", "high", "low", "close", "volume", "amount"):
        pd.testing.assert_frame_equal(applied.panel[name], tabled.panel[name], check_exact=True)
        pd.testing.assert_frame_equal(applied.raw_panel[name], tabled.raw_panel[name], check_exact=True)
    np.testing.assert_array_equal(applied.actions.split, tabled.actions.split)
    row = applied.panel.sessions.get_loc(pd.Timestamp(session(K)))
    assert applied.actions.split[row, 0] == ratio and (np.delete(applied.actions.split[:, 0], row) == 1.0).all()
    # reported as a WARN finding with the line that would make it a fact; no jump left
    (inferred,) = applied.report.select(q.SPLIT_INFERRED, symbol=SYMBOL)
    assert inferred.severity is q.Severity.WARN and inferred.dates == (session(K),)
    assert f"'{line}'" in inferred.message and "data.splits: apply" in inferred.message
    assert not applied.report.select(q.UNEXPLAINED_JUMP, symbol=SYMBOL)
    assert not applied.report.select(q.SPLIT_PROPOSED)
    (explained,) = applied.report.select(q.EXPLAINED_JUMP, symbol=SYMBOL)
    assert explained.dates == (session(K),)
    # the split in the table is a fact, never proposed again
    assert not tabled.report.select(q.SPLIT_PROPOSED) and not tabled.report.select(q.UNEXPLAINED_JUMP)


# ------------------------------------------------------------------------------------------ real data
def _truth(shared: Path) -> dict[tuple[str, pd.Timestamp], float]:
    """Every unit split of a ratio in SPLIT_RATIOS (within 1%) the real data knows: the splits table, and
    the split-sized steps of the hfq factor files (510180's 1:10 of 2009 and 4:1 of 2013 are in its factor
    file only). Keyed by (fund, first row on the new basis)."""
    source = DirectorySource(shared)
    out: dict[tuple[str, pd.Timestamp], float] = {}
    table = read_splits_table(shared / "platform_splits.csv")
    ratios = np.asarray(SPLIT_RATIOS)
    for rec in table.itertuples(index=False):
        near = ratios[np.abs(np.log(ratios / rec.ratio)) <= 0.01]
        if len(near):
            dates = pd.DatetimeIndex(source.read([rec.symbol])[rec.symbol].frame["date"]).sort_values()
            first = dates[dates.searchsorted(rec.date)] if dates.searchsorted(rec.date) < len(dates) else None
            if first is not None:
                out[(rec.symbol, first)] = float(near[0])
    for path in sorted(shared.glob("*_hfq_factor.csv")):
        symbol = path.name.split("_")[0]
        f = pd.read_csv(path, dtype={"trade_date": str}).sort_values("trade_date")
        step = f["hfq_factor"].to_numpy() / np.r_[np.nan, f["hfq_factor"].to_numpy()[:-1]]
        for day, m in zip(f["trade_date"], step):
            near = ratios[np.abs(np.log(ratios / m)) <= 0.01] if np.isfinite(m) else []
            if len(near):
                out.setdefault((symbol, pd.Timestamp(day)), float(near[0]))
    return out


@pytest.fixture(scope="module")
def unsplit(shared_data: Path, tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    """The real price files alone: no platform_splits.csv, no dividends, no factor files."""
    folder = tmp_path_factory.mktemp("cn_etf_prices_only")
    symbols = []
    for path in sorted(shared_data.glob("[0-9]*.csv")):
        if "_hfq_factor" in path.name or path.stem in ("000300", "000015"):
            continue
        shutil.copy(path, folder / path.name)
        symbols.append(path.stem)
    return folder, tuple(symbols)


def test_real_splits_are_proposed_with_their_true_ratios_and_nothing_else(shared_data: Path, unsplit, kit) -> None:
    folder, symbols = unsplit
    assert not (folder / "platform_splits.csv").exists() and not list(folder.glob("*_hfq_factor.csv"))
    loaded = load_pool_prices(DirectorySource(folder), kit.pool(symbols), kit.data_config(folder))
    found = {(s, pd.Timestamp(p["date"])): p["ratio"]
             for s, props in loaded.panel.meta["splits"]["proposed"].items() for p in props}
    truth = _truth(shared_data)
    # no false proposal: every one is a real split, with its true ratio
    assert {k: truth.get(k) for k in found} == found
    table = read_splits_table(shared_data / "platform_splits.csv")
    in_table = {(s, d) for (s, d) in truth if ((table["symbol"] == s)
                                               & (np.abs((table["date"] - d).dt.days) <= 7)).any()}
    # every integer-ratio split of the table is found but 513500's 1:2 of 2022-03-30, whose volume moved only
    # 1.1x: on price and volume it cannot be told from a -50% crash on unchanged volume, which must stay a jump
    missed = in_table - set(found)
    assert missed == {("513500", pd.Timestamp("2022-03-30"))}
    assert len(in_table) == 12 and len(found) == 13
    # beyond the table: 510180's 1:10 of 2009-05-21 and 4:1 of 2013-12-23, both in its factor file
    assert set(found) - in_table == {("510180", pd.Timestamp("2009-05-21")), ("510180", pd.Timestamp("2013-12-23"))}
    # the real 513100 1:5 of 2022-01-14: the exact line of the real table (split_date the last day on the old basis)
    (f513100,) = loaded.report.select(q.SPLIT_PROPOSED, symbol="513100")
    assert "add the line '513100,2022-01-12,5' to platform_splits.csv" in f513100.message
    # NAV conversions of other ratios (510300 0.3709, 510500 0.2803, 512200 0.3581, ...) stay jumps
    for symbol in ("510500", "512200"):
        assert loaded.report.select(q.UNEXPLAINED_JUMP, symbol=symbol)
        assert symbol not in loaded.panel.meta["splits"]["proposed"]


def test_propose_splits_reads_nothing_after_the_as_of_date(shared_data: Path, unsplit, kit) -> None:
    folder, _ = unsplit
    pool = kit.pool(("513100", "513500"))
    cfg = kit.data_config(folder)
    # two sessions after 513100's split: too few bars on the new basis to judge its volume yet
    early = load_pool_prices(DirectorySource(folder), pool, cfg, asof="2022-01-17")
    assert "513100" not in early.panel.meta["splits"]["proposed"]
    later = load_pool_prices(DirectorySource(folder), pool, cfg, asof="2022-01-19")
    assert later.panel.meta["splits"]["proposed"]["513100"][0]["line"] == "513100,2022-01-12,5"
    # the proposal is the same function over the rows the load kept
    clean = later.raw_panel["close"]["513100"].dropna()
    assert clean.index[-1] <= pd.Timestamp("2022-01-19")
    adjustment = later.adjustments["513100"]
    rows = later.raw["513100"].frame
    rows = rows[rows["date"] <= pd.Timestamp("2022-01-19")].sort_values("date").reset_index(drop=True)
    direct = propose_splits("513100", rows, rows, adjustment, get_calendar("XSHG"))
    assert direct["table_line"].tolist() == ["513100,2022-01-12,5"]


def test_with_the_tables_and_factor_files_no_real_split_is_proposed_again(real_pools) -> None:
    for name, loaded in real_pools.items():
        assert loaded.panel.meta["splits"]["proposed"] == {}, name
        assert not loaded.report.select(q.SPLIT_PROPOSED) and not loaded.report.select(q.SPLIT_INFERRED)
