"""Exchange rates for the combined cross-pool view: one ``date,rate`` file per currency.

``summary.fx: {USD: path}`` names, per currency other than ``summary.base_currency``, a CSV file with a
``date,rate`` header and one row per day: ``rate`` is the number of base-currency units one unit of the
currency buys that day (e.g. ``2021-10-08,6.4452`` for USD in a CNY summary). Rows may come in any order;
blank lines and lines starting with ``#`` are skipped. Every other problem -- a missing column, a date
that is not ``YYYY-MM-DD``, a rate that is not a positive number, a date given twice -- is an error naming
the file and the line, one at a time (:class:`~rotation_platform.errors.PriceDataError`).

The rate used for a day is the latest on or before it (:meth:`FxSeries.rate_on_or_before`), never a
later one: what was known then. A day whose rate is more than :data:`MAX_GAP_DAYS` calendar days older
than the day is a finding (:meth:`FxSeries.findings_for`), as is every gap of more than that many days
between consecutive rows of the file (:attr:`FxSeries.gaps`).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rotation_platform.errors import PriceDataError

__all__ = ["FxSeries", "read_fx", "load_fx", "MAX_GAP_DAYS"]

#: a rate older than this many calendar days (or a gap this long in the file) is a finding
MAX_GAP_DAYS = 5


@dataclass(frozen=True)
class FxSeries:
    """One currency's rates in the base currency (see the module docstring)."""

    currency: str
    base: str
    path: str
    rates: pd.Series = field(repr=False)  # float, index: sorted unique dates (Timestamp, midnight)

    @property
    def gaps(self) -> list[str]:
        """Each gap of more than :data:`MAX_GAP_DAYS` days between consecutive rows, as a finding."""
        idx = self.rates.index
        out = []
        for a, b in zip(idx[:-1], idx[1:]):
            days = (b - a).days
            if days > MAX_GAP_DAYS:
                out.append(f"{self.path}: no {self.currency} rate from {a.date()} to {b.date()} ({days} days; more "
                           f"than {MAX_GAP_DAYS} without a rate)")
        return out

    def rate_on_or_before(self, day: object) -> tuple[float, pd.Timestamp | None]:
        """The latest rate dated on or before ``day`` and its date; ``(nan, None)`` when the file has none
        that early."""
        t = pd.Timestamp(day).normalize()
        i = int(self.rates.index.searchsorted(t, side="right")) - 1
        if i < 0:
            return float("nan"), None
        return float(self.rates.iloc[i]), pd.Timestamp(self.rates.index[i])

    def findings_for(self, day: object) -> list[str]:
        """What is wrong with the rate used for ``day``: none on or before it, or one more than
        :data:`MAX_GAP_DAYS` days old, or a gap in the file that the rate falls in."""
        t = pd.Timestamp(day).normalize()
        _, used = self.rate_on_or_before(t)
        if used is None:
            first = self.rates.index[0].date() if len(self.rates) else "no rows"
            return [f"{self.path}: no {self.currency} rate on or before {t.date()} (the file starts {first}); add "
                    f"rates from that date on"]
        age = (t - used).days
        if age > MAX_GAP_DAYS:
            return [f"{self.path}: the {self.currency} rate for {t.date()} is from {used.date()}, {age} days "
                    f"earlier (more than {MAX_GAP_DAYS}); add the missing rates"]
        return []


def _parse_date(text: str) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(dt.date.fromisoformat(text.strip()))
    except ValueError:
        return None


def read_fx(path: str | Path, currency: str, base: str) -> FxSeries:
    """Read one ``date,rate`` file (see the module docstring); raises one
    :class:`~rotation_platform.errors.PriceDataError` naming the file and line of the first bad row."""
    p = Path(path)
    key = f"summary.fx.{currency}"
    if not p.is_file():
        raise PriceDataError(f"the {currency} exchange-rate file does not exist ({key})", file=str(p),
                             hint=f"write a 'date,rate' CSV there ({base} per {currency}) or remove {key}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceDataError(f"the {currency} exchange-rate file is not UTF-8 text ({exc.reason})", file=str(p),
                             hint="save it as UTF-8") from None
    rows = list(csv.reader(text.splitlines()))
    header_at = next((i for i, r in enumerate(rows) if r and "".join(r).strip() and not r[0].lstrip().startswith("#")),
                     None)
    if header_at is None:
        raise PriceDataError(f"the {currency} exchange-rate file is empty", file=str(p), line=1,
                             hint="write a 'date,rate' header and one row per day")
    header = [c.strip().lower() for c in rows[header_at]]
    if "date" not in header or "rate" not in header:
        raise PriceDataError(f"line {header_at + 1}: header {rows[header_at]} lacks 'date' and 'rate'", file=str(p),
                             line=header_at + 1, hint="the first line must be 'date,rate'")
    i_date, i_rate = header.index("date"), header.index("rate")
    seen: dict[pd.Timestamp, int] = {}
    values: dict[pd.Timestamp, float] = {}
    for n, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) <= max(i_date, i_rate):
            raise PriceDataError(f"line {n}: {len(row)} field(s) {row}, expected date and rate", file=str(p), line=n,
                                 hint="write 'YYYY-MM-DD,rate' on every line")
        day = _parse_date(row[i_date])
        if day is None:
            raise PriceDataError(f"line {n}: date {row[i_date].strip()!r} is not YYYY-MM-DD", file=str(p), line=n,
                                 hint="write dates as YYYY-MM-DD")
        try:
            rate = float(row[i_rate])
        except ValueError:
            rate = float("nan")
        if not math.isfinite(rate) or rate <= 0:
            raise PriceDataError(f"line {n}: rate {row[i_rate].strip()!r} is not a positive number", file=str(p),
                                 line=n, date=day.date(),
                                 hint=f"write the {base} price of one {currency} (e.g. 6.45)")
        if day in seen:
            raise PriceDataError(f"line {n}: {day.date()} is given again (first on line {seen[day]})", file=str(p),
                                 line=n, date=day.date(), hint="keep one rate per day")
        seen[day] = n
        values[day] = rate
    if not values:
        raise PriceDataError(f"the {currency} exchange-rate file has a header but no rates", file=str(p),
                             line=header_at + 2, hint="add one 'YYYY-MM-DD,rate' row per day")
    rates = pd.Series(values, dtype="float64").sort_index()
    rates.index = pd.DatetimeIndex(rates.index, name="date")
    return FxSeries(currency=currency, base=base, path=str(p), rates=rates)


def load_fx(fx: Mapping[str, str | Path], base: str) -> dict[str, FxSeries]:
    """Every configured series (``summary.fx``) in the base currency ``base``; a series for the base
    currency itself is refused."""
    out = {}
    for currency, path in fx.items():
        if currency == base:
            raise PriceDataError(f"summary.fx.{currency} gives rates for the base currency {base}", file=str(path),
                                 hint=f"remove summary.fx.{currency}: {base} figures need no conversion")
        out[currency] = read_fx(path, currency, base)
    return out
