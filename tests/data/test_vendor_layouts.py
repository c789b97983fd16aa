"""Vendor layouts (通达信, Yahoo/yfinance, Alpha Vantage, headerless), file names with exchange prefixes and
suffixes, volume units, Adj Close factors and the unknown-layout error.

Each layout is written in its real shape from the same records as a plain-layout file, and must ingest
to the same frame (DirectorySource.read) and the same panels (load_pool_prices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rotation_platform.data import quality as q
from rotation_platform.data.pipeline import load_pool_prices
from rotation_platform.data.sources.directory import DirectorySource
from rotation_platform.data.sources.layouts import closest_layout, file_symbol, sniff_text
from rotation_platform.errors import CorporateActionError, DataSourceError, PriceDataError, UnknownLayoutError

SYMBOL = "510300"
OTHER = "510500"
US = "SPY"
N = 80


# ------------------------------------------------------------------------------------------ writers
def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e15 else repr(float(x))


def _plain(frame: pd.DataFrame, amount: bool = True) -> str:
    cols = ["date", "open", "high", "low", "close", "volume"] + (["amount"] if amount else [])
    rows = [",".join(cols)]
    for r in frame.itertuples(index=False):
        values = [r.date.strftime("%Y-%m-%d")] + [_num(getattr(r, c)) for c in cols[1:]]
        rows.append(",".join(values))
    return "\n".join(rows) + "\n"


def _tdx_rows(frame: pd.DataFrame, sep: str, amount: bool = True) -> list[str]:
    out = []
    for r in frame.itertuples(index=False):
        cells = [r.date.strftime("%Y/%m/%d"), *(_num(getattr(r, c)) for c in ("open", "high", "low", "close"))]
        cells.append(_num(r.volume))
        if amount:
            cells.append(f"{r.amount:.2f}")
        out.append(sep.join(cells))
    return out


def _tdx(frame: pd.DataFrame, sep: str = "\t", code: str = SYMBOL) -> str:
    header = sep.join(f"    {c}" for c in ("日期", "开盘", "最高", "最低", "收盘", "成交量", "成交额"))
    lines = [f"{code} 沪深300ETF 日线 不复权", header, *_tdx_rows(frame, sep), "数据来源:通达信"]
    return "\r\n".join(lines) + "\r\n"


def _yahoo(frame: pd.DataFrame, adj: np.ndarray | None = None) -> str:
    adj = frame["close"].to_numpy() if adj is None else adj
    rows = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for r, a in zip(frame.itertuples(index=False), adj):
        rows.append(",".join([r.date.strftime("%Y-%m-%d"), *(_num(getattr(r, c)) for c in ("open", "high", "low",
                                                                                             "close")),
                              repr(float(a)), _num(r.volume)]))
    return "\n".join(rows) + "\n"


def _yfinance(frame: pd.DataFrame, ticker: str = US, adj: np.ndarray | None = None) -> str:
    adj = frame["close"].to_numpy() if adj is None else adj
    rows = ["Price,Adj Close,Close,High,Low,Open,Volume", "Ticker," + ",".join([ticker] * 6), "Date,,,,,,"]
    for r, a in zip(frame.itertuples(index=False), adj):
        rows.append(",".join([r.date.strftime("%Y-%m-%d") + " 00:00:00-05:00", repr(float(a)),
                              *(_num(getattr(r, c)) for c in ("close", "high", "low", "open")), _num(r.volume)]))
    return "\n".join(rows) + "\n"


def _alpha_vantage(frame: pd.DataFrame, names: str = "csv", adj: np.ndarray | None = None,
                   dividend: np.ndarray | None = None, split: np.ndarray | None = None) -> str:
    adjusted = adj is not None
    if names == "csv":
        head = ["timestamp", "open", "high", "low", "close"] + (["adjusted_close"] if adjusted else []) + ["volume"]
        head += ["dividend_amount", "split_coefficient"] if adjusted else []
    else:
        head = ["date", "1. open", "2. high", "3. low", "4. close"]
        head += ["5. adjusted close", "6. volume", "7. dividend amount", "8. split coefficient"] if adjusted \
            else ["5. volume"]
    rows = [",".join(head)]
    for i in range(len(frame) - 1, -1, -1):        # newest first
        r = frame.iloc[i]
        cells = [r["date"].strftime("%Y-%m-%d"), *(_num(r[c]) for c in ("open", "high", "low", "close"))]
        if adjusted:
            cells += [repr(float(adj[i])), _num(r["volume"]), f"{dividend[i]:.4f}", repr(float(split[i]))]
        else:
            cells.append(_num(r["volume"]))
        rows.append(",".join(cells))
    return "\n".join(rows) + "\n"


def _folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def _same_panels(a, b) -> None:
    for field in ("open", "high", "low", "close", "volume", "amount"):
        pd.testing.assert_frame_equal(a.panel[field], b.panel[field], check_exact=False, rtol=1e-12)
        pd.testing.assert_frame_equal(a.raw_panel[field], b.raw_panel[field], check_exact=False, rtol=1e-12)
    np.testing.assert_allclose(a.actions.split, b.actions.split)
    np.testing.assert_allclose(a.actions.dividend, b.actions.dividend)


def _load(folder: Path, kit, symbols=(SYMBOL, OTHER), **data):
    cfg = kit.data_config(folder).model_copy(update=data)
    return load_pool_prices(DirectorySource.from_config(cfg), kit.pool(symbols), cfg)


@pytest.fixture
def base(kit) -> pd.DataFrame:
    return kit.prices(n=N, seed=11)


@pytest.fixture
def plain_dir(tmp_path: Path, kit, base: pd.DataFrame) -> Path:
    folder = _folder(tmp_path, "plain")
    (folder / f"{SYMBOL}.csv").write_text(_plain(base))
    (folder / f"{OTHER}.csv").write_text(_plain(kit.prices(n=N, seed=12)))
    return folder


def _companion(folder: Path, kit) -> None:
    (folder / f"{OTHER}.csv").write_text(_plain(kit.prices(n=N, seed=12)))


# ------------------------------------------------------------------------------------------ 通达信
@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
@pytest.mark.parametrize("sep", ["\t", ","])
@pytest.mark.parametrize("name", ["SH#510300.txt", "510300.txt", "sh510300.csv"])
def test_tdx_export_ingests_equal_to_plain(tmp_path: Path, kit, base, plain_dir, encoding, sep, name) -> None:
    folder = _folder(tmp_path, "tdx")
    (folder / name).write_bytes(_tdx(base, sep).encode(encoding))
    _companion(folder, kit)
    raw = DirectorySource(folder).read([SYMBOL])[SYMBOL]
    ref = DirectorySource(plain_dir).read([SYMBOL])[SYMBOL]
    assert raw.layout == "tdx" and raw.file == str(folder / name)
    pd.testing.assert_frame_equal(raw.frame, ref.frame)
    assert raw.meta["encoding"] == ("gb18030" if encoding == "gbk" else "utf-8")
    assert raw.meta["delimiter"] == sep and raw.meta["volume_unit_shares"] == 1
    assert raw.meta["skipped_lines"] == [{"line": 1, "text": "510300 沪深300ETF 日线 不复权"},
                                         {"line": N + 3, "text": "数据来源:通达信"}]
    assert raw.meta["vendor_adjustment"] == "none"
    _same_panels(_load(folder, kit), _load(plain_dir, kit))


def test_tdx_unreadable_cell_names_the_file_line(tmp_path: Path, kit, base) -> None:
    text = _tdx(base).replace(base["date"].iloc[4].strftime("%Y/%m/%d") + "\t", "2024/13/45\t", 1)
    (tmp_path / f"{SYMBOL}.txt").write_bytes(text.encode("gbk"))
    with pytest.raises(PriceDataError) as info:
        DirectorySource(tmp_path).read([SYMBOL])
    message = str(info.value)
    for part in (f"{SYMBOL}.txt", "data row 5", "line 7 of the file", "'2024/13/45'", "日期"):
        assert part in message, message


def test_tdx_title_of_another_fund_is_refused(tmp_path: Path, base) -> None:
    (tmp_path / f"{SYMBOL}.txt").write_bytes(_tdx(base, code="510500").encode("gbk"))
    with pytest.raises(PriceDataError, match=r"names fund 510500, the file is read for symbol 510300"):
        DirectorySource(tmp_path).read([SYMBOL])


@pytest.mark.parametrize("sep", [",", "\t", ";"])
@pytest.mark.parametrize("amount", [True, False])
def test_headerless_file_is_read_in_tdx_order(tmp_path: Path, kit, base, sep, amount) -> None:
    folder = _folder(tmp_path, "bare")
    (folder / f"{SYMBOL}.csv").write_text("\n".join(_tdx_rows(base, sep, amount)) + "\n")
    _companion(folder, kit)
    ref_dir = _folder(tmp_path, "ref")
    (ref_dir / f"{SYMBOL}.csv").write_text(_plain(base, amount=amount))
    _companion(ref_dir, kit)
    raw = DirectorySource(folder).read([SYMBOL])[SYMBOL]
    assert raw.layout == "tdx" and raw.meta["header"].startswith("none") and raw.meta["amount_present"] is amount
    pd.testing.assert_frame_equal(raw.frame, DirectorySource(ref_dir).read([SYMBOL])[SYMBOL].frame)
    _same_panels(_load(folder, kit), _load(ref_dir, kit))


# -------------------------------------------------------------------------------------- yahoo/yfinance
@pytest.mark.parametrize("shape", ["yahoo", "yfinance"])
def test_yahoo_and_yfinance_ingest_equal_to_plain(tmp_path: Path, kit, base, shape) -> None:
    folder = _folder(tmp_path, shape)
    (folder / f"{US}.csv").write_text(_yahoo(base) if shape == "yahoo" else _yfinance(base))
    (folder / f"{OTHER}.csv").write_text(_plain(kit.prices(n=N, seed=12)))
    ref_dir = _folder(tmp_path, "ref")
    (ref_dir / f"{US}.csv").write_text(_plain(base, amount=False))
    _companion(ref_dir, kit)
    raw = DirectorySource(folder).read([US])[US]
    assert raw.layout == "yahoo" and raw.meta["amount_present"] is False
    assert raw.meta["header"] == ("1 row" if shape == "yahoo" else "3 rows (yfinance Price/Ticker/Date)")
    pd.testing.assert_frame_equal(raw.frame, DirectorySource(ref_dir).read([US])[US].frame)
    loaded, ref = _load(folder, kit, (US, OTHER)), _load(ref_dir, kit, (US, OTHER))
    _same_panels(loaded, ref)
    assert loaded.adjustments[US].method == "hfq_factor"   # an Adj Close equal to Close: factor 1 throughout
    np.testing.assert_allclose(loaded.adjustments[US].factor.to_numpy(), 1.0)


def test_yfinance_ticker_row_of_another_symbol_is_refused(tmp_path: Path, base) -> None:
    (tmp_path / f"{US}.csv").write_text(_yfinance(base, ticker="QQQ"))
    with pytest.raises(PriceDataError) as info:
        DirectorySource(tmp_path).read([US])
    assert "Ticker row (line 2) names QQQ" in str(info.value) and "symbol SPY" in str(info.value)


# ------------------------------------------------------------------------------------- alpha vantage
@pytest.mark.parametrize("names", ["csv", "json"])
def test_alpha_vantage_newest_first_gives_the_same_panel(tmp_path: Path, kit, base, names) -> None:
    folder = _folder(tmp_path, "av")
    (folder / f"{US}.csv").write_text(_alpha_vantage(base, names))
    _companion(folder, kit)
    ref_dir = _folder(tmp_path, "ref")
    (ref_dir / f"{US}.csv").write_text(_plain(base, amount=False))
    _companion(ref_dir, kit)
    raw = DirectorySource(folder).read([US])[US]
    ref = DirectorySource(ref_dir).read([US])[US]
    assert raw.layout == "alpha_vantage"
    assert raw.meta["order"] == "newest_first"
    # file order is kept: the same rows reversed, numbered as they stand in the file
    assert raw.frame["date"].iloc[0] == base["date"].iloc[-1]
    pd.testing.assert_frame_equal(raw.frame.drop(columns="line").iloc[::-1].reset_index(drop=True),
                                  ref.frame.drop(columns="line"))
    loaded, expected = _load(folder, kit, (US, OTHER)), _load(ref_dir, kit, (US, OTHER))
    _same_panels(loaded, expected)
    # the gate sorts; a wholly newest-first file is reported as such (INFO), never as disorder or an error
    (order,) = loaded.report.select(q.UNSORTED_DATES, symbol=US)
    assert order.severity is q.Severity.INFO and "newest first" in order.message
    assert not loaded.report.select(symbol=US, min_severity=q.Severity.ERROR)


# ------------------------------------------------------------------------ Adj Close: a split and cash
SPLIT_ROW, DIVIDEND_ROW, CASH = 40, 60, 0.02


def _with_actions(base: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Raw records with a 2:1 split effective on row SPLIT_ROW and a cash dividend ex on DIVIDEND_ROW, and
    the vendor's adjusted close (Yahoo's convention: earlier closes scaled by 1/ratio at a split and by
    1 - cash / previous close at a dividend)."""
    raw = base.copy()
    for col in ("open", "high", "low", "close"):
        raw.loc[SPLIT_ROW:, col] = raw.loc[SPLIT_ROW:, col] / 2.0
    raw.loc[SPLIT_ROW:, "volume"] = raw.loc[SPLIT_ROW:, "volume"] * 2.0
    close = raw["close"].to_numpy()
    scale = np.ones(len(raw))
    scale[:SPLIT_ROW] *= 0.5
    scale[:DIVIDEND_ROW] *= 1.0 - CASH / close[DIVIDEND_ROW - 1]
    adj = close * scale
    dividend = np.zeros(len(raw))
    dividend[DIVIDEND_ROW] = CASH
    split = np.ones(len(raw))
    split[SPLIT_ROW] = 2.0
    return raw, adj, dividend, split


@pytest.mark.parametrize("shape", ["yahoo", "yfinance", "alpha_vantage"])
def test_adjusted_close_reproduces_a_split_and_a_dividend(tmp_path: Path, kit, base, shape) -> None:
    raw_frame, adj, dividend, split = _with_actions(base)
    text = {"yahoo": lambda: _yahoo(raw_frame, adj), "yfinance": lambda: _yfinance(raw_frame, adj=adj),
            "alpha_vantage": lambda: _alpha_vantage(raw_frame, "csv", adj, dividend, split)}[shape]()
    (tmp_path / f"{US}.csv").write_text(text)
    _companion(tmp_path, kit)
    loaded = _load(tmp_path, kit, (US, OTHER))
    sessions = loaded.panel.sessions
    adjusted = loaded.panel["close"][US].to_numpy()
    # the pipeline's adjusted closes are the vendor's, up to the hfq scale (1.0 on the first row)
    ratio = adjusted / adj
    np.testing.assert_allclose(ratio / ratio[0], 1.0, rtol=1e-9, atol=0)
    np.testing.assert_allclose(loaded.raw_panel["close"][US].to_numpy(), raw_frame["close"].to_numpy(), rtol=1e-12)
    splits = loaded.actions.frame("split")[US]
    dividends = loaded.actions.frame("dividend")[US]
    assert splits.iloc[SPLIT_ROW] == pytest.approx(2.0, rel=1e-9)
    assert (splits.drop(sessions[SPLIT_ROW]) == 1.0).all()
    assert dividends.iloc[DIVIDEND_ROW] == pytest.approx(CASH, rel=1e-9)
    assert (dividends.drop(sessions[DIVIDEND_ROW]) == 0.0).all()
    # the -50% raw move is explained by the factor, not an unexplained jump
    assert not loaded.report.select(q.UNEXPLAINED_JUMP, symbol=US)
    assert loaded.report.select(q.EXPLAINED_JUMP, symbol=US)
    if shape == "alpha_vantage":
        events = loaded.adjustments[US].events
        table = events[events["source"] == "table"]
        assert set(table["status"]) == {"in_factor"} and sorted(table["kind"]) == ["dividend", "split"]


def test_alpha_vantage_dividend_and_split_columns_without_adjusted_close(tmp_path: Path, kit, base) -> None:
    raw_frame, adj, dividend, split = _with_actions(base)
    text = _alpha_vantage(raw_frame, "csv", adj, dividend, split)
    lines = text.splitlines()
    drop = lines[0].split(",").index("adjusted_close")
    text = "\n".join(",".join(c for k, c in enumerate(line.split(",")) if k != drop) for line in lines) + "\n"
    (tmp_path / f"{US}.csv").write_text(text)
    _companion(tmp_path, kit)
    loaded = _load(tmp_path, kit, (US, OTHER))
    assert loaded.adjustments[US].method == "actions"
    assert loaded.actions.frame("split")[US].iloc[SPLIT_ROW] == 2.0
    assert loaded.actions.frame("dividend")[US].iloc[DIVIDEND_ROW] == pytest.approx(CASH)
    assert not loaded.report.select(q.UNEXPLAINED_JUMP, symbol=US)


def test_factor_file_and_adjusted_close_together_are_refused(tmp_path: Path, base) -> None:
    (tmp_path / f"{US}.csv").write_text(_yahoo(base))
    (tmp_path / f"{US}_hfq_factor.csv").write_text("trade_date,hfq_factor\n2024-01-02,1.0\n")
    source = DirectorySource(tmp_path)
    source.read([US])
    with pytest.raises(CorporateActionError, match=r"SPY_hfq_factor.csv and the adjusted-close column of SPY.csv"):
        source.corporate_actions([US])


# ----------------------------------------------------------------------------------------- file names
@pytest.mark.parametrize("name,symbol", [("sh510300.csv", SYMBOL), ("SH510300.csv", SYMBOL), ("sz159915.csv", "159915"),
                                         ("SZ159915.csv", "159915"), ("510300.SH.csv", SYMBOL),
                                         ("510300.SS.csv", SYMBOL), ("SH#510300.txt", SYMBOL),
                                         ("510300.parquet", SYMBOL), ("SPY.csv", US), ("spy.csv", US)])
def test_prefixed_and_suffixed_names_map_to_the_symbol(tmp_path: Path, kit, base, name, symbol) -> None:
    if name.endswith(".parquet"):
        kit.to_layout(base, "plain").to_parquet(tmp_path / name, index=False)
    else:
        (tmp_path / name).write_text(_plain(base))
    _companion(tmp_path, kit)
    ref_dir = _folder(tmp_path, "ref")
    (ref_dir / f"{symbol}.csv").write_text(_plain(base))
    _companion(ref_dir, kit)
    raw = DirectorySource(tmp_path).read([symbol])[symbol]
    assert raw.file == str(tmp_path / name) and raw.symbol == symbol
    pd.testing.assert_frame_equal(raw.frame, DirectorySource(ref_dir).read([symbol])[symbol].frame)
    _same_panels(_load(tmp_path, kit, (symbol, OTHER)), _load(ref_dir, kit, (symbol, OTHER)))


def test_two_files_for_one_symbol_name_both(tmp_path: Path, base) -> None:
    (tmp_path / "sh510300.csv").write_text(_plain(base))
    (tmp_path / "510300.SH.csv").write_text(_plain(base))
    with pytest.raises(DataSourceError) as info:
        DirectorySource(tmp_path).read([SYMBOL])
    assert "symbol 510300 has several price files" in str(info.value)
    assert "510300.SH.csv" in str(info.value) and "sh510300.csv" in str(info.value)


def test_a_file_without_extension_is_named_with_the_fix(tmp_path: Path, base) -> None:
    (tmp_path / "510300.SH").write_text(_plain(base))
    with pytest.raises(DataSourceError, match=r"510300.SH has no extension: rename it to 510300.SH.csv"):
        DirectorySource(tmp_path).read([SYMBOL])


def test_symbol_map_names_any_file(tmp_path: Path, kit, base) -> None:
    (tmp_path / "沪深300ETF.csv").write_text(_plain(base))
    cfg = kit.data_config(tmp_path).model_copy(update={"symbol_map": {"沪深300ETF.csv": SYMBOL}})
    raw = DirectorySource.from_config(cfg).read([SYMBOL])[SYMBOL]
    assert raw.file == str(tmp_path / "沪深300ETF.csv")
    assert file_symbol("510300_hfq_factor.csv") is None and file_symbol("platform_splits.csv") is None
    assert file_symbol("README.md") is None


# ---------------------------------------------------------------------------------------- volume units
@pytest.mark.parametrize("key", [SYMBOL, "tdx", "default"])
def test_volume_unit_from_configuration(tmp_path: Path, kit, base, key) -> None:
    lots = base.assign(volume=base["volume"] / 100)
    (tmp_path / f"{SYMBOL}.txt").write_bytes(_tdx(lots).encode("gbk"))
    cfg = kit.data_config(tmp_path).model_copy(update={"volume_unit": {key: "lots"}})
    raw = DirectorySource.from_config(cfg).read([SYMBOL])[SYMBOL]
    np.testing.assert_allclose(raw.frame["volume"].to_numpy(), base["volume"].to_numpy())
    assert raw.meta["volume_unit_shares"] == 100 and raw.meta["volume_unit_source"] == f"data.volume_unit.{key}"
    # without the override the layout's unit applies (shares for 通达信) and is recorded as such
    plain = DirectorySource(tmp_path).read([SYMBOL])[SYMBOL]
    assert plain.meta["volume_unit_shares"] == 1 and plain.meta["volume_unit_source"] == "layout tdx"


def test_a_fund_override_wins_over_the_layout_override(tmp_path: Path, kit, base) -> None:
    (tmp_path / f"{SYMBOL}.csv").write_text(kit.to_layout(base, "cn_etf").to_csv(index=False))
    cfg = kit.data_config(tmp_path).model_copy(update={"volume_unit": {"cn_etf": 1, SYMBOL: 100}})
    raw = DirectorySource.from_config(cfg).read([SYMBOL])[SYMBOL]
    assert raw.meta["volume_unit_source"] == f"data.volume_unit.{SYMBOL}"
    np.testing.assert_allclose(raw.frame["volume"].to_numpy(), base["volume"].to_numpy())


# ---------------------------------------------------------------------------------------- unknown layout
def test_unknown_layout_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / f"{SYMBOL}.csv").write_text("trade_date,open,high,low,close\n2024-01-02,1,1.1,0.9,1.0\n")
    with pytest.raises(UnknownLayoutError) as info:
        DirectorySource(tmp_path).read([SYMBOL])
    error = info.value
    line = error.one_line()
    assert "\n" not in str(error)
    assert error.closest == "cn_etf" and error.missing == ["volume", "amount"]
    for part in (f"{SYMBOL}.csv", "found columns [trade_date, open, high, low, close]",
                 "closest known layout: cn_etf (lacks volume, amount)",
                 "add the header line 'date,open,high,low,close,volume,amount'",
                 "rename the columns to the cn_etf layout's (add volume, amount)", "plain:", "tdx:"):
        assert part in line, line


def test_unknown_headerless_shape_says_the_first_row_is_data(tmp_path: Path) -> None:
    (tmp_path / f"{SYMBOL}.csv").write_text("2024-01-02,1,1.1,0.9,1.0\n2024-01-03,1,1.1,0.9,1.0\n")
    with pytest.raises(UnknownLayoutError) as info:
        DirectorySource(tmp_path).read([SYMBOL])
    line = info.value.one_line()
    assert "the first row is data, not a header, with 5 columns" in line
    assert "add the header line 'date,open,high,low,close,volume,amount'" in line


def test_closest_layout_counts_columns_in_common() -> None:
    layout, missing = closest_layout(["Date", "Open", "High", "Low", "Close", "Volume", "Adj Close", "x"])
    assert layout.name == "yahoo" and missing == []
    layout, missing = closest_layout(["timestamp", "open", "close"])
    assert layout.name == "alpha_vantage" and missing == ["high", "low", "volume"]
    layout, missing = closest_layout(["day", "price", "qty"])      # nothing in common: the layout to write
    assert layout.name == "plain" and missing == ["date", "open", "high", "low", "close", "volume"]


def test_sniffing_reports_title_footer_and_delimiter() -> None:
    shape = sniff_text("标题\n\ndate;open;high;low;close;volume\n2024-01-02;1;1;1;1;1\n\nfooter text\n")
    assert shape.delimiter == ";" and shape.header == ("date", "open", "high", "low", "close", "volume")
    assert shape.skipped == ((1, "标题"), (6, "footer text")) and shape.body_lines == (4,)
