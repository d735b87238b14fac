"""Failed sign-ins, counted per email and per client address, to slow password guessing.

Kept in this process's memory: with several server processes each counts its own (the
limits then multiply by the process count). A shared limiter belongs with the API rate
limits (production readiness), which will hold their counts in the database."""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_S = 15 * 60
PER_EMAIL = 10
PER_ADDRESS = 50


class LoginThrottle:
    def __init__(
        self, window_s: float = WINDOW_S, per_email: int = PER_EMAIL, per_address: int = PER_ADDRESS
    ):
        self.window_s = window_s
        self.limits = {"email": per_email, "address": per_address}
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, email: str, address: str) -> int:
        """Seconds until this email and address may try again (0: now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for kind, value in (("email", email.strip().lower()), ("address", address)):
                times = self._recent((kind, value), now)
                if len(times) >= self.limits[kind]:
                    wait = max(wait, times[0] + self.window_s - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, email: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (("email", email.strip().lower()), ("address", address)):
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # keep memory bounded under a flood
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._failures.pop(("email", email.strip().lower()), None)


throttle = LoginThrottle()
