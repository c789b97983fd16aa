"""A folder of per-fund price files in any known vendor layout: ``<symbol>.csv``, ``.txt`` or ``.parquet``.

Contract
--------
* :meth:`DirectorySource.read` returns, per symbol, the file's records in file order in canonical units
  (``volume`` in shares, ``amount`` in CNY), *unadjusted* and *unchecked*: nothing is dropped, sorted or
  repaired (an Alpha Vantage file stays newest-first; the quality gate sorts). Missing cells (empty,
  ``NaN``, ``null``, ``-`` ...) become NaN/NaT and are left for the quality gate to quarantine; only values
  that cannot be read at all (``"abc"`` as a price, ``2021-13-45`` as a date) raise
  :class:`~rotation_platform.errors.PriceDataError` naming the file, the symbol, the data row and the
  column. Dates are ISO 8601 (``2024-01-02``, ``2024/01/02``, ``20240102``, or with a time, which is
  dropped) or Parquet dates/timestamps; they become tz-naive midnights (``datetime64[ns]``). A date with a
  time zone is refused, except yfinance's local midnights (``2024-01-02 00:00:00-05:00``). ``line`` is the
  1-based data row (header, title and footer lines excluded, blank lines skipped).
* The layout is recognised from the file's content (:mod:`.layouts`): the header, or -- for a file whose
  first row is data -- the column count (通达信 order). Title and footer lines are skipped and reported
  in ``meta["skipped_lines"]``. A file no layout matches raises
  :class:`~rotation_platform.errors.UnknownLayoutError` naming the closest layout, what it lacks and the
  header line to add. Volumes are converted to shares by the layout's unit or ``data.volume_unit``
  (recorded in ``meta["volume_unit_shares"]`` and ``meta["volume_unit_source"]``).
* File names map to symbols with :func:`~.layouts.file_symbol` (``sh510300.csv``, ``510300.SH.csv``,
  ``SH#510300.txt`` hold ``510300``) or ``data.symbol_map``; two files for one symbol are an error naming
  both.
* :meth:`DirectorySource.corporate_actions` reads ``<symbol>_hfq_factor.csv`` (``trade_date,hfq_factor``)
  and, when present in the folder, ``platform_splits.csv`` and ``platform_dividends.csv``, plus what a
  price file carries itself: an ``Adj Close`` / ``adjusted_close`` column becomes the fund's factor series
  (``adj_close / close``, rescaled to 1.0 on the first date: the hfq convention, adjusted = raw x factor),
  Alpha Vantage's ``dividend_amount`` and ``split_coefficient`` become dividends (ex-date) and splits
  (effective date). A fund with both a factor file and an adjusted-close column is refused (one source of
  factors, named). In ``platform_splits.csv`` the ``split_date`` is the last day on the old unit basis (the
  record or suspension day); the split is effective from the next session of the source's calendar, which
  is the date stored in :attr:`CorporateActions.splits`. A table with canonical columns
  (``symbol,date,ratio``) is taken to hold effective dates already. Dividends use the ex-date.
* Reading never writes to the folder.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rotation_platform.calendars import TradingCalendar, get_calendar
from rotation_platform.config.models import DataConfig
from rotation_platform.data.sources.base import RAW_COLUMNS, CorporateActions, PriceSource, RawPrices
from rotation_platform.data.sources.layouts import (
    LAYOUT_BY_NAME,
    LAYOUTS,
    LOT_SIZE,
    NA_TOKENS,
    PLAIN_HEADER,
    PRICE_SUFFIXES,
    PriceLayout,
    Sniffed,
    _key,
    _unknown,
    detect_layout,
    file_symbol,
    resolve_volume_unit,
    sniff_text,
    symbol_key,
)
from rotation_platform.errors import (
    CorporateActionError,
    DataSourceError,
    PriceDataError,
    UnknownLayoutError,
)

__all__ = [
    "LOT_SIZE",
    "NA_TOKENS",
    "PRICE_SUFFIXES",
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

SPLITS_FILE = "platform_splits.csv"
DIVIDENDS_FILE = "platform_dividends.csv"
FACTOR_SUFFIX = "_hfq_factor.csv"
NAV_FOLDER = "etf_nav"
_ENCODINGS = ("utf-8-sig", "gb18030")
_MAX_LISTED = 5  # unreadable cells named in one error message
_LAYOUT_BY_NAME = LAYOUT_BY_NAME

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



def _decode(data: bytes, file: Path, symbol: str | None) -> tuple[str, str]:
    """The text and the name of the encoding it was read with (``utf-8``, ``utf-8-sig`` with a BOM,
    ``gb18030``: GBK and its superset)."""
    for encoding in _ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8"
        return text, encoding
    raise PriceDataError("file is neither UTF-8 nor GB18030 text", file=str(file), symbol=symbol)


_PANDAS_LINE = re.compile(r"\bline (\d+)\b")


def _csv_table(path: Path, data: bytes, symbol: str | None
               ) -> tuple[pd.DataFrame, np.ndarray | None, Sniffed, str]:
    """All cells as text, the file line of each data row (None when it cannot be mapped), the file's shape
    and its encoding. A headerless file gets the columns ``0, 1, ...``."""
    if b"\x00" in data[:65536]:
        raise PriceDataError("binary content (NUL bytes), not CSV text", file=str(path), symbol=symbol,
                             hint="replace it with the fund's CSV export or a Parquet file named .parquet")
    text, encoding = _decode(data, path, symbol)
    if not text.strip():
        raise PriceDataError("file is empty (no header line)", file=str(path), symbol=symbol,
                             hint=f"write the fund's rows under the header line '{PLAIN_HEADER}'")
    shape = sniff_text(text)
    if shape.header is None and not shape.body:
        skipped = "; ".join(f"line {n}: {t!r}" for n, t in shape.skipped[:3])
        raise PriceDataError(f"no header and no data rows, only title/footer lines ({skipped})", file=str(path),
                             symbol=symbol, hint=f"write the fund's rows under the header line '{PLAIN_HEADER}'")
    delimiter = shape.delimiter
    header_text = [] if shape.header is None else [delimiter.join(_quote(c, delimiter) for c in shape.header)]
    source_lines = ([shape.header_lines[-1]] if shape.header is not None else []) + list(shape.body_lines)
    body = "\n".join(header_text + list(shape.body))
    try:
        if shape.header is None:
            table = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, skip_blank_lines=True,
                                header=None, sep=delimiter)
        else:
            table = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, skip_blank_lines=True,
                                sep=delimiter)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame({c: pd.Series(dtype=str) for c in (shape.header or ())})
    except pd.errors.ParserError as exc:
        def _file_line(m: re.Match) -> str:
            k = int(m.group(1))
            return f"line {source_lines[k - 1]}" if 1 <= k <= len(source_lines) else m.group(0)
        raise PriceDataError(f"malformed CSV: {_PANDAS_LINE.sub(_file_line, str(exc))}", file=str(path),
                             symbol=symbol) from None
    header = list(shape.header) if shape.header is not None else None
    if not isinstance(table.index, pd.RangeIndex):
        # pandas takes the leading fields as an index when every row has more fields than the header
        raise PriceDataError(f"malformed CSV: the data rows have {table.index.nlevels} more field(s) than the "
                             f"{len(header or ())}-column header", file=str(path), symbol=symbol)
    if header is not None and len(set(map(_key, header))) != len(header):
        # keep the real header (pandas renames duplicates to "x.1"); detection reports the duplicate
        table.columns = pd.Index(header[: len(table.columns)])
    elif header is not None:
        table.columns = pd.Index([str(c).strip() for c in table.columns])
    file_lines = np.asarray(shape.body_lines, dtype=np.int64) if len(shape.body_lines) == len(table) else None
    return table, file_lines, shape, encoding


def _quote(cell: str, delimiter: str) -> str:
    return f'"{cell}"' if (delimiter in cell or '"' in cell) and not cell.startswith('"') else cell


#: yfinance writes daily dates as the exchange's local midnight with its UTC offset
_LOCAL_MIDNIGHT = re.compile(r"[T ]00:00(?::00(?:\.0+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$")


def _headerless_layout(table: pd.DataFrame, path: Path) -> tuple[PriceLayout, dict[str, str]]:
    """A file whose first row is data: 通达信's column order by the column count (7 with amount, 6 without)."""
    n = table.shape[1]
    layout = LAYOUT_BY_NAME["tdx"]
    fields = list(layout.columns)
    if n not in (len(fields), len(fields) - 1):
        first = [str(v) for v in table.iloc[0].tolist()] if len(table) else []
        raise _unknown(str(path), first, detail=f"the first row is data, not a header, with {n} columns (a "
                                                f"headerless file is read as date,open,high,low,close,volume"
                                                f"[,amount] and needs 6 or 7)")
    columns = [str(c) for c in table.columns]
    table.columns = pd.Index(columns)
    return layout, {canon: columns[i] for i, canon in enumerate(fields[:n])}


def _check_title(shape: Sniffed, path: Path, symbol: str) -> dict[str, object]:
    """What a 通达信 title line says: the fund code (it must be the file's) and the price adjustment."""
    out: dict[str, object] = {}
    if shape.title is None:
        return out
    out["title"] = shape.title
    words = shape.title.split()
    if words and re.fullmatch(r"\d{6}", words[0]) and symbol_key(symbol).isdigit() \
            and words[0] != symbol_key(symbol):
        raise PriceDataError(f"the title line {shape.title!r} (line {shape.skipped[0][0]}) names fund {words[0]}, "
                             f"the file is read for symbol {symbol}", file=str(path), symbol=symbol,
                             hint="rename the file after the fund it holds, or map it in data.symbol_map")
    for word, meaning in (("不复权", "none"), ("前复权", "forward"), ("后复权", "backward")):
        if word in shape.title:
            out["vendor_adjustment"] = meaning
    return out


def _check_ticker(shape: Sniffed, path: Path, symbol: str) -> None:
    """yfinance's Ticker row must name the file's symbol (exchange suffixes aside: 510300.SS)."""
    if shape.ticker is None:
        return
    tickers = {t.strip() for t in shape.ticker if t.strip()}
    wrong = sorted(t for t in tickers if symbol_key(t).casefold() != symbol_key(symbol).casefold()
                   and t.split(".")[0].casefold() != symbol_key(symbol).casefold())
    if wrong:
        raise PriceDataError(f"the Ticker row (line {shape.header_lines[1]}) names {', '.join(wrong)}, the file is "
                             f"read for symbol {symbol}", file=str(path), symbol=symbol,
                             hint="rename the file after the ticker it holds, or map it in data.symbol_map")


def _file_actions(symbol: str, frame: pd.DataFrame, extra: Mapping[str, pd.Series], layout: PriceLayout,
                  mapping: Mapping[str, str]) -> tuple[CorporateActions | None, dict[str, object]]:
    """The corporate actions a price file carries (module contract) and their description for the meta."""
    info: dict[str, object] = {}
    factors: dict[str, pd.Series] = {}
    kwargs: dict[str, object] = {}
    valid_date = frame["date"].notna().to_numpy()
    if "adj_close" in extra:
        adj = extra["adj_close"].to_numpy(dtype=np.float64)
        close = frame["close"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = adj / close
        ok = valid_date & np.isfinite(ratio) & (ratio > 0) & np.isfinite(close) & (close > 0)
        series = pd.Series(ratio[ok], index=pd.DatetimeIndex(frame["date"].to_numpy()[ok], name="date"), name=symbol)
        series = series[~series.index.duplicated(keep="first")].sort_index()
        if len(series):
            factors[symbol] = series / float(series.iloc[0])
            info["factors"] = f"column {mapping['adj_close']!r} ({len(series)} rows)"
    if "split" in extra:
        ratio = extra["split"].to_numpy(dtype=np.float64)
        rows = valid_date & np.isfinite(ratio) & (ratio > 0) & (ratio != 1.0)
        if rows.any():
            kwargs["splits"] = pd.DataFrame({"symbol": symbol, "date": frame["date"].to_numpy()[rows],
                                             "ratio": ratio[rows]}).sort_values("date").reset_index(drop=True)
            info["splits"] = f"column {mapping['split']!r} ({int(rows.sum())})"
    if "dividend" in extra:
        cash = extra["dividend"].to_numpy(dtype=np.float64)
        rows = valid_date & np.isfinite(cash) & (cash > 0)
        if rows.any():
            kwargs["dividends"] = pd.DataFrame({"symbol": symbol, "date": frame["date"].to_numpy()[rows],
                                                "cash": cash[rows]}).sort_values("date").reset_index(drop=True)
            info["dividends"] = f"column {mapping['dividend']!r} ({int(rows.sum())})"
    if not factors and not kwargs:
        return None, info
    for name in ("splits", "dividends"):
        if name in kwargs:
            kwargs[name]["date"] = kwargs[name]["date"].astype("datetime64[ns]")
            kwargs[name]["symbol"] = kwargs[name]["symbol"].astype(object)
    return CorporateActions(factors=factors, **kwargs), info  # type: ignore[arg-type]


def _order(dates: pd.Series) -> str:
    d = dates.dropna()
    if len(d) < 2 or d.is_monotonic_increasing:
        return "oldest_first"
    if d.is_monotonic_decreasing:
        return "newest_first"
    return "mixed"


def read_price_file(path: str | Path, symbol: str | None = None, *,
                    volume_unit: Mapping[str, object] | None = None) -> RawPrices:
    """Read one price file (CSV/TXT or Parquet) into :class:`RawPrices`; see the module contract.

    ``symbol`` defaults to the one the file name holds; ``volume_unit`` is ``data.volume_unit``.
    """
    path = Path(path)
    symbol = symbol if symbol is not None else (file_symbol(path.name) or path.stem)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataSourceError(f"cannot read price file {path} for symbol {symbol}: {exc}") from None
    file_lines: np.ndarray | None = None
    shape: Sniffed | None = None
    encoding: str | None = None
    if path.suffix.lower() == ".parquet":
        try:
            table = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise PriceDataError(f"unreadable Parquet file: {exc}", file=str(path), symbol=symbol) from None
        table = table.reset_index(drop=True)
    else:
        table, file_lines, shape, encoding = _csv_table(path, data, symbol)

    if shape is not None and shape.header is None:
        layout, mapping = _headerless_layout(table, path)
    else:
        layout, mapping = detect_layout(list(table.columns), path, tdx=bool(shape is not None and shape.tdx))
    extra_meta = _check_title(shape, path, str(symbol)) if shape is not None else {}
    if shape is not None:
        _check_ticker(shape, path, str(symbol))
    bad = _Unreadable(str(path), symbol, file_lines)
    n = len(table)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    dates = table[mapping["date"]]
    if layout.name == "yahoo" and not pd.api.types.is_datetime64_any_dtype(dates.dtype):
        dates = dates.astype("string").str.strip().str.replace(_LOCAL_MIDNIGHT, "", regex=True)
    frame["date"] = _parse_dates(dates, mapping["date"], bad)
    for canon in RAW_COLUMNS[1:]:
        if canon in mapping:
            frame[canon] = _parse_numbers(table[mapping[canon]], mapping[canon], bad)
        else:
            frame[canon] = np.full(n, np.nan)
    extra = {canon: _parse_numbers(table[mapping[canon]], mapping[canon], bad)
             for canon in ("adj_close", "dividend", "split") if canon in mapping}
    bad.raise_if_any(frame["date"])
    unit, unit_source = resolve_volume_unit(layout, str(symbol), volume_unit)
    if unit != 1:
        frame["volume"] = frame["volume"] * float(unit)
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

    actions, action_info = _file_actions(str(symbol), frame, extra, layout, mapping)
    valid = frame["date"].dropna()
    meta = {
        "layout": layout.name,
        "volume_unit_shares": int(unit),
        "volume_unit_source": unit_source,
        "columns": [str(c) for c in table.columns] if shape is None or shape.header is not None else [],
        "rows": n,
        "sha256": hashlib.sha256(data).hexdigest(),
        "amount_present": "amount" in mapping,
        "format": "parquet" if shape is None else "text",
        "encoding": encoding,
        "delimiter": shape.delimiter if shape is not None else None,
        "header": shape.header_kind if shape is not None else "parquet columns",
        "skipped_lines": [{"line": int(line), "text": text} for line, text in shape.skipped] if shape else [],
        "order": _order(frame["date"]),
        "first": str(valid.min().date()) if len(valid) else None,
        "last": str(valid.max().date()) if len(valid) else None,
        "file_actions": action_info,
        **extra_meta,
    }
    return RawPrices(symbol=str(symbol), frame=frame[[*RAW_COLUMNS, "line"]], file=str(path),
                     layout=layout.name, meta=meta, actions=actions)

# ------------------------------------------------------------------------------- corporate actions
def _read_small_csv(path: Path, what: str) -> pd.DataFrame:
    try:
        text, _ = _decode(path.read_bytes(), path, None)
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
    table, file_lines, _, _ = _csv_table(path, path.read_bytes(), symbol)
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
    """Per-fund price files in one folder (see the module contract).

    ``volume_unit`` and ``symbol_map`` are ``data.volume_unit`` and ``data.symbol_map``
    (:meth:`from_config` takes them from a :class:`~rotation_platform.config.models.DataConfig`).
    """

    name = "directory"
    synthetic = False

    def __init__(self, directory: str | Path, calendar: TradingCalendar | str = "XSHG", *,
                 volume_unit: Mapping[str, object] | None = None, symbol_map: Mapping[str, str] | None = None,
                 calendars: Mapping[str, str] | None = None):
        self.directory = Path(directory)
        self.calendar = get_calendar(calendar) if isinstance(calendar, str) else calendar
        # symbol -> calendar code of its pool: a split's effective session is the next session of the
        # fund's own exchange (the splits table names the last day on the old basis)
        self.calendars = dict(calendars or {})
        if not self.directory.is_dir():
            raise DataSourceError(f"price folder {self.directory} does not exist or is not a folder; "
                                  f"set data.directory to a folder of <symbol>.csv / <symbol>.parquet files")
        self.volume_unit = dict(volume_unit or {})
        self.symbol_map = dict(symbol_map or {})
        self._files: dict[str, dict[str, object]] = {}
        self._raw: dict[str, RawPrices] = {}

    @classmethod
    def from_config(cls, data: DataConfig, calendar: TradingCalendar | str = "XSHG", *,
                    calendars: Mapping[str, str] | None = None) -> "DirectorySource":
        """The source of ``data`` (``data.directory``, ``data.volume_unit``, ``data.symbol_map``); ``calendars``
        maps a symbol to its pool's calendar (default ``calendar``)."""
        return cls(data.directory, calendar, volume_unit=data.volume_unit, symbol_map=data.symbol_map,
                   calendars=calendars)

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

    def price_files(self) -> dict[str, list[Path]]:
        """Every price file of the folder by the symbol its name holds (see :func:`~.layouts.file_symbol`)."""
        out: dict[str, list[Path]] = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_file():
                continue
            symbol = file_symbol(path.name, self.symbol_map)
            if symbol is not None:
                out.setdefault(symbol, []).append(path)
        return out

    def price_file(self, symbol: str, index: Mapping[str, list[Path]] | None = None) -> Path:
        """The price file of ``symbol``; DataSourceError when there is none or more than one."""
        index = self.price_files() if index is None else index
        found = list(index.get(symbol, ()))
        if not found:
            # a US ticker written in another case (spy.csv for SPY)
            found = [p for s, paths in index.items() if s.casefold() == symbol.casefold() for p in paths]
        if not found:
            bare = sorted(p.name for p in self.directory.iterdir()
                          if p.is_file() and symbol_key(p.name) == symbol and p.name != symbol)
            hint = (f"; {bare[0]} has no extension: rename it to {bare[0]}.csv" if bare else
                    "; or name the file in data.symbol_map")
            raise DataSourceError(f"no price file for symbol {symbol} in folder {self.directory} "
                                  f"(looked for {symbol}.csv, .txt or .parquet, also with an exchange prefix or "
                                  f"suffix: sh{symbol}.csv, {symbol}.SH.csv, SH#{symbol}.txt){hint}")
        if len(found) > 1:
            raise DataSourceError(f"symbol {symbol} has several price files in folder {self.directory}: "
                                  f"{[p.name for p in found]}; keep one")
        return self._inside(found[0])

    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        index = self.price_files()
        paths = {s: self.price_file(s, index) for s in symbols}   # every missing file is reported before reading
        out: dict[str, RawPrices] = {}
        for symbol, path in paths.items():
            raw = read_price_file(path, symbol, volume_unit=self.volume_unit)
            out[symbol] = raw
            self._raw[symbol] = raw
            self._files[symbol] = {"file": path.name, "layout": raw.layout, "rows": int(raw.meta["rows"]),
                                   "sha256": raw.meta["sha256"],
                                   "volume_unit_shares": raw.meta["volume_unit_shares"],
                                   "amount_present": raw.meta["amount_present"]}
        return out

    def _file_actions(self, symbol: str) -> CorporateActions | None:
        """What the fund's price file carries itself (read now when :meth:`read` has not)."""
        raw = self._raw.get(symbol)
        if raw is None:
            try:
                path = self.price_file(symbol)
            except DataSourceError:
                return None   # no price file: nothing it could carry (reading the prices reports the absence)
            raw = read_price_file(path, symbol, volume_unit=self.volume_unit)
            self._raw[symbol] = raw
        return raw.actions

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        wanted = [str(s) for s in symbols]
        factors: dict[str, pd.Series] = {}
        in_file: list[CorporateActions] = []
        for symbol in wanted:
            path = self.directory / f"{symbol}{FACTOR_SUFFIX}"
            carried = self._file_actions(symbol)
            if path.is_file():
                if carried is not None and symbol in carried.factors:
                    raise CorporateActionError(
                        f"two sources of back-adjustment factors: {path.name} and the adjusted-close column of "
                        f"{Path(self._raw[symbol].file or '').name}", file=str(path), symbol=symbol,
                        hint=f"delete {path.name} or the adjusted-close column, so that one of them adjusts the fund")
                factors[symbol] = read_factor_file(self._inside(path), symbol)
            if carried is not None:
                factors.update(carried.factors)
                in_file.append(carried)
        kwargs: dict[str, object] = {"factors": factors}
        splits = [a.splits for a in in_file if len(a.splits)]
        dividends = [a.dividends for a in in_file if len(a.dividends)]
        splits_path = self.directory / SPLITS_FILE
        if splits_path.is_file():
            by_calendar: dict[str, list[str]] = {}
            for symbol in wanted:
                by_calendar.setdefault(self.calendars.get(symbol, self.calendar.code), []).append(symbol)
            for code, group in by_calendar.items():
                table = read_splits_table(self._inside(splits_path), get_calendar(code))
                splits.insert(0, table[table["symbol"].isin(group)])
        dividends_path = self.directory / DIVIDENDS_FILE
        if dividends_path.is_file():
            table = read_dividends_table(self._inside(dividends_path))
            dividends.insert(0, table[table["symbol"].isin(wanted)])
        if splits:
            kwargs["splits"] = (pd.concat(splits, ignore_index=True).sort_values(["symbol", "date"], kind="stable")
                                .reset_index(drop=True))
        if dividends:
            kwargs["dividends"] = (pd.concat(dividends, ignore_index=True)
                                   .sort_values(["symbol", "date"], kind="stable").reset_index(drop=True))
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
            "file_actions": {s: dict(raw.meta.get("file_actions") or {}) for s, raw in sorted(self._raw.items())
                             if raw.meta.get("file_actions")},
        }
