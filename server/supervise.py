"""Children kept running: each one that ends is started again, after a pause that grows.

``wheelyard up`` supervises its index, API, worker and embedded Redis with these. A child
that ends (a crash, kill -9, the OOM killer) is logged with how it ended and started again
after ``Backoff.first`` seconds, doubling for each end in a row up to ``Backoff.longest``;
a child that ran ``Backoff.stable_after`` seconds counts as healthy again, so its next end
starts from the first pause. A start that fails is retried the same way.

A child that can never start (its interpreter check fails, its configuration is refused)
would be restarted for ever: after ``Backoff.give_up_after`` quick ends in a row it is given
up on, with a record that says why (how it ended, and its last error line), while the rest
of the stack runs on.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from builder.errors import WheelyardError

logger = logging.getLogger("wheelyard.supervise")


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    longest: float = 30.0
    stable_after: float = 60.0
    give_up_after: int = 5  # quick ends in a row (each before stable_after), then no more starts

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
    """One child: ``start()`` starts it (what it returns is not used), ``returncode()`` is None while it runs;
    ``last_words()`` is the last error line it wrote, if known; ``out`` hears that it was given up on."""

    def __init__(
        self,
        name: str,
        start: Callable[[], object],
        returncode: Callable[[], int | None],
        log: TextIO | None = None,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
        last_words: Callable[[], str | None] = lambda: None,
        out: TextIO | None = None,
    ) -> None:
        self.name = name
        self._start = start
        self._returncode = returncode
        self._log = log
        self._out = out
        self._last_words = last_words
        self.backoff = backoff
        self._clock = clock
        self.restarts = 0
        self.given_up: str | None = None  # why, once it is no longer started again
        self._ends_in_a_row = 0
        self._started_at = clock()
        self._due: float | None = None  # when a child that ended is started again

    def check(self) -> None:
        """Notice an end, or start the child again once its pause is over; call it often."""
        if self.given_up is not None:
            return
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
        if self._ends_in_a_row > self.backoff.give_up_after:
            self._give_up(how)
            return
        pause = self.backoff.pause(self._ends_in_a_row)
        self._due = now + pause
        self._say(f"the {self.name} {how}; starting it again in {pause:.0f} s")

    def _give_up(self, how: str) -> None:
        words = self._last_words()
        self.given_up = (
            f"the {self.name} is not started again: it ended {self._ends_in_a_row} times in a row, each within "
            f"{self.backoff.stable_after:.0f} s of its start (last: {how})" + (f"; it said: {words}" if words else "")
        )
        self._say(self.given_up + "; the rest of the stack runs on", level=logging.ERROR)
        if self._out is not None:
            self._out.write(f"wheelyard: {self.given_up}\n")
            self._out.flush()

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

    def _say(self, message: str, level: int = logging.WARNING) -> None:
        if self._log is not None:
            self._log.write(f"wheelyard: {message}\n")
            self._log.flush()
        else:
            logger.log(level, "wheelyard: %s", message)
