"""One trainer at a time: the lease holder learns and publishes; the other processes follow."""

from __future__ import annotations

import json

from stream.feeds.simulator import encode, generate_events
from stream.loop.processor import Processor
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import Parts, build_processor, in_memory_parts

# A 5-day horizon and daily labels, so tag labels arrive within a short simulated stream.
TAGS = json.dumps(
    [
        {
            "name": "soon",
            "kind": "predictive",
            "label": "purchase_within",
            "horizon_days": 5,
            "enter": 0.6,
            "exit": 0.4,
        }
    ]
)
SETTINGS = Settings(
    max_batch_records=300,
    snapshot_every_samples=500,
    train_sample_permille=1000,
    tags=TAGS,
    label_every_days=1,
)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1_000.0

    def time_s(self) -> float:
        return self.now_s


def process(models: InMemoryModelStore, clock: FakeClock, broker: InMemoryBroker) -> Processor:
    parts = in_memory_parts(SETTINGS, broker)
    return build_processor(
        SETTINGS, Parts(parts.source, parts.sink, InMemoryStateStore(), models), clock=clock
    )


def feed(broker: InMemoryBroker, events: list[dict[str, object]]) -> None:
    for event in events:
        broker.append(SETTINGS.input_topic, *encode(event))


def drain(processor: Processor) -> None:
    while processor.run_once():
        pass


def test_one_process_trains_and_the_others_score_with_its_models_until_it_dies() -> None:
    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    first_broker, second_broker = InMemoryBroker(), InMemoryBroker()
    first, second = process(models, clock, first_broker), process(models, clock, second_broker)
    other_users = list(generate_events(80, seed=4, days=40))
    feed(first_broker, list(generate_events(80, seed=3, days=40)))
    feed(second_broker, other_users[:2000])

    drain(first)  # takes the lease: trains and publishes
    assert first.publisher.leading and first.snapshot is not None
    assert models.load_tags()["soon"].ready
    clock.now_s += 11  # past a third of the lease: the second checks it again
    drain(second)
    assert not second.publisher.leading
    assert second.trainer is not None and second.trainer.samples == 0  # it never learned
    assert second.snapshot == models.load_snapshot() == first.snapshot  # it follows
    assert second.publisher.tag_models == models.load_tags()

    published = first.snapshot.version
    saved_labels = models.load_tags()["soon"].metrics["labels"]
    clock.now_s += 31  # the first process is gone: its lease expires
    feed(second_broker, other_users[2000:])
    drain(second)
    assert second.publisher.leading  # took over, from the published state
    assert second.trainer is not None and second.trainer.version >= published
    learner = next(iter(second.publisher.tag_trainers.values()))
    assert learner.labels > saved_labels  # resumed, not restarted
    assert second.snapshot is not None and second.snapshot.version > published


def test_the_trainer_adopts_a_model_imported_meanwhile_and_trains_on_above_it() -> None:
    from dataclasses import replace

    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    broker = InMemoryBroker()
    trainer = process(models, clock, broker)
    events = list(generate_events(120, seed=6, days=40))
    feed(broker, events[: len(events) // 2])
    drain(trainer)
    own = trainer.snapshot
    assert trainer.publisher.leading and own is not None
    imported = replace(own, version=own.version + 5, means=tuple(m + 0.5 for m in own.means))
    models.save(imported, None)  # what `segstream model import` of a file without trainer does
    clock.now_s += 11
    feed(broker, events[len(events) // 2 :])
    drain(trainer)
    assert trainer.publisher.leading
    assert trainer.snapshot is not None and trainer.snapshot.version > imported.version
    assert models.load_snapshot() == trainer.snapshot


def test_a_follower_republishing_a_lost_model_goes_above_the_versions_the_broker_knows() -> None:
    from stream.ports import Partition

    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    leader_broker, follower_broker = InMemoryBroker(), InMemoryBroker()
    leader, follower = (
        process(models, clock, leader_broker),
        process(models, clock, follower_broker),
    )
    events = list(generate_events(120, seed=8, days=40))
    feed(leader_broker, events[: len(events) // 3])
    feed(follower_broker, list(generate_events(40, seed=9, days=10)))
    drain(leader)
    clock.now_s += 11
    drain(follower)
    followed = follower.snapshot
    assert followed is not None and not follower.publisher.leading
    feed(leader_broker, events[len(events) // 3 :])
    drain(leader)  # more models, which the follower does not look at before the loss
    feed(leader_broker, events[-1:])  # a redelivery: a batch committed under the newest model
    drain(leader)
    newest = leader.snapshot
    assert newest is not None and newest.version > followed.version
    # One group: the leader's partitions carry its notes (the twin's consumer owns all four
    # partitions of its broker, so the leader's stands in as a fifth).
    leader_note = leader_broker.commits[Partition(SETTINGS.input_topic, 0)]
    follower_broker.commits[Partition(SETTINGS.input_topic, 4)] = leader_note

    models.lose_everything()  # Redis restarted empty: the lease is free
    clock.now_s += 11
    follower.run_once()  # takes the lease and republishes the model it scores with
    republished = models.load_snapshot()
    assert follower.publisher.leading and republished is not None
    assert republished.version > newest.version  # versions never go back
    assert republished.centers == followed.centers


def test_a_slow_stream_gets_a_first_model_after_the_wait_not_the_warmup() -> None:
    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    broker = InMemoryBroker()
    settings = Settings(
        max_batch_records=300, snapshot_every_samples=10_000, train_sample_permille=1000
    )
    parts = in_memory_parts(settings, broker)
    processor = build_processor(
        settings, Parts(parts.source, parts.sink, InMemoryStateStore(), models), clock=clock
    )
    events = list(generate_events(150, seed=6, days=1))  # an hour or so of a small shop
    half = len(events) // 2
    for event in events[:half]:
        broker.append(settings.input_topic, *encode(event))
    drain(processor)
    trainer = processor.trainer
    assert trainer is not None and 25 * settings.segments <= trainer.samples < 1000
    assert models.load_snapshot() is None  # the warm-up is far off...
    clock.now_s += settings.first_model_wait_s  # ...but a minute of training has passed
    for event in events[half:]:
        broker.append(settings.input_topic, *encode(event))
    drain(processor)
    published = models.load_snapshot()
    assert published is not None and published.version == 1
    assert len(published.centers) == settings.segments
    assert trainer.samples < 1000
