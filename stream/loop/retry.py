"""Bounded retries of a step that talks to Kafka or Redis (the error tree's DependencyError)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from stream.errors import DependencyError
from stream.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_retries(
    what: str,
    action: Callable[[], T],
    attempts: int,
    metrics: Metrics,
    sleep: Callable[[float], None],
) -> T:
    """``action()``, retried with exponential backoff (0.5 s doubling, at most 10 s) on a
    DependencyError, ``attempts`` times in all; the last failure is re-raised."""
    attempt = 0
    while True:
        try:
            return action()
        except DependencyError as exc:
            attempt += 1
            metrics.failed(what, exc)
            if attempt >= attempts:
                log.error("%s failed %d times, giving up: %s", what, attempt, exc)
                raise
            delay = min(0.5 * 2 ** (attempt - 1), 10.0)
            log.warning("%s failed (%s); retry %d in %.1f s", what, exc, attempt, delay)
            sleep(delay)
