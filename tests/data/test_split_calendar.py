"""A split in ``platform_splits.csv`` names the last day on the old basis; it takes effect on the next
session of the fund's own exchange, not of another pool's."""

from __future__ import annotations

import pandas as pd

from rotation_platform.data.sources.directory import DirectorySource


def test_a_split_takes_effect_on_the_next_session_of_the_funds_calendar(tmp_path) -> None:
    # 2021-07-02 is a Friday; 2021-07-05 is an XSHG session and a US holiday (Independence Day observed)
    (tmp_path / "platform_splits.csv").write_text("code,split_date,split_ratio\nQQQ,2021-07-02,2\n510300,2021-07-02,2\n")
    for symbol in ("QQQ", "510300"):
        (tmp_path / f"{symbol}.csv").write_text("date,open,high,low,close,volume\n2021-07-01,1,1,1,1,100\n")
    source = DirectorySource(tmp_path, calendars={"QQQ": "XNYS", "510300": "XSHG"})
    splits = source.corporate_actions(["QQQ", "510300"]).splits.set_index("symbol")["date"]
    assert splits["QQQ"] == pd.Timestamp("2021-07-06")
    assert splits["510300"] == pd.Timestamp("2021-07-05")
    # without a calendar of its own a fund is on the source's calendar (XSHG by default)
    alone = DirectorySource(tmp_path).corporate_actions(["QQQ"]).splits
    assert alone["date"].tolist() == [pd.Timestamp("2021-07-05")]
