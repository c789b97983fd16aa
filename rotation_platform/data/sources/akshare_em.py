"""The live source: eastmoney's daily ETF history (the endpoint akshare's ``fund_etf_hist_em`` calls),
fetched into the drop folder, which :class:`~rotation_platform.data.sources.directory.DirectorySource`
then reads through the same quality gate as any delivered file.

The request
-----------
akshare 1.19.5's ``fund_etf_hist_em(symbol, period="daily", start_date, end_date, adjust)`` sends one
``GET https://push2his.eastmoney.com/api/qt/stock/kline/get`` (``requests.get``, timeout 15 s, no
session, no retry) with the query parameters of :func:`kline_params`: ``fields1=f1,...,f6``,
``fields2=f51,...,f61,f116``, the public page token ``ut``, ``klt=101`` (daily), ``fqt`` (0 unadjusted,
1 forward-adjusted ``qfq``, 2 back-adjusted ``hfq``), ``beg``/``end`` (``YYYYMMDD``, both inclusive) and
``secid=<market>.<code>`` with market 1 (Shanghai) for codes starting 5 or 6 and 0 (Shenzhen) for the
others (:func:`market_id`). The answer is JSON; ``data`` is ``null`` for a code the server does not know,
else ``data.klines`` is a list of comma-joined bars
``日期,开盘,收盘,最高,最低,成交量,成交额,振幅,涨跌幅,涨跌额,换手率`` (date, open, close, high, low, volume in
lots of 100 shares, amount in CNY, range %, change %, change, turnover %), prices on the fund's 0.001 tick.
akshare splits each bar on commas into those eleven columns (:data:`KLINE_COLUMNS`). This module sends the
same request with ``requests`` (the akshare package is not needed at run time) to a configurable
``data.akshare.base_url``.

What a fetch does (:func:`fetch_missing`)
-----------------------------------------
Per fund, for the sessions from its file's last bar through ``through`` -- the last *closed* session of
the pool calendar (its close plus the market's data delay is past; :func:`last_closed_session`), never
a bar of a session still trading -- and nothing at all when the file is current:

* the unadjusted bars (``fqt=0``) are appended to ``<symbol>.csv`` in the ``akshare_em`` layout (the
  server's text exactly, in the file's own column order; a new file gets the eleven columns), only dates
  after the file's last bar, and atomically (a temporary file, then ``os.replace``);
* the last ``data.akshare.overlap_sessions`` bars already in the file are fetched again and compared: a
  value that differs by more than ``restatement_tolerance`` (relative), a bar the server has and the file
  lacks, or the reverse, is a :class:`Restatement` in the report -- the file is never rewritten;
* with ``data.akshare.factors``, the back-adjusted closes (``fqt=2``) give ``<symbol>_hfq_factor.csv``
  (``trade_date,hfq_factor`` = hfq close / raw close, the convention of
  :func:`~rotation_platform.data.sources.directory.read_factor_file`), appended and compared the same way.
  The factor file is kept as far as the price file: beyond its end the adjustment carries the last
  factor forward, so a split after it would otherwise go unnoticed.

Requests go through :class:`KlineClient`: at least ``min_interval_seconds`` apart (rate limit), each with
``timeout_seconds``, retried on a 5xx or 429 answer, a timeout or a refused connection up to ``retries``
times, waiting ``backoff_seconds`` x 2^k (at most ``max_backoff_seconds``). A fund that fails (unknown
to the server, retries used up, an unreadable answer, a file in another layout) is reported with one
line naming the symbol, the server's host and what to do; the other funds are fetched and written all
the same. :class:`AkshareSource` fetches, then reads the folder, and raises the first failure as its
error (a :class:`~rotation_platform.errors.ServiceError`, exit code 5, for a server that did not answer).

One fetch of a fund runs at a time: its files are read, fetched and written under an exclusive lock on
``.<symbol>.fetch.lock`` in the folder (runs of several sessions of a pool may start together; a later
one then finds the file current). Readers need no lock: a file is only ever replaced whole.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import requests

from rotation_platform.calendars import TradingCalendar, get_calendar
from rotation_platform.config.models import AkshareConfig, PlatformConfig
from rotation_platform.data.sources.base import CorporateActions, PriceSource, RawPrices
from rotation_platform.data.sources.directory import (
    FACTOR_SUFFIX,
    DirectorySource,
    read_factor_file,
    read_price_file,
)
from rotation_platform.errors import DataSourceError, RotationError, ServiceError

__all__ = [
    "KLINE_COLUMNS",
    "KLINE_UT",
    "FQT",
    "FetchError",
    "market_id",
    "kline_params",
    "parse_klines",
    "KlineClient",
    "Restatement",
    "FundFetch",
    "FetchReport",
    "last_closed_session",
    "fetch_missing",
    "AkshareSource",
    "akshare_source",
]

#: the eleven fields of one bar, in the server's order (akshare's column names)
KLINE_COLUMNS: tuple[str, ...] = ("日期", "开盘", "收盘", "最高", "最低", "成交量", "成交额", "振幅", "涨跌幅",
                                  "涨跌额", "换手率")
#: kline field -> canonical field, and the factor that turns the server's unit into the canonical one
_CANONICAL = {"open": ("开盘", 1.0), "high": ("最高", 1.0), "low": ("最低", 1.0), "close": ("收盘", 1.0),
              "volume": ("成交量", 100.0), "amount": ("成交额", 1.0)}
#: the public page token eastmoney's quote pages (and akshare) send; not a credential
KLINE_UT = "7eea3edcaed734bea9cbfc24409ed989"
FIELDS1 = "f1,f2,f3,f4,f5,f6"
FIELDS2 = "f51,f52,f53,f54,f55,f56,f57,f58,f59,f60,f61,f116"
DAILY_KLT = "101"
#: price adjustment -> the server's ``fqt``
FQT: Mapping[str, str] = {"none": "0", "qfq": "1", "hfq": "2"}
FIRST_DAY = dt.date(1970, 1, 1)   # akshare's default start_date: the fund's whole history
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class FetchError(ServiceError):
    """The server did not give a fund's bars; names the symbol, the server's host and what to do."""


def market_id(symbol: str) -> int:
    """eastmoney's market of a fund code, as akshare decides it: 1 (Shanghai) for codes starting 5 or 6,
    0 (Shenzhen) for the other numeric codes, 1 otherwise."""
    if symbol.startswith(("5", "6")):
        return 1
    if symbol.startswith(("0", "1", "2", "3")):
        return 0
    return 1


def kline_params(symbol: str, fqt: str, beg: dt.date, end: dt.date) -> dict[str, str]:
    """The query of one daily-history request, exactly as ``fund_etf_hist_em`` builds it."""
    return {"fields1": FIELDS1, "fields2": FIELDS2, "ut": KLINE_UT, "klt": DAILY_KLT, "fqt": fqt,
            "beg": beg.strftime("%Y%m%d"), "end": end.strftime("%Y%m%d"), "secid": f"{market_id(symbol)}.{symbol}"}


def parse_klines(payload: object, symbol: str, host: str) -> list[list[str]] | None:
    """The bars of an answer as lists of the eleven field texts; None when ``data`` is null (the server
    does not know the fund). A bar without eleven fields raises :class:`FetchError`."""
    if not isinstance(payload, Mapping) or "data" not in payload:
        raise FetchError(f"symbol {symbol}: {host} answered JSON without a 'data' member; the endpoint "
                         f"may have changed: check data.akshare.base_url", symbol=symbol)
    data = payload["data"]
    if data is None:
        return None
    klines = data.get("klines") if isinstance(data, Mapping) else None
    if klines is None:
        return []
    bars: list[list[str]] = []
    for i, text in enumerate(klines):
        fields = [f.strip() for f in str(text).split(",")]
        if len(fields) != len(KLINE_COLUMNS):
            raise FetchError(f"symbol {symbol}: bar {i + 1} from {host} has {len(fields)} fields, expected "
                             f"{len(KLINE_COLUMNS)} ({','.join(KLINE_COLUMNS)}): {str(text)[:80]!r}; the "
                             f"endpoint's format changed: check data.akshare.base_url", symbol=symbol)
        bars.append(fields)
    return bars


# ------------------------------------------------------------------------------------------ client
class KlineClient:
    """GET requests to the kline endpoint with a rate limit, a timeout and retries with backoff.

    ``sleep`` and ``clock`` (monotonic seconds) are injectable; ``requests_sent`` and ``retries_used``
    count what the client did.
    """

    def __init__(self, settings: AkshareConfig, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.url = settings.base_url
        self.host = urlsplit(settings.base_url).netloc
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None
        self.requests_sent = 0
        self.retries_used = 0

    def close(self) -> None:
        self._session.close()

    def _wait_turn(self) -> None:
        """Wait until ``min_interval_seconds`` have passed since the previous request *ended*: the gap
        between two requests' arrivals at the server is then at least the interval, whatever the
        network's delays."""
        gap = self.settings.min_interval_seconds
        if self._last is not None and gap > 0:
            left = self._last + gap - self._clock()
            while left > 0:
                self._sleep(left)
                left = self._last + gap - self._clock()

    def _backoff(self, retry: int) -> float:
        s = self.settings
        return min(s.max_backoff_seconds, s.backoff_seconds * (2.0 ** retry))

    def klines(self, symbol: str, fqt: str, beg: dt.date, end: dt.date) -> tuple[list[list[str]] | None, int]:
        """The bars of ``symbol`` from ``beg`` through ``end`` (see :func:`parse_klines`) and the retries
        this needed. Raises :class:`FetchError` when the attempts are used up or the answer is unusable."""
        params = kline_params(symbol, fqt, beg, end)
        attempts = self.settings.retries + 1
        what = f"symbol {symbol}: {self.host}"
        todo = (f"check the connection to {self.host} (data.akshare.base_url) and run python -m jobs.fetch "
                f"again; the other funds' bars are kept")
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                self.retries_used += 1
                self._sleep(self._backoff(attempt - 1))
            self._wait_turn()
            self.requests_sent += 1
            try:
                try:
                    response = self._session.get(self.url, params=params, timeout=self.settings.timeout_seconds)
                finally:
                    self._last = self._clock()
            except requests.Timeout:
                last_problem = f"no answer within {self.settings.timeout_seconds:g} s (data.akshare.timeout_seconds)"
                continue
            except requests.ConnectionError as exc:
                last_problem = f"connection failed ({type(exc).__name__})"
                continue
            except requests.RequestException as exc:
                raise FetchError(f"{what} request failed: {type(exc).__name__}", symbol=symbol, hint=todo) from None
            status = response.status_code
            if status in _RETRY_STATUS:
                last_problem = f"HTTP {status}"
                continue
            if status != 200:
                raise FetchError(f"{what} answered HTTP {status} for secid {params['secid']}", symbol=symbol,
                                 hint=f"check data.akshare.base_url (now {self.url})")
            try:
                payload = response.json()
            except (ValueError, json.JSONDecodeError):
                last_problem = "an answer that is not JSON"
                continue
            return parse_klines(payload, symbol, self.host), attempt
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        raise FetchError(f"{what} gave {last_problem} after {tries} (data.akshare.retries {self.settings.retries})",
                         symbol=symbol, hint=todo)


# ------------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class Restatement:
    """A re-fetched bar that disagrees with the file (the file is kept as it is).

    ``kind``: ``changed`` (``field`` differs), ``absent_in_file`` (the server has a bar the file lacks),
    ``absent_on_server`` (the reverse); ``file`` is ``<symbol>.csv`` or ``<symbol>_hfq_factor.csv``.
    """

    symbol: str
    date: pd.Timestamp
    kind: str
    field: str
    file_value: float | None
    server_value: float | None
    file: str

    def line(self) -> str:
        day = self.date.date()
        if self.kind == "changed":
            return (f"{self.symbol} {day} {self.field}: {self.file} has {self.file_value:.12g}, the server "
                    f"{self.server_value:.12g} (the file is kept; check the bar and correct the file by hand)")
        if self.kind == "absent_in_file":
            return f"{self.symbol} {day}: the server has a bar that {self.file} lacks (not inserted)"
        return f"{self.symbol} {day}: {self.file} has a bar the server no longer returns (kept)"

    def to_dict(self) -> dict[str, object]:
        value = (lambda v: None if v is None or math.isnan(v) else v)
        return {"symbol": self.symbol, "date": str(self.date.date()), "kind": self.kind, "field": self.field,
                "file_value": value(self.file_value), "server_value": value(self.server_value), "file": self.file}


@dataclass
class FundFetch:
    """What a fetch did for one fund. ``status``: ``created`` (a new file), ``appended``, ``no_new_bars``
    (the server had nothing after the file's last bar), ``factors_only`` (the prices were current, the
    factor file was behind them), ``current`` (nothing requested) or ``failed``."""

    symbol: str
    through: pd.Timestamp
    status: str = "current"
    rows_appended: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    factor_rows: int = 0
    restatements: list[Restatement] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    last_bar: pd.Timestamp | None = None
    error: RotationError | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.symbol}: FAILED: {self.error.one_line()}"
        if self.status == "current":
            when = f"last bar {self.last_bar.date()}" if self.last_bar is not None else "no bars"
            return f"{self.symbol}: skipped, current through {self.through.date()} ({when}; nothing requested)"
        if self.status == "factors_only":
            return (f"{self.symbol}: prices current through {self.through.date()}; {self.factor_rows} factor "
                    f"row(s) appended to catch up with them; {len(self.restatements)} restatement(s) "
                    f"({self.requests} request(s))")
        if self.rows_appended:
            what = f"{self.rows_appended} row(s) {'written' if self.status == 'created' else 'appended'}, " \
                   f"{self.first.date()}..{self.last.date()}"  # type: ignore[union-attr]
        else:
            last = f"last bar {self.last_bar.date()}" if self.last_bar is not None else "no bars at all"
            what = f"0 rows appended (the server has nothing new through {self.through.date()}; {last})"
        extra = f", {self.factor_rows} factor row(s)" if self.factor_rows else ""
        retries = f", {self.retries} retr{'y' if self.retries == 1 else 'ies'}" if self.retries else ""
        return (f"{self.symbol}: {what}{extra}; {len(self.restatements)} restatement(s) "
                f"({self.requests} request(s){retries})")

    def to_dict(self) -> dict[str, object]:
        day = (lambda t: None if t is None else str(t.date()))
        return {"symbol": self.symbol, "status": self.status, "through": day(self.through),
                "rows_appended": self.rows_appended, "first": day(self.first), "last": day(self.last),
                "factor_rows": self.factor_rows, "requests": self.requests, "retries": self.retries,
                "last_bar": day(self.last_bar),
                "restatements": [r.to_dict() for r in self.restatements],
                "error": None if self.error is None else self.error.one_line()}


@dataclass
class FetchReport:
    """Every fund's :class:`FundFetch`, in the order requested."""

    host: str
    directory: Path
    funds: dict[str, FundFetch] = field(default_factory=dict)

    @property
    def failed(self) -> list[FundFetch]:
        return [f for f in self.funds.values() if f.error is not None]

    @property
    def restatements(self) -> list[Restatement]:
        return [r for f in self.funds.values() for r in f.restatements]

    def lines(self) -> list[str]:
        out = [f.line() for f in self.funds.values()]
        out += [f"  restated: {r.line()}" for r in self.restatements]
        return out

    def raise_first_failure(self) -> None:
        """Raise the first failed fund's error (its one line names the fund)."""
        if self.failed:
            raise self.failed[0].error  # type: ignore[misc]

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "directory": str(self.directory),
                "funds": {s: f.to_dict() for s, f in self.funds.items()}}


# ------------------------------------------------------------------------------------------ helpers
def last_closed_session(calendar: TradingCalendar, delay_minutes: int, now: object = None,
                        until: object = None) -> pd.Timestamp:
    """The latest session of ``calendar`` whose close plus ``delay_minutes`` is past at ``now`` (default:
    the current time), capped at ``until`` when given."""
    now_ts = None if now is None else pd.Timestamp(now)
    last = calendar.last_completed_session(now_ts, close_buffer_minutes=int(delay_minutes))
    if until is not None:
        last = min(last, calendar.session_on_or_before(pd.Timestamp(until)))
    return pd.Timestamp(last).normalize()


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _append(path: Path, header: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> None:
    """Append CSV rows (ASCII: dates and numbers) to ``path``, or create it with ``header``; atomically."""
    old = path.read_bytes() if path.exists() else b""
    newline = b"\r\n" if b"\r\n" in old[:4096] else b"\n"
    body = old
    if not old.strip():
        body = (",".join(header or ()).encode("utf-8") + newline) if header else b""
    elif not old.endswith((b"\n", b"\r")):
        body += newline
    body += b"".join(",".join(r).encode("ascii") + newline for r in rows)
    _write_atomically(path, body)


def _header(path: Path) -> list[str]:
    text = _decode(path.read_bytes())
    for line in text.splitlines():
        if line.strip():
            return [c.strip().strip('"') for c in line.split(",")]
    return []


def _differs(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return not (math.isnan(a) and math.isnan(b))
    return abs(a - b) > tol * max(abs(a), abs(b), 1e-12)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _day(text: str) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(dt.date.fromisoformat(text[:10]))
    except ValueError:
        return None


@contextmanager
def _fund_lock(directory: Path, symbol: str) -> Iterator[None]:
    """One fetch of a fund at a time (pool runs of several sessions may start together): an exclusive
    lock on ``.<symbol>.fetch.lock`` in the folder, held while its files are read, fetched and written."""
    with open(directory / f".{symbol}.fetch.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _overlap_start(dates: Sequence[pd.Timestamp], overlap: int) -> pd.Timestamp:
    ordered = sorted(set(dates))
    return ordered[-min(overlap, len(ordered))]


# ------------------------------------------------------------------------------------------- fetch
class _FundFetcher:
    """The fetch of one fund (see the module docstring)."""

    def __init__(self, directory: Path, symbol: str, settings: AkshareConfig, client: KlineClient,
                 through: pd.Timestamp, start: dt.date, reader: DirectorySource):
        self.directory = directory
        self.reader = reader
        self.symbol = symbol
        self.settings = settings
        self.client = client
        self.through = through
        self.start = start
        self.prices_path = directory / f"{symbol}.csv"
        self.factor_path = directory / f"{symbol}{FACTOR_SUFFIX}"
        self.result = FundFetch(symbol=symbol, through=through)

    def _request(self, fqt: str, beg: pd.Timestamp) -> list[list[str]] | None:
        bars, retries = self.client.klines(self.symbol, fqt, beg.date(), self.through.date())
        self.result.requests += 1 + retries
        self.result.retries += retries
        return bars

    def _bars(self, fqt: str, beg: pd.Timestamp, known: bool) -> dict[pd.Timestamp, list[str]]:
        """Bars by date in [beg, through]; a fund the server does not know fails (``known``: the folder
        already holds it, which only changes the advice)."""
        bars = self._request(fqt, beg)
        if bars is None:
            host = self.client.host
            hint = (f"check that {self.symbol} is a fund listed in Shanghai or Shenzhen; remove it from "
                    f"pools[].symbols if it was delisted" + (" (its file is kept)" if known else ""))
            raise FetchError(f"symbol {self.symbol}: {host} knows no fund with secid "
                             f"{market_id(self.symbol)}.{self.symbol} (its answer's data is null)",
                             symbol=self.symbol, hint=hint)
        out: dict[pd.Timestamp, list[str]] = {}
        for fields in bars:
            day = _day(fields[0])
            if day is None:
                raise FetchError(f"symbol {self.symbol}: {self.client.host} sent the date {fields[0]!r}; the "
                                 f"endpoint's format changed: check data.akshare.base_url", symbol=self.symbol)
            if beg <= day <= self.through:   # a bar of a session still trading is never written
                out[day] = fields
        return out

    def run(self) -> FundFetch:
        r = self.result
        if not self.prices_path.exists():
            try:
                other = self.reader.price_file(self.symbol)
            except DataSourceError:   # none (or several: the read after the fetch names them)
                other = None
            if other is not None:
                raise DataSourceError(f"symbol {self.symbol}: the folder holds its prices as {other.name}; the live "
                                      f"source appends to {self.prices_path.name} (akshare_em layout)", file=other,
                                      symbol=self.symbol, hint=f"rename an akshare_em file to {self.prices_path.name}, "
                                                               f"or move {other.name} out of the drop folder")
        existing = None
        if self.prices_path.exists():
            existing = read_price_file(self.prices_path, self.symbol)
            if existing.layout != "akshare_em":
                raise DataSourceError(f"{self.prices_path} is in the {existing.layout} layout; the live source "
                                      f"appends akshare_em bars (日期,开盘,收盘,最高,最低,成交量,成交额)",
                                      file=self.prices_path, symbol=self.symbol,
                                      hint="point data.directory at a folder of akshare_em files or an empty one")
        frame = existing.frame if existing is not None else None
        dates = [] if frame is None else [pd.Timestamp(d) for d in frame["date"].dropna()]
        last = max(dates) if dates else None
        r.last_bar = last
        factors = read_factor_file(self.factor_path, self.symbol) if self.factor_path.exists() else None
        factor_last = factors.index.max() if factors is not None and len(factors) else None
        prices_current = last is not None and last >= self.through
        factors_current = (not self.settings.factors or last is None
                           or (factor_last is not None and factor_last >= last))
        if prices_current and factors_current:
            return r

        # ---- unadjusted bars
        closes: dict[pd.Timestamp, float] = {}
        if frame is not None:
            for d, c in zip(frame["date"], frame["close"]):
                if pd.notna(d):
                    closes[pd.Timestamp(d)] = float(c)
        beg = _overlap_start(dates, self.settings.overlap_sessions) if dates else pd.Timestamp(self.start)
        if not prices_current:
            bars = self._bars(FQT["none"], beg, known=existing is not None)
            self._compare_prices(frame, bars, beg, last)
            new = sorted(d for d in bars if last is None or d > last)
            if new:
                header = _header(self.prices_path) if existing is not None else list(KLINE_COLUMNS)
                position = {name: i for i, name in enumerate(KLINE_COLUMNS)}
                rows = [[bars[d][position[c]] if c in position else "" for c in header] for d in new]
                _append(self.prices_path, list(KLINE_COLUMNS), rows)
                r.rows_appended, r.first, r.last = len(new), new[0], new[-1]
                r.status = "created" if existing is None else "appended"
                r.last_bar = new[-1]
                for d in new:
                    closes[d] = _number(bars[d][2])
            else:
                r.status = "no_new_bars"
        else:
            r.status = "factors_only"

        # ---- back-adjustment factors
        if self.settings.factors and closes:
            self._factors(factors, closes)
        return r

    def _compare_prices(self, frame: pd.DataFrame | None, bars: Mapping[pd.Timestamp, list[str]],
                        beg: pd.Timestamp, last: pd.Timestamp | None) -> None:
        if frame is None or last is None:
            return
        tol = self.settings.restatement_tolerance
        name = self.prices_path.name
        window = frame[(frame["date"] >= beg) & (frame["date"] <= last)]
        in_file = {pd.Timestamp(row.date): row for row in window.itertuples(index=False)}
        index = {c: i for i, c in enumerate(KLINE_COLUMNS)}
        for day in sorted(d for d in bars if d <= last):
            fields = bars[day]
            if day not in in_file:
                self.result.restatements.append(Restatement(self.symbol, day, "absent_in_file", "", None, None, name))
                continue
            row = in_file[day]
            for canon, (col, unit) in _CANONICAL.items():
                server = _number(fields[index[col]]) * unit
                mine = float(getattr(row, canon))
                if _differs(mine, server, tol):
                    self.result.restatements.append(Restatement(self.symbol, day, "changed", canon, mine, server,
                                                                name))
        for day in sorted(set(in_file) - set(bars)):
            self.result.restatements.append(Restatement(self.symbol, day, "absent_on_server", "", None, None, name))

    def _factors(self, factors: pd.Series | None, closes: Mapping[pd.Timestamp, float]) -> None:
        """Fetch hfq closes from the factor file's overlap (or the first bar) and append the new factors."""
        known = sorted(closes)
        if factors is not None and len(factors):
            beg = _overlap_start(list(factors.index), self.settings.overlap_sessions)
        else:
            beg = known[0]
        beg = max(beg, known[0])
        hfq = self._bars(FQT["hfq"], beg, known=True)
        factor_last = factors.index.max() if factors is not None and len(factors) else None
        tol = self.settings.restatement_tolerance
        rows: list[list[str]] = []
        for day in sorted(hfq):
            raw = closes.get(day)
            adjusted = _number(hfq[day][2])
            if raw is None or not (raw > 0) or not (adjusted > 0):
                continue
            value = adjusted / raw
            if factor_last is not None and day <= factor_last:
                if day in factors.index and _differs(float(factors.loc[day]), value, tol):  # type: ignore[union-attr]
                    self.result.restatements.append(Restatement(self.symbol, day, "changed", "hfq_factor",
                                                                float(factors.loc[day]), value,  # type: ignore[union-attr]
                                                                self.factor_path.name))
                continue
            rows.append([day.strftime("%Y-%m-%d"), repr(float(value))])
        if rows:
            _append(self.factor_path, ["trade_date", "hfq_factor"], rows)
            self.result.factor_rows = len(rows)


def fetch_missing(directory: str | Path, symbols: Sequence[str], settings: AkshareConfig, *,
                  through: pd.Timestamp | dt.date | str, start: dt.date | None = None,
                  client: KlineClient | None = None, reader: DirectorySource | None = None) -> FetchReport:
    """Fetch every fund's missing sessions through ``through`` into ``directory`` (see the module
    docstring). Never raises for one fund's failure: it is in the report (:meth:`FetchReport.failed`).
    ``reader`` (default: a plain :class:`DirectorySource` of the folder) finds a fund's file under another
    name (``sh510300.csv``), which is refused rather than duplicated."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DataSourceError(f"drop folder {folder} does not exist or is not a folder",
                              hint="create it (it may be empty) or set data.directory to the folder to fetch into")
    reader = reader if reader is not None else DirectorySource(folder)
    own = client is None
    client = client if client is not None else KlineClient(settings)
    day = pd.Timestamp(through).normalize()
    first = settings.start or start or FIRST_DAY
    report = FetchReport(host=client.host, directory=folder)
    try:
        for symbol in dict.fromkeys(str(s) for s in symbols):
            fetcher = _FundFetcher(folder, symbol, settings, client, day, first, reader)
            try:
                with _fund_lock(folder, symbol):
                    report.funds[symbol] = fetcher.run()
            except RotationError as exc:
                fetcher.result.status = "failed"
                fetcher.result.error = exc
                report.funds[symbol] = fetcher.result
    finally:
        if own:
            client.close()
    return report


# ------------------------------------------------------------------------------------------ source
class AkshareSource(PriceSource):
    """``data.source: akshare``: fetch the missing sessions into the drop folder, then read it as a
    :class:`DirectorySource` (the same layouts, corporate actions and quality gate).

    ``calendars`` maps a symbol to its pool's calendar (default XSHG, the exchange the server covers);
    ``delays`` maps a calendar to its data delay in minutes; ``reader`` reads the folder (default a
    plain :class:`DirectorySource`; the factory passes the one ``data`` configures). The fetch covers sessions through the last
    closed one at ``now``, capped at ``end``; a fund that fails raises its error after the others were
    fetched (:attr:`report` holds the whole fetch).
    """

    name = "akshare"
    synthetic = False

    def __init__(self, directory: str | Path, settings: AkshareConfig, *, start: dt.date | None = None,
                 calendars: Mapping[str, str] | None = None, delays: Mapping[str, int] | None = None,
                 end: object = None, now: object = None, client: KlineClient | None = None,
                 reader: DirectorySource | None = None):
        self.directory = Path(directory)
        self.settings = settings
        self.start = start
        self.calendars = dict(calendars or {})
        self.delays = dict(delays or {})
        self.end = end
        self.now = now
        self.client = client
        self.report: FetchReport | None = None
        if not self.directory.is_dir():
            raise DataSourceError(f"drop folder {self.directory} does not exist or is not a folder",
                                  hint="create it (it may be empty) or set data.directory to the folder to fetch into")
        self._folder = reader if reader is not None else DirectorySource(self.directory)

    def __repr__(self) -> str:
        return f"AkshareSource({str(self.directory)!r}, {self.settings.base_url!r})"

    def through(self, symbol: str) -> pd.Timestamp:
        """The last session fetched for ``symbol``: the last closed one of its calendar, capped at ``end``."""
        code = self.calendars.get(symbol, "XSHG")
        return last_closed_session(get_calendar(code), self.delays.get(code, 0), self.now, self.end)

    def fetch(self, symbols: Sequence[str]) -> FetchReport:
        """Fetch the missing sessions of ``symbols`` (grouped by their last closed session)."""
        groups: dict[pd.Timestamp, list[str]] = {}
        for s in symbols:
            groups.setdefault(self.through(str(s)), []).append(str(s))
        client = self.client if self.client is not None else KlineClient(self.settings)
        report = FetchReport(host=client.host, directory=self.directory)
        try:
            for day, group in groups.items():
                part = fetch_missing(self.directory, group, self.settings, through=day, start=self.start,
                                     client=client, reader=self._folder)
                report.funds.update(part.funds)
        finally:
            if self.client is None:
                client.close()
        self.report = report
        return report

    def read(self, symbols: Sequence[str]) -> dict[str, RawPrices]:
        self.fetch(symbols).raise_first_failure()
        return self._folder.read(symbols)

    def corporate_actions(self, symbols: Sequence[str]) -> CorporateActions:
        return self._folder.corporate_actions(symbols)

    def nav(self, symbol: str) -> pd.DataFrame | None:
        return self._folder.nav(symbol)

    def describe(self) -> dict[str, object]:
        """The folder's provenance, as the source ``akshare`` with its endpoint. The fetch report (which
        depends on when the run happened, not on the data) is :attr:`report`, not part of it."""
        out = self._folder.describe()
        out.update({"source": self.name, "base_url": self.settings.base_url})
        return out


def akshare_source(config: PlatformConfig, end: object = None) -> AkshareSource:
    """The live source of a configuration: ``data.directory`` read as ``data`` configures it, each fund on
    its pool's calendar with its market's data delay, fetched through ``end`` at the latest."""
    calendars = {s: p.calendar for p in config.pools for s in p.symbols}
    delays = {code: config.market(code).data_delay_minutes for code in config.calendars}
    reader = DirectorySource.from_config(config.data, calendars=calendars)
    return AkshareSource(config.data.directory, config.data.akshare, start=config.data.start,  # type: ignore[arg-type]
                         calendars=calendars, delays=delays, end=end, reader=reader)
