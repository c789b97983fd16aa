"""Liveness and readiness.

``/health`` answers while the process serves. ``/ready`` checks, each with its status and latency:

* ``store`` -- every server the configured storage uses (data folder, InfluxDB, MySQL;
  :func:`rotation_platform.storage.health.check_storage`), Redis when ``storage.redis_cache`` is on;
* ``broker`` -- the RabbitMQ broker, when ``orchestration.executor: celery``;
* ``dagster_daemon`` -- the daemon heartbeats recorded in the instance (required with
  ``ROTATION_API_REQUIRE_DAEMON=1``, otherwise reported only);
* ``freshness`` -- per pool, the latest stored session of its prices against its calendar's last
  closed session (close + the market's data delay); required with ``ROTATION_API_MAX_SESSIONS_BEHIND``.

Every required component up: 200 ``{"status": "ready"}``; else 503 ``{"status": "not ready"}``. Statuses
name servers by redacted URL only (no password, no token).
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

__all__ = ["readiness", "freshness", "check_broker", "check_daemon"]


def _timed(fn) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round((time.perf_counter() - t0) * 1000, 2)


def check_broker(url: str, password: str | None, timeout_s: float = 3.0) -> dict[str, Any]:
    from kombu import Connection

    from rotation_platform.storage.health import redact_url

    server = f"RabbitMQ {redact_url(url)}"
    try:
        with Connection(url, password=password, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
        return {"ok": True, "server": server, "detail": "connected"}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "server": server, "detail": f"no answer: {type(exc).__name__}"}


def check_daemon(instance) -> dict[str, Any]:
    """The daemon types with a recent heartbeat (the instance's own judgement of "healthy")."""
    try:
        statuses = instance.get_daemon_statuses()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "detail": f"instance unreadable: {type(exc).__name__}: {exc}"[:200], "daemons": {}}
    daemons = {name: bool(s.healthy) for name, s in statuses.items() if s.required}
    ok = bool(daemons) and all(daemons.values())
    detail = "every required daemon has a recent heartbeat" if ok else \
        ("no daemon heartbeat recorded" if not any(daemons.values()) else
         "stale heartbeat: " + ", ".join(n for n, h in daemons.items() if not h))
    return {"ok": ok, "detail": detail, "daemons": daemons}


def freshness(config, store, now: pd.Timestamp | None = None) -> dict[str, dict[str, Any]]:
    """Per pool: ``latest`` stored prices session, ``expected`` (the calendar's last closed session),
    ``sessions_behind``."""
    from api.views import stored_sessions
    from rotation_platform.calendars import get_calendar

    out = {}
    for pool in config.pools:
        cal = get_calendar(pool.calendar)
        delay = config.market(pool.calendar).data_delay_minutes
        expected = pd.Timestamp(cal.last_completed_session(now, close_buffer_minutes=delay)).normalize()
        days = stored_sessions(store, "prices", pool.name)
        latest = pd.Timestamp(days[-1]) if days else None
        if latest is None:
            behind = None
        elif latest >= expected:
            behind = 0
        else:
            behind = len(cal.sessions(latest, expected)) - 1
        out[pool.name] = {"latest": None if latest is None else str(latest.date()), "expected": str(expected.date()),
                          "sessions_behind": behind, "calendar": pool.calendar}
    return out


def readiness(config, store, instance, settings, now=None) -> tuple[bool, dict[str, Any]]:
    from rotation_platform.storage.health import check_storage

    components: dict[str, dict[str, Any]] = {}
    statuses, ms = _timed(lambda: check_storage(config.storage))
    store_ok = all(s.ok for s in statuses)
    components["store"] = {"status": "up" if store_ok else "down", "required": True, "latency_ms": ms,
                           "servers": [s.as_dict() for s in statuses if s.backend != "redis"]}
    redis = [s for s in statuses if s.backend == "redis"]
    if redis:
        components["redis"] = {"status": "up" if redis[0].ok else "down", "required": True,
                               "latency_ms": redis[0].latency_ms, "servers": [redis[0].as_dict()]}
    if config.orchestration.executor == "celery":
        celery = config.orchestration.celery
        pw = celery.broker_password.get_secret_value() if celery.broker_password else None
        got, ms = _timed(lambda: check_broker(celery.broker, pw))
        components["broker"] = {"status": "up" if got["ok"] else "down", "required": True, "latency_ms": ms,
                                "server": got["server"], "detail": got["detail"]}
    got, ms = _timed(lambda: check_daemon(instance))
    components["dagster_daemon"] = {"status": "up" if got["ok"] else "down", "required": settings.require_daemon,
                                    "latency_ms": ms, "detail": got["detail"], "daemons": got["daemons"]}
    if store_ok:
        try:
            fresh, ms = _timed(lambda: freshness(config, store, now))
            limit = settings.max_sessions_behind
            late = {p: f for p, f in fresh.items() if f["sessions_behind"] is None or
                    (limit is not None and f["sessions_behind"] > limit)}
            components["freshness"] = {"status": "stale" if late and limit is not None else "ok",
                                       "required": limit is not None, "latency_ms": ms,
                                       "max_sessions_behind": limit, "pools": fresh}
        except Exception as exc:  # noqa: BLE001 - the store answered the health check but not the listing
            components["freshness"] = {"status": "down", "required": True, "latency_ms": None,
                                       "detail": f"{type(exc).__name__}: {str(exc)[:160]}"}
    else:
        components["freshness"] = {"status": "unknown", "required": settings.max_sessions_behind is not None,
                                   "latency_ms": None, "detail": "the store is down"}
    ready = all(c["status"] in ("up", "ok") for c in components.values() if c["required"])
    return ready, {"status": "ready" if ready else "not ready", "components": components}
