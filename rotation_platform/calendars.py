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

__all__ = ["TradingCalendar", "get_calendar", "CALENDAR_START", "SessionNotClosedError"]

CALENDAR_START = "2004-01-02"  # earliest history the platform works with


DateLike = str | dt.date | pd.Timestamp


def _day(value: DateLike) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize()


class SessionNotClosedError(CalendarError):
    """A session whose data is not complete yet: its close plus the data delay is still ahead."""

    def __init__(self, message: str, session: pd.Timestamp | None = None, ready_at: pd.Timestamp | None = None):
        super().__init__(message)
        self.session = session
        self.ready_at = ready_at


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

    def _outside(self, day: pd.Timestamp) -> str | None:
        """Why ``day`` lies outside the calendar, or None when it is inside."""
        first, last = self._cal.first_session, self._cal.last_session
        if day < first:
            return (f"{day.date()} is outside the {self.code} calendar: before its first session {first.date()} "
                    f"(the platform's history starts at {CALENDAR_START})")
        if day > last:
            return (f"{day.date()} is outside the {self.code} calendar: beyond its horizon, which ends at "
                    f"{last.date()} (exchange holidays are published about a year ahead); pick a session up to "
                    f"{last.date()}")
        return None

    def _check(self, day: pd.Timestamp) -> pd.Timestamp:
        why = self._outside(day)
        if why:
            raise CalendarError(why)
        return day

    def require_session(self, value: DateLike) -> pd.Timestamp:
        """``value`` as a session; :class:`CalendarError` saying why not otherwise: beyond the calendar's
        horizon (giving it), before its start, or a weekend / holiday (naming the sessions either side)."""
        day = self._check(_day(value))
        if self._cal.is_session(day):
            return day
        kind = day.strftime("%A") if day.dayofweek >= 5 else "an exchange holiday"
        around = []
        if day > self._cal.first_session:
            around.append(f"the previous session is {self._cal.date_to_session(day, direction='previous').date()}")
        if day < self._cal.last_session:
            around.append(f"the next is {self._cal.date_to_session(day, direction='next').date()}")
        raise CalendarError(f"{day.date()} is not an {self.code} trading session ({kind})"
                            + (f"; {', '.join(around)}" if around else ""), date=day)

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

    def _now(self, now: DateLike | None) -> pd.Timestamp:
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        return now.tz_localize(self.tz) if now.tzinfo is None else now

    def session_close(self, value: DateLike) -> pd.Timestamp:
        """The close of the session ``value`` (tz-aware, the exchange's time zone)."""
        day = self._check(_day(value))
        if not self._cal.is_session(day):
            raise CalendarError(f"{day.date()} is not a {self.code} session")
        return self._cal.session_close(day).tz_convert(self.tz)

    def ready_at(self, value: DateLike, delay_minutes: int = 0) -> pd.Timestamp:
        """When the data of ``value`` is complete: its close plus ``delay_minutes``. A day that is not a
        session of this calendar (or lies beyond it) is ready at the end of that local day."""
        day = _day(value)
        if self.is_session(day):
            close = self.session_close(day)
        else:
            close = (day + pd.Timedelta(days=1)).tz_localize(self.tz)
        return close + pd.Timedelta(minutes=int(delay_minutes))

    def is_closed(self, value: DateLike, now: DateLike | None = None, delay_minutes: int = 0) -> bool:
        """Whether ``now`` (default: the current time) is at or after :meth:`ready_at`."""
        return self._now(now) >= self.ready_at(value, delay_minutes)

    def require_closed(self, value: DateLike, now: DateLike | None = None, delay_minutes: int = 0,
                       what: str = "") -> None:
        """Raise :class:`SessionNotClosedError` (one line: the session, its close and the delay) when the
        session's data is not complete at ``now``."""
        day = _day(value)
        if self.is_closed(day, now, delay_minutes):
            return
        ready = self.ready_at(day, delay_minutes)
        close = ready - pd.Timedelta(minutes=int(delay_minutes))
        label = f" of {what}" if what else ""
        raise SessionNotClosedError(
            f"session {day.date()}{label} has not closed yet: {self.code} closes at {close:%Y-%m-%d %H:%M} "
            f"{self.tz} and its data counts as complete from {ready:%Y-%m-%d %H:%M} (close + {int(delay_minutes)} min)",
            day, ready)

    def last_completed_session(self, now: pd.Timestamp | None = None, close_buffer_minutes: int = 60) -> pd.Timestamp:
        """The latest session whose close (plus a buffer for vendor data) is before ``now``."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        if now.tzinfo is None:
            now = now.tz_localize(self.tz)
        local = now.tz_convert(self.tz)
        today = _day(local.tz_localize(None))
        today = min(today, self._cal.last_session)
        session = self._cal.date_to_session(today, direction="previous")
        buffer = pd.Timedelta(minutes=close_buffer_minutes)
        while self._cal.session_close(session) + buffer > now:  # a buffer may span several sessions
            session = self._cal.previous_session(session)
        return session


@lru_cache(maxsize=16)
def get_calendar(code: str = "XSHG") -> TradingCalendar:
    return TradingCalendar(code)
