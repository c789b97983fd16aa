"""The universe policy of a load: funds whose data ends or starts late are findings with their dates, and
an ERROR finding excludes its fund only from the sessions whose exclusion window holds it, point-in-time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from rotation_platform.calendars import get_calendar
from rotation_platform.config.models import DataConfig, PoolConfig, QualityConfig
from rotation_platform.data import quality as q
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from tests.data.conftest import make_prices, pool_for, write_csv

SYMBOLS = ("510300", "510500", "512880", "159915")
WINDOW = 40


def _data(window: int = WINDOW) -> DataConfig:
    return DataConfig(source="directory", directory=Path("."),
                      quality=QualityConfig(min_history_sessions=10, exclusion_window=window))


def _write(folder: Path, frames: dict[str, pd.DataFrame]) -> DirectorySource:
    folder.mkdir(parents=True, exist_ok=True)
    for symbol, frame in frames.items():
        write_csv(frame, folder / f"{symbol}.csv")
    return DirectorySource(folder)


def _frames(n: int = 200) -> dict[str, pd.DataFrame]:
    return {s: make_prices(n, seed=k, level=1.0 + k) for k, s in enumerate(SYMBOLS)}


def test_a_fund_ending_early_is_a_finding_with_its_last_bar_and_the_sessions_since(tmp_path) -> None:
    frames = _frames()
    frames["510500"] = frames["510500"].iloc[:150]
    last_bar = frames["510500"]["date"].iloc[-1]
    loaded = load_pool_prices(_write(tmp_path, frames), pool_for(SYMBOLS), _data())
    (ended,) = loaded.report.select(q.DATA_ENDED)
    assert ended.symbol == "510500" and ended.severity is q.Severity.WARN
    assert ended.dates == (str(last_bar.date()),) and ended.count == 50
    assert f"last bar {last_bar.date()}" in ended.message and "no bar on the last 50" in ended.message
    assert loaded.ended == {"510500": last_bar}


def test_a_fund_starting_late_is_a_finding_with_its_first_bar(tmp_path) -> None:
    frames = _frames()
    frames["512880"] = frames["512880"].iloc[70:]
    first_bar = frames["512880"]["date"].iloc[0]
    loaded = load_pool_prices(_write(tmp_path, frames), pool_for(SYMBOLS), _data())
    (late,) = loaded.report.select(q.DATA_STARTS_LATE)
    assert late.symbol == "512880" and late.severity is q.Severity.INFO
    assert late.dates == (str(first_bar.date()),) and late.count == 70
    assert f"first bar {first_bar.date()}" in late.message
    assert loaded.report.passed  # listing later is not an error
    # its first min_history_sessions bars are short history: out of the universe, then in
    u = loaded.universe
    i = SYMBOLS.index("512880")
    assert u.excluded[70:79, i].all() and not u.excluded[79:, i].any()
    assert "short_history" in u.reasons(75)["512880"]


def test_a_bad_row_excludes_its_fund_only_inside_the_window(tmp_path) -> None:
    frames = _frames()
    bad_row = 100
    frames["510500"].loc[bad_row, "close"] = np.nan  # one NaN close: a quarantined ERROR row
    loaded = load_pool_prices(_write(tmp_path, frames), pool_for(SYMBOLS), _data())
    assert not loaded.report.passed  # an ERROR finding ...
    (row,) = loaded.quarantine.itertuples()
    assert row.reason == q.MISSING_PRICE and row.symbol == "510500"
    u = loaded.universe
    i = SYMBOLS.index("510500")
    excluded = np.flatnonzero(u.excluded[:, i])
    first_bars = np.arange(0, 9)  # short history (min_history_sessions 10)
    # ... excludes the fund from the session of the bad row through the window's end, nowhere else
    assert excluded.tolist() == first_bars.tolist() + list(range(bad_row, bad_row + WINDOW))
    why = u.reasons(bad_row + 5)["510500"]
    day = frames["510500"]["date"].iloc[bad_row].date()
    assert f"missing_price on {day}" in why and f"{WINDOW} sessions" in why
    # the other funds are never excluded after their first bars
    assert not u.excluded[9:, [j for j in range(len(SYMBOLS)) if j != i]].any()
    # the panel's last session is outside the window: the load's metadata lists nobody
    assert loaded.panel.meta["universe"] == {"exclusion_window": WINDOW, "excluded": {}}


def test_a_gappy_fund_is_excluded_where_its_window_misses_too_many_sessions(tmp_path) -> None:
    frames = _frames()
    gappy = frames["159915"]
    frames["159915"] = gappy.drop(index=[120, 123, 126, 129]).reset_index(drop=True)  # 4 of 40 missing: 10%
    loaded = load_pool_prices(_write(tmp_path, frames), pool_for(SYMBOLS), _data())
    u = loaded.universe
    i = SYMBOLS.index("159915")
    sessions = loaded.panel.sessions
    # 2 missing of the window's sessions is 5% (the limit, not above it); the third is above
    assert not u.excluded[:122, i][9:].any()
    assert u.excluded[126, i] and "missing_sessions" in u.reasons(126)["159915"]
    assert not u.excluded[-1, i]  # the gaps left the window
    assert sessions[126] == gappy["date"].iloc[126]


def test_exclusion_at_t_does_not_depend_on_data_after_t(tmp_path) -> None:
    frames = _frames()
    frames["510500"].loc[100, "close"] = np.nan
    base = load_pool_prices(_write(tmp_path / "a", frames), pool_for(SYMBOLS), _data())
    later = {s: f.copy() for s, f in frames.items()}
    t = 130
    later["510300"].loc[t + 1, "close"] = -1.0                       # a bad row after t
    later["512880"] = later["512880"].drop(index=range(t + 1, t + 30)).reset_index(drop=True)  # a gap after t
    later["159915"].loc[t + 5:, "volume"] = 0.0                      # zero volume after t
    changed = load_pool_prices(_write(tmp_path / "b", later), pool_for(SYMBOLS), _data())
    assert changed.universe.excluded[t + 1:].any(axis=0).tolist() != base.universe.excluded[t + 1:].any(axis=0).tolist()
    np.testing.assert_array_equal(changed.universe.excluded[: t + 1], base.universe.excluded[: t + 1])
    # and a load as of t agrees with the full load on every session through t
    asof = load_pool_prices(_write(tmp_path / "c", later), pool_for(SYMBOLS), _data(),
                            asof=base.panel.sessions[t].date())
    np.testing.assert_array_equal(asof.universe.excluded, base.universe.excluded[: t + 1])


def test_an_undated_row_is_placed_at_the_last_dated_line_before_it(tmp_path) -> None:
    folder = tmp_path / "d"
    source = _write(folder, _frames())
    path = folder / "510500.csv"
    lines = path.read_text().splitlines()
    cells = lines[91].split(",")
    cells[0] = ""  # data row 91 loses its date
    lines[91] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    loaded = load_pool_prices(source, pool_for(SYMBOLS), _data())
    assert set(loaded.quarantine["reason"]) == {q.MISSING_DATE}
    i = SYMBOLS.index("510500")
    # data row 90 (the dated line before it) is panel row 89: the row counts from there
    assert loaded.universe.excluded[89: 89 + WINDOW, i].all() and not loaded.universe.excluded[89 + WINDOW:, i].any()
    assert "undated: placed at" in loaded.universe.reasons(100)["510500"]


def test_min_funds_is_validated() -> None:
    base = pool_for(SYMBOLS).model_dump()
    assert PoolConfig(**base).min_funds == 2
    assert PoolConfig(**{**base, "min_funds": 4}).min_funds == 4
    with pytest.raises(ValidationError, match=r"min_funds 5 is more than the 4 symbols of pool TEST"):
        PoolConfig(**{**base, "min_funds": 5})
    with pytest.raises(ValidationError, match="min_funds"):
        PoolConfig(**{**base, "min_funds": 0})
    with pytest.raises(ValidationError, match="exclusion_window"):
        QualityConfig(exclusion_window=0)


def test_real_other_pool_160520_is_ended_and_excluded_where_its_data_is_thin(real_pools, cn_config) -> None:
    other = real_pools["OTHER"]
    u = other.universe
    assert u.window == cn_config.data.quality.exclusion_window == 252
    i = u.symbols.index("160520")
    close = other.panel["close"]["160520"]
    rows = np.flatnonzero(u.excluded[:, i])
    # excluded from its first bar on, while its findings are inside the window -- never a window after its
    # last bar
    first = int(np.argmax(close.notna().to_numpy()))
    last = int(other.panel.sessions.get_loc(close.last_valid_index()))
    assert rows.size > 0 and rows.min() == first and rows.max() < last + u.window
    assert any("missing_sessions" in u.reasons(int(r))["160520"] for r in rows[::50])
    # at the panel's last session nobody is excluded: 160520 is simply ended (a finding with its date)
    assert not u.excluded[-1].any()
    ended = {f.symbol: f for f in other.report.select(q.DATA_ENDED)}
    assert ended["160520"].dates == ("2021-04-28",)
    assert any(f.symbol == "160520" for f in other.report.select(q.DATA_STARTS_LATE))
    # every other fund is excluded only during its first min_history_sessions bars
    minimum = cn_config.data.quality.min_history_sessions
    for j, s in enumerate(u.symbols):
        if s != "160520":
            first = int(np.argmax(other.panel["close"][s].notna().to_numpy()))
            assert np.flatnonzero(u.excluded[:, j]).tolist() == list(range(first, first + minimum - 1)), s
    assert get_calendar("XSHG").is_session(other.panel.sessions[-1])
