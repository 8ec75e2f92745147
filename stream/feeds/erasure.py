"""Erasure requests (GDPR), published on the input topic for the partitions' owners to apply;
``segstream erase`` and the API's ``DELETE /v1/users/{id}`` both send them through here."""

from __future__ import annotations

import time
import uuid

from operators.erasure import encode_erase_request
from stream.ports import Sink


def request_erasure(topic: str, user_id: str, requested_by: str, via: str, producer: Sink) -> str:
    """Publish an erasure request for ``user_id`` on every partition of the input topic; return
    its id once the broker acknowledged them all.

    Every partition, not the one the key hashes to: producers place keys with their own
    partitioner (Java's murmur2, librdkafka's CRC32, ...), so only the partitions' owners know
    where the user's state lives. Each applies the request in order with its partition's
    events; where it holds no state, the request is only audited. The request's id is made
    here, not in the pure core: a random id, so two requests for one user stay apart."""
    erase_id = f"erase-{uuid.uuid4().hex}"
    key, value = encode_erase_request(user_id, requested_by, via, int(time.time() * 1000), erase_id)
    for partition in range(producer.partitions(topic)):
        producer.send(topic, key, value, partition)
    producer.flush()
    return erase_id
