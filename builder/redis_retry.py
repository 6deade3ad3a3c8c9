"""Writes that wait for a Redis that is away (a restart, a failover) instead of losing a build."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

logger = logging.getLogger(__name__)

# Errors of a Redis that is away (refused, reset, timed out, still loading its AOF): worth waiting for.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# How long a worker keeps trying to write a build's record while Redis is away.
REDIS_RETRY_SECONDS = 600.0

T = TypeVar("T")


def retry_redis(action: Callable[[], T], what: str, seconds: float = REDIS_RETRY_SECONDS) -> T:
    """``action()``, tried again with backoff while Redis is unreachable, for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            return action()
        except REDIS_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: Redis unavailable (%s); trying again in %.1f s", what, exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
