"""The attempts of one build: the first, then one per remedy its diagnoses name.

Each remedy is tried once, one per attempt, and a build takes at most ``build_attempts``
attempts (an attempt a lost worker left unfinished is done again, with its remedy, and is not
counted). Each attempt is an entry of the record's ``attempts``: {"number", "remedy", "status",
"diagnosis" (the primary category), "log" (the name of its stored log)}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from builder.build_job import BuildOutcome
from builder.config import Settings
from builder.errors import RemedyNotApplicable
from builder.records import BuildRecord, BuildStore
from builder.redis_retry import retry_redis

logger = logging.getLogger(__name__)
# (build id, queue, recovery number): sends the build's job again.
SendRecovered = Callable[[str, str, int], None]


class Attempts:
    """A build's attempts: the first, then one per remedy its diagnoses name, each remedy once, at
    most ``build_attempts`` (an attempt a lost worker left unfinished is done again with its remedy)."""

    def __init__(self, settings: Settings, record: BuildRecord, earlier: BuildRecord | None = None) -> None:
        self.settings = settings
        self.name = record.name
        # The record as the attempt before left it: its failure stands when a remedy finds nothing to change.
        self.earlier = earlier
        self.entries = [dict(a) for a in record.attempts]
        self.next: str | None = None
        for entry in self.entries:
            if entry.get("status") == "building":
                entry["status"] = "interrupted"
                self.next = entry.get("remedy")

    @property
    def counted(self) -> int:
        return sum(1 for e in self.entries if e.get("status") != "interrupted")

    def begin(self) -> dict[str, Any]:
        """The attempt this run makes: the one queued for it, or a new one."""
        if self.entries and self.entries[-1].get("status") == "queued":
            self.entries[-1]["status"] = "building"
            return self.entries[-1]
        number = len(self.entries) + 1
        entry = {"number": number, "remedy": self.next, "status": "building", "diagnosis": None}
        entry["log"] = f"attempt-{number}"
        self.entries.append(entry)
        return entry

    def queue_next(self, remedy: str) -> None:
        number = len(self.entries) + 1
        self.entries.append(
            {"number": number, "remedy": remedy, "status": "queued", "diagnosis": None, "log": f"attempt-{number}"}
        )

    def started_line(self, entry: dict[str, Any]) -> str | None:
        if entry["remedy"] is None:
            return None
        before = [e for e in self.entries[:-1] if e.get("status") != "interrupted"]
        said = "; ".join(f"attempt {e['number']} {e['status']}: {e.get('diagnosis') or 'undiagnosed'}" for e in before)
        return (
            f"wheelyard: attempt {entry['number']} (at most {self.settings.build_attempts}) "
            f"with the remedy {entry['remedy']}" + (f" ({said})" if said else "")
        )

    def choose(self, diagnosis: dict[str, Any] | None) -> str | None:
        """The remedy of the next attempt after a failed one with ``diagnosis``, or None."""
        from builder.remedies import next_remedy, remedies_allowed

        if self.counted >= self.settings.build_attempts or not remedies_allowed(self.settings, self.name):
            return None
        tried = [str(e["remedy"]) for e in self.entries if e.get("remedy")]
        primary = ((diagnosis or {}).get("primary") or {}).get("rule")
        earlier = [e.get("rule") for e in self.entries[:-1] if e.get("status") == "failed"]
        return next_remedy([primary, *earlier], tried)

    def end(self, outcome: BuildOutcome, changes: dict[str, Any]) -> str | None:
        """Record the attempt's outcome; the remedy of the next attempt, or None."""
        primary = (changes.get("diagnosis") or {}).get("primary") or {}
        # "rule": the cause's rule, whose other remedies may follow one that did not help.
        self.entries[-1].update(status=outcome.status, diagnosis=primary.get("category"), rule=primary.get("rule"))
        following: str | None = changes.pop("next_remedy", None)
        earlier = self.earlier
        if isinstance(outcome.error, RemedyNotApplicable) and earlier is not None and earlier.error is not None:
            # The build's error and diagnosis stay those of the failure the remedy was for; this
            # attempt's own reason is in its entry and its log.
            changes.update(error=earlier.error, diagnosis=earlier.diagnosis)
        return following

    def earlier_log(self, store: BuildStore, build_id: str) -> bytes:
        """The log of the attempt before this one when this one's remedy found nothing to change, else b""."""
        done = [e for e in self.entries[:-1] if e.get("status") not in ("interrupted", "queued")]
        if self.earlier is None or self.earlier.error is None or not done:
            return b""
        return store.read_attempt_log(build_id, str(done[-1]["log"])) or b""


class AttemptRetry:
    """Puts a build whose failed attempt names a remedy back in its queue for the next attempt: a
    job of its own, with the task's own time limits (the attempt's log is kept under its name)."""

    def __init__(
        self, store: BuildStore, build_id: str, mine: Callable[[BuildRecord], bool], send: SendRecovered
    ) -> None:
        self.store = store
        self.build_id = build_id
        self.mine = mine
        self.send = send

    def queue(self, attempts: Attempts, remedy: str, changes: dict[str, Any], *, queue: str, recovery: int) -> bool:
        """Whether the next attempt was queued; False leaves the outcome to be recorded as it is."""
        build_id, done = self.build_id, attempts.entries[-1]
        retry_redis(lambda: self.store.keep_attempt_log(build_id, str(done["log"])), f"build {build_id}: the log")
        attempts.queue_next(remedy)
        waiting = {**changes, "status": "queued", "step": f"to be tried again with the remedy {remedy}"}
        queued = retry_redis(
            lambda: self.store.update_if(build_id, self.mine, **waiting, attempts=attempts.entries),
            f"build {build_id}: queueing the next attempt",
        )
        if queued is None:
            logger.warning("build %s: taken over by another worker; no further attempt from here", build_id)
            return True
        try:
            self.send(build_id, queue, recovery)
        except Exception:  # noqa: BLE001 - the broker is away: the failed attempt is the outcome
            logger.exception("build %s: the next attempt could not be queued", build_id)
            attempts.entries.pop()
            retry_redis(
                lambda: self.store.update(build_id, **changes, attempts=attempts.entries),
                f"build {build_id}: recording the outcome",
            )
        return True
