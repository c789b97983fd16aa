"""Actual positions tables: the documented layout, its errors, the directory and store sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rotation_platform.errors import PositionsError
from rotation_platform.production.positions import (
    DirectoryPositions,
    StorePositions,
    read_positions_file,
)
from rotation_platform.storage.files import FileStore

SYMBOLS = ("510300", "512800", "513100")


def write(tmp_path, text: str, name: str = "2026-08-03.csv"):
    path = tmp_path / "A_SHARE" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_layout_reads_shares_and_cash(tmp_path) -> None:
    path = write(tmp_path, "symbol,shares,cash\n510300,120000,\n512800,\"300,000\",\nCASH,,845210.37\n")
    pos = read_positions_file(path, pool="A_SHARE", session="2026-08-03", symbols=SYMBOLS)
    assert pos.shares == {"510300": 120_000.0, "512800": 300_000.0}
    assert pos.cash == pytest.approx(845_210.37)
    np.testing.assert_array_equal(pos.shares_array(SYMBOLS), [120_000.0, 300_000.0, 0.0])
    assert pos.source == str(path)


def test_leading_zeros_dropped_by_a_spreadsheet_are_restored(tmp_path) -> None:
    path = write(tmp_path, "symbol,shares,cash\n10300,100,\nCASH,,0\n")
    pos = read_positions_file(path, pool="A_SHARE", session="2026-08-03", symbols=("010300", "512800"))
    assert pos.shares == {"010300": 100.0}


@pytest.mark.parametrize("text,message", [
    ("symbol,shares,cash\n510300,100,\n", "no CASH row"),
    ("symbol,shares,cash\n999999,100,\nCASH,,0\n", "999999 is not a fund of pool A_SHARE"),
    ("symbol,shares,cash\n510300,100.5,\nCASH,,0\n", "shares must be a whole number"),
    ("symbol,shares,cash\n510300,-100,\nCASH,,0\n", "shares must be a whole number"),
    ("symbol,shares,cash\n510300,abc,\nCASH,,0\n", "'abc' is not a number"),
    ("symbol,shares,cash\n510300,100,\n510300,200,\nCASH,,0\n", "listed twice"),
    ("symbol,shares,cash\n510300,100,5\nCASH,,0\n", "cash belongs on the CASH row"),
    ("symbol,shares,cash\nCASH,,\n", "needs the cash balance"),
    ("symbol,shares,cash\nCASH,,-1\n", "needs the cash balance"),
    ("code,qty\n510300,100\n", "missing column"),
    ("symbol,shares,cash,price\nCASH,,0,\n", "unknown column"),
])
def test_bad_tables_are_refused_with_the_file_and_the_row(tmp_path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PositionsError, match=message) as info:
        read_positions_file(path, pool="A_SHARE", session="2026-08-03", symbols=SYMBOLS)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_the_directory_source_uses_the_session_itself_and_names_a_stale_file(tmp_path) -> None:
    write(tmp_path, "symbol,shares,cash\n510300,100,\nCASH,,1000\n", "2026-07-31.csv")
    source = DirectoryPositions(tmp_path)
    assert source("A_SHARE", "2026-07-31", SYMBOLS).cash == 1000.0
    assert source("A_SHARE", "2026-08-03", SYMBOLS) is None
    assert source.latest_before("A_SHARE", "2026-08-03").endswith("2026-07-31.csv")
    frame = pd.DataFrame({"symbol": ["512800", "CASH"], "shares": [500.0, np.nan], "cash": [np.nan, 7.5]})
    frame.to_parquet(tmp_path / "A_SHARE" / "2026-08-03.parquet")
    assert source("A_SHARE", "2026-08-03", SYMBOLS).shares == {"512800": 500.0}


def test_the_store_source_round_trips_a_table(tmp_path) -> None:
    store = FileStore(tmp_path / "store")
    path = write(tmp_path, "symbol,shares,cash\n513100,2000,\nCASH,,12.5\n")
    pos = read_positions_file(path, pool="A_SHARE", session="2026-08-03", symbols=SYMBOLS)
    source = StorePositions(store)
    assert source("A_SHARE", "2026-08-03", SYMBOLS) is None
    source.put(pos)
    back = source("A_SHARE", "2026-08-03", SYMBOLS)
    assert back.shares == pos.shares and back.cash == pos.cash and "store" in back.source
