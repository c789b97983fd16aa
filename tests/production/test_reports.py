"""Tables as the UI and the console show them: row labels kept, numbers formatted by what they are."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rotation_platform.reports.orders import target_lines, target_markdown
from rotation_platform.reports.tables import format_value, markdown_table


def target_block(rebalance: bool = True) -> pd.DataFrame:
    idx = pd.Index(["512800", "512890", "510300"], name="symbol")
    return pd.DataFrame({
        "target_weight": [0.25, 0.25, 0.0], "price": [0.831, 1.203, 4.599], "lot": [100.0] * 3,
        "current_shares": [0.0, 0.0, 606_700.0], "target_shares": [2_954_900.0, 2_041_200.0, 0.0],
        "order_shares": [2_954_900.0, 2_041_200.0, -606_700.0], "side": ["buy", "buy", "sell"],
        "target_value": [2_455_521.9, 2_455_563.6, 0.0], "order_value": [2_456_750.0, 2_456_791.0, 2_788_818.0],
        "adv_utilisation": [0.0433, 0.0503, np.nan], "trade_session": pd.Timestamp("2026-08-04"),
        "rebalance": rebalance, "next_rebalance": pd.Timestamp("2026-08-04"), "params": "top2_reb5_lb252_ic_buf1",
        "book": "simulated", "book_source": "no actual positions configured", "equity": 9_822_402.6, "cash": 22.9,
        "cash_after": 4_901_004.0, "invested_after": 0.4999,
    }, index=idx)


def test_markdown_tables_keep_their_row_labels_and_format_numbers() -> None:
    text = markdown_table(target_block()[["target_weight", "price", "current_shares", "target_shares",
                                          "order_shares", "order_value", "adv_utilisation"]])
    lines = text.splitlines()
    assert lines[0].startswith("| symbol | target_weight | price |")
    assert "| 512800 | 25.00% | 0.831 | 0 | 2,954,900 | +2,954,900 | 2,456,750 | 4.33% |" in lines
    assert "| 510300 | 0.00% | 4.599 | 606,700 | 0 | -606,700 | 2,788,818 |  |" in lines
    assert "e+0" not in text  # no scientific notation for share counts
    # a MultiIndex keeps every level; a metric index keeps the metric names
    multi = pd.DataFrame({"sharpe": [0.25, 0.58]}, index=pd.MultiIndex.from_tuples(
        [(pd.Timestamp("2026-08-03"), "A_SHARE"), (pd.Timestamp("2026-08-03"), "QDII")], names=["session", "pool"]))
    assert "| session | pool | sharpe |" in markdown_table(multi)
    assert "| 2026-08-03 | QDII | 0.58 |" in markdown_table(multi)


def test_values_are_formatted_by_kind() -> None:
    assert format_value(885_800.0, "shares") == "885,800"
    assert format_value(0.123456, "pct") == "12.35%"
    assert format_value(1_234_567.891, "cny") == "1,234,568"
    assert format_value(0.123456789, "number") == "0.1235"
    assert format_value(np.nan, "pct") == "" and format_value(True) == "yes"
    assert format_value(pd.Timestamp("2026-08-04")) == "2026-08-04"


def test_the_target_views_say_rebalance_book_and_cash() -> None:
    md = target_markdown(target_block())
    assert "for 2026-08-04: rebalance" in md and "book simulated (no actual positions configured)" in md
    assert "cash 23 -> 4,901,004 CNY after the orders (49.9% cash, 50.0% invested)" in md
    assert "| 512890 | 25.00% | 1.203 | 100 | 0 | 2,041,200 | +2,041,200 | buy |" in md
    lines = target_lines("A_SHARE", target_block(rebalance=False))
    assert "no rebalance (holdings kept, no orders); next rebalance 2026-08-04" in lines[0]
    assert "model weight" in lines[1]
