"""DirectorySource: the four layouts, and a corpus of broken files each giving its specific error or finding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data import quality as q
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.base import RAW_COLUMNS
from rotation_platform.data.sources.directory import LAYOUTS, DirectorySource, detect_layout, read_nav
from rotation_platform.errors import (
    CorporateActionError,
    DataQualityError,
    DataSourceError,
    PriceDataError,
    UnknownLayoutError,
)

SYMBOL = "510300"
OTHER = "510500"
# the layouts with a header row of their own; the vendor exports (tdx, yahoo, alpha_vantage) have their
# real shapes in test_vendor_layouts.py
LAYOUT_NAMES = ["cn_etf_vendor", "cn_etf", "akshare_em", "plain"]


# ------------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("layout", LAYOUT_NAMES)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_each_layout_reads_in_canonical_units(tmp_path: Path, kit, layout: str, fmt: str) -> None:
    frame = kit.prices(n=30, seed=3)
    table = kit.to_layout(frame, layout, SYMBOL)
    path = tmp_path / f"{SYMBOL}.{fmt}"
    if fmt == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    raw = DirectorySource(tmp_path).read([SYMBOL])[SYMBOL]
    assert raw.layout == layout and raw.file == str(path) and raw.symbol == SYMBOL
    assert list(raw.frame.columns) == [*RAW_COLUMNS, "line"]
    assert raw.frame["line"].tolist() == list(range(1, 31))
    pd.testing.assert_frame_equal(raw.frame[list(RAW_COLUMNS)], frame, check_exact=False, rtol=1e-12)
    # board lots in the file, shares in the records
    lots = table[{"cn_etf": "volume", "cn_etf_vendor": "volume", "akshare_em": "成交量", "plain": "volume"}[layout]]
    factor = 1 if layout == "plain" else 100
    np.testing.assert_allclose(raw.frame["volume"], lots.to_numpy() * factor)


def test_parquet_with_datetime_dates_and_plain_without_amount(tmp_path: Path, kit) -> None:
    frame = kit.prices(n=70, seed=4)
    frame.drop(columns="amount").to_parquet(tmp_path / f"{SYMBOL}.parquet", index=False)
    kit.write_csv(kit.prices(n=70, seed=5), tmp_path / f"{OTHER}.csv")
    loaded = load_pool_prices(DirectorySource(tmp_path), kit.pool((SYMBOL, OTHER)), kit.data_config(tmp_path))
    raw = loaded.raw[SYMBOL].frame
    assert raw["amount"].isna().all() and (raw["date"] == frame["date"]).all()   # the raw records stay as read
    (finding,) = loaded.report.select(q.MISSING_AMOUNT, symbol=SYMBOL)
    assert finding.severity is q.Severity.INFO
    # data.amount: estimate (the default): volume x typical price, marked as estimated
    (estimated,) = loaded.report.select(q.AMOUNT_ESTIMATED, symbol=SYMBOL)
    assert estimated.severity is q.Severity.WARN
    assert SYMBOL in loaded.panel.meta["amount_estimated"] and OTHER not in loaded.panel.meta["amount_estimated"]
    typical = (frame["high"] + frame["low"] + frame["close"]) / 3
    np.testing.assert_allclose(loaded.raw_panel["amount"][SYMBOL].dropna().to_numpy(),
                               (frame["volume"] * typical).to_numpy(), rtol=1e-12)
    assert loaded.panel["volume"][SYMBOL].dropna().to_numpy() == pytest.approx(frame["volume"].to_numpy())


def test_gb18030_and_bom_encoded_csv(tmp_path: Path, kit) -> None:
    frame = kit.prices(n=20, seed=6)
    text = kit.to_layout(frame, "akshare_em").to_csv(index=False)
    (tmp_path / f"{SYMBOL}.csv").write_bytes(text.encode("gb18030"))
    bom_text = "\ufeff" + kit.to_layout(frame, "cn_etf").to_csv(index=False)
    (tmp_path / f"{OTHER}.csv").write_bytes(bom_text.encode("utf-8"))
    raws = DirectorySource(tmp_path).read([SYMBOL, OTHER])
    assert raws[SYMBOL].layout == "akshare_em" and raws[OTHER].layout == "cn_etf"
    for raw in raws.values():
        pd.testing.assert_frame_equal(raw.frame[list(RAW_COLUMNS)], frame)


def test_detection_prefers_the_most_specific_layout_and_ignores_case_and_blanks() -> None:
    layout, mapping = detect_layout([" Trade_Date", "OPEN", "high", "low", "close", "volume", "amount", "date"])
    assert layout.name == "cn_etf" and mapping["date"] == " Trade_Date"
    layout, mapping = detect_layout(["date", "open", "high", "low", "close", "volume"])
    assert layout.name == "plain" and "amount" not in mapping


def test_describe_names_the_folder_and_each_files_layout(tmp_path: Path, kit) -> None:
    kit.write_csv(kit.prices(n=10), tmp_path / f"{SYMBOL}.csv", layout="cn_etf_vendor")
    kit.to_layout(kit.prices(n=10), "plain").to_parquet(tmp_path / f"{OTHER}.parquet", index=False)
    source = DirectorySource(tmp_path)
    source.read([SYMBOL, OTHER])
    info = source.describe()
    assert info["source"] == "directory" and info["synthetic"] is False
    assert info["directory"] == str(tmp_path.resolve())
    assert info["files"][SYMBOL]["layout"] == "cn_etf_vendor" and info["files"][SYMBOL]["rows"] == 10
    assert info["files"][OTHER] == {**info["files"][OTHER], "file": f"{OTHER}.parquet", "layout": "plain"}


def test_corporate_action_files(tmp_path: Path, kit) -> None:
    kit.write_csv(kit.prices(n=10), tmp_path / f"{SYMBOL}.csv")
    (tmp_path / f"{SYMBOL}_hfq_factor.csv").write_text("trade_date,hfq_factor\n2024-01-03,1.0\n2024-01-02,1.0\n"
                                                      "2024-01-04,2.0\n")
    (tmp_path / "platform_splits.csv").write_text(
        "code,name,year,split_date,split_type,raw_text,split_ratio\n"
        f"{SYMBOL},x,2024年,2024-01-05,份额分拆,1:2.0000,2.0\n999999,y,2024年,2024-01-05,份额分拆,1:2,2.0\n")
    (tmp_path / "platform_dividends.csv").write_text(
        "code,name,year,record_date,ex_date,raw_text,dividend_per_share,payment_date\n"
        f"{SYMBOL},x,2024年,2024-01-08,2024-01-09,每份派现金0.05元,0.05,2024-01-12\n"
        f"{SYMBOL},x,2023年,2023-01-08,2023-01-09,,0.0,2023-01-12\n")
    actions = DirectorySource(tmp_path).corporate_actions([SYMBOL])
    factor = actions.factors[SYMBOL]
    assert list(factor.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03", "2024-01-04"]
    # split_date 2024-01-05 is a Friday: effective from the next session, Monday 2024-01-08
    assert actions.splits.to_dict("records") == [{"symbol": SYMBOL, "date": pd.Timestamp("2024-01-08"),
                                                  "ratio": 2.0}]
    # zero-cash rows change nothing and are left out
    assert actions.dividends.to_dict("records") == [{"symbol": SYMBOL, "date": pd.Timestamp("2024-01-09"),
                                                     "cash": 0.05}]


def test_read_nav(tmp_path: Path, shared_data: Path) -> None:
    nav = read_nav(shared_data, "513100")
    assert nav is not None and list(nav.columns) == ["date", "unit_nav", "cum_nav"]
    assert nav["date"].is_monotonic_increasing and len(nav) > 3000 and (nav["unit_nav"] > 0).all()
    assert read_nav(shared_data, "510300") is None
    assert read_nav(tmp_path, "513100") is None


# ------------------------------------------------------------------------------------ broken corpus
def _set(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """Set one cell of data row ``row`` (1-based) in CSV lines [header, rows...]."""
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    out = list(lines)
    out[row] = ",".join(cells)
    return out


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


BASE = dict(n=80, seed=11)


@dataclass(frozen=True)
class Broken:
    """One broken price folder and what it must give.

    ``build(folder, kit, base)`` writes the broken fund's files (the companion fund OTHER is written by the
    test). Either ``error`` (type and message parts) or ``check`` (finding, severity, quarantined lines).
    """

    id: str
    build: Callable[[Path, object, pd.DataFrame], None]
    error: type[Exception] | None = None
    parts: tuple[str, ...] = ()
    check: str | None = None
    severity: q.Severity | None = None
    lines: tuple[int, ...] = ()
    count: int | None = None
    quality: tuple[tuple[str, object], ...] = ()


def _write(folder: Path, text: str, name: str = f"{SYMBOL}.csv") -> None:
    (folder / name).write_text(text, encoding="utf-8")


def _lines(kit, base: pd.DataFrame, layout: str = "cn_etf") -> list[str]:
    return kit.csv_lines(base, layout, SYMBOL)


def _day(base: pd.DataFrame, row: int) -> str:
    return str(base["date"].iloc[row - 1].date())


def _scaled_from(kit, base: pd.DataFrame, row: int, factor: float) -> list[str]:
    frame = base.copy()
    for col in ("open", "high", "low", "close"):
        frame.loc[row - 1:, col] = (frame.loc[row - 1:, col] * factor).round(3)
    return _lines(kit, frame)


def _stale(kit, base: pd.DataFrame) -> list[str]:
    frame = base.copy()
    frame.loc[39:45, ["open", "high", "low", "close"]] = frame.loc[39, "close"]
    return _lines(kit, frame)


def _zero_volume(kit, base: pd.DataFrame) -> list[str]:
    frame = base.copy()
    frame.loc[[49, 50], ["volume", "amount"]] = 0.0
    return _lines(kit, frame)


def _all_non_positive(kit, base: pd.DataFrame) -> list[str]:
    frame = base.copy()
    frame[["open", "high", "low", "close"]] = -1.0
    return _lines(kit, frame)


CORPUS: list[Broken] = [
    # ------------------------------------------------------------------ unreadable: the read raises
    Broken("unknown_layout", lambda d, k, b: _write(d, "day,price,qty\n2024-01-02,1.0,100\n"),
           UnknownLayoutError, ("510300.csv", "found columns [day, price, qty]", "cn_etf:", "akshare_em:",
                                "plain:", "trade_date")),
    Broken("missing_file", lambda d, k, b: None, DataSourceError, ("no price file for symbol 510300", "in folder")),
    Broken("unparseable_date", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 3, "trade_date", "2024-13-45"))),
           PriceDataError, ("510300.csv", "symbol 510300", "data row 3", "line 4 of the file", "'trade_date'",
                            "'2024-13-45'")),
    Broken("unparseable_number", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 5, "close", "abc"))),
           PriceDataError, ("510300.csv", "symbol 510300", "date 2024-01-08", "data row 5", "'close'", "'abc'")),
    Broken("several_unparseable_cells", lambda d, k, b: _write(d, _text(
        _set(_set(_lines(k, b), 9, "volume", "1.2.3"), 2, "high", "n/a?"))),
        PriceDataError, ("2 unreadable value(s)", "data row 2", "'high'", "data row 9", "'volume'")),
    Broken("empty_file", lambda d, k, b: _write(d, ""), PriceDataError, ("510300.csv", "empty")),
    Broken("ragged_row", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 4, "source", "finshare,x,y"))),
           PriceDataError, ("510300.csv", "symbol 510300", "malformed CSV", "line 5")),
    Broken("extra_field_on_every_row", lambda d, k, b: _write(d, _text([(ls := _lines(k, b, "plain"))[0]]
                                                                        + [line + ",x" for line in ls[1:]])),
           PriceDataError, ("510300.csv", "symbol 510300", "malformed CSV",
                            "1 more field(s) than the 7-column header")),
    Broken("row_of_another_fund", lambda d, k, b: _write(d, _text(_set(_lines(k, b, "cn_etf_vendor"), 7, "code",
                                                                        "510500.SH"))),
           PriceDataError, ("510300.csv", "symbol 510300", "another fund", "data row 7", "'510500.SH'")),
    Broken("repeated_column", lambda d, k, b: _write(d, _text(["trade_date,open,high,low,close,close,volume,amount",
                                                               "2024-01-02,1,1,1,1,1,10,1000"])),
           PriceDataError, ("510300.csv", "'close' appears 2 times")),
    Broken("csv_and_parquet", lambda d, k, b: (_write(d, _text(_lines(k, b))),
                                               k.to_layout(b, "plain").to_parquet(d / f"{SYMBOL}.parquet")),
           DataSourceError, ("symbol 510300 has several price files", "510300.csv", "510300.parquet")),
    Broken("corrupt_parquet", lambda d, k, b: (d / f"{SYMBOL}.parquet").write_bytes(b"PAR1 this is not parquet"),
           PriceDataError, ("510300.parquet", "symbol 510300", "unreadable Parquet")),
    Broken("negative_factor", lambda d, k, b: (_write(d, _text(_lines(k, b))),
                                               _write(d, "trade_date,hfq_factor\n2024-01-02,1.0\n2024-01-03,-2\n",
                                                      f"{SYMBOL}_hfq_factor.csv")),
           CorporateActionError, ("510300_hfq_factor.csv", "symbol 510300", "data row 2", "positive")),
    Broken("unreadable_split_ratio", lambda d, k, b: (_write(d, _text(_lines(k, b))),
                                                      _write(d, "code,split_date,split_ratio\n510300,2024-02-01,x\n",
                                                             "platform_splits.csv")),
           CorporateActionError, ("platform_splits.csv", "data row 1", "'split_ratio'", "'x'")),
    # ------------------------------------------------------------------ readable: quality findings
    Broken("identical_duplicate", lambda d, k, b: _write(d, _text((ls := _lines(k, b))[:11] + [ls[10]] + ls[11:])),
           check=q.DUPLICATE_DATE, severity=q.Severity.WARN, lines=(11,)),
    Broken("conflicting_duplicate", lambda d, k, b: _write(d, _text(
        (ls := _lines(k, b))[:11] + [_set(ls, 10, "close", str(b["close"].iloc[9] + 0.001))[10]] + ls[11:])),
        check=q.CONFLICTING_DUPLICATE, severity=q.Severity.ERROR, lines=(10, 11)),
    Broken("weekend_date", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 20, "trade_date", "2024-01-27"))),
           check=q.NON_SESSION_DATE, severity=q.Severity.ERROR, lines=(20,)),
    Broken("holiday_date", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 20, "trade_date", "2024-02-12"))),
           check=q.NON_SESSION_DATE, severity=q.Severity.ERROR, lines=(20,)),
    Broken("low_above_close", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 15, "low",
                                                                   str(b["close"].iloc[14] + 0.1)))),
           check=q.OHLC_INCONSISTENT, severity=q.Severity.ERROR, lines=(15,)),
    Broken("zero_price", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 12, "close", "0"))),
           check=q.NON_POSITIVE_PRICE, severity=q.Severity.ERROR, lines=(12,)),
    Broken("negative_volume", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 8, "volume", "-5"))),
           check=q.NEGATIVE_VOLUME, severity=q.Severity.ERROR, lines=(8,)),
    Broken("blank_close", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 9, "close", ""))),
           check=q.MISSING_PRICE, severity=q.Severity.ERROR, lines=(9,)),
    Broken("blank_date", lambda d, k, b: _write(d, _text(_set(_lines(k, b), 30, "trade_date", ""))),
           check=q.MISSING_DATE, severity=q.Severity.ERROR, lines=(30,)),
    Broken("future_date", lambda d, k, b: _write(d, _text(_lines(k, b) + [
        _set(_lines(k, b), 80, "trade_date", "2099-01-05")[80]])),
        check=q.FUTURE_DATE, severity=q.Severity.ERROR, lines=(81,)),
    Broken("unsorted_rows", lambda d, k, b: _write(d, _text((ls := _lines(k, b))[:5] + [ls[6], ls[5]] + ls[7:])),
           check=q.UNSORTED_DATES, severity=q.Severity.WARN, lines=(), count=1),
    Broken("stale_closes", lambda d, k, b: _write(d, _text(_stale(k, b))),
           check=q.STALE_PRICE, severity=q.Severity.WARN, lines=(), count=7),
    Broken("zero_volume", lambda d, k, b: _write(d, _text(_zero_volume(k, b))),
           check=q.ZERO_VOLUME, severity=q.Severity.WARN, lines=(), count=2),
    Broken("missing_sessions", lambda d, k, b: _write(d, _text((ls := _lines(k, b))[:60] + ls[63:])),
           check=q.MISSING_SESSIONS, severity=q.Severity.WARN, lines=(), count=3),
    Broken("too_many_missing_sessions", lambda d, k, b: _write(d, _text((ls := _lines(k, b))[:20] + ls[40:])),
           check=q.MISSING_SESSIONS, severity=q.Severity.ERROR, lines=(), count=20),
    Broken("unexplained_jump", lambda d, k, b: _write(d, _text(_scaled_from(k, b, 70, 2.0))),
           check=q.UNEXPLAINED_JUMP, severity=q.Severity.ERROR, lines=(), count=1),
    Broken("split_with_wrong_ratio", lambda d, k, b: (
        _write(d, _text(_scaled_from(k, b, 40, 0.5))),
        _write(d, f"symbol,date,ratio\n{SYMBOL},{_day(b, 40)},3.0\n", "platform_splits.csv")),
        check=q.ACTION_MISMATCH, severity=q.Severity.ERROR, lines=(), count=1),
    Broken("volume_in_lots_labelled_shares", lambda d, k, b: _write(d, k.to_layout(
        b.assign(volume=b["volume"] / 100), "plain").to_csv(index=False)),
        check=q.VWAP_OUTSIDE_RANGE, severity=q.Severity.WARN, lines=(), count=80),
    Broken("short_history", lambda d, k, b: _write(d, _text(_lines(k, b)[:11])),
           check=q.SHORT_HISTORY, severity=q.Severity.ERROR, lines=(), count=10),
    Broken("all_prices_non_positive", lambda d, k, b: _write(d, _text(_all_non_positive(k, b))),
           DataQualityError, ("510300.csv", "symbol 510300", "no_valid_rows", "every price is non-positive",
                              "date 2024-01-02")),
    Broken("header_only", lambda d, k, b: _write(d, _text(_lines(k, b)[:1])),
           DataQualityError, ("510300.csv", "symbol 510300", "no_valid_rows", "no data rows")),
    Broken("unexplained_jump_under_fail_on_error", lambda d, k, b: _write(d, _text(_scaled_from(k, b, 70, 2.0))),
           DataQualityError, ("510300.csv", "symbol 510300", "date 2024-04-18", "unexplained_jump", "data row(s) 70"),
           quality=(("fail_on", "error"),)),
]


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_broken_file_gives_its_specific_error_or_finding(tmp_path: Path, kit, case: Broken) -> None:
    base = kit.prices(**BASE)
    kit.write_csv(kit.prices(n=80, seed=99), tmp_path / f"{OTHER}.csv")
    case.build(tmp_path, kit, base)
    before = kit.snapshot(tmp_path)
    pool = kit.pool((SYMBOL, OTHER))
    cfg = kit.data_config(tmp_path, **dict(case.quality))

    if case.error is not None:
        with pytest.raises(case.error) as info:
            load_pool_prices(DirectorySource(tmp_path), pool, cfg)
        message = str(info.value)
        for part in case.parts:
            assert part in message, f"{part!r} not in: {message}"
        if isinstance(info.value, DataQualityError):
            assert info.value.symbol == SYMBOL and info.value.file.endswith(f"{SYMBOL}.csv")
            assert isinstance(info.value.report, q.QualityReport)
    else:
        loaded = load_pool_prices(DirectorySource(tmp_path), pool, cfg)
        found = loaded.report.select(case.check, symbol=SYMBOL)
        assert len(found) == 1, loaded.report.summary()
        finding = found[0]
        assert finding.severity is case.severity
        assert finding.file == str(tmp_path / f"{SYMBOL}.csv")
        if case.count is not None:
            assert finding.count == case.count
        quarantined = loaded.quarantine[loaded.quarantine["symbol"] == SYMBOL]
        spec = q.CHECKS_BY_NAME[case.check]
        if spec.quarantines:
            assert quarantined["reason"].eq(case.check).all()
            assert tuple(quarantined["line"]) == case.lines == finding.lines
            assert finding.count == len(quarantined)
            # the original values travel with the quarantined rows
            raw = loaded.raw[SYMBOL].frame.set_index("line")
            for col in ("open", "high", "low", "close", "volume", "amount"):
                np.testing.assert_array_equal(quarantined[col].to_numpy(), raw.loc[list(case.lines), col].to_numpy())
            assert not loaded.panel["close"][SYMBOL].isna().all()
        else:
            assert quarantined.empty
        # the companion fund is untouched by its neighbour's problems
        assert not loaded.report.select(symbol=OTHER, min_severity=q.Severity.WARN)
    assert kit.snapshot(tmp_path) == before, "reading must not write into the source folder"


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15
    assert len({c.check for c in CORPUS if c.check}) >= 15


def test_unsorted_rows_give_the_same_panel_as_sorted_rows(tmp_path: Path, kit) -> None:
    base = kit.prices(**BASE)
    lines = kit.csv_lines(base)
    for name, text in (("sorted", lines), ("shuffled", [lines[0], *lines[1:][::-1]])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{SYMBOL}.csv").write_text("\n".join(text) + "\n")
        kit.write_csv(kit.prices(n=80, seed=99), folder / f"{OTHER}.csv")
    a = load_pool_prices(DirectorySource(tmp_path / "sorted"), kit.pool((SYMBOL, OTHER)), kit.data_config(tmp_path))
    b = load_pool_prices(DirectorySource(tmp_path / "shuffled"), kit.pool((SYMBOL, OTHER)),
                         kit.data_config(tmp_path))
    assert a.panel.equals(b.panel)
    (order,) = b.report.select(q.UNSORTED_DATES, symbol=SYMBOL)   # wholly reversed: newest first, INFO
    assert order.severity is q.Severity.INFO and "lists its 80 rows newest first" in order.message
    assert b.raw[SYMBOL].frame["date"].iloc[0] == base["date"].iloc[-1]   # raw stays in file order


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        DirectorySource(tmp_path / "nowhere")


def test_asof_before_a_listing_leaves_an_empty_column(tmp_path: Path, kit) -> None:
    kit.write_csv(kit.prices(n=80, seed=1), tmp_path / f"{SYMBOL}.csv")
    kit.write_csv(kit.prices(n=30, seed=2, start="2024-04-01"), tmp_path / f"{OTHER}.csv")   # lists later
    pool, cfg = kit.pool((SYMBOL, OTHER)), kit.data_config(tmp_path, min_history_sessions=20)
    loaded = load_pool_prices(DirectorySource(tmp_path), pool, cfg, asof="2024-03-15")
    assert loaded.panel.sessions[-1] == pd.Timestamp("2024-03-15")
    assert loaded.panel["close"][OTHER].isna().all() and loaded.panel["close"][SYMBOL].notna().all()
    assert set(loaded.quarantine["reason"]) == {q.AFTER_ASOF} and loaded.report.passed
    assert OTHER not in loaded.adjustments
    with pytest.raises(DataQualityError, match="no fund of pool TEST has a valid row on or before the as-of date"):
        load_pool_prices(DirectorySource(tmp_path), pool, cfg, asof="2023-12-29")
