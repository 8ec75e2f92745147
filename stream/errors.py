"""The error tree; the type decides the policy.

    SegstreamError
    ├── PartitionLost     a write was fenced: another consumer owns the partition now.
    │                     Policy: drop that partition's batch (the new owner redoes it), go on.
    ├── DependencyError   Kafka or Redis failed. Policy: bounded retry, then exit non-zero so
    │                     the supervisor restarts us; stored offsets make the restart exact.
    └── AssignmentFailed  claiming newly assigned partitions failed. Policy: exit non-zero at
                          once: the broker thinks we own partitions we could not claim.

Bad input is not an exception: ``operators.events.decode_event`` returns ``Rejected`` and the
loop dead-letters it. Anything else is a bug: logged once and re-raised.
"""

from __future__ import annotations

from collections.abc import Collection

from stream.ports import Partition


class SegstreamError(Exception):
    """Base of segstream's own errors."""


class PartitionLost(SegstreamError):
    def __init__(self, partitions: Collection[Partition]) -> None:
        super().__init__(f"fenced: no longer the owner of {sorted(partitions)}")
        self.partitions = frozenset(partitions)


class DependencyError(SegstreamError):
    """Kafka or Redis did not answer as expected."""


class AssignmentFailed(SegstreamError):
    """The assignment listener failed; the consumer's view of its partitions is unreliable."""
