"""``segstream model export|import``: the published models as one JSON document, e.g. to
freeze a reviewed model or promote one from staging (``stream.models.model_file``)."""

from __future__ import annotations

import argparse
import sys

from stream.settings import Settings


def model_command(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from stream.connections import redis_client
    from stream.errors import DependencyError
    from stream.models.model_file import ModelFileError, export_model, import_model
    from stream.redis.model_store import RedisModelStore

    store = RedisModelStore(redis_client(settings), settings.key_prefix)
    try:
        if args.model_command == "export":
            text = json.dumps(export_model(store), indent=1) + "\n"
            if args.out is None:
                sys.stdout.write(text)
            else:
                args.out.write_text(text)
            return 0
        version = import_model(store, json.loads(args.file.read_text()))
    except (ModelFileError, DependencyError, OSError, ValueError) as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 2
    print(
        f"published segment model v{version} from {args.file} under "
        f"{settings.key_prefix!r}; serving processes pick it up within a lease period"
    )
    return 0
