"""Trading calendars from ``exchange_calendars``; no hand-written holiday lists.

Sessions are tz-naive midnight :class:`pandas.Timestamp` values (the session label), as
``exchange_calendars`` reports them. XSHG (Shanghai) also serves Shenzhen listings.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from rotation_platform.errors import CalendarError

__all__ = ["TradingCalendar", "get_calendar", "CALENDAR_START"]

CALENDAR_START = "2004-01-02"  # earliest history the platform works with


DateLike = str | dt.date | pd.Timestamp


def _day(value: DateLike) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize()


class TradingCalendar:
    """Session helpers over one ``exchange_calendars`` calendar."""

    def __init__(self, code: str):
        try:
            self._cal = xcals.get_calendar(code, start=CALENDAR_START)
        except xcals.errors.InvalidCalendarName:
            raise CalendarError(f"unknown exchange calendar {code!r}; use an exchange_calendars code such as "
                                f"XSHG (Shanghai/Shenzhen), XHKG (Hong Kong) or XNYS (New York)") from None
        self.code = code
        self.tz = str(self._cal.tz)

    def __repr__(self) -> str:
        return f"TradingCalendar({self.code!r})"

    @property
    def first_session(self) -> pd.Timestamp:
        return self._cal.first_session

    @property
    def last_session(self) -> pd.Timestamp:
        return self._cal.last_session

    def _check(self, day: pd.Timestamp) -> pd.Timestamp:
        if day < self._cal.first_session or day > self._cal.last_session:
            raise CalendarError(f"{day.date()} is outside the {self.code} calendar "
                                f"({self._cal.first_session.date()}..{self._cal.last_session.date()})")
        return day

    def is_session(self, value: DateLike) -> bool:
        day = _day(value)
        if day < self._cal.first_session or day > self._cal.last_session:
            return False
        return bool(self._cal.is_session(day))

    def sessions(self, start: DateLike, end: DateLike) -> pd.DatetimeIndex:
        """Sessions in ``[start, end]`` (both inclusive; the bounds need not be sessions)."""
        lo = max(_day(start), self._cal.first_session)
        hi = min(_day(end), self._cal.last_session)
        if hi < lo:
            return pd.DatetimeIndex([], name="session")
        out = self._cal.sessions_in_range(lo, hi)
        return pd.DatetimeIndex(out.to_numpy(), name="session")

    def previous_session(self, value: DateLike) -> pd.Timestamp:
        """The last session strictly before ``value`` (which need not be a session)."""
        day = self._check(_day(value))
        prev = day - pd.Timedelta(days=1)
        if prev < self._cal.first_session:
            raise CalendarError(f"no {self.code} session before {day.date()} within the calendar")
        return self._cal.date_to_session(prev, direction="previous")

    def next_session(self, value: DateLike) -> pd.Timestamp:
        """The first session strictly after ``value`` (which need not be a session)."""
        day = self._check(_day(value))
        nxt = day + pd.Timedelta(days=1)
        if nxt > self._cal.last_session:
            raise CalendarError(f"no {self.code} session after {day.date()} within the calendar")
        return self._cal.date_to_session(nxt, direction="next")

    def session_on_or_before(self, value: DateLike) -> pd.Timestamp:
        day = self._check(_day(value))
        return self._cal.date_to_session(day, direction="previous")

    def session_offset(self, session: DateLike, count: int) -> pd.Timestamp:
        """The session ``count`` sessions after (``count`` < 0: before) ``session``, which must be a session."""
        day = self._check(_day(session))
        if not self._cal.is_session(day):
            raise CalendarError(f"{day.date()} is not a {self.code} session")
        try:
            return self._cal.session_offset(day, count)
        except (ValueError, xcals.errors.RequestedSessionOutOfBounds) as exc:
            raise CalendarError(f"{count:+d} sessions from {day.date()} leaves the {self.code} calendar: {exc}") \
                from None

    def last_completed_session(self, now: pd.Timestamp | None = None, close_buffer_minutes: int = 60) -> pd.Timestamp:
        """The latest session whose close (plus a buffer for vendor data) is before ``now``."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        if now.tzinfo is None:
            now = now.tz_localize(self.tz)
        local = now.tz_convert(self.tz)
        today = _day(local.tz_localize(None))
        today = min(today, self._cal.last_session)
        session = self._cal.date_to_session(today, direction="previous")
        close = self._cal.session_close(session) + pd.Timedelta(minutes=close_buffer_minutes)
        if close > now:
            session = self._cal.previous_session(session)
        return session


@lru_cache(maxsize=16)
def get_calendar(code: str = "XSHG") -> TradingCalendar:
    return TradingCalendar(code)
