"""Failed sign-ins, counted per email, per client address and per (email, address), to
slow password guessing without letting a guesser lock the real user out.

- An address with `per_address` failures in the window (any emails: spraying) waits.
- An email with `per_email` failures in the window (from any addresses) is locked, but
  only for the addresses that have themselves failed for that email in the window: the
  user, from an address that has not failed, still signs in with the right password. A
  guesser spread over many addresses thus gets one try per address before the lock holds
  it too.

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
        self._failures: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, email: str, address: str) -> int:
        """Seconds until this email and address may try again (0: now)."""
        email = email.strip().lower()
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            checks = [("address", self._recent(("address", address), now))]
            # The account's lock holds only the addresses that failed for it themselves.
            if self._recent(("pair", email, address), now):
                checks.append(("email", self._recent(("email", email), now)))
            for kind, times in checks:
                if len(times) >= self.limits[kind]:
                    wait = max(wait, times[0] + self.window_s - now)
        return int(wait) + 1 if wait > 0 else 0

    def failed(self, email: str, address: str) -> None:
        email = email.strip().lower()
        now = time.monotonic()
        with self._lock:
            keys: list[tuple[str, ...]] = [("email", email), ("address", address)]
            keys.append(("pair", email, address))
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # keep memory bounded under a flood
                for empty in [k for k, v in self._failures.items() if not v]:
                    del self._failures[empty]

    def succeeded(self, email: str, address: str) -> None:
        """The right password: the account's count and this address's count for it go."""
        email = email.strip().lower()
        with self._lock:
            self._failures.pop(("email", email), None)
            self._failures.pop(("pair", email, address), None)


throttle = LoginThrottle()
