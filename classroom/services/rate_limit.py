"""Frame intake budgets (token buckets in this process's memory): frames per participant, and
bytes per client address."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class FrameRateLimiter:
    """Per-participant token bucket, kept in this process's memory.

    Each participant has a bucket of ``burst`` tokens (3), refilled continuously at
    ``rate_factor / frame_interval_s`` tokens per second (1.5x the session's frame rate, so
    jitter and a slow client catching up pass, a flood does not). A frame costs one token;
    with no token left it is rejected with ``rate_limited``. State is per process: a student's
    socket lives in one server process, so the limit holds per connection; with several server
    processes a reconnecting student may get a fresh bucket (at most ``burst`` extra frames).
    Buckets idle for ``idle_ttl_s`` are dropped (by then they would be full anyway).
    Thread-safe.
    """

    def __init__(
        self,
        burst: float = 3.0,
        rate_factor: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
        idle_ttl_s: float = 120.0,
    ):
        self.burst = burst
        self.rate_factor = rate_factor
        self.clock = clock
        self.idle_ttl_s = idle_ttl_s
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def allow(self, key: int, frame_interval_s: float) -> bool:
        """Take one token from ``key``'s bucket.

        Args:
            key: participant id.
            frame_interval_s: the session's frame interval, seconds (> 0).

        Returns:
            Whether the frame may pass.
        """
        return self.take(key, 1.0, self.rate_factor / max(frame_interval_s, 1e-3), self.burst)

    def take(self, key, cost: float, rate: float, burst: float) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket of ``burst`` tokens refilled at ``rate``
        per second; nothing is taken when there are not enough.

        Returns:
            Whether the tokens were there.
        """
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            allowed = tokens >= cost - 1e-9  # tolerate float rounding of the refill
            if allowed:
                tokens = max(0.0, tokens - cost)
            self._buckets[key] = (tokens, now)
            self._calls += 1
            if self._calls % 1000 == 0:
                self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        stale = [key for key, (_, last) in self._buckets.items() if now - last > self.idle_ttl_s]
        for key in stale:
            del self._buckets[key]

    def forget(self, key: int) -> None:
        """Drop ``key``'s bucket."""
        with self._lock:
            self._buckets.pop(key, None)


#: The process-wide limiter used by ``intake.accept_frame``.
frame_rate_limiter = FrameRateLimiter()

#: Bytes per client address (``intake.accept_frame``): students behind one address share it, so
#: ten joins from one client do not multiply what it may make the server decode.
address_byte_budget = FrameRateLimiter()
