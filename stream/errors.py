"""The error tree; the type decides the policy.

    SegstreamError
    ├── PartitionLost     a write was fenced: another consumer owns the partition now.
    │                     Policy: drop that partition's batch (the new owner redoes it), go on.
    ├── StateLost         a partition's owner token or offset vanished: the state store lost
    │                     data (a Redis restart without persistence). Policy: publish nothing
    │                     more for it, log, count, exit non-zero; the restart rebuilds from the
    │                     log (its saved offset is gone, so it reads from the beginning).
    ├── DependencyError   Kafka or Redis failed. Policy: bounded retry, then exit non-zero so
    │                     the supervisor restarts us; stored offsets make the restart exact.
    └── AssignmentFailed  claiming newly assigned partitions failed. Policy: exit non-zero at
                          once: the broker thinks we own partitions we could not claim.

Bad input is not an exception: ``operators.decoding.decode_event`` returns ``Rejected`` and the
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


class StateLost(SegstreamError):
    def __init__(self, partitions: Collection[Partition]) -> None:
        super().__init__(
            f"the state store lost the state of {sorted(map(str, partitions))}: "
            "its owner token or saved offset is gone"
        )
        self.partitions = frozenset(partitions)


class DependencyError(SegstreamError):
    """Kafka or Redis did not answer as expected."""


class AssignmentFailed(SegstreamError):
    """The assignment listener failed; the consumer's view of its partitions is unreliable."""
