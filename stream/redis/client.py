"""The two kinds of Redis segstream runs on, standalone and Redis Cluster, behind one type.

A cluster is named by its URL's scheme, ``redis+cluster://`` (``rediss+cluster://`` with TLS),
and any one node's address: redis-py's cluster client learns the rest. Every key segstream
writes carries a hash tag (the partition's, or the models'), so each script, transaction and
multi-key read touches one slot; reads over many partitions go as a pipeline, which the cluster
client splits by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import redis
import redis.asyncio as aredis
from redis.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")

Client: TypeAlias = redis.Redis | RedisCluster
AsyncClient: TypeAlias = aredis.Redis | aredis.RedisCluster

# What either client raises when Redis fails. A cluster client's own errors (no node serves a
# slot, the cluster is not set up) are not ``RedisError``s.
ERRORS = (redis.RedisError, RedisClusterException)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def node_url(url: str) -> str:
    """A cluster URL as the plain URL of its first node (what redis-py parses); others
    unchanged."""
    if not is_cluster(url):
        return url
    scheme, rest = url.replace("+cluster://", "://", 1).split("://", 1)
    credentials, at, hosts = rest.rpartition("@")
    first, _, path = hosts.partition("/")
    return f"{scheme}://{credentials}{at}{first.split(',')[0]}" + (f"/{path}" if path else "")


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The nodes a cluster URL names, ``redis+cluster://10.0.0.5:6379,10.0.0.6:6379``: the
    client starts from whichever answers, so one node down does not stop a restart."""
    hosts = url.split("://", 1)[1].rpartition("@")[2].partition("/")[0]
    nodes = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        nodes.append((name, int(port)) if name else (port, 6379))
    return nodes


def run_script(script: Script, keys: Sequence[Any], args: Sequence[Any], pipe: Any) -> None:
    """Queue ``script`` on a pipeline. A cluster pipeline sends the script's text (EVAL): it
    cannot load a script on a node that lacks it, as a master just promoted by a failover
    does (a script cache is not replicated); Redis caches the text's compiled form."""
    if isinstance(pipe, ClusterPipeline):
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
    else:
        script(keys=keys, args=args, client=pipe)
