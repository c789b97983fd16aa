"""The API's settings, from the environment only (``ROTATION_API_*``); the platform config (``ROTATION_CONFIG``)
says where the stored results are.

======================================  ==============================================================
variable                                meaning (default)
======================================  ==============================================================
``ROTATION_API_KEYS_FILE``              the hashed key file (``<storage.data_dir>/.api/keys.json``)
``ROTATION_API_AUDIT_LOG``              the audit log, JSON lines (``<storage.data_dir>/.api/audit.jsonl``)
``ROTATION_API_PEPPER``                 secret HMAC pepper for key hashes (unset: salted SHA-256 only)
``ROTATION_API_RATE``                   requests per second per key, refill rate (10)
``ROTATION_API_BURST``                  bucket size per key (20)
``ROTATION_API_DAGSTER_URL``            the Dagster webserver for launches (``http://127.0.0.1:3000``)
``ROTATION_API_DAGSTER_LOCATION``       its code location (``rotation_platform``)
``ROTATION_API_REQUIRE_DAEMON``         ``1``: /ready fails without a Dagster daemon heartbeat (0)
``ROTATION_API_MAX_SESSIONS_BEHIND``    /ready fails when a pool is more sessions behind (unset: reported)
``ROTATION_API_PUBLISH_DEADLINE_MIN``   minutes after the close by which a target is due (alerts; 120)
``ROTATION_API_HOST`` / ``_PORT``       where ``python -m api`` listens (127.0.0.1:8080)
``ROTATION_API_WORKERS``                its worker processes, a socket each (1; ``api/serve.py``)
======================================  ==============================================================

These are not config overrides: the API loads the platform config without them (:func:`platform_env`).
A bad value is refused at start with one line naming the variable and what to give.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ApiSettings", "SettingsError", "PREFIX", "platform_env", "without_api_env"]

PREFIX = "ROTATION_API_"


def platform_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for loading the platform config: without the API's own ``ROTATION_API_*``
    variables, which are not config overrides (``rotation_platform.config.loader`` reads every other
    ``ROTATION_*`` variable as one)."""
    return {k: v for k, v in (os.environ if env is None else env).items() if not k.startswith(PREFIX)}


@contextmanager
def without_api_env():
    """``ROTATION_API_*`` out of ``os.environ`` meanwhile: for importing the Dagster layer (``assets``), which
    loads the environment's platform config when first imported."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(PREFIX)}
    try:
        yield
    finally:
        os.environ.update(saved)


class SettingsError(ValueError):
    """A ``ROTATION_API_*`` variable with a value the API cannot use."""


def _number(env: Mapping[str, str], name: str, default: float, kind=float, minimum: float = 0.0):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; "
                            f"give e.g. {name}={kind(default) if default is not None else 5}") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} is below {minimum}; give a value of at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw not in {"0", "1", "true", "false", "yes", "no"}:
        raise SettingsError(f"{name}={raw!r} is not a switch; give 1 or 0")
    return raw in {"1", "true", "yes"}


@dataclass(frozen=True)
class ApiSettings:
    keys_file: Path
    audit_log: Path
    pepper: str | None
    rate: float
    burst: float
    dagster_url: str
    dagster_location: str
    require_daemon: bool
    max_sessions_behind: int | None
    publish_deadline_min: int
    host: str
    port: int
    workers: int = 1

    def __repr__(self) -> str:  # the pepper is a secret: never in a log line or a traceback
        return (f"ApiSettings(keys_file={str(self.keys_file)!r}, audit_log={str(self.audit_log)!r}, "
                f"pepper={'set' if self.pepper else 'unset'}, rate={self.rate}, burst={self.burst}, "
                f"dagster_url={self.dagster_url!r})")

    @classmethod
    def from_env(cls, data_dir: str | Path, env: Mapping[str, str] | None = None) -> "ApiSettings":
        env = os.environ if env is None else env
        base = Path(data_dir) / ".api"
        behind = env.get("ROTATION_API_MAX_SESSIONS_BEHIND")
        rate = _number(env, "ROTATION_API_RATE", 10.0, minimum=0.001)
        burst = _number(env, "ROTATION_API_BURST", 20.0, minimum=1.0)
        return cls(
            keys_file=Path(env.get("ROTATION_API_KEYS_FILE") or base / "keys.json"),
            audit_log=Path(env.get("ROTATION_API_AUDIT_LOG") or base / "audit.jsonl"),
            pepper=env.get("ROTATION_API_PEPPER") or None,
            rate=rate, burst=burst,
            dagster_url=(env.get("ROTATION_API_DAGSTER_URL") or "http://127.0.0.1:3000").rstrip("/"),
            dagster_location=env.get("ROTATION_API_DAGSTER_LOCATION") or "rotation_platform",
            require_daemon=_flag(env, "ROTATION_API_REQUIRE_DAEMON"),
            max_sessions_behind=None if behind in (None, "") else
            _number(env, "ROTATION_API_MAX_SESSIONS_BEHIND", 0, int),
            publish_deadline_min=_number(env, "ROTATION_API_PUBLISH_DEADLINE_MIN", 120, int),
            host=env.get("ROTATION_API_HOST") or "127.0.0.1",
            port=_number(env, "ROTATION_API_PORT", 8080, int, minimum=1),
            workers=_number(env, "ROTATION_API_WORKERS", 1, int, minimum=1),
        )
