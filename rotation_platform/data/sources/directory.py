"""A folder of per-fund price files: ``<symbol>.csv`` or ``<symbol>.parquet``.

Contract
--------
* :meth:`DirectorySource.read` returns, per symbol, the file's records in file order in canonical units
  (``volume`` in shares, ``amount`` in CNY), *unadjusted* and *unchecked*: nothing is dropped, sorted or
  repaired. Missing cells (empty, ``NaN``, ``null``, ``-`` ...) become NaN/NaT and are left for the
  quality gate to quarantine; only values that cannot be read at all (``"abc"`` as a price,
  ``2021-13-45`` as a date) raise :class:`~rotation_platform.errors.PriceDataError` naming the file,
  the symbol, the data row and the column. Dates are ISO 8601 (``2024-01-02``, ``2024/01/02``,
  ``20240102``, or with a time, which is dropped) or Parquet dates/timestamps; they become tz-naive
  midnights (``datetime64[ns]``). ``line`` is the 1-based data row (header excluded, blank lines skipped).
* The layout is detected from the header (see :data:`LAYOUTS`); a header no layout matches raises
  :class:`~rotation_platform.errors.UnknownLayoutError` listing the columns found and every known
  layout. Volumes given in board lots are converted to shares (x100).
* :meth:`DirectorySource.corporate_actions` reads ``<symbol>_hfq_factor.csv`` (``trade_date,hfq_factor``)
  and, when present in the folder, ``platform_splits.csv`` and ``platform_dividends.csv``.
  In ``platform_splits.csv`` the ``split_date`` is the last day on the old unit basis (the record or
  suspension day); the split is effective from the next session of the source's calendar, which is
  the date stored in :attr:`CorporateActions.splits`. A table with canonical columns
  (``symbol,date,ratio``) is taken to hold effective dates already. Dividends use the ex-date.
* Reading never writes to the folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.calendars import TradingCalendar, get_calendar
from rotation_platform.data.sources.base import RAW_COLUMNS, CorporateActions, PriceSource, RawPrices
from rotation_platform.errors import (
    CorporateActionError,
    DataSourceError,
    PriceDataError,
    UnknownLayoutError,
)

__all__ = [
    "LOT_SIZE",
    "NA_TOKENS",
    "PriceLayout",
    "LAYOUTS",
    "detect_layout",
    "read_price_file",
    "read_factor_file",
    "read_splits_table",
    "read_dividends_table",
    "read_nav",
    "DirectorySource",
]

#: shares per board lot on the Shanghai and Shenzhen exchanges
LOT_SIZE = 100

#: cell texts read as "missing" (NaN / NaT) rather than as unreadable values
NA_TOKENS: frozenset[str] = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None",
                                       "none", "-", "--", "NaT"})

SPLITS_FILE = "platform_splits.csv"
DIVIDENDS_FILE = "platform_dividends.csv"
FACTOR_SUFFIX = "_hfq_factor.csv"
NAV_FOLDER = "etf_nav"
PRICE_SUFFIXES = (".csv", ".parquet")
_ENCODINGS = ("utf-8-sig", "gb18030")
_MAX_LISTED = 5  # unreadable cells named in one error message


@dataclass(frozen=True)
class PriceLayout:
    """One known column layout of a price file.

    ``columns`` maps each canonical field (``date, open, high, low, close, volume, amount``) to the
    file's column; fields in ``optional`` may be absent (they read as NaN). ``volume_unit`` is the
    number of shares one unit of the file's volume column stands for. ``code_column``, when set, holds
    the fund code on every row (``510050.SH``) and must agree with the file's symbol.
    """

    name: str
    columns: Mapping[str, str]
    volume_unit: int
    description: str
    optional: frozenset[str] = frozenset()
    code_column: str | None = None

    @property
    def required(self) -> tuple[str, ...]:
        """File columns that must be present for the layout to match."""
        cols = [col for canon, col in self.columns.items() if canon not in self.optional]
        if self.code_column:
            cols.insert(0, self.code_column)
        return tuple(cols)


#: Known layouts, most specific first. Detection picks the layout with the most required columns
#: present; names are matched after stripping blanks, case-insensitively.
LAYOUTS: tuple[PriceLayout, ...] = (
    PriceLayout(
        name="cn_etf_vendor",
        columns={"date": "trade_date", "open": "open_price", "high": "high_price", "low": "low_price",
                 "close": "close_price", "volume": "volume", "amount": "amount"},
        volume_unit=LOT_SIZE,
        code_column="code",
        description="eastmoney-style export: code,trade_date,open_price,...,volume (lots),amount (CNY),...",
    ),
    PriceLayout(
        name="cn_etf",
        columns={"date": "trade_date", "open": "open", "high": "high", "low": "low", "close": "close",
                 "volume": "volume", "amount": "amount"},
        volume_unit=LOT_SIZE,
        description="trade_date,open,high,low,close,volume (lots),amount (CNY)[,adjust_factor,source,updated_at]",
    ),
    PriceLayout(
        name="akshare_em",
        columns={"date": "日期", "open": "开盘", "high": "最高", "low": "最低", "close": "收盘",
                 "volume": "成交量", "amount": "成交额"},
        volume_unit=LOT_SIZE,
        description="akshare fund_etf_hist_em: 日期,开盘,收盘,最高,最低,成交量 (lots),成交额 (CNY)[,振幅,...]",
    ),
    PriceLayout(
        name="plain",
        columns={"date": "date", "open": "open", "high": "high", "low": "low", "close": "close",
                 "volume": "volume", "amount": "amount"},
        volume_unit=1,
        optional=frozenset({"amount"}),
        description="date,open,high,low,close,volume (shares)[,amount (CNY)]",
    ),
)

_LAYOUT_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def _key(name: object) -> str:
    return str(name).strip().casefold()


def detect_layout(columns: Sequence[object], file: str | Path = "<unnamed>") -> tuple[PriceLayout, dict[str, str]]:
    """The layout of a header and the mapping canonical field -> actual column name.

    Raises :class:`UnknownLayoutError` when no layout matches, and :class:`PriceDataError` when a
    column the layout needs appears twice.
    """
    found = [str(c) for c in columns]
    by_key: dict[str, list[str]] = {}
    for col in found:
        by_key.setdefault(_key(col), []).append(col)
    matches = [lay for lay in LAYOUTS if all(_key(c) in by_key for c in lay.required)]
    if not matches:
        raise UnknownLayoutError(str(file), found, {lay.name: lay.required for lay in LAYOUTS})
    best = max(len(lay.required) for lay in matches)
    layout = next(lay for lay in matches if len(lay.required) == best)
    mapping: dict[str, str] = {}
    wanted = dict(layout.columns)
    if layout.code_column:
        wanted["code"] = layout.code_column
    for canon, col in wanted.items():
        hits = by_key.get(_key(col), [])
        if len(hits) > 1:
            raise PriceDataError(f"column {col!r} appears {len(hits)} times in the header ({layout.name} layout); "
                                 f"keep one", file=str(file))
        if hits:
            mapping[canon] = hits[0]
    return layout, mapping


# ------------------------------------------------------------------------------------------ parsing
@dataclass
class _Unreadable:
    """Collects unreadable cells of one file, so that one error names all of them."""

    file: str
    symbol: str | None
    file_lines: np.ndarray | None
    cells: list[tuple[int, str, str]] = field(default_factory=list)   # (row index, column, text)
    total: int = 0

    def add(self, rows: np.ndarray, column: str, texts: pd.Series) -> None:
        self.total += len(rows)
        for i in rows[:_MAX_LISTED]:
            self.cells.append((int(i), column, str(texts.iloc[int(i)])))

    def where(self, i: int) -> str:
        txt = f"data row {i + 1}"
        if self.file_lines is not None:
            txt += f" (line {int(self.file_lines[i])} of the file)"
        return txt

    def raise_if_any(self, dates: pd.Series | None, error: type[PriceDataError] = PriceDataError) -> None:
        if not self.total:
            return
        self.cells.sort()
        first = self.cells[0][0]
        shown = "; ".join(f"{self.where(i)}, column {col!r}: {text!r}" for i, col, text in self.cells[:_MAX_LISTED])
        more = f" (and {self.total - min(self.total, _MAX_LISTED)} more)" if self.total > _MAX_LISTED else ""
        date = None
        if dates is not None and pd.notna(dates.iloc[first]):
            date = dates.iloc[first]
        raise error(f"{self.total} unreadable value(s): {shown}{more}; fix or blank these cells",
                    file=self.file, symbol=self.symbol, date=date)


def _as_text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Stripped text and the mask of cells that count as missing."""
    text = values.astype("string").str.strip()
    missing = (text.isna() | text.isin(NA_TOKENS)).to_numpy(dtype=bool)
    return text, missing


def _parse_dates(values: pd.Series, column: str, bad: _Unreadable) -> pd.Series:
    """Dates as tz-naive ``datetime64[ns]`` midnights; missing cells are NaT."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = pd.to_datetime(values)
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
        return out.dt.normalize().astype("datetime64[ns]")
    text, missing = _as_text(values)
    _refuse_zoned(text, missing, column, bad)
    try:
        parsed = pd.to_datetime(text.where(~missing), format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. offsets pandas cannot put in one column
        raise PriceDataError(f"column {column!r} holds dates that cannot be read together: {exc}",
                             file=bad.file, symbol=bad.symbol,
                             hint="write every date as YYYY-MM-DD (the exchange's local day)") from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
    unreadable = np.flatnonzero(parsed.isna().to_numpy() & ~missing)
    if len(unreadable):
        bad.add(unreadable, column, text)
    return parsed.dt.normalize().astype("datetime64[ns]")


#: a time followed by a UTC offset or ``Z`` (``2025-06-03T15:00:00+08:00``)
_ZONED = r"\d[T ]?\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT)$"


def _refuse_zoned(text: pd.Series, missing: np.ndarray, column: str, bad: _Unreadable) -> None:
    """Dates given with a time zone are refused: the session is the exchange's local day, and a file
    that mixes offsets (or gives another zone's clock) cannot be read without guessing."""
    zoned = np.flatnonzero(text.str.contains(_ZONED, case=False, regex=True).to_numpy(dtype=bool, na_value=False)
                           & ~missing)
    if not len(zoned):
        return
    i = int(zoned[0])
    more = f" (and {len(zoned) - 1} more)" if len(zoned) > 1 else ""
    line = int(bad.file_lines[i]) if bad.file_lines is not None else None
    raise PriceDataError(f"{bad.where(i)}, column {column!r}: {text.iloc[i]!r} carries a time zone{more}",
                         file=bad.file, symbol=bad.symbol, line=line,
                         hint="write the exchange's local session date (YYYY-MM-DD) without a time or zone")


def _parse_numbers(values: pd.Series, column: str, bad: _Unreadable) -> pd.Series:
    """Float64 values; missing cells are NaN."""
    if pd.api.types.is_bool_dtype(values.dtype):
        bad.add(np.arange(len(values)), column, values.astype(str))
        return pd.Series(np.nan, index=values.index)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index)
    text, missing = _as_text(values)
    numbers = pd.to_numeric(text.where(~missing), errors="coerce")
    parsed = pd.Series(numbers.to_numpy(dtype=np.float64, na_value=np.nan), index=values.index)
    unreadable = np.flatnonzero(np.isnan(parsed.to_numpy()) & ~missing)
    if len(unreadable):
        bad.add(unreadable, column, text)
    return parsed


def _decode(data: bytes, file: Path, symbol: str | None) -> str:
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise PriceDataError("file is neither UTF-8 nor GB18030 text", file=str(file), symbol=symbol)


def _csv_table(path: Path, data: bytes, symbol: str | None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """All cells as text, plus the file line of each data row (None when it cannot be mapped)."""
    if b"\x00" in data[:65536]:
        raise PriceDataError("binary content (NUL bytes), not CSV text", file=str(path), symbol=symbol,
                             hint="replace it with the fund's CSV export or a Parquet file named .parquet")
    text = _decode(data, path, symbol)
    if not text.strip():
        raise PriceDataError("file is empty (no header line)", file=str(path), symbol=symbol)
    header = next(csv.reader(io.StringIO(text.lstrip("\r\n").splitlines()[0])))
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise PriceDataError(f"malformed CSV: {exc}", file=str(path), symbol=symbol) from None
    if not isinstance(table.index, pd.RangeIndex):
        # pandas takes the leading fields as an index when every row has more fields than the header
        raise PriceDataError(f"malformed CSV: the data rows have {table.index.nlevels} more field(s) than the "
                             f"{len(header)}-column header", file=str(path), symbol=symbol)
    if len(set(map(_key, header))) != len(header):
        # keep the real header (pandas renames duplicates to "x.1"); detection reports the duplicate
        table.columns = pd.Index(header[: len(table.columns)])
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip()]
    file_lines = np.asarray(lines[1:], dtype=np.int64) if len(lines) - 1 == len(table) else None
    return table, file_lines


def read_price_file(path: str | Path, symbol: str | None = None) -> RawPrices:
    """Read one price file (CSV or Parquet) into :class:`RawPrices`; see the module contract."""
    path = Path(path)
    symbol = symbol if symbol is not None else path.stem
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"cannot read price file {path} for symbol {symbol}: {exc}") from None
    file_lines: np.ndarray | None = None
    if path.suffix.lower() == ".parquet":
        try:
            table = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise PriceDataError(f"unreadable Parquet file: {exc}", file=str(path), symbol=symbol) from None
        table = table.reset_index(drop=True)
    else:
        table, file_lines = _csv_table(path, data, symbol)

    layout, mapping = detect_layout(list(table.columns), path)
    bad = _Unreadable(str(path), symbol, file_lines)
    n = len(table)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    frame["date"] = _parse_dates(table[mapping["date"]], mapping["date"], bad)
    for canon in RAW_COLUMNS[1:]:
        if canon in mapping:
            frame[canon] = _parse_numbers(table[mapping[canon]], mapping[canon], bad)
        else:
            frame[canon] = np.full(n, np.nan)
    bad.raise_if_any(frame["date"])
    if layout.volume_unit != 1:
        frame["volume"] = frame["volume"] * float(layout.volume_unit)
    frame["line"] = np.arange(1, n + 1, dtype=np.int64)

    if "code" in mapping:
        codes, blank = _as_text(table[mapping["code"]])
        other = (codes.str.split(".", n=1).str[0] != str(symbol)).to_numpy(dtype=bool, na_value=False)
        wrong = np.flatnonzero(other & ~blank)
        if len(wrong):
            i = int(wrong[0])
            raise PriceDataError(f"{len(wrong)} row(s) belong to another fund: {bad.where(i)} has code "
                                 f"{codes.iloc[i]!r}, "
                                 f"expected {symbol}", file=str(path), symbol=symbol,
                                 date=frame["date"].iloc[i] if pd.notna(frame["date"].iloc[i]) else None)

    meta = {
        "layout": layout.name,
        "volume_unit_shares": layout.volume_unit,
        "columns": [str(c) for c in table.columns],
        "rows": n,
        "sha256": hashlib.sha256(data).hexdigest(),
        "amount_present": "amount" in mapping,
    }
    return RawPrices(symbol=str(symbol), frame=frame[[*RAW_COLUMNS, "line"]], file=str(path),
                     layout=layout.name, meta=meta)


# ------------------------------------------------------------------------------- corporate actions
def _read_small_csv(path: Path, what: str) -> pd.DataFrame:
    try:
        text = _decode(path.read_bytes(), path, None)
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise CorporateActionError(f"cannot read the {what}: {exc}", file=str(path)) from None


def _pick(table: pd.DataFrame, names: Sequence[str], path: Path, what: str) -> str:
    keys = {_key(c): c for c in table.columns}
    for name in names:
        if _key(name) in keys:
            return keys[_key(name)]
    raise CorporateActionError(f"the {what} lacks a column {' / '.join(names)}; found {list(table.columns)}",
                               file=str(path))


def _action_values(table: pd.DataFrame, column: str, path: Path, kind: str) -> pd.Series:
    """Parse a column of a corporate-action table; unreadable cells raise CorporateActionError."""
    bad = _Unreadable(str(path), None, None)
    values = (_parse_dates(table[column], column, bad) if kind == "date"
              else _parse_numbers(table[column], column, bad))
    bad.raise_if_any(None, CorporateActionError)
    return values


def read_factor_file(path: str | Path, symbol: str | None = None) -> pd.Series:
    """A ``trade_date,hfq_factor`` file as a float Series indexed by date (sorted).

    Raises :class:`CorporateActionError` for unreadable, missing, non-positive or duplicated entries.
    """
    path = Path(path)
    symbol = symbol if symbol is not None else path.name.removesuffix(FACTOR_SUFFIX)
    table = _read_small_csv(path, "back-adjustment factor file")
    dcol = _pick(table, ("trade_date", "date"), path, "factor file")
    fcol = _pick(table, ("hfq_factor", "factor"), path, "factor file")
    dates = _action_values(table, dcol, path, "date")
    factors = _action_values(table, fcol, path, "number")
    invalid = np.flatnonzero((dates.isna() | factors.isna() | ~(factors > 0) | ~np.isfinite(factors)).to_numpy())
    if len(invalid):
        i = int(invalid[0])
        raise CorporateActionError(f"{len(invalid)} invalid factor row(s); first at data row {i + 1}: "
                                   f"date {table[dcol].iloc[i]!r}, factor {table[fcol].iloc[i]!r} "
                                   f"(factors must be positive numbers)", file=str(path), symbol=symbol,
                                   date=dates.iloc[i] if pd.notna(dates.iloc[i]) else None)
    dup = dates.duplicated(keep=False).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise CorporateActionError(f"date repeated in the factor file (data row {i + 1})", file=str(path),
                                   symbol=symbol, date=dates.iloc[i])
    series = pd.Series(factors.to_numpy(), index=pd.DatetimeIndex(dates, name="date"), name=str(symbol))
    return series.sort_index()


def _normalise_code(codes: pd.Series) -> pd.Series:
    return codes.astype("string").str.strip().str.split(".", n=1).str[0]


def _next_sessions(dates: pd.Series, calendar: TradingCalendar) -> pd.Series:
    """The first session strictly after each date; dates the calendar does not cover move one day."""
    if dates.empty:
        return dates.astype("datetime64[ns]")
    sessions = calendar.sessions(dates.min(), dates.max() + pd.Timedelta(days=60))
    s = sessions.to_numpy(dtype="datetime64[ns]")
    d = dates.to_numpy(dtype="datetime64[ns]")
    pos = np.searchsorted(s, d, side="right")
    covered = (pos < len(s)) & (d >= np.datetime64(calendar.first_session.to_datetime64(), "ns"))
    fallback = d + np.timedelta64(1, "D")
    out = np.where(covered, s[np.clip(pos, 0, max(len(s) - 1, 0))] if len(s) else fallback, fallback)
    return pd.Series(out.astype("datetime64[ns]"), index=dates.index)


def read_splits_table(path: str | Path, calendar: TradingCalendar | None = None) -> pd.DataFrame:
    """A splits table as ``symbol, date, ratio`` with ``date`` the first session on the new basis.

    ``platform_splits.csv`` (``code, split_date, split_ratio``) names the last day on the old basis,
    so its dates are moved to the calendar's next session; a canonical table (``symbol, date, ratio``)
    is taken as effective dates. Ratios must be positive.
    """
    path = Path(path)
    calendar = calendar or get_calendar("XSHG")
    table = _read_small_csv(path, "splits table")
    scol = _pick(table, ("symbol", "code"), path, "splits table")
    dcol = _pick(table, ("date", "ex_date", "split_date"), path, "splits table")
    rcol = _pick(table, ("ratio", "split_ratio"), path, "splits table")
    dates = _action_values(table, dcol, path, "date")
    ratios = _action_values(table, rcol, path, "number")
    invalid = np.flatnonzero((dates.isna() | ratios.isna() | ~(ratios > 0)).to_numpy())
    if len(invalid):
        i = int(invalid[0])
        raise CorporateActionError(f"invalid split at data row {i + 1}: date {table[dcol].iloc[i]!r}, "
                                   f"ratio {table[rcol].iloc[i]!r} (ratios must be positive)", file=str(path),
                                   symbol=str(table[scol].iloc[i]))
    if _key(dcol) == "split_date":
        dates = _next_sessions(dates, calendar)
    out = pd.DataFrame({"symbol": _normalise_code(table[scol]).astype(object),
                        "date": dates.astype("datetime64[ns]"), "ratio": ratios.astype(np.float64)})
    return out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def read_dividends_table(path: str | Path) -> pd.DataFrame:
    """A dividends table as ``symbol, date (ex-date), cash (CNY per share)``; zero-cash rows are dropped
    (they change nothing), negative or unreadable amounts raise :class:`CorporateActionError`."""
    path = Path(path)
    table = _read_small_csv(path, "dividends table")
    scol = _pick(table, ("symbol", "code"), path, "dividends table")
    dcol = _pick(table, ("date", "ex_date"), path, "dividends table")
    ccol = _pick(table, ("cash", "dividend_per_share"), path, "dividends table")
    dates = _action_values(table, dcol, path, "date")
    cash = _action_values(table, ccol, path, "number")
    invalid = np.flatnonzero((dates.isna() | cash.isna() | (cash < 0)).to_numpy())
    if len(invalid):
        i = int(invalid[0])
        raise CorporateActionError(f"invalid dividend at data row {i + 1}: ex-date {table[dcol].iloc[i]!r}, "
                                   f"cash {table[ccol].iloc[i]!r} (cash must be a non-negative number)",
                                   file=str(path), symbol=str(table[scol].iloc[i]))
    out = pd.DataFrame({"symbol": _normalise_code(table[scol]).astype(object),
                        "date": dates.astype("datetime64[ns]"), "cash": cash.astype(np.float64)})
    out = out[out["cash"] > 0]
    return out.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def read_nav(folder: str | Path, symbol: str) -> pd.DataFrame | None:
    """Net asset values of one fund from ``<folder>/etf_nav/<symbol>.csv``, or None when absent.

    Returns columns ``date`` (datetime64), ``unit_nav`` and ``cum_nav`` (CNY per unit), sorted by date.
    Unreadable cells raise :class:`PriceDataError` naming the file and row.
    """
    path = Path(folder) / NAV_FOLDER / f"{symbol}.csv"
    if not path.is_file():
        return None
    table, file_lines = _csv_table(path, path.read_bytes(), symbol)
    keys = {_key(c): c for c in table.columns}
    need = {"date": ("trade_date", "date"), "unit_nav": ("unit_nav",), "cum_nav": ("cum_nav",)}
    cols: dict[str, str] = {}
    for canon, names in need.items():
        hit = next((keys[_key(n)] for n in names if _key(n) in keys), None)
        if hit is None:
            raise UnknownLayoutError(str(path), list(table.columns), {"nav": ["trade_date", "unit_nav", "cum_nav"]})
        cols[canon] = hit
    bad = _Unreadable(str(path), symbol, file_lines)
    out = pd.DataFrame({"date": _parse_dates(table[cols["date"]], cols["date"], bad),
                        "unit_nav": _parse_numbers(table[cols["unit_nav"]], cols["unit_nav"], bad),
                        "cum_nav": _parse_numbers(table[cols["cum_nav"]], cols["cum_nav"], bad)})
    bad.raise_if_any(out["date"])
    return out.sort_values("date", kind="stable").reset_index(drop=True)


# -------------------------------------------------------------------------------------------- source
class DirectorySource(PriceSource):
    """Per-fund price files in one folder (see the module contract)."""

    name = "directory"
    synthetic = False

    def __init__(self, directory: str | Path, calendar: TradingCalendar | str = "XSHG"):
        self.directory = Path(directory)
        self.calendar = get_calendar(calendar) if isinstance(calendar, str) else calendar
        if not self.directory.is_dir():
            raise DataSourceError(f"price folder {self.directory} does not exist or is not a folder; "
                                  f"set data.directory to a folder of <symbol>.csv / <symbol>.parquet files")
        self._files: dict[str, dict[str, object]] = {}

    def __repr__(self) -> str:
        return f"DirectorySource({str(self.directory)!r})"

    def _inside(self, path: Path) -> Path:
        """``path`` when it resolves inside the price folder; a symbolic link out of it is refused (a
        link within the folder is fine)."""
        target = path.resolve()
        if not target.is_relative_to(self.directory.resolve()):
            raise DataSourceError(f"{path} is a link to {target}, outside the price folder {self.directory}",
                                  file=path, hint="copy the file into the folder instead of linking to it")
        return path

    def price_file(self, symbol: str) -> Path:
        """The price file of ``symbol``; DataSourceError when there is none or more than one."""
        found = [self.directory / f"{symbol}{suffix}" for suffix in PRICE_SUFFIXES
                 if (self.directory / f"{symbol}{suffix}").is_file()]
        if not found:
            raise DataSourceError(f"no price file for symbol {symbol} in folder {self.directory} "
                                  f"(looked for {symbol}.csv and {symbol}.parquet)")
        if len(found) > 1:
            raise DataSourceError(f"symbol {symbol} has several price files in folder {self.directory}: "
                                  f"{[p.name for p in found]}; keep one")
        return self._inside(found[0])

    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        paths = {s: self.price_file(s) for s in symbols}   # every missing file is reported before reading
        out: dict[str, RawPrices] = {}
        for symbol, path in paths.items():
            raw = read_price_file(path, symbol)
            out[symbol] = raw
            self._files[symbol] = {"file": path.name, "layout": raw.layout, "rows": int(raw.meta["rows"]),
                                   "sha256": raw.meta["sha256"]}
        return out

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        wanted = [str(s) for s in symbols]
        factors: dict[str, pd.Series] = {}
        for symbol in wanted:
            path = self.directory / f"{symbol}{FACTOR_SUFFIX}"
            if path.is_file():
                factors[symbol] = read_factor_file(self._inside(path), symbol)
        kwargs: dict[str, object] = {"factors": factors}
        splits_path = self.directory / SPLITS_FILE
        if splits_path.is_file():
            splits = read_splits_table(self._inside(splits_path), self.calendar)
            kwargs["splits"] = splits[splits["symbol"].isin(wanted)].reset_index(drop=True)
        dividends_path = self.directory / DIVIDENDS_FILE
        if dividends_path.is_file():
            dividends = read_dividends_table(self._inside(dividends_path))
            kwargs["dividends"] = dividends[dividends["symbol"].isin(wanted)].reset_index(drop=True)
        return CorporateActions(**kwargs)  # type: ignore[arg-type]

    def nav(self, symbol: str) -> pd.DataFrame | None:
        """Net asset values of ``symbol`` (see :func:`read_nav`)."""
        path = self.directory / NAV_FOLDER / f"{symbol}.csv"
        if path.is_file():
            self._inside(path)
        return read_nav(self.directory, symbol)

    def describe(self) -> dict[str, object]:
        return {
            "source": self.name,
            "synthetic": False,
            "directory": str(self.directory.resolve()),
            "calendar": self.calendar.code,
            "files": {s: dict(info) for s, info in sorted(self._files.items())},
            "splits_table": (self.directory / SPLITS_FILE).is_file(),
            "dividends_table": (self.directory / DIVIDENDS_FILE).is_file(),
            "factor_files": sorted(p.name for p in self.directory.glob(f"*{FACTOR_SUFFIX}")),
        }
