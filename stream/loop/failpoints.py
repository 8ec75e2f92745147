"""Crash injection for the crash tests: ``SEGSTREAM_FAILPOINT=<stage>:<batch>``.

With it set, the process kills itself with SIGKILL when batch number ``<batch>`` reaches
``<stage>`` (``after_poll``, ``after_flush``, ``after_save`` or ``after_commit``; see
``stream/loop/processor.py``). Unset in production: then the hook does nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping

STAGES = ("after_poll", "after_flush", "after_save", "after_commit")


def checkpoint_from_env(environ: Mapping[str, str]) -> Callable[[str, int], None]:
    spec = environ.get("SEGSTREAM_FAILPOINT", "")
    if not spec:
        return lambda stage, batch: None
    stage, _, batch_text = spec.partition(":")
    if stage not in STAGES or not batch_text.isdigit():
        raise ValueError(f"SEGSTREAM_FAILPOINT={spec!r}: expected <stage>:<batch>, one of {STAGES}")
    target = int(batch_text)

    def checkpoint(at_stage: str, batch: int) -> None:
        if at_stage == stage and batch == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint
