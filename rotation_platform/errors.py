"""The platform's error hierarchy.

Every error names what is at fault -- the file, the config key path, the symbol or the date -- and
what to do about it. Catch :class:`RotationError` to handle anything the platform raises on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "RotationError",
    "ConfigError",
    "CalendarError",
    "DataSourceError",
    "UnknownLayoutError",
    "PriceDataError",
    "CorporateActionError",
    "DataQualityError",
    "ResearchError",
    "PositionsError",
]


class RotationError(Exception):
    """Base class of every error the platform raises on purpose."""


class ConfigError(RotationError):
    """A configuration file or override is invalid.

    ``problems`` holds one ``(key_path, reason)`` pair per problem; ``file`` is the YAML file (or the
    environment variable) the problem came from.
    """

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]):
        self.file = str(file)
        self.problems = [(str(k), str(r)) for k, r in problems]
        lines = [f"invalid configuration in {self.file}:"]
        lines += [f"  {key or '<root>'}: {reason}" for key, reason in self.problems]
        super().__init__("\n".join(lines))


class CalendarError(RotationError):
    """An unknown exchange calendar, or a date outside the calendar's range."""


class DataSourceError(RotationError):
    """A price source could not provide the requested data."""


class UnknownLayoutError(DataSourceError):
    """A price file has a column layout none of the readers knows."""

    def __init__(self, file: str, found: Sequence[str], known: dict[str, Sequence[str]]):
        self.file = str(file)
        self.found = list(found)
        self.known = {k: list(v) for k, v in known.items()}
        known_txt = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in self.known.items())
        super().__init__(
            f"{self.file}: unknown price file layout; found columns [{', '.join(map(str, self.found))}]; "
            f"known layouts (required columns) -> {known_txt}"
        )


class PriceDataError(DataSourceError):
    """Price data is unusable. Names the file, symbol and date where one applies."""

    def __init__(self, message: str, *, file: str | None = None, symbol: str | None = None,
                 date: object | None = None):
        self.file = None if file is None else str(file)
        self.symbol = symbol
        self.date = date
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if symbol:
            where.append(f"symbol {symbol}")
        if date is not None:
            where.append(f"date {str(date)[:10]}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class CorporateActionError(PriceDataError):
    """A corporate-action table is malformed or inconsistent with the prices."""


class DataQualityError(PriceDataError):
    """The data-quality gate found a fatal problem. ``report`` holds the full report."""

    def __init__(self, message: str, *, report: object | None = None, file: str | None = None,
                 symbol: str | None = None, date: object | None = None):
        self.report = report
        super().__init__(message, file=file, symbol=symbol, date=date)


class ResearchError(RotationError):
    """A research computation (screen, strategy, walk-forward, backtest) cannot proceed.

    The message names the input at fault -- the factor, session, parameter or config key -- and what
    to change.
    """


class PositionsError(RotationError):
    """A table of actual positions is unusable; names the file (or store partition), the row's fund and
    what to do."""
