"""``segstream model export|import``: the published models as one JSON document, e.g. to
freeze a reviewed model or promote one from staging (``stream.models.model_file``); and
``segstream migrate``, the upgrade of Redis's keys from an earlier layout
(``stream.redis.layout``)."""

from __future__ import annotations

import argparse
import sys

from stream.settings import Settings


def model_command(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from stream.connections import redis_client
    from stream.errors import DependencyError
    from stream.models.model_file import ModelFileError, export_model, import_model
    from stream.redis.layout import LayoutError, check_layout
    from stream.redis.model_store import RedisModelStore

    client = redis_client(settings)
    store = RedisModelStore(client, settings.key_prefix)
    try:
        check_layout(client, settings.key_prefix, settings.input_topic)
        if args.model_command == "export":
            text = json.dumps(export_model(store), indent=1) + "\n"
            if args.out is None:
                sys.stdout.write(text)
            else:
                args.out.write_text(text)
            return 0
        version = import_model(store, json.loads(args.file.read_text()))
    except (ModelFileError, DependencyError, LayoutError, OSError, ValueError) as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 2
    print(
        f"published segment model v{version} from {args.file} under "
        f"{settings.key_prefix!r}; serving processes pick it up within a lease period"
    )
    return 0


def migrate_command(settings: Settings) -> int:
    from stream.connections import redis_client
    from stream.errors import DependencyError
    from stream.redis.layout import LayoutError, migrate

    try:
        moved = migrate(
            redis_client(settings),
            settings.key_prefix,
            settings.input_topic,
            settings.redis_buckets,
        )
    except (DependencyError, LayoutError) as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 69 if isinstance(exc, DependencyError) else 2
    for key in moved:
        print(f"migrated {key}")
    print(f"the keys under {settings.key_prefix!r} are in this version's layout")
    return 0
