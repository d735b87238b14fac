"""Costly work bounded per workspace and overall: at most so many at once, taken without
waiting; one more is answered 429 with Retry-After, so one workspace's rule previews
cannot hold every server thread while other workspaces wait."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from intently.kit.errors import TooManyRequests


class Slots:
    """At most `per_workspace` holders per workspace and `total` in all (in this process)."""

    def __init__(self, what: str, *, per_workspace: int, total: int, retry_after_s: int) -> None:
        self.what = what
        self.per_workspace = per_workspace
        self.total = total
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._held: Counter[int] = Counter()

    @contextmanager
    def hold(self, ws: int) -> Iterator[None]:
        """A slot for the block, or TooManyRequests at once when none is free."""
        with self._lock:
            if self._held[ws] >= self.per_workspace:
                raise self._busy(f"{self.per_workspace} at once per workspace")
            if self._held.total() >= self.total:
                raise self._busy(f"{self.total} at once on this server")
            self._held[ws] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[ws] -= 1
                if not self._held[ws]:
                    del self._held[ws]

    def _busy(self, limit: str) -> TooManyRequests:
        return TooManyRequests(
            f"Too many {self.what} running: at most {limit}; retry in {self.retry_after_s} s",
            headers={"Retry-After": str(self.retry_after_s)},
        )
