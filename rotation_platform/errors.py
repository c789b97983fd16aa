"""The platform's error hierarchy.

Every error names what is at fault -- the file, the config key path, the symbol or the date -- and
what to do about it. Catch :class:`RotationError` to handle anything the platform raises on purpose.

Each error carries its parts as fields (``file``, ``key``, ``symbol``, ``date``, ``line``, ``hint``)
and renders as one line with :meth:`RotationError.one_line`; ``exit_code`` is the command-line exit
code of its kind (2 usage, 3 configuration, 4 data, 5 service, 1 other; see ``jobs/cli.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "EXIT_OTHER",
    "EXIT_USAGE",
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_SERVICE",
    "one_line",
    "RotationError",
    "UsageError",
    "ConfigError",
    "NotConfiguredError",
    "CalendarError",
    "DataSourceError",
    "UnknownLayoutError",
    "PriceDataError",
    "CorporateActionError",
    "DataQualityError",
    "ResearchError",
    "PositionsError",
    "ServiceError",
]

EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATA = 4
EXIT_SERVICE = 5

_BULLET = re.compile(r"^(?:[-*\u2022]\s+)")


def one_line(text: object) -> str:
    """``text`` on one line: every non-blank line kept whole, stripped of indentation and list bullets,
    joined by ``"; "`` (by a space after a line that ends with a colon); control characters escaped."""
    out = ""
    for raw in str(text).splitlines():
        part = _BULLET.sub("", raw.strip())
        if not part:
            continue
        if not out:
            out = part
        elif out.endswith(":"):
            out += " " + part
        else:
            out += "; " + part
    out = " ".join(out.split())
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in out)


class RotationError(Exception):
    """Base class of every error the platform raises on purpose.

    ``message`` says what is wrong; the keyword fields name where (``file``, ``key``, ``symbol``,
    ``date``, ``line``) and ``hint`` what to do. Subclasses that build their own message pass it
    whole; ``str(error)`` is the message plus the hint when the message does not say it already.
    """

    exit_code = EXIT_OTHER

    def __init__(self, message: object = "", *args: object, hint: str | None = None, file: object = None,
                 key: str | None = None, symbol: str | None = None, date: object = None,
                 line: int | None = None):
        self.hint = hint
        if file is not None or not hasattr(self, "file"):
            self.file = None if file is None else str(file)
        if key is not None or not hasattr(self, "key"):
            self.key = key
        if symbol is not None or not hasattr(self, "symbol"):
            self.symbol = symbol
        if date is not None or not hasattr(self, "date"):
            self.date = date
        if line is not None or not hasattr(self, "line"):
            self.line = line
        text = str(message)
        if hint and hint not in text:
            text = f"{text}; {hint}" if text else hint
        super().__init__(text, *args)

    @property
    def what(self) -> str:
        """What is wrong: the message without the hint."""
        text = str(self.args[0]) if self.args else ""
        if self.hint and text.endswith("; " + self.hint):
            text = text[: -len(self.hint) - 2]
        return text

    def one_line(self) -> str:
        """The whole message on one line (for a console or a log)."""
        return one_line(str(self))


class UsageError(RotationError):
    """A command-line argument is wrong (a flag, a date, a file name); names the argument."""

    exit_code = EXIT_USAGE


class ConfigError(RotationError):
    """A configuration file or override is invalid.

    ``problems`` holds one ``(key_path, reason)`` pair per problem; ``file`` is the YAML file (or the
    environment variable) the problem came from; ``key`` is the first problem's key path.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, file: str, problems: Sequence[tuple[str, str]], *, hint: str | None = None):
        self.problems = [(str(k), str(r)) for k, r in problems]
        lines = [f"invalid configuration in {file}:"]
        lines += [f"  {key or '<root>'}: {reason}" for key, reason in self.problems]
        super().__init__("\n".join(lines), file=str(file), key=self.problems[0][0] if self.problems else None,
                         hint=hint)


class NotConfiguredError(RotationError):
    """A name given to a command (a pool, a fund) is not in the configuration; names it and what is."""

    exit_code = EXIT_CONFIG


class CalendarError(RotationError):
    """An unknown exchange calendar, or a date outside the calendar's range."""

    exit_code = EXIT_CONFIG


class DataSourceError(RotationError):
    """A price source could not provide the requested data."""

    exit_code = EXIT_DATA


class UnknownLayoutError(DataSourceError):
    """A price file has a column layout none of the readers knows.

    ``closest`` is the known layout with the most columns in common and ``missing`` the required columns it
    lacks; ``header`` the header line to add (the plain layout's); ``detail`` what was seen instead of a
    header (e.g. "the first row is data"). The message says what to do, on one line.
    """

    def __init__(self, file: str, found: Sequence[str], known: dict[str, Sequence[str]], *,
                 closest: str | None = None, missing: Sequence[str] = (), header: str | None = None,
                 detail: str | None = None):
        self.found = list(found)
        self.known = {k: list(v) for k, v in known.items()}
        self.closest = closest
        self.missing = list(missing)
        self.header = header
        known_txt = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in self.known.items())
        closest_txt = ""
        if closest:
            lacks = f"lacks {', '.join(self.missing)}" if self.missing else "matches"
            closest_txt = f"; closest known layout: {closest} ({lacks})"
        if header:
            todo = (f"add the header line '{header}' (the plain layout, volume in shares) as the first line"
                    + (f", or rename the columns to the {closest} layout's (add {', '.join(self.missing)})"
                       if closest and self.missing else ""))
        else:
            todo = "rename the header to one of the known layouts"
        super().__init__(
            f"{file}: unknown price file layout{'; ' + detail if detail else ''}; found columns "
            f"[{', '.join(map(str, self.found))}]{closest_txt}; known layouts (required columns) -> {known_txt}",
            file=str(file), hint=todo)


class PriceDataError(DataSourceError):
    """Price data is unusable. Names the file, symbol and date (and data row) where one applies."""

    def __init__(self, message: str, *, file: str | None = None, symbol: str | None = None,
                 date: object | None = None, line: int | None = None, hint: str | None = None):
        where = []
        if file:
            where.append(f"file {file}")
        if symbol:
            where.append(f"symbol {symbol}")
        if date is not None:
            where.append(f"date {str(date)[:10]}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message, file=file, symbol=symbol, date=date, line=line, hint=hint)


class CorporateActionError(PriceDataError):
    """A corporate-action table is malformed or inconsistent with the prices."""


class DataQualityError(PriceDataError):
    """The data-quality gate found a fatal problem. ``report`` holds the full report."""

    def __init__(self, message: str, *, report: object | None = None, file: str | None = None,
                 symbol: str | None = None, date: object | None = None, line: int | None = None,
                 hint: str | None = None):
        self.report = report
        super().__init__(message, file=file, symbol=symbol, date=date, line=line, hint=hint)


class ResearchError(RotationError):
    """A research computation (screen, strategy, walk-forward, backtest) cannot proceed.

    The message names the input at fault -- the factor, session, parameter or config key -- and what
    to change.
    """


class PositionsError(RotationError):
    """A table of actual positions is unusable; names the file (or store partition), the row's fund and
    what to do."""

    exit_code = EXIT_DATA


class ServiceError(RotationError):
    """A server the platform needs (database, cache, message broker) did not answer; names the server
    (never a secret) and what to check. Storage raises its own
    :class:`~rotation_platform.storage.errors.StorageUnavailableError`, which the command line treats
    the same way."""

    exit_code = EXIT_SERVICE
