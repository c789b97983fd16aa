"""Rate limits per API key: a token bucket each (``rate`` tokens a second up to ``burst``).

A request takes one token; with none left it is answered 429 with ``Retry-After`` -- the whole seconds
until a token is back. Buckets live in the API process (one uvicorn worker: the limit holds exactly;
with N workers a key gets up to N times the rate).
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["TokenBuckets"]


class TokenBuckets:
    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self._clock = float(rate), float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead (a token taken), else the seconds to wait (Retry-After)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
