"""Structured logs: one configuration for every process of the platform.

Library code keeps logging through the standard module (``logging.getLogger(__name__)``); this module
installs a structlog :class:`~structlog.stdlib.ProcessorFormatter` on the root logger's handlers, so every
record becomes one JSON object per line::

    {"timestamp": "2025-09-26T07:31:02.118Z", "level": "warning", "logger": "rotation_platform.storage",
     "event": "...", "run_id": "5f0c...", "pool": "EQUITY", "session": "2025-09-26",
     "asset": "prices", "step": "pool_chain"}

``run_id``, ``pool``, ``session``, ``asset`` and ``step`` are on every record (``null`` when not known).
They come from :mod:`contextvars` (:func:`log_context`, :func:`bind`), so they follow the code that set
them, a step's generator included; a new thread starts without them unless started through
:func:`carry`.

Secrets are replaced by ``***`` (:func:`redact_text`, :func:`redact`): the values of keys that name a
secret, every value of a ``ROTATION_*`` variable whose name says PASSWORD, SECRET, TOKEN, KEY or PEPPER
(and of any variable ending in one of those words), the password of any ``scheme://user:password@host``
URL, secret query parameters and ``password=...`` pairs -- in the message, the exception text and the
final line.

Environment:

* ``ROTATION_LOG_FORMAT`` -- ``json`` or ``console`` for standard error. Unset, each process takes its
  default: ``json`` for the API and Dagster runs; the command lines keep printing what they always printed
  (the message of a warning or error, nothing for info).
* ``ROTATION_LOG_FILE`` -- a file to append JSON lines to, whatever the format on standard error.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog

__all__ = [
    "CONTEXT_FIELDS", "FILE_ENV", "FORMAT_ENV", "MASK", "bind", "carry", "configure", "current",
    "ensure_configured", "environment_secrets", "installed_handlers", "iterate_with", "log_context",
    "redact", "redact_text",
]

#: the context fields every record carries (None when not known)
CONTEXT_FIELDS = ("run_id", "pool", "session", "asset", "step")
FORMAT_ENV = "ROTATION_LOG_FORMAT"
FILE_ENV = "ROTATION_LOG_FILE"
#: the default format of the processes a command line starts (a multiprocess run's steps): its own default,
#: so their records reach its standard error as its own do (set by the command line, not by users)
CHILD_DEFAULT_ENV = "ROTATION_LOG_CHILD_DEFAULT"
#: what a secret is replaced by
MASK = "***"
#: the formats ROTATION_LOG_FORMAT accepts; "message" (the message alone, warnings and errors) is the
#: command lines' default, what Python prints when logging is not configured
FORMATS = ("json", "console")
_DEFAULTS = (*FORMATS, "message")
_FIRST_KEYS = ("timestamp", "level", "logger", "event", *CONTEXT_FIELDS)
_MARK = "_rotation_log_format"
#: libraries whose info records are set-up chatter (Dagster's SQLite migrations): warnings and errors only
QUIET_LOGGERS = ("alembic",)

# ------------------------------------------------------------------------------------------- redaction
#: a key whose value is a secret (an event dict's key, a structured field)
SECRET_KEY = re.compile(r"pass(word|wd|phrase)|secret|token|api_?key|pepper|authori[sz]ation|credential"
                        r"|private_?key|cookie|^pwd?$", re.IGNORECASE)
#: words of an environment variable's name that make its value a secret
_SECRET_WORDS = {"PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "APIKEY", "PEPPER"}
_SECRET_SUFFIX = re.compile(r"_(PASSWORD|PASSWD|SECRET|TOKEN|PEPPER|API_KEY|APIKEY)$")
#: shorter values are not searched for in text (they would mask ordinary words and numbers)
MIN_SECRET_LENGTH = 4
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<pw>[^\s@/]+)(?=@)")
_SECRET_PARAM = re.compile(r"(?P<pre>[?&](?:access_token|token|secret|password|passwd|sign|signature|api_?key|key)=)"
                           r"[^&\s#\"']+", re.IGNORECASE)
_SECRET_PAIR = re.compile(r"(?P<pre>\b(?:password|passwd|pwd|secret|token|api_?key|pepper)=)[^\s,;&\"']+",
                          re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?P<pre>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{8,}")
#: keys of the record itself, never masked by name (their values are still searched for secrets)
_STRUCTURAL = frozenset({"timestamp", "level", "logger", "event", "exception", "stack_info", *CONTEXT_FIELDS})


def _secret_name(name: str) -> bool:
    upper = name.upper()
    if upper.startswith("ROTATION_"):
        return bool(_SECRET_WORDS.intersection(upper.split("_")))
    return bool(_SECRET_SUFFIX.search(upper))


_cache: dict[str, object] = {}


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of the environment, longest first, with their URL- and JSON-escaped forms."""
    if environ is None:  # read again whenever the environment changed (compared undecoded, where it can be)
        raw = getattr(os.environ, "_data", None)
        key = tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())
        if _cache.get("key") != key:
            _cache.update(key=key, secrets=_secrets_of(os.environ))
        return list(_cache["secrets"])  # type: ignore[call-overload]
    return _secrets_of(environ)


def _secrets_of(environ: Mapping[str, str]) -> list[str]:
    found: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        if _secret_name(name):
            found.add(value)
        if "://" in value:
            for match in _URL_PASSWORD.finditer(value):
                found.add(match.group("pw"))
                found.add(urllib.parse.unquote(match.group("pw")))
    out: set[str] = set()
    for value in found:
        if len(value) < MIN_SECRET_LENGTH:
            continue
        out.update({value, urllib.parse.quote(value, safe=""), json.dumps(value, ensure_ascii=False)[1:-1]})
    return sorted(out, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret replaced by :data:`MASK`: the environment's secret values (or
    ``secrets``), URL passwords, secret query parameters, ``password=...`` pairs, bearer tokens."""
    for secret in environment_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("pre") + MASK, text)
    text = _SECRET_PARAM.sub(lambda m: m.group("pre") + MASK, text)
    text = _SECRET_PAIR.sub(lambda m: m.group("pre") + MASK, text)
    return _AUTH_HEADER.sub(lambda m: m.group("pre") + MASK, text)


def _redact_value(value: object, secrets: list[str]) -> object:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {k: MASK if _masked(k, v) else _redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v, secrets) for v in value)
    return value


def _masked(key: object, value: object) -> bool:
    return value is not None and isinstance(key, str) and key not in _STRUCTURAL and bool(SECRET_KEY.search(key))


def redact(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask the values of secret keys, remove secrets from every text value."""
    secrets = environment_secrets()
    return {key: MASK if _masked(key, value) else _redact_value(value, secrets)
            for key, value in event_dict.items()}


def _redact_line(_logger: object, _method: str, line: str) -> str:
    """The rendered line, searched once more (a secret inside an object's repr)."""
    return redact_text(line)


# ----------------------------------------------------------------------------------------- processors
def _context_defaults(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for name in CONTEXT_FIELDS:
        event_dict.setdefault(name, None)
    return event_dict


def _access_fields(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's access records: client, method, path, status as fields; other records drop their args."""
    args = event_dict.pop("positional_args", None)
    if event_dict.get("logger") == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _version, status = args
        event_dict.update(client=client, method=method, path=path, status=status)
    return event_dict


def _ordered(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    head = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    return {**head, **event_dict}


def _json(_logger: object, _method: str, event_dict: dict[str, Any]) -> str:
    return json.dumps(event_dict, ensure_ascii=False, default=repr)


def _console(_logger: object, _method: str, event_dict: dict[str, Any]) -> str:
    event = dict(event_dict)
    when, level, logger = event.pop("timestamp", ""), str(event.pop("level", "")), event.pop("logger", "")
    head = f"{when} {level:<7} {logger}: {event.pop('event', '')}"
    exception = event.pop("exception", None)
    fields = " ".join(f"{k}={v}" for k, v in event.items() if v is not None)
    return head + (f" [{fields}]" if fields else "") + (f"\n{exception}" if exception else "")


def _message(_logger: object, _method: str, event_dict: dict[str, Any]) -> str:
    exception = event_dict.get("exception")
    return str(event_dict.get("event", "")) + (f"\n{exception}" if exception else "")


_RENDERERS: dict[str, Callable[..., str]] = {"json": _json, "console": _console, "message": _message}


#: a record's own attributes (and those other formatters or Dagster set on it), not ``extra`` fields
_RECORD_ATTRS = frozenset({*logging.makeLogRecord({}).__dict__, "message", "asctime", "dagster_meta", "color_message"})


def _extras(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The ``extra={...}`` fields of a standard record."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS})
    return event_dict


def _shared() -> list[Any]:
    return [structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name, structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _extras]


def formatter(fmt: str = "json") -> logging.Formatter:
    """The formatter of one output format (``json``, ``console``, ``message``), with redaction."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(), pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _access_fields, _context_defaults,
                    structlog.processors.format_exc_info, redact, _ordered, _RENDERERS[fmt], _redact_line])


# ------------------------------------------------------------------------------------------- handlers
class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (as Python's last-resort handler does)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


_state: dict[str, object] = {}


def installed_handlers() -> list[logging.Handler]:
    """The handlers :func:`configure` installed on the root logger."""
    return [h for h in logging.getLogger().handlers if getattr(h, _MARK, None)]


def _env_key() -> tuple[str | None, str | None]:
    return os.environ.get(FORMAT_ENV) or None, os.environ.get(FILE_ENV) or None


def configure(fmt: str | None = None, *, default: str = "json", file: str | os.PathLike | None = None,
              level: int = logging.INFO) -> None:
    """Install the platform's handlers on the root logger (replacing those installed before).

    Standard error gets ``fmt`` (else ``ROTATION_LOG_FORMAT``, else ``default``); ``file`` (else
    ``ROTATION_LOG_FILE``) gets JSON lines. ``message`` -- the command lines' default -- shows warnings and
    errors as bare messages; the other formats show ``level`` and above.
    """
    from rotation_platform.errors import ConfigError

    env_format, env_file = _env_key()
    chosen = (fmt or env_format or default).strip().lower()
    if chosen not in (_DEFAULTS if fmt is None and env_format is None else FORMATS):
        raise ConfigError(FORMAT_ENV, [(FORMAT_ENV, f"{chosen!r} is not one of {', '.join(FORMATS)}")],
                          hint=f"set {FORMAT_ENV}=json or {FORMAT_ENV}=console, or unset it")
    if default not in _DEFAULTS:
        raise ValueError(f"default log format {default!r} is not one of {_DEFAULTS}")
    root = logging.getLogger()
    for handler in installed_handlers():
        root.removeHandler(handler)
        handler.close()
    stream = _StderrHandler()
    stream.setLevel(logging.WARNING if chosen == "message" else level)
    stream.setFormatter(formatter(chosen))
    setattr(stream, _MARK, chosen)
    handlers: list[logging.Handler] = [stream]
    path = file or env_file
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(path, encoding="utf-8")
        to_file.setLevel(level)
        to_file.setFormatter(formatter("json"))
        setattr(to_file, _MARK, "json")
        handlers.append(to_file)
    for handler in handlers:
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    for name in QUIET_LOGGERS:  # their info records are set-up chatter, not events of a run
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(), wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)
    _state.update(default=default, env=(env_format, env_file), explicit=(fmt, file))


def ensure_configured(default: str = "json") -> None:
    """Configure once per process: the first caller's ``default`` wins (the command line's, when a run
    executes inside it, or the one it left its child processes in ``ROTATION_LOG_CHILD_DEFAULT``);
    configured again when ``ROTATION_LOG_FORMAT`` or ``ROTATION_LOG_FILE`` changed."""
    if not _state or not installed_handlers():
        inherited = os.environ.get(CHILD_DEFAULT_ENV)
        configure(default=inherited if inherited in _DEFAULTS else default)
    elif _state.get("env") != _env_key() and _state.get("explicit") == (None, None):
        configure(default=str(_state["default"]))


# -------------------------------------------------------------------------------------------- context
def bind(**fields: object) -> None:
    """Add ``fields`` to the context of every record logged from here on (in this context)."""
    structlog.contextvars.bind_contextvars(**fields)


def current() -> dict[str, object]:
    """The fields bound now."""
    return structlog.contextvars.get_contextvars()


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind ``fields`` for the block; the previous values come back after it."""
    before = current()
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        try:
            structlog.contextvars.reset_contextvars(**tokens)
        except ValueError:  # left in another context (a generator closed elsewhere): restore by value
            structlog.contextvars.unbind_contextvars(*fields)
            structlog.contextvars.bind_contextvars(**{k: before[k] for k in fields if k in before})


T = TypeVar("T")


def iterate_with(items: Iterable[T], **fields: object) -> Iterator[T]:
    """The items of ``items``, each computed with ``fields`` bound (and unbound while the consumer runs)."""
    iterator = iter(items)
    while True:
        with log_context(**fields):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def carry(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` run in a copy of the current context: give it to a thread to keep the fields."""
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.run(function, *args, **kwargs)
