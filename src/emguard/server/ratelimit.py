"""Token buckets (in the API process): per key, ``requests_per_second`` refill and ``burst`` capacity; and per
client address for requests with an invalid key (``BAD_KEY_RATE``, ``BAD_KEY_BURST``)."""

from __future__ import annotations

import threading
import time

BAD_KEY_RATE = 1.0  # failed authentications per second and client address, refilled
BAD_KEY_BURST = 20
MAX_BUCKETS = 100_000  # full buckets are dropped beyond this many (memory stays bounded under many addresses)


class RateLimiter:
    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = float(rate), float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds to wait before the next one would."""
        with self._lock:
            t = time.monotonic()
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if len(self._buckets) > MAX_BUCKETS:
                self._prune(t)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0.0
            self._buckets[key] = (tokens, t)
            return (1.0 - tokens) / self.rate

    def _prune(self, t: float) -> None:
        full = [k for k, (tok, last) in self._buckets.items() if tok + (t - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) > MAX_BUCKETS:  # still too many: forget the oldest half
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[:len(self._buckets) // 2]:
                del self._buckets[k]
