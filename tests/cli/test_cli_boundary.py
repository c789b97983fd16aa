"""The command lines' error boundary (jobs/cli.py) and the errors' one-line rendering, in process."""

from __future__ import annotations

import pytest

from jobs.cli import error_classes, error_line, exit_code, parse_date, parser, run_main
from rotation_platform.errors import (
    ConfigError,
    DataQualityError,
    PositionsError,
    PriceDataError,
    RotationError,
    ServiceError,
    UnknownLayoutError,
    UsageError,
    one_line,
)
from rotation_platform.storage.errors import StorageNotFoundError, StorageUnavailableError


def _run(body, argv=()):
    p = parser("prog", "a test command")
    p.add_argument("--n", type=int, default=1)
    return run_main(p, body, list(argv))


@pytest.mark.parametrize("exc, code", [
    (UsageError("--x: wrong"), 2),
    (ConfigError("f.yaml", [("a.b", "bad")]), 3),
    (PriceDataError("bad cell", file="p.csv", symbol="510300"), 4),
    (PositionsError("no CASH row"), 4),
    (StorageNotFoundError("nothing stored for prices CORE|2026-08-03"), 4),
    (StorageUnavailableError("mysql at 127.0.0.1:3306 did not answer"), 5),
    (ServiceError("redis at 127.0.0.1:6379 did not answer"), 5),
    (ConnectionRefusedError(111, "Connection refused"), 5),
    (RotationError("something on purpose"), 1),
    (ValueError("boom"), 1),
])
def test_exit_code_by_kind(exc: BaseException, code: int, capsys) -> None:
    def body(args):
        raise exc

    assert _run(body) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert exit_code(exc) == code


def test_an_unexpected_error_is_one_internal_error_line(capsys) -> None:
    def body(args):
        raise KeyError("missing\nsecond line")

    assert _run(body) == 1
    err = capsys.readouterr().err
    assert err == "internal error: KeyError: 'missing\\nsecond line'; rerun with --debug for the trace\n"


def test_debug_flag_and_env_print_the_trace_first(monkeypatch, capsys) -> None:
    def body(args):
        raise PriceDataError("bad cell", file="p.csv")

    assert _run(body, ["--debug"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1] == "error: file p.csv: bad cell"
    monkeypatch.setenv("ROTATION_DEBUG", "1")
    assert _run(body) == 4
    assert capsys.readouterr().err.startswith("Traceback")


def test_argparse_errors_are_one_usage_line(capsys) -> None:
    assert _run(lambda a: 0, ["--n", "x"]) == 2
    assert capsys.readouterr().err == "error: argument --n: invalid int value: 'x'; see prog --help\n"
    assert _run(lambda a: 0, ["--what"]) == 2
    assert capsys.readouterr().err == "error: unrecognized arguments: --what; see prog --help\n"
    assert _run(lambda a: 0, ["--help"]) == 0


def test_multi_line_messages_render_whole_on_one_line() -> None:
    exc = DataQualityError("data-quality gate failed (fail_on='fatal'): 2 blocking finding(s):\n"
                           "  - [FATAL] no_valid_rows symbol A: no data rows\n  - [ERROR] short_history symbol B: 10",
                           file="a.csv", symbol="A")
    assert error_line(exc) == ("error: file a.csv, symbol A: data-quality gate failed (fail_on='fatal'): 2 blocking "
                               "finding(s): [FATAL] no_valid_rows symbol A: no data rows; [ERROR] short_history "
                               "symbol B: 10")
    config = ConfigError("c.yaml", [("a", "one"), ("b.c", "two")], hint="fix it")
    assert config.one_line() == "invalid configuration in c.yaml: a: one; b.c: two; fix it"
    assert config.file == "c.yaml" and config.key == "a" and config.exit_code == 3
    assert one_line("bad\x00byte") == "bad\\x00byte"


def test_structured_fields_and_compatible_constructors() -> None:
    exc = PriceDataError("unreadable", file="p.csv", symbol="510300", date="2025-06-03", line=7, hint="fix row 7")
    assert (exc.file, exc.symbol, exc.line, exc.hint) == ("p.csv", "510300", 7, "fix row 7")
    assert str(exc) == "file p.csv, symbol 510300, date 2025-06-03: unreadable; fix row 7"
    assert exc.what == "file p.csv, symbol 510300, date 2025-06-03: unreadable"
    layout = UnknownLayoutError("p.csv", ["a", "b"], {"plain": ["date", "close"]})
    assert layout.file == "p.csv" and "\n" not in str(layout) and layout.exit_code == 4
    assert str(RotationError("plain message")) == "plain message"


def test_error_classes_know_every_kind() -> None:
    classes = error_classes()
    assert classes["DataQualityError"] == 4 and classes["ConfigError"] == 3 and classes["UsageError"] == 2
    assert classes["StorageUnavailableError"] == 5 and classes["StorageIntegrityError"] == 4


@pytest.mark.parametrize("text", ["2026-13-45", "20260803", "2026-8-3", "today", "2026-08-03 15:00", ""])
def test_parse_date_refuses_anything_but_iso_days(text: str) -> None:
    with pytest.raises(UsageError, match=f"--session {text}: not a date"):
        parse_date(text)


def test_parse_date() -> None:
    assert str(parse_date("2026-08-03").date()) == "2026-08-03"
