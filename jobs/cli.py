"""The command lines' error boundary: one clear line on stderr for every user error, and an exit code
by kind.

    0  done
    1  other: a pool failed or was blocked by a fuse, or an unexpected error
       ("internal error: <type>: <message>; rerun with --debug for the trace")
    2  usage: a wrong flag or argument (an unknown option, a bad --session date, a --json folder)
    3  configuration: the config file, an environment override, an unknown pool
    4  data: a price, factor, split/dividend or positions file, or a stored value
    5  service: a storage or other server did not answer

``--debug`` (or ``ROTATION_DEBUG=1``) prints the full traceback before the line. A command builds its
parser with :func:`parser` and runs its body through :func:`run_main`::

    def main(argv=None) -> int:
        return run_main(build_parser(), run, argv)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from rotation_platform.errors import (
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_OTHER,
    EXIT_SERVICE,
    EXIT_USAGE,
    RotationError,
    UsageError,
    one_line,
)

__all__ = [
    "EXIT_OK",
    "EXIT_OTHER",
    "EXIT_USAGE",
    "EXIT_CONFIG",
    "EXIT_DATA",
    "EXIT_SERVICE",
    "DEBUG_ENV",
    "Parser",
    "parser",
    "debug_requested",
    "exit_code",
    "error_classes",
    "error_line",
    "report",
    "run_main",
    "parse_date",
]

EXIT_OK = 0
DEBUG_ENV = "ROTATION_DEBUG"
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one line, exit code 2) instead of a
    usage block and ``SystemExit``."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        raise UsageError(f"{message}; see {self.prog} --help")


def parser(prog: str, description: str) -> Parser:
    """A :class:`Parser` with the ``--debug`` flag every command has."""
    p = Parser(prog=prog, description=description)
    p.add_argument("--debug", action="store_true",
                   help=f"print the full traceback of an error (or set {DEBUG_ENV}=1)")
    return p


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def _storage_code(cls: type) -> int | None:
    try:
        from rotation_platform.storage.errors import StorageError, StorageUnavailableError
    except Exception:  # noqa: BLE001 - the storage layer failed to import: not a storage error then
        return None
    if issubclass(cls, StorageUnavailableError):
        return EXIT_SERVICE
    if issubclass(cls, StorageError):
        return EXIT_DATA  # a value missing, unreadable or inconsistent in a store
    return None


def exit_code(exc: BaseException) -> int:
    """The exit code of ``exc`` (see the module docstring)."""
    code = _storage_code(type(exc))
    if code is not None:
        return code
    if isinstance(exc, RotationError):
        return int(getattr(exc, "exit_code", EXIT_OTHER))
    if isinstance(exc, ConnectionError):
        return EXIT_SERVICE
    return EXIT_OTHER


def error_classes() -> dict[str, int]:
    """Exit code by class name of every error the platform raises on purpose (to classify an error
    that crossed a process boundary, such as a failed Dagster step, by its recorded class name)."""
    import rotation_platform.storage.errors  # noqa: F401 - registers the storage errors

    out: dict[str, int] = {}
    todo = [RotationError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        code = _storage_code(cls)
        out.setdefault(cls.__name__, code if code is not None else int(getattr(cls, "exit_code", EXIT_OTHER)))
    return out


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised on purpose (its message says what to do) rather than by a bug."""
    return isinstance(exc, RotationError)


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``."""
    if is_user_error(exc):
        text = exc.one_line() if hasattr(exc, "one_line") else one_line(exc)
        return f"error: {text}"
    if isinstance(exc, ConnectionError):
        return f"error: a server did not answer: {type(exc).__name__}: {one_line(exc)}; check that it is running"
    text = one_line(exc)
    return (f"internal error: {type(exc).__name__}{': ' + text if text else ''}; "
            f"rerun with --debug for the trace")


def report(exc: BaseException, debug: bool, stream=None) -> int:
    """Print ``exc`` (its traceback first when ``debug``) and return its exit code."""
    stream = sys.stderr if stream is None else stream
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    print(error_line(exc), file=stream, flush=True)
    return exit_code(exc)


def run_main(p: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
             argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``p`` and call ``run(args)``; every error becomes one line and its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        args = p.parse_args(argv)
        return int(run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except SystemExit as exc:  # --help, or a library that exits on its own
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(f"error: {exc.code}", file=sys.stderr, flush=True)
        return EXIT_OTHER
    except BaseException as exc:  # noqa: BLE001 - the boundary: one line per error
        return report(exc, debug)


def parse_date(value: str, flag: str = "--session"):
    """``value`` as a midnight :class:`pandas.Timestamp`; :class:`UsageError` naming ``flag`` otherwise."""
    import datetime as dt

    import pandas as pd

    text = str(value).strip()
    try:
        if not _ISO_DAY.fullmatch(text):
            raise ValueError(text)
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {value}: not a date (YYYY-MM-DD)") from None
    return pd.Timestamp(day)
