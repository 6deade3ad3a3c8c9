"""Building on a miss: the newest release for the client's target, and its closure.

Off unless a deployment turns it on (``build_on_miss``). Each miss is considered in the
API process and handed to one background thread, so the index's report is answered at once:

* never for a private name (``server/private.py``): a project on the index that people
  uploaded is theirs, whatever upstream holds under that name;
* at most once per (project, target) every ``build_on_miss_cooldown`` seconds, and at most
  ``build_on_miss_per_hour`` in all (Redis keys with a time to live, shared by every API
  process), so a client asking for made-up names, or a loop of them, costs little;
* what came of it is noted on the miss (``GET /api/misses``'s ``build``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from builder.config import Settings
from builder.errors import WheelyardError
from builder.records import PREFIX
from builder.targets import BuildTarget
from server.misses.misses import MissStore
from server.service import BuildService

logger = logging.getLogger(__name__)

# (project, target) -> what was asked for, in words for the miss's note.
Ensure = Callable[[str, BuildTarget], str]
# Misses waiting for the background thread, at most; more are dropped (and may come back).
MAX_PENDING = 32


def newest_with_closure(settings: Settings, service: BuildService) -> Ensure:
    """Ask for the newest release that fits the client's target and its whole closure, through the
    ensure core (resolved for that target's Python and platform)."""
    from server.ensure.api import make_ensurer
    from server.ensure.inputs import from_strings

    ensurer = make_ensurer(settings, service)

    def ensure(project: str, target: BuildTarget) -> str:
        report = ensurer.ensure(from_strings([project]), [target.identifier])
        if report.errors:
            first = report.errors[0]
            return f"not built: {first.get('message')} [{first.get('error')}]"
        pins = report.closures.get(target.identifier, [])
        counts = ", ".join(f"{n} {outcome}" for outcome, n in report.counts().items() if n)
        release = next((p for p in pins if p.split("==")[0] == project), project)
        return f"{release} and its closure ({len(pins)} distributions): {counts}"

    return ensure


class BuildOnMiss:
    def __init__(
        self,
        client: redis.Redis,
        misses: MissStore,
        ensure: Ensure,
        *,
        cooldown: int,
        per_hour: int,
    ) -> None:
        self.client = client
        self.misses = misses
        self.ensure = ensure
        self.cooldown = cooldown
        self.per_hour = per_hour
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="build-on-miss")
        self._pending = threading.BoundedSemaphore(MAX_PENDING)

    def consider(self, project: str, target: BuildTarget, *, private: bool) -> str:
        """Decide about one miss; hand it to the background thread when it is to be built."""
        if private:
            return self._note(project, target, "not built: a private project (uploaded to the index by people)")
        if not self._take(project, target):
            return "rate-limited"
        if not self._pending.acquire(blocking=False):
            self.client.delete(_cooldown_key(project, target))  # not taken on: may be asked again
            return "busy"
        self._note(project, target, "build requested")
        self._executor.submit(self._run, project, target)
        return "build requested"

    def _take(self, project: str, target: BuildTarget) -> bool:
        if not self.client.set(_cooldown_key(project, target), "1", nx=True, ex=max(1, self.cooldown)):
            return False
        window = f"{PREFIX}on-miss:hour:{int(time.time() // 3600)}"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(window)
            pipe.expire(window, 3600)
            taken, _ = pipe.execute()
        return int(taken) <= self.per_hour

    def _run(self, project: str, target: BuildTarget) -> None:
        try:
            outcome = self.ensure(project, target)
        except WheelyardError as exc:
            outcome = f"not built: {exc.message} [{exc.reference}]"
        except Exception:  # noqa: BLE001 - the thread lives on; the log says what broke
            logger.exception("build on a miss of %s for %s failed", project, target)
            outcome = "not built: an unexpected error (see the API's log)"
        finally:
            self._pending.release()
        logger.info("build on miss: %s %s: %s", project, target, outcome)
        self._note(project, target, outcome)

    def _note(self, project: str, target: BuildTarget, outcome: str) -> str:
        try:
            self.misses.note_build(project, target.identifier, outcome)
        except redis.RedisError:
            logger.warning("could not note the build on a miss of %s: Redis is unavailable", project)
        return outcome

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _cooldown_key(project: str, target: BuildTarget) -> str:
    return f"{PREFIX}on-miss:{project}@{target.identifier}"
