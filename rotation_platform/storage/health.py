"""Health checks of the storage servers, as plain functions.

Each returns a :class:`~rotation_platform.storage.base.HealthStatus` and never raises: a server that
does not answer gives ``ok=False`` with the reason. Statuses name the server by URL and database
only; passwords and tokens are never part of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rotation_platform.storage.base import HealthStatus

__all__ = ["check_influx", "check_mysql", "check_redis", "check_directory", "check_storage", "redact_url"]


def redact_url(url: str) -> str:
    """``scheme://user@host:port/path`` without password or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def check_influx(url: str, database: str | None = None, *, username: str | None = None,
                 password: str | None = None, token: str | None = None, timeout_s: float = 3.0) -> HealthStatus:
    """``GET /ping`` (and, with ``database``, a ``SHOW MEASUREMENTS`` there) on an InfluxDB server."""
    import requests

    server = f"InfluxDB {redact_url(url)}" + (f" (database {database})" if database else "")
    headers = {"Authorization": f"Token {token}"} if token else {}
    auth = (username, password or "") if username and not token else None
    t0 = time.perf_counter()
    try:
        response = requests.get(url.rstrip("/") + "/ping", timeout=timeout_s, headers=headers, auth=auth)
        latency = (time.perf_counter() - t0) * 1000
        version = response.headers.get("X-Influxdb-Version")
        if response.status_code != 204:
            return HealthStatus("influxdb", server, False, latency, version,
                                f"ping answered HTTP {response.status_code}")
        detail = "ping ok"
        if database and not (version or "").lstrip("v").startswith(("2", "3")):
            q = requests.get(url.rstrip("/") + "/query", params={"db": database, "q": "SHOW MEASUREMENTS LIMIT 1"},
                             timeout=timeout_s, headers=headers, auth=auth)
            payload = q.json() if q.headers.get("Content-Type", "").startswith("application/json") else {}
            error = payload.get("error") or next((r.get("error") for r in payload.get("results", []) if "error" in r),
                                                 None)
            if q.status_code >= 300 or error:
                if error and "database not found" in str(error):
                    detail = "ping ok; database not created yet (created on first write)"
                else:
                    return HealthStatus("influxdb", server, False, latency, version,
                                        f"query answered HTTP {q.status_code}: {error or q.text[:120]}")
            else:
                detail = "ping and query ok"
        return HealthStatus("influxdb", server, True, latency, version, detail)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return HealthStatus("influxdb", server, False, None, None, f"no answer: {_reason(exc)}")


def check_mysql(url: str, password: str | None = None, *, location: str | None = None,
                timeout_s: float = 3.0) -> HealthStatus:
    """Connect and ``SELECT VERSION()`` on a MySQL/MariaDB server (``url``: SQLAlchemy URL)."""
    import pymysql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    server = location or f"MySQL {parsed.host or 'localhost'}:{parsed.port or 3306}/{parsed.database or ''}"
    t0 = time.perf_counter()
    try:
        conn = pymysql.connect(host=parsed.host or "localhost", port=parsed.port or 3306, user=parsed.username,
                               password=password if password is not None else (parsed.password or ""),
                               connect_timeout=max(1, int(timeout_s)), read_timeout=max(1, int(timeout_s)))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                version = cur.fetchone()[0]
        finally:
            conn.close()
        return HealthStatus("mysql", server, True, (time.perf_counter() - t0) * 1000, str(version), "query ok")
    except Exception as exc:  # noqa: BLE001
        return HealthStatus("mysql", server, False, None, None, f"no answer: {_reason(exc)}")


def check_redis(url: str, password: str | None = None, *, timeout_s: float = 1.0) -> HealthStatus:
    """``PING`` and ``INFO server`` on a Redis server."""
    import redis

    server = f"Redis {redact_url(url)}"
    t0 = time.perf_counter()
    try:
        client = redis.Redis.from_url(url, password=password, socket_timeout=timeout_s,
                                      socket_connect_timeout=timeout_s)
        try:
            client.ping()
            latency = (time.perf_counter() - t0) * 1000
            version = client.info("server").get("redis_version")
        finally:
            client.close()
        return HealthStatus("redis", server, True, latency, str(version), "ping ok")
    except Exception as exc:  # noqa: BLE001
        return HealthStatus("redis", server, False, None, None, f"no answer: {_reason(exc)}")


def check_directory(path: str | Path) -> HealthStatus:
    """The embedded store's folder exists (or can be created) and is writable."""
    from rotation_platform.storage.files import FileStore

    return FileStore(path).health()[0]


def check_storage(storage: Any, env: dict[str, str] | None = None) -> list[HealthStatus]:
    """Check every server a :class:`~rotation_platform.config.models.StorageConfig` uses: the data
    folder, InfluxDB and MySQL for their backends, Redis when ``redis_cache`` is on."""
    def secret(value: Any) -> str | None:
        return None if value is None else value.get_secret_value()

    out = [check_directory(storage.data_dir)]
    if storage.backend == "influxdb":
        out.append(check_influx(storage.influx_url, storage.influx_database, username=storage.influx_username,
                                password=secret(storage.influx_password), token=secret(storage.influx_token)))
    if storage.backend in ("influxdb", "mysql"):
        out.append(check_mysql(storage.mysql_url, secret(storage.mysql_password)))
    if storage.redis_cache:
        out.append(check_redis(storage.redis_url, secret(storage.redis_password)))
    return out
