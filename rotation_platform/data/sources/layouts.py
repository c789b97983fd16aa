"""Price-file layouts: what each vendor's columns mean, in which unit, and how a file's shape is recognised.

Contract
--------
* :data:`LAYOUTS` lists every known layout, most specific first. :func:`detect_layout` picks, among the
  layouts whose required columns are all in a header, the one that explains the most columns (ties: the
  earlier layout); names are matched after stripping blanks, case-insensitively, and a layout may accept
  several names for one field (Alpha Vantage's ``timestamp`` or ``date``, ``open`` or ``1. open``).
* :func:`sniff_text` reads the shape of a CSV/TXT file from its content, not only from its header: the
  delimiter (comma, tab or semicolon), leading title lines and trailing footer lines (a 通达信 export's
  ``510300 沪深300ETF 日线 前复权`` and ``数据来源:通达信``, reported, never silently dropped), yfinance's
  three header rows (``Price`` / ``Ticker`` / ``Date``), and a file whose first row is data (no header:
  read in the 通达信 column order).
* A header no layout matches raises :class:`~rotation_platform.errors.UnknownLayoutError` that names the
  closest layout (most columns in common), the columns it lacks, and the plain header line to add.
* :func:`file_symbol` maps a file name to the fund it holds: ``510300.csv``, ``sh510300.csv``,
  ``SZ159915.csv``, ``510300.SH.csv``, ``SH#510300.txt`` (通达信) and ``SPY.csv`` name ``510300``,
  ``159915`` and ``SPY``; ``data.symbol_map`` names any other file.
* :func:`resolve_volume_unit` gives the shares one unit of a file's volume column stands for: the
  layout's (board lots of 100 for the Chinese vendor layouts, shares otherwise) unless
  ``data.volume_unit`` says otherwise for the fund, the layout, or by ``default``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rotation_platform.errors import PriceDataError, UnknownLayoutError

__all__ = [
    "LOT_SIZE",
    "NA_TOKENS",
    "PRICE_SUFFIXES",
    "PLAIN_HEADER",
    "PriceLayout",
    "LAYOUTS",
    "LAYOUT_BY_NAME",
    "detect_layout",
    "closest_layout",
    "Sniffed",
    "sniff_text",
    "file_symbol",
    "symbol_key",
    "resolve_volume_unit",
]

#: shares per board lot on the Shanghai and Shenzhen exchanges
LOT_SIZE = 100

#: cell texts read as "missing" (NaN / NaT) rather than as unreadable values
NA_TOKENS: frozenset[str] = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None",
                                       "none", "-", "--", "NaT"})

#: file extensions of price files (``.txt``: 通达信 exports)
PRICE_SUFFIXES = (".csv", ".parquet", ".txt")

#: the header line of the plain layout: what to add to a file no layout recognises
PLAIN_HEADER = "date,open,high,low,close,volume,amount"

#: canonical fields beyond the raw columns that a layout may carry: the vendor's back-adjusted close, the
#: cash dividend on its ex-date row and the split coefficient on its first row on the new basis
EXTRA_FIELDS: tuple[str, ...] = ("adj_close", "dividend", "split")


@dataclass(frozen=True)
class PriceLayout:
    """One known column layout of a price file.

    ``columns`` maps each canonical field (``date, open, high, low, close, volume, amount``, and the
    optional ``adj_close, dividend, split``) to the file's column name, or to a tuple of accepted names
    (the first is the documented one); fields in ``optional`` may be absent (they read as NaN).
    ``volume_unit`` is the number of shares one unit of the file's volume column stands for (the default;
    ``data.volume_unit`` overrides it). ``code_column``, when set, holds the fund code on every row
    (``510050.SH``) and must agree with the file's symbol. ``positional`` layouts are also read from
    headerless files, in the order of ``columns``.
    """

    name: str
    columns: Mapping[str, str | tuple[str, ...]]
    volume_unit: int
    description: str
    optional: frozenset[str] = frozenset()
    code_column: str | None = None
    positional: bool = False
    example: str = ""

    def names(self, canon: str) -> tuple[str, ...]:
        """Accepted file column names of one canonical field."""
        value = self.columns[canon]
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def required(self) -> tuple[str, ...]:
        """File columns (documented names) that must be present for the layout to match."""
        cols = [self.names(canon)[0] for canon in self.columns if canon not in self.optional]
        if self.code_column:
            cols.insert(0, self.code_column)
        return tuple(cols)

    @property
    def header(self) -> str:
        """The documented header line (every field, optional ones included)."""
        cols = [self.names(canon)[0] for canon in self.columns]
        if self.code_column:
            cols.insert(0, self.code_column)
        return ",".join(cols)


_TDX_COLUMNS = {"date": "日期", "open": "开盘", "high": "最高", "low": "最低", "close": "收盘",
                "volume": "成交量", "amount": "成交额"}

#: Known layouts, most specific first (see the module contract for how one is picked).
LAYOUTS: tuple[PriceLayout, ...] = (
    PriceLayout(
        name="cn_etf_vendor",
        columns={"date": "trade_date", "open": "open_price", "high": "high_price", "low": "low_price",
                 "close": "close_price", "volume": "volume", "amount": "amount"},
        volume_unit=LOT_SIZE,
        code_column="code",
        description="eastmoney-style export: code,trade_date,open_price,...,volume (lots),amount (CNY),...",
        example="code,trade_date,open_price,high_price,low_price,close_price,volume,amount\n"
                "510050.SH,2024-01-02,2.551,2.607,2.544,2.604,127751.0,32857553.0",
    ),
    PriceLayout(
        name="cn_etf",
        columns={"date": "trade_date", "open": "open", "high": "high", "low": "low", "close": "close",
                 "volume": "volume", "amount": "amount"},
        volume_unit=LOT_SIZE,
        description="trade_date,open,high,low,close,volume (lots),amount (CNY)[,adjust_factor,source,updated_at]",
        example="trade_date,open,high,low,close,volume,amount\n2024-01-02,3.551,3.607,3.544,3.604,127751.0,"
                "45857553.0",
    ),
    PriceLayout(
        name="akshare_em",
        columns={"date": "日期", "open": "开盘", "high": "最高", "low": "最低", "close": "收盘",
                 "volume": "成交量", "amount": "成交额"},
        volume_unit=LOT_SIZE,
        description="akshare fund_etf_hist_em: 日期,开盘,收盘,最高,最低,成交量 (lots),成交额 (CNY)[,振幅,...]",
        example="日期,开盘,收盘,最高,最低,成交量,成交额,振幅,涨跌幅,涨跌额,换手率\n"
                "2024-01-02,3.551,3.604,3.607,3.544,127751,45857553.0,1.77,1.49,0.053,1.23",
    ),
    PriceLayout(
        name="tdx",
        columns=dict(_TDX_COLUMNS),
        volume_unit=1,
        optional=frozenset({"amount"}),
        positional=True,
        description="通达信 export: [title line], [日期 开盘 最高 最低 收盘 成交量 成交额], rows "
                    "date(YYYY/MM/DD),open,high,low,close,volume (shares)[,amount (CNY)], [数据来源:通达信]; "
                    "tab or comma separated, GBK or UTF-8; also any headerless file in this column order",
        example="510300 沪深300ETF 日线 不复权\n      日期\t    开盘\t    最高\t    最低\t    收盘\t    成交量\t"
                "    成交额\n2024/01/02\t3.551\t3.607\t3.544\t3.604\t12775100\t45857553.00\n数据来源:通达信",
    ),
    PriceLayout(
        name="yahoo",
        columns={"date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close",
                 "adj_close": ("Adj Close", "Adj_Close", "AdjClose", "Adj. Close"), "volume": "Volume"},
        volume_unit=1,
        description="Yahoo Finance / yfinance: Date,Open,High,Low,Close,Adj Close,Volume (shares), no amount; "
                    "also yfinance's three header rows Price/Ticker/Date; Adj Close becomes back-adjustment "
                    "factors (splits and dividends)",
        example="Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,472.16,473.67,470.49,472.65,465.83,123623700",
    ),
    PriceLayout(
        name="plain",
        columns={"date": "date", "open": "open", "high": "high", "low": "low", "close": "close",
                 "volume": "volume", "amount": "amount"},
        volume_unit=1,
        optional=frozenset({"amount"}),
        description="date,open,high,low,close,volume (shares)[,amount (CNY)]",
        example=f"{PLAIN_HEADER}\n2024-01-02,3.551,3.607,3.544,3.604,12775100,45857553.0",
    ),
    PriceLayout(
        name="alpha_vantage",
        columns={"date": ("timestamp", "date"), "open": ("open", "1. open"), "high": ("high", "2. high"),
                 "low": ("low", "3. low"), "close": ("close", "4. close"),
                 "adj_close": ("adjusted_close", "5. adjusted close", "adjusted close"),
                 "volume": ("volume", "5. volume", "6. volume"),
                 "dividend": ("dividend_amount", "7. dividend amount", "dividend amount"),
                 "split": ("split_coefficient", "8. split coefficient", "split coefficient")},
        volume_unit=1,
        optional=frozenset({"adj_close", "dividend", "split"}),
        description="Alpha Vantage daily CSV, newest first: timestamp|date,open,high,low,close,volume (shares) "
                    "(or 1. open ... 5. volume); adjusted: ...,adjusted_close,volume,dividend_amount,"
                    "split_coefficient (factors, dividends and splits)",
        example="timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient\n"
                "2024-01-03,470.43,471.19,468.17,468.79,462.02,103585900,0.0000,1.0",
    ),
)

LAYOUT_BY_NAME: dict[str, PriceLayout] = {layout.name: layout for layout in LAYOUTS}
_TDX = LAYOUT_BY_NAME["tdx"]


def _key(name: object) -> str:
    return str(name).strip().casefold()


def _present(layout: PriceLayout, keys: set[str]) -> dict[str, str]:
    """Canonical field (and ``code``) -> the accepted name found among ``keys`` (casefolded)."""
    out: dict[str, str] = {}
    for canon in layout.columns:
        hit = next((n for n in layout.names(canon) if _key(n) in keys), None)
        if hit is not None:
            out[canon] = hit
    if layout.code_column and _key(layout.code_column) in keys:
        out["code"] = layout.code_column
    return out


def _matches(layout: PriceLayout, present: Mapping[str, str]) -> bool:
    need = [c for c in layout.columns if c not in layout.optional]
    return all(c in present for c in need) and (layout.code_column is None or "code" in present)


def closest_layout(columns: Sequence[object]) -> tuple[PriceLayout, list[str]]:
    """The known layout with the most columns in common with ``columns`` (ties: the earlier layout; the
    plain layout when nothing is in common) and the required columns it lacks."""
    keys = {_key(c) for c in columns}
    best, best_n = LAYOUTS[0], -1
    for layout in LAYOUTS:
        n = len(_present(layout, keys))
        if n > best_n:
            best, best_n = layout, n
    if best_n == 0:
        best = LAYOUT_BY_NAME["plain"]   # nothing in common: the layout to write the file in
    present = _present(best, keys)
    missing = [best.names(c)[0] for c in best.columns if c not in best.optional and c not in present]
    if best.code_column and "code" not in present:
        missing.insert(0, best.code_column)
    return best, missing


def _unknown(file: str, found: Sequence[str], detail: str | None = None) -> UnknownLayoutError:
    closest, missing = closest_layout(found)
    return UnknownLayoutError(str(file), list(found), {lay.name: lay.required for lay in LAYOUTS},
                              closest=closest.name, missing=missing, header=PLAIN_HEADER, detail=detail)


def _tdx_order(keys: Sequence[str]) -> bool:
    """The header is exactly 通达信's columns in its order (akshare's order puts 收盘 before 最高)."""
    tdx = [_key(n) for n in _TDX_COLUMNS.values()]
    return list(keys) in (tdx, tdx[:6])


def detect_layout(columns: Sequence[object], file: str | Path = "<unnamed>", *, tdx: bool = False
                  ) -> tuple[PriceLayout, dict[str, str]]:
    """The layout of a header and the mapping canonical field -> actual column name.

    ``tdx`` says the file carries 通达信's title or footer lines: its Chinese header, which akshare's
    layout shares, is then read as a 通达信 export (volume in shares). Raises :class:`UnknownLayoutError`
    when no layout matches, and :class:`PriceDataError` when a column the layout needs appears twice.
    """
    found = [str(c) for c in columns]
    by_key: dict[str, list[str]] = {}
    for col in found:
        by_key.setdefault(_key(col), []).append(col)
    keys = set(by_key)
    scored = []
    for order, layout in enumerate(LAYOUTS):
        present = _present(layout, keys)
        if _matches(layout, present):
            scored.append((-len(present), order, layout, present))
    if not scored:
        raise _unknown(str(file), found)
    scored.sort(key=lambda item: (item[0], item[1]))
    _, _, layout, present = scored[0]
    if layout.name in ("akshare_em", "tdx") and (tdx or _tdx_order([_key(c) for c in found])):
        layout, present = _TDX, _present(_TDX, keys)
    mapping: dict[str, str] = {}
    for canon, name in present.items():
        hits = by_key.get(_key(name), [])
        if len(hits) > 1:
            raise PriceDataError(f"column {name!r} appears {len(hits)} times in the header ({layout.name} layout); "
                                 f"keep one", file=str(file))
        if hits:
            mapping[canon] = hits[0]
    return layout, mapping


# ------------------------------------------------------------------------------------------ sniffing
_DELIMITERS = (",", "\t", ";")
_DATE_CELL = re.compile(r"^\d{4}([-/.]?)\d{1,2}\1\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?.*)?$")
_NUMBER_CELL = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_SAMPLE_LINES = 400


@dataclass(frozen=True)
class Sniffed:
    """The shape of one text price file.

    ``header`` is the header cells (None: the first row is data); ``header_lines`` the file lines they came
    from; ``ticker`` the cells of yfinance's ``Ticker`` row; ``body``/``body_lines`` the data lines and their
    1-based file line numbers; ``skipped`` the title and footer lines left out, as ``(line, text)``.
    """

    delimiter: str
    header: tuple[str, ...] | None
    header_lines: tuple[int, ...]
    body: tuple[str, ...]
    body_lines: tuple[int, ...]
    skipped: tuple[tuple[int, str], ...] = ()
    ticker: tuple[str, ...] | None = None
    title: str | None = None
    footer: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tdx(self) -> bool:
        """The file carries 通达信's title or footer lines."""
        return self.title is not None or any("通达信" in text for text in self.footer)

    @property
    def header_kind(self) -> str:
        if self.header is None:
            return "none (first row is data)"
        if self.ticker is not None:
            return f"{len(self.header_lines)} rows (yfinance Price/Ticker/Date)"
        return "1 row"


def _cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return line.split(delimiter)


def _fields(line: str, delimiter: str) -> int:
    return len([c for c in _cells(line, delimiter)]) if line.strip() else 0


def _pick_delimiter(lines: Sequence[str]) -> str:
    best, best_score = ",", -1
    sample = list(lines[:_SAMPLE_LINES]) + list(lines[-20:])
    for delimiter in _DELIMITERS:
        counts = [_fields(line, delimiter) for line in sample]
        counts = [n for n in counts if n >= 2]
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        score = counts.count(mode)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _is_date(text: str) -> bool:
    return bool(_DATE_CELL.match(text.strip()))


def _is_data_row(cells: Sequence[str]) -> bool:
    """A date in the first cell and numbers (or missing-value marks) in every other one."""
    if len(cells) < 2 or not _is_date(cells[0]):
        return False
    rest = [c.strip() for c in cells[1:]]
    return all(c in NA_TOKENS or bool(_NUMBER_CELL.match(c.replace(",", ""))) for c in rest)


def _dated(line: str, delimiter: str) -> bool:
    """The line's first cell is a date (a data row, however incomplete)."""
    cells = _cells(line, delimiter)
    return bool(cells) and _is_date(cells[0])


def _single(line: str, delimiter: str) -> bool:
    return len([c for c in _cells(line, delimiter) if c.strip()]) <= 1


def sniff_text(text: str) -> Sniffed:
    """The shape of a CSV/TXT file's text (see the module contract). Blank lines are left out."""
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    lines = [line for _, line in numbered]
    delimiter = _pick_delimiter(lines)
    skipped: list[tuple[int, str]] = []
    title: str | None = None
    start, end = 0, len(numbered)
    if any(not _single(line, delimiter) for line in lines):
        while start < end and _single(numbered[start][1], delimiter) and not _dated(numbered[start][1], delimiter):
            skipped.append((numbered[start][0], numbered[start][1].strip()))
            start += 1
        if skipped:
            title = skipped[0][1]
        footer_at = end
        while footer_at > start and _single(numbered[footer_at - 1][1], delimiter) \
                and not _dated(numbered[footer_at - 1][1], delimiter):
            footer_at -= 1
        footer = [(n, line.strip()) for n, line in numbered[footer_at:end]]
        skipped.extend(footer)
        end = footer_at
    else:
        footer = []
    rows = numbered[start:end]
    if not rows:
        return Sniffed(delimiter, None, (), (), (), tuple(skipped), None, title, tuple(t for _, t in footer))
    first_line, first = rows[0]
    first_cells = _cells(first, delimiter)
    if _is_data_row(first_cells):
        return Sniffed(delimiter, None, (), tuple(line for _, line in rows), tuple(n for n, _ in rows),
                       tuple(skipped), None, title, tuple(t for _, t in footer))
    header = [c.strip() for c in first_cells]
    header_lines = [first_line]
    ticker: tuple[str, ...] | None = None
    body_at = 1
    if header and _key(header[0]) == "price" and len(rows) > 1:
        second = [c.strip() for c in _cells(rows[1][1], delimiter)]
        if second and _key(second[0]) == "ticker":
            ticker = tuple(second[1:])
            header_lines.append(rows[1][0])
            body_at = 2
            if len(rows) > 2:
                third = [c.strip() for c in _cells(rows[2][1], delimiter)]
                if third and _key(third[0]) == "date" and not any(third[1:]):
                    header_lines.append(rows[2][0])
                    body_at = 3
            header[0] = "Date"
    body = rows[body_at:]
    return Sniffed(delimiter, tuple(header), tuple(header_lines), tuple(line for _, line in body),
                   tuple(n for n, _ in body), tuple(skipped), ticker, title, tuple(t for _, t in footer))


# --------------------------------------------------------------------------------------- file names
_HASH_PREFIX = re.compile(r"^(?:sh|sz|bj)#(?P<code>[0-9A-Za-z]+)$", re.IGNORECASE)
_EXCHANGE_PREFIX = re.compile(r"^(?:sh|sz|bj)(?P<code>\d{6})$", re.IGNORECASE)
_EXCHANGE_SUFFIX = re.compile(r"^(?P<code>[0-9A-Za-z]+)\.(?:sh|ss|sz|bj|xshg|xshe)$", re.IGNORECASE)


def symbol_key(text: str) -> str:
    """A fund code without its exchange prefix or suffix (``sh510300``, ``510300.SH``, ``SH#510300`` ->
    ``510300``); other codes (``SPY``) unchanged."""
    text = str(text).strip()
    for pattern in (_HASH_PREFIX, _EXCHANGE_PREFIX, _EXCHANGE_SUFFIX):
        m = pattern.match(text)
        if m:
            return m.group("code")
    return text


def file_symbol(name: str, symbol_map: Mapping[str, str] | None = None) -> str | None:
    """The symbol a file named ``name`` holds, or None when the name is not a price file's (another
    extension, a factor file or a corporate-action table). ``symbol_map`` (``data.symbol_map``: file name
    or stem -> symbol) comes first."""
    lower = name.casefold()
    suffix = next((s for s in PRICE_SUFFIXES if lower.endswith(s)), None)
    if suffix is None or name.startswith("."):
        return None
    stem = name[: -len(suffix)]
    if symbol_map:
        for key in (name, stem):
            if key in symbol_map:
                return str(symbol_map[key])
    if lower.endswith("_hfq_factor.csv") or lower in ("platform_splits.csv", "platform_dividends.csv"):
        return None
    return symbol_key(stem) or None


# ------------------------------------------------------------------------------------------- units
def _unit_value(value: object, where: str) -> int:
    if isinstance(value, str):
        text = value.strip().casefold()
        if text == "shares":
            return 1
        if text == "lots":
            return LOT_SIZE
        raise PriceDataError(f"{where}: volume unit {value!r} is not 'shares', 'lots' or a whole number of shares",
                             hint="set data.volume_unit values to shares, lots or e.g. 100")
    return int(value)  # type: ignore[arg-type]


def resolve_volume_unit(layout: PriceLayout, symbol: str | None,
                        overrides: Mapping[str, object] | None = None) -> tuple[int, str]:
    """Shares per unit of the file's volume column and where that came from: ``data.volume_unit.<symbol>``,
    ``data.volume_unit.<layout>``, ``data.volume_unit.default``, else the layout's own unit."""
    for key in (symbol, layout.name, "default"):
        if overrides and key is not None and key in overrides:
            return _unit_value(overrides[key], f"data.volume_unit.{key}"), f"data.volume_unit.{key}"
    return layout.volume_unit, f"layout {layout.name}"
