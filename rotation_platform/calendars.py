"""Trading calendars from ``exchange_calendars``; no hand-written holiday lists in the code.

Holidays exchange_calendars does not record yet -- its XSHG list ends with the last year the exchange had
published when it was released (2026 in 4.13.2), so XSHG has no session after that year's last day --
are added from the configuration (``markets.<CODE>.holidays``, the exchange's published closures).

Sessions are tz-naive midnight :class:`pandas.Timestamp` values (the session label), as
``exchange_calendars`` reports them. XSHG (Shanghai) also serves Shenzhen listings.

First session of a calendar (``markets.<CODE>.calendar_start``, exchange_calendars' ``start``). Calendars
are asked for in many places that have no configuration at hand (the price checks, the pool run, the
partitions), so the start is not an argument they all pass: a process-wide registry holds it per code.
:func:`configure_calendars` fills it from a configuration -- the config loader calls it for every
configuration it loads, so ``definitions.build_defs``, ``python -m jobs.main`` and every code path that
loads a config see its starts -- and :func:`get_calendar` without ``start`` builds the calendar from the
registered start (:data:`CALENDAR_START` when none is). The registry keeps the *earliest* start asked for
a code: a calendar built from an earlier start has the same sessions after it, so a second configuration
loaded in the same process (tests, the UI's reloads) never loses history another one needs. The start is
how far back the calendar reaches, not a filter of the data (``data.start`` is). ``get_calendar(code,
start=...)`` builds one calendar from an explicit start. A day before the first session is refused with a message
that names the config key to change (:func:`calendar_start_key`).
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from rotation_platform.errors import CalendarError

__all__ = ["TradingCalendar", "get_calendar", "CALENDAR_START", "SessionNotClosedError", "calendar_start",
           "calendar_start_key", "configure_calendars", "extra_holidays", "horizon_warning", "market_prefix", "storage_key"]

CALENDAR_START = "2004-01-02"  # a calendar's first session when its market sets no calendar_start

_starts: dict[str, pd.Timestamp] = {}
_holidays: dict[str, tuple[pd.Timestamp, ...]] = {}
_starts_lock = threading.Lock()


def calendar_start_key(code: str) -> str:
    """The configuration key of ``code``'s first session."""
    return f"markets.{code}.calendar_start"


def calendar_start(code: str) -> pd.Timestamp:
    """The start :func:`get_calendar` builds ``code`` from: the earliest registered, else
    :data:`CALENDAR_START`."""
    return _starts.get(code, pd.Timestamp(CALENDAR_START))


def configure_calendars(config: object) -> None:
    """Register the calendar start of every market of ``config`` (a ``PlatformConfig``): each pool's
    calendar and every ``markets`` entry. Keeps the earliest start per code (see the module)."""
    codes = dict.fromkeys([*(p.calendar for p in config.pools), *config.markets])  # type: ignore[attr-defined]
    with _starts_lock:
        for code in codes:
            start = pd.Timestamp(config.market(code).calendar_start)  # type: ignore[attr-defined]
            if code not in _starts or start < _starts[code]:
                _starts[code] = start
            market = config.markets.get(code)  # type: ignore[attr-defined]
            if market is not None and market.holidays:
                known = set(_holidays.get(code, ()))
                _holidays[code] = tuple(sorted(known | {pd.Timestamp(d) for d in market.holidays}))


def extra_holidays(code: str) -> tuple[pd.Timestamp, ...]:
    """The holidays configured for ``code`` beyond exchange_calendars' (``markets.<CODE>.holidays``)."""
    return _holidays.get(code, ())


def _build(code: str, start: pd.Timestamp, extra: tuple[pd.Timestamp, ...]) -> xcals.ExchangeCalendar:
    """exchange_calendars' ``code`` from ``start``, with ``extra`` holidays added. A calendar whose holidays
    are a recorded list (XSHG: through the last year exchange_calendars records) reaches through the end of
    the latest year in ``extra``; a rule-based one (XNYS) keeps its own horizon and closes the extra days."""
    if not extra:
        return xcals.get_calendar(code, start=start)
    from exchange_calendars.precomputed_exchange_calendar import PrecomputedExchangeCalendar

    base = type(xcals.get_calendar(code))
    days = pd.DatetimeIndex(extra)
    if issubclass(base, PrecomputedExchangeCalendar):
        recorded = base.precomputed_holidays

        class Extended(base):  # type: ignore[valid-type, misc]
            @classmethod
            def precomputed_holidays(cls):  # noqa: ANN206 - exchange_calendars' signature
                return pd.DatetimeIndex(recorded()).union(days)
    else:
        class Extended(base):  # type: ignore[valid-type, misc, no-redef]
            @property
            def adhoc_holidays(self):  # noqa: ANN202 - exchange_calendars' signature
                return list(super().adhoc_holidays) + list(days)
    Extended.__name__ = f"{base.__name__}WithConfiguredHolidays"
    end = max(pd.Timestamp(f"{days.max().year}-12-31"), pd.Timestamp.today().normalize() + pd.Timedelta(days=365)) \
        if issubclass(base, PrecomputedExchangeCalendar) else None
    return Extended(start=start, end=end) if end is not None else Extended(start=start)


def market_prefix(code: str) -> str:
    """The asset-key prefix of the pools on calendar ``code`` when they are not the main calendar's
    (``xnys/prices``): the code in lower case."""
    return code.lower()


def storage_key(path: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The stored name of an asset key path: a market prefix (``("xnys", "prices")``) is dropped, so every
    pool's values live under the plain asset name whatever calendar group computed them (pool names are
    unique across a configuration, and the partition names the pool)."""
    path = tuple(path)
    if len(path) > 1 and path[0] == path[0].lower() and path[0].upper() in _calendar_names():
        return path[1:]
    return path


@lru_cache(maxsize=1)
def _calendar_names() -> frozenset[str]:
    return frozenset(xcals.get_calendar_names(include_aliases=True))


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

    def __init__(self, code: str, start: DateLike | None = None):
        self.start = _day(start) if start is not None else calendar_start(code)
        try:
            self._cal = _build(code, self.start, extra_holidays(code))
        except xcals.errors.InvalidCalendarName:
            raise CalendarError(f"unknown exchange calendar {code!r}; use an exchange_calendars code such as "
                                f"XSHG (Shanghai/Shenzhen), XHKG (Hong Kong) or XNYS (New York)") from None
        except ValueError as exc:  # a start before the holidays exchange_calendars knows of
            raise CalendarError(f"{calendar_start_key(code)} = {self.start.date()}: exchange_calendars cannot build "
                                f"{code} from it ({str(exc).strip().splitlines()[0]})",
                                hint=f"set {calendar_start_key(code)} to a later date") from None
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

    @property
    def regular_close(self) -> dt.time:
        """The exchange's regular closing time (local), e.g. 16:00 on XNYS; early closes are per session
        (:meth:`session_close`)."""
        return self._cal.close_times[-1][1]

    def _outside(self, day: pd.Timestamp) -> str | None:
        """Why ``day`` lies outside the calendar, or None when it is inside."""
        first, last = self._cal.first_session, self._cal.last_session
        if day < first:
            return (f"{day.date()} is outside the {self.code} calendar: before its first session {first.date()} "
                    f"(built from {calendar_start_key(self.code)} = {self.start.date()}); set "
                    f"{calendar_start_key(self.code)} to {day.date()} or earlier in the config to use that history")
        if day > last:
            why = (f"{day.date()} is outside the {self.code} calendar: beyond its horizon, which ends at "
                   f"{last.date()} (exchange holidays are published about a year ahead); pick a session up to "
                   f"{last.date()}")
            if last.month == 12 and last.day == 31:   # a recorded holiday list that ends with its year
                why += (f", or, once the exchange has published the holidays of {last.year + 1}, list them in "
                        f"markets.{self.code}.holidays (or upgrade exchange_calendars)")
            return why
        return None

    def _check(self, day: pd.Timestamp) -> pd.Timestamp:
        why = self._outside(day)
        if why:
            raise CalendarError(why, key=calendar_start_key(self.code) if day < self._cal.first_session else None)
        return day

    def require_session(self, value: DateLike) -> pd.Timestamp:
        """``value`` as a session; :class:`CalendarError` saying why not otherwise: beyond the calendar's
        horizon (giving it), before its start, or a weekend / holiday (naming the sessions either side)."""
        day = self._check(_day(value))
        if self._cal.is_session(day):
            return day
        kind = day.strftime("%A") if day.dayofweek >= 5 else self._holiday(day)
        around = []
        if day > self._cal.first_session:
            around.append(f"the previous session is {self._cal.date_to_session(day, direction='previous').date()}")
        if day < self._cal.last_session:
            around.append(f"the next is {self._cal.date_to_session(day, direction='next').date()}")
        raise CalendarError(f"{day.date()} is not an {self.code} trading session ({kind})"
                            + (f"; {', '.join(around)}" if around else ""), date=day)

    def _holiday(self, day: pd.Timestamp) -> str:
        """What a weekday without a session is: the holiday's name when exchange_calendars has one."""
        try:
            named = self._cal.regular_holidays.holidays(day, day, return_name=True)
        except Exception:  # noqa: BLE001 - a calendar without named rules: the generic text
            named = None
        if named is not None and len(named):
            return f"an exchange holiday: {named.iloc[0]}, {day.strftime('%A')}"
        return f"an exchange holiday, {day.strftime('%A')}"

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


def get_calendar(code: str = "XSHG", start: DateLike | None = None) -> TradingCalendar:
    """The calendar ``code`` from ``start`` (default: the registered start, see the module); one object
    per code and start."""
    return _calendar(code, _day(start) if start is not None else calendar_start(code), extra_holidays(code))


def horizon_warning(code: str, today: DateLike | None = None, within_days: int = 45) -> str | None:
    """One line when ``code``'s calendar ends within ``within_days`` of ``today`` (a recorded holiday list
    that has not been extended: no session exists after its end, so runs after it are refused)."""
    last = get_calendar(code).last_session
    day = _day(today) if today is not None else pd.Timestamp.now(tz="UTC").tz_convert(None).normalize()
    left = (last - day).days
    if left > within_days:
        return None
    fix = (f"list the exchange's published holidays of {last.year + 1} in markets.{code}.holidays (or upgrade "
           f"exchange_calendars)") if last.month == 12 and last.day == 31 else "upgrade exchange_calendars"
    return (f"the {code} calendar ends at {last.date()} ({left} day(s) from {day.date()}): no session after it can "
            f"run; {fix}")


@lru_cache(maxsize=32)
def _calendar(code: str, start: pd.Timestamp, extra: tuple[pd.Timestamp, ...] = ()) -> TradingCalendar:
    return TradingCalendar(code, start)
