"""The composition root: the one place parts are built and connected.

``build_processor`` takes any implementation of the ports; ``kafka_redis_parts`` builds the real
ones and ``in_memory_parts`` the twins. Nothing connects at import time.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from operators.events import EventLimits
from operators.features import DAY_MS
from operators.pipeline import PipelineConfig, warm_up
from operators.tags import usable_models
from stream import __version__
from stream.connections import confluent_options, kafka_python_options, redis_client
from stream.loop.metered import MeteredModelStore, MeteredSink, MeteredStateStore
from stream.loop.outputs import Topics
from stream.loop.processor import LoopConfig, Processor
from stream.loop.rebuild import notes_model_version
from stream.metrics import Metrics
from stream.models.publisher import Publisher, resume
from stream.ports import Clock, EventSource, ModelStore, Sink, StateStore
from stream.redis.layout import check_layout, listpack_advice
from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import RedisStateStore
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker, InMemoryEventSource, InMemorySink
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore

log = logging.getLogger(__name__)


class SystemClock:
    def time_s(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class Parts:
    source: EventSource
    sink: Sink
    state_store: StateStore
    model_store: ModelStore


def kafka_source(settings: Settings) -> EventSource:
    """The input topic's consumer, on the client ``SEGSTREAM_KAFKA_CLIENT`` names."""
    if settings.kafka_client == "kafka-python":
        from stream.kafka.kafka_python import KafkaEventSource

        return KafkaEventSource(
            settings.kafka_bootstrap,
            settings.input_topic,
            settings.group,
            session_timeout_ms=settings.session_timeout_ms,
            max_poll_records=settings.max_batch_records,
            **kafka_python_options(settings),
        )
    from stream.kafka.confluent import ConfluentEventSource

    return ConfluentEventSource(
        settings.kafka_bootstrap,
        settings.input_topic,
        settings.group,
        session_timeout_ms=settings.session_timeout_ms,
        **confluent_options(settings),
    )


def kafka_sink(settings: Settings, *, bulk: bool = False) -> Sink:
    """An idempotent producer on the chosen client; ``bulk`` batches more (replay, produce)."""
    if settings.kafka_client == "kafka-python":
        from stream.kafka.kafka_python import KafkaSink

        batching = {"linger_ms": 20, "batch_size": 256 * 1024} if bulk else {}
        return KafkaSink(settings.kafka_bootstrap, **batching, **kafka_python_options(settings))
    from stream.kafka.confluent import ConfluentSink

    return ConfluentSink(settings.kafka_bootstrap, bulk=bulk, **confluent_options(settings))


def kafka_redis_parts(settings: Settings) -> Parts:
    """The real parts; ``LayoutError`` if Redis holds an earlier layout's keys."""
    client = redis_client(settings)
    check_layout(client, settings.key_prefix, settings.input_topic)
    advice = listpack_advice(client)
    if advice:
        log.warning("%s (docs/sizing.md)", advice)
    return Parts(
        source=kafka_source(settings),
        sink=kafka_sink(settings),
        state_store=RedisStateStore(client, settings.key_prefix, settings.redis_buckets),
        model_store=RedisModelStore(client, settings.key_prefix),
    )


def in_memory_parts(settings: Settings, broker: InMemoryBroker) -> Parts:
    return Parts(
        source=InMemoryEventSource(broker, settings.input_topic),
        sink=InMemorySink(broker),
        state_store=InMemoryStateStore(),
        model_store=InMemoryModelStore(),
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    """What the operators read of the settings."""
    return PipelineConfig(
        settings.segment_feature_names,
        settings.train_sample_permille,
        settings.switch_margin,
        settings.switch_after,
        late_grace_ms=settings.late_grace_s * 1000,
        rescore_interval_ms=settings.rescore_interval_s * 1000,
        max_idle_ms=settings.max_idle_days * DAY_MS,
        tags=settings.tag_definitions,
        alert_tags=settings.alert_tag_names,
        label_every_ms=settings.label_every_days * DAY_MS,
    )


def build_processor(
    settings: Settings,
    parts: Parts,
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    segment_training: bool = True,
    **processor_options: object,
) -> Processor:
    """Connect the parts into a ``Processor`` subscribed to its source. ``segment_training``
    off: no segment model is trained (a replay that judges only the tags)."""
    metrics = Metrics(
        registry if registry is not None else CollectorRegistry(),
        __version__,
        input_topic=settings.input_topic,
        output_topics=(
            settings.output_topic,
            settings.dlq_topic,
            settings.late_topic,
            settings.alert_topic,
        ),
        tags=[t.name for t in settings.tag_definitions],
        predictive_tags=[t.name for t in settings.tag_definitions if t.kind == "predictive"],
        alert_tags=settings.alert_tag_names,
    )
    # Every call to the stores (Redis in production) and every delivery is measured.
    parts = Parts(
        parts.source,
        MeteredSink(parts.sink, metrics),
        MeteredStateStore(parts.state_store, metrics),
        MeteredModelStore(parts.model_store, metrics),
    )
    snapshot, trainer = resume(
        *parts.model_store.load(),
        features=settings.segment_feature_names,
        segments=settings.segments,
        snapshot_every=settings.snapshot_every_samples,
        seed=settings.model_seed,
    )
    config = LoopConfig(
        topics=Topics(
            settings.output_topic,
            settings.dlq_topic,
            settings.late_topic,
            settings.alert_topic,
            settings.membership_topic,
            settings.dlq_max_bytes,
        ),
        sweep_batch_users=settings.sweep_batch_users,
        max_batch_records=settings.max_batch_records,
        poll_timeout_s=settings.poll_timeout_s,
        limits=EventLimits(
            settings.max_message_bytes, settings.min_event_ms, settings.max_future_s * 1000
        ),
        retry_attempts=settings.retry_attempts,
        pipeline=pipeline_config(settings),
    )
    clock = clock or SystemClock()
    tag_models = usable_models(parts.model_store.load_tags(), settings.tag_definitions)
    publisher = Publisher(
        trainer=trainer if segment_training else None,
        tags=settings.tag_definitions,
        model_store=parts.model_store,
        sink=parts.sink,
        metrics=metrics.model,
        clock=clock,
        output_topic=settings.output_topic,
        snapshot=snapshot,
        tag_models=tag_models,
        lease_ms=settings.trainer_lease_s * 1000,
        first_model_wait_s=settings.first_model_wait_s,
        training=settings.training,
        broker_version=lambda: notes_model_version(parts.source.committed()),
    )
    processor = Processor(
        source=parts.source,
        sink=parts.sink,
        state_store=parts.state_store,
        publisher=publisher,
        metrics=metrics,
        clock=clock,
        config=config,
        **processor_options,  # type: ignore[arg-type]
    )
    parts.source.subscribe(processor.partitions)
    return processor


def ready_to_serve() -> None:
    """After building the processor, before its first batch: load the compiled steps now, and
    take everything built so far (modules, models, clients: ~200,000 objects that live as long
    as the process) out of the garbage collector's generations, so a full collection walks
    only what the batches create. Without it, full collections took 16% of the CPU."""
    warm_up()
    gc.freeze()
