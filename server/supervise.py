"""Children kept running: each one that ends is started again, after a pause that grows.

``wheelyard up`` supervises its index, API, worker and embedded Redis with these. A child
that ends (a crash, kill -9, the OOM killer) is logged with how it ended and started again
after ``Backoff.first`` seconds, doubling for each end in a row up to ``Backoff.longest``;
a child that ran ``Backoff.stable_after`` seconds counts as healthy again, so its next end
starts from the first pause. A start that fails is retried the same way.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from builder.errors import WheelyardError


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    longest: float = 30.0
    stable_after: float = 60.0

    def pause(self, ends_in_a_row: int) -> float:
        return float(min(self.longest, self.first * 2 ** max(0, ends_in_a_row - 1)))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervised:
    """One child: ``start()`` starts it (what it returns is not used), ``returncode()`` is None while it runs."""

    def __init__(
        self,
        name: str,
        start: Callable[[], object],
        returncode: Callable[[], int | None],
        log: TextIO,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._start = start
        self._returncode = returncode
        self._log = log
        self.backoff = backoff
        self._clock = clock
        self.restarts = 0
        self._ends_in_a_row = 0
        self._started_at = clock()
        self._due: float | None = None  # when a child that ended is started again

    def check(self) -> None:
        """Notice an end, or start the child again once its pause is over; call it often."""
        now = self._clock()
        if self._due is None:
            returncode = self._returncode()
            if returncode is not None:
                self._ended(f"{describe_exit(returncode)} after {now - self._started_at:.0f} s", now)
        elif now >= self._due:
            self._restart(now)

    def _ended(self, how: str, now: float) -> None:
        healthy = now - self._started_at >= self.backoff.stable_after
        self._ends_in_a_row = 1 if healthy else self._ends_in_a_row + 1
        pause = self.backoff.pause(self._ends_in_a_row)
        self._due = now + pause
        self._say(f"the {self.name} {how}; starting it again in {pause:.0f} s")

    def _restart(self, now: float) -> None:
        try:
            self._start()
        except (WheelyardError, OSError) as exc:
            self._started_at = now
            self._ended(f"did not start ({exc.message if isinstance(exc, WheelyardError) else exc})", now)
            return
        self.restarts += 1
        self._started_at = now
        self._due = None
        self._say(f"the {self.name} started again (restart {self.restarts})")

    def _say(self, message: str) -> None:
        self._log.write(f"wheelyard: {message}\n")
        self._log.flush()
