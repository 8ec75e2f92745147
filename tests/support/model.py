"""A trained model for tests that need one published: trained in memory, written as a model
file (``segstream model export``'s format) for ``segstream model import``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stream.feeds.simulator import encode
from stream.models.model_file import export_model
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.wiring import build_processor, in_memory_parts
from tests.support.servers import ordered_producer
from tests.support.service import Service

# Tags that learn quickly: labels a day apart over a 5-day horizon.
TAGS = json.dumps(
    [
        {
            "name": "churn_risk",
            "kind": "predictive",
            "label": "no_purchase_within",
            "horizon_days": 5,
            "enter": 0.6,
            "exit": 0.4,
        },
        {
            "name": "buys_soon",
            "kind": "predictive",
            "label": "purchase_within",
            "horizon_days": 5,
            "enter": 0.6,
            "exit": 0.4,
        },
        {"name": "quiet", "kind": "rule", "feature": "recency_days", "op": ">", "value": 7.0},
    ]
)
TRAINING = {
    "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES": "500",
    "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "1000",
    "SEGSTREAM_TAGS": TAGS,
    "SEGSTREAM_LABEL_EVERY_DAYS": "1",
}


def trained_model(events: Iterable[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Train on ``events`` in memory; write the model file to ``path`` and return it."""
    settings = Settings.from_env(TRAINING)
    broker = InMemoryBroker()
    parts = in_memory_parts(settings, broker)
    processor = build_processor(settings, parts)
    for event in events:
        broker.append(settings.input_topic, *encode(event))
    while processor.run_once():
        pass
    doc = export_model(parts.model_store)
    path.write_text(json.dumps(doc))
    return doc


# A service scoring with a fixed model: the published one, training switched off.
FROZEN = {
    "SEGSTREAM_TRAINING": "false",
    "SEGSTREAM_TAGS": TAGS,
    "SEGSTREAM_LABEL_EVERY_DAYS": "1",
    "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "200",
}


def frozen_service(
    log_dir: Path, model_file: Path, events: Iterable[dict[str, Any]], **overrides: str
) -> Service:
    """A service on topics and keys of its own, ``model_file`` imported with ``segstream model
    import``, training off, and ``events`` produced to its input topic."""
    log_dir.mkdir()
    service = Service(log_dir, **FROZEN, **overrides)
    imported = subprocess.run(
        [sys.executable, "-m", "stream", "model", "import", str(model_file)],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    producer = ordered_producer()
    for event in events:
        key, value = encode(event)
        producer.send(service.input_topic, key=key, value=value)
    producer.flush()
    producer.close()
    return service
