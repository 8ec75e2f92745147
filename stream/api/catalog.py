"""What ``segstream api`` reads: the state store, through a cache of what changes rarely.

The API is stateless and apart from the consumers: it reads the same Redis. The published
models, the analysts' segment names and the input topic's partitions change rarely, so a
background task refreshes them (``REFRESH_S``, ``PARTITIONS_REFRESH_S``); a request then costs
one round trip to Redis (one pipeline: the user's field in its bucket under every partition,
and the partitions' watermarks; a Redis Cluster client sends each node its part at once), whatever
partitioner the producers used. A miss looks for partitions
saved since the last scan (at most every ``MISS_RESCAN_S``), so a partition whose consumer saved
its first batch a moment ago is found without waiting for the periodic scan.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis

from operators.inspection import describe_user
from operators.record import unpack_state
from operators.segments import SegmentSnapshot, segment_names, segment_profiles
from operators.tags import TagDefinition, TagModel, usable_models
from stream.connections import async_redis_client, redis_client
from stream.errors import DependencyError
from stream.ports import Partition
from stream.redis.client import ERRORS, AsyncClient, Client
from stream.redis.compact import expand
from stream.redis.model_store import RedisModelStore, names_key
from stream.redis.scripts import USER_SCRIPT
from stream.redis.state_store import RedisStateStore, bucket_of, total_sizes
from stream.settings import Settings

log = logging.getLogger(__name__)
REFRESH_S = 2.0
PARTITIONS_REFRESH_S = 30.0  # a topic's partitions are added rarely, and by hand
MISS_RESCAN_S = 0.5  # a miss looks for new partitions at most this often
MAX_NAME_LENGTH = 80
# Bidirectional overrides, embeddings, isolates and marks: they reorder what a name shows.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def clean_segment_name(name: str) -> str:
    """An analyst's segment name as stored: NFC, trimmed, plain text on one line. It shows on
    dashboards, in change events and downstream UIs, so control and bidi characters (which
    hide or reorder text) and markup are refused (``ValueError``), not silently removed."""
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise ValueError("the name is empty")
    for char in name:
        if unicodedata.category(char) in {"Cc", "Cs", "Co", "Cn", "Zl", "Zp"}:
            raise ValueError(f"the name has a control character (U+{ord(char):04X})")
        if char in _BIDI_CONTROLS:
            raise ValueError(f"the name has a bidirectional control (U+{ord(char):04X})")
        if char in "<>":
            raise ValueError("the name is plain text: no markup (< or >)")
    return name


@dataclass
class Catalog:
    """The cached models, names and partitions, and the reads of a request."""

    settings: Settings
    client: AsyncClient
    sync_client: Client
    snapshot: SegmentSnapshot | None = None
    tag_models: dict[str, TagModel] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # the analysts'
    segment_names: dict[int, str] = field(default_factory=dict)  # every segment's, as shown
    lineage: dict[int, dict[str, Any]] = field(default_factory=dict)  # each segment's history
    # The partitions with a saved offset, each one's key prefix, watermark key and buckets.
    layout: tuple[list[Partition], list[str], list[str], list[int]] = ([], [], [], [])
    _published: tuple[bytes | None, bytes | None] | None = None
    _partitions_due: float = 0.0
    _scanned_at: float = float("-inf")  # when the last scan of the partitions started
    _scanning: asyncio.Lock = field(default_factory=asyncio.Lock)

    primary: AsyncClient | None = None  # where names are written; None: ``client``
    tag_definitions: tuple[TagDefinition, ...] = field(
        init=False
    )  # parsed once: requests read them

    def __post_init__(self) -> None:
        self.tag_definitions = self.settings.tag_definitions
        self._user_script = self.client.register_script(USER_SCRIPT)

    @classmethod
    def connect(cls, settings: Settings) -> Catalog:
        """Reads from ``SEGSTREAM_API_REDIS_URL`` (a replica, say) if set; writes to the
        consumers' Redis."""
        reads = settings.api_redis_url or settings.redis_url
        return cls(
            settings,
            async_redis_client(settings, reads),
            redis_client(settings, reads, timeout_s=5),
            primary=async_redis_client(settings),
        )

    @property
    def _store(self) -> RedisStateStore:
        return RedisStateStore(self.sync_client, self.settings.key_prefix)

    def refresh(self) -> None:
        """Reload the models if they changed, the names, and now and then the partitions
        (blocking: run it in a thread)."""
        models = RedisModelStore(self.sync_client, self.settings.key_prefix)
        published = models.load_published()
        if published != self._published:  # parse only what changed: it holds the GIL
            self.snapshot, tags = models.parse_published(*published)
            self.tag_models = usable_models(tags, self.settings.tag_definitions)
            self.lineage = models.load_lineage()  # written with each model
            self._published = published
        self._name(models.load_segment_names())
        # Until a consumer has saved an offset, look again at every refresh, not every 30 s.
        if not self.layout[0] or time.monotonic() >= self._partitions_due:
            started = time.monotonic()
            self._partitions_due = started + PARTITIONS_REFRESH_S
            self._find_partitions()
            self._scanned_at = max(self._scanned_at, started)

    def _find_partitions(self) -> None:
        """The input topic's partitions a consumer saved an offset for."""
        store = self._store
        partitions = store.saved_partitions(self.settings.input_topic)
        # Each request names these keys: built once here, not per request, and swapped in at
        # once (requests run while this thread refreshes).
        tags = [store.key(p, "") for p in partitions]
        buckets = [store.buckets(p) for p in partitions]
        self.layout = (partitions, tags, [f"{tag}watermark" for tag in tags], buckets)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except (DependencyError, *ERRORS) as exc:  # keep serving what was read last
                log.warning("api: refreshing models and partitions failed: %s", exc)
            await asyncio.sleep(REFRESH_S)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """The user's document (``segstream inspect``'s), or None if no partition holds it.

        A user's record and its partition's offset are saved together, so a miss looks at the
        offsets again (at most every ``MISS_RESCAN_S``) and reads once more only if that found
        a partition the API did not know: a saved user is found within ``MISS_RESCAN_S`` of its
        partition's first save, and a flood of unknown ids costs one scan per period."""
        found = await self._read_user(user_id)
        if found is None and await self._found_new_partitions():
            found = await self._read_user(user_id)
        return found

    async def _found_new_partitions(self) -> bool:
        """Scan the partitions unless one was scanned less than ``MISS_RESCAN_S`` ago or a scan
        is under way; True if it found partitions the layout lacked."""
        now = time.monotonic()
        if now - self._scanned_at < MISS_RESCAN_S or self._scanning.locked():
            return False
        async with self._scanning:
            known = set(self.layout[0])
            self._scanned_at = now
            await asyncio.to_thread(self._find_partitions)
            return not set(self.layout[0]) <= known

    async def _read_user(self, user_id: str) -> dict[str, Any] | None:
        partitions, tags, watermark_keys, buckets = self.layout
        if not partitions:
            return None
        keys = [f"{tag}b:{bucket_of(user_id, n)}" for tag, n in zip(tags, buckets, strict=True)]
        found: list[Any] = []
        if isinstance(self.client, aredis.RedisCluster):  # one slot a script: one a partition
            async with self.client.pipeline(transaction=False) as pipe:
                for bucket, watermark in zip(keys, watermark_keys, strict=True):
                    pipe.execute_command("EVAL", USER_SCRIPT, 2, bucket, watermark, user_id)
                for reply in await pipe.execute():
                    found += reply
        else:  # one round trip, one command: a pipeline's commands cost the API CPU each
            found = await self._user_script(keys=[*keys, *watermark_keys], args=[user_id])
        records, watermarks = found[::2], found[1::2]
        for partition, packed, watermark in zip(partitions, records, watermarks, strict=True):
            if packed is None:
                continue
            doc = describe_user(
                user_id,
                unpack_state(expand(packed)),
                int(watermark or 0),
                self.snapshot,
                self.tag_definitions,
                self.tag_models,
                self.segment_names,
            )
            return {"partition": partition.index, **doc}
        return None

    async def segments(self) -> list[dict[str, Any]]:
        """Every segment of the current model, with its size over every partition."""
        if self.snapshot is None:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for tag in self.layout[1]:  # each partition's key prefix
                pipe.hgetall(f"{tag}segments")
            sizes = total_sizes(await pipe.execute())
        total = sum(max(sizes.get(s, 0), 0) for s in self.snapshot.segment_ids)
        out = []
        for profile in segment_profiles(self.snapshot):
            size = max(sizes.get(profile.segment, 0), 0)
            history = self.lineage.get(profile.segment, {})
            out.append(
                {
                    "id": profile.segment,
                    "name": self.segment_names.get(profile.segment, profile.name),
                    "generated_name": profile.name,
                    "size": size,
                    "share": round(size / total, 6) if total else 0.0,
                    "model_share": round(profile.share, 6),
                    "centroid": {k: round(v, 6) for k, v in profile.centroid.items()},
                    "created_version": history.get("created_version"),
                    "merged_from": history.get("merged_from", []),
                    "model_version": self.snapshot.version,
                }
            )
        return out

    async def name_segment(self, segment: int, name: str) -> None:
        primary = self.primary or self.client
        await primary.hset(names_key(self.settings.key_prefix), str(segment), name)
        self._name({**self.names, segment: name})

    def _name(self, names: dict[int, str]) -> None:
        """Take the analysts' names; each segment's name is theirs, else the generated one (the
        rule ``segstream inspect`` and change events follow)."""
        self.names, self.segment_names = names, segment_names(self.snapshot, names)
