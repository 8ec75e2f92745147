"""``segstream serve``: the service, consuming from Kafka until SIGTERM or SIGINT, with its
``/metrics`` and ``/healthz`` server; exits 69 when a dependency stays unavailable, 75 after a
state loss (restart it: it rebuilds the lost partitions from the log), 78 when Redis holds an
earlier layout's keys (``segstream migrate``)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from stream import __version__
from stream.settings import Settings

log = logging.getLogger("segstream")


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; the batch in hand is finished before exiting."""
    from prometheus_client import CollectorRegistry

    from stream.errors import AssignmentFailed, DependencyError, StateLost
    from stream.http import HttpServer
    from stream.loop.failpoints import checkpoint_from_env
    from stream.redis.layout import LayoutError
    from stream.wiring import build_processor, kafka_redis_parts, ready_to_serve

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    registry = CollectorRegistry()
    try:
        parts = kafka_redis_parts(settings)
        processor = build_processor(
            settings, parts, registry=registry, checkpoint=checkpoint_from_env(os.environ)
        )
    except DependencyError as exc:
        log.error("cannot start: %s", exc)
        return 69  # EX_UNAVAILABLE: the supervisor should retry later
    except LayoutError as exc:
        log.error("cannot start: %s", exc)
        return 78  # EX_CONFIG: a person must run the migration
    ready_to_serve()
    stale_after_s = max(30.0, 10 * settings.poll_timeout_s)
    http = HttpServer(
        settings.http_host,
        settings.http_port,
        registry,
        healthy=lambda: processor.healthy(stale_after_s),
    )
    http.start()
    log.info(
        "segstream %s serving: %s -> %s (dlq %s), metrics on :%d",
        __version__,
        settings.input_topic,
        settings.output_topic,
        settings.dlq_topic,
        http.port,
    )
    code = 0
    try:
        processor.run(stop.is_set)
    except (DependencyError, AssignmentFailed) as exc:
        log.error("giving up: %s", exc)
        code = 69
    except StateLost:
        code = 75  # EX_TEMPFAIL: restart us; we rebuild the lost partitions from the log
    finally:
        http.close()
        for close in (parts.source.close, parts.sink.close, parts.state_store.close):
            try:
                close()
            except Exception as exc:  # closing is best effort; the state is already saved
                log.warning("error while closing: %s", exc)
    log.info("stopped after %d batches", processor.batches)
    return code
