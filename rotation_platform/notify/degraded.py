"""Degraded service during a run: what worked around a problem instead of failing.

A run that succeeded may still have leaned on a fallback: the Redis cache bypassed because Redis did not
answer (results came from the store), a store that answered only after retries, a step that Dagster ran
again (``RetryRequested``). :class:`DegradedService` gathers those facts from what a run recorded -- its
steps' retries, its warnings and the storage metadata of its outputs -- and renders one
``degraded: ...`` line per problem (per server, per step), for the console report and the alerts.

Pure library code: the caller reads the run's events (``jobs.sensors.degraded_service``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DegradedService"]

# rotation_platform.storage.cache.RedisCache: "<server>: <op> failed (<error>); continuing without the cache ..."
_CACHE_DOWN = re.compile(r"^(?P<server>Redis \S+): (?P<op>.+?) failed \((?P<error>.*)\); continuing without the cache")
# rotation_platform.storage.base.call_with_retries: "<server>: <action> failed (attempt i/n: <reason>); retrying ..."
_STORE_RETRY = re.compile(r"^(?P<server>.+?): (?P<action>.+?) failed \(attempt (?P<attempt>\d+)/(?P<of>\d+): "
                          r"(?P<reason>.*)\); retrying in")


def _short(text: object, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class DegradedService:
    """The degraded-service facts of one or more runs, deduplicated (one line per server or step)."""

    cache_down: dict[str, str] = field(default_factory=dict)          # server -> first error
    store_retries: dict[str, list] = field(default_factory=dict)      # server -> [count, action, reason]
    step_retries: dict[str, list] = field(default_factory=dict)       # step -> [count, reason]
    unhealthy: dict[str, str] = field(default_factory=dict)           # server -> detail

    def add_warning(self, message: str) -> None:
        """A warning the run logged (the cache's and the stores' messages are recognised)."""
        text = " ".join(str(message).split())
        m = _CACHE_DOWN.match(text)
        if m:
            self.cache_down.setdefault(m["server"], _short(m["error"]))
            return
        m = _STORE_RETRY.match(text)
        if m:
            entry = self.store_retries.setdefault(m["server"], [0, m["action"], _short(m["reason"])])
            entry[0] += 1

    def add_step_retry(self, step: str, reason: str = "") -> None:
        entry = self.step_retries.setdefault(step, [0, _short(reason)])
        entry[0] += 1
        if reason and not entry[1]:
            entry[1] = _short(reason)

    def add_metadata(self, metadata: Mapping[str, Any]) -> None:
        """An output's storage metadata (``resources.io_managers``): ``cache`` and ``storage_health``."""
        cache = metadata.get("cache")
        if isinstance(cache, Mapping) and (cache.get("available") is False or cache.get("last_error")):
            server = str(cache.get("server") or "Redis")
            known = [s for s in self.cache_down if s.startswith("Redis")]
            if not known:
                self.cache_down.setdefault(server, _short(cache.get("last_error") or "not answering"))
        health = metadata.get("storage_health")
        if isinstance(health, Iterable) and not isinstance(health, (str, bytes, Mapping)):
            for entry in health:
                if isinstance(entry, Mapping) and entry.get("ok") is False:
                    self.unhealthy.setdefault(str(entry.get("server", "?")), _short(entry.get("detail", "")))

    def __bool__(self) -> bool:
        return bool(self.cache_down or self.store_retries or self.step_retries or self.unhealthy)

    def lines(self) -> list[str]:
        """``degraded: ...`` lines: the cache bypassed, stores retried, steps retried, servers unhealthy."""
        out = []
        for server, error in self.cache_down.items():
            out.append(f"degraded: {server} did not answer ({error}); the cache was bypassed and every value "
                       f"came from the store")
        for server, (count, action, reason) in self.store_retries.items():
            out.append(f"degraded: {server} needed {count} retr{'y' if count == 1 else 'ies'} ({action}: {reason})")
        for step, (count, reason) in self.step_retries.items():
            why = f" after: {reason}" if reason else ""
            out.append(f"degraded: step {step} was retried {count} time{'s' if count != 1 else ''}{why}")
        covered = set(self.cache_down) | set(self.store_retries)
        for server, detail in self.unhealthy.items():
            if server in covered or (server.startswith("Redis") and any(s.startswith("Redis") for s in covered)):
                continue
            out.append(f"degraded: {server} failed its health check ({detail})")
        return out
