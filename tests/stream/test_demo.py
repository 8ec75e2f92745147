from __future__ import annotations

import re

from stream.cli.demo import DEMO_SEGMENT_FEATURES, run_demo
from stream.feeds.simulator import PERSONAS
from stream.settings import Settings


def test_demo_finds_segments_that_match_the_simulated_personas() -> None:
    lines: list[str] = []
    settings = Settings(
        snapshot_every_samples=2000,
        train_sample_permille=1000,
        segment_features=DEMO_SEGMENT_FEATURES,
    )
    sizes = run_demo(settings, users=1000, days=60, seed=7, out=lines.append)
    text = "\n".join(lines)
    assert "segment - ->" in text  # first assignments scrolled by
    assert "segment 0 created" in text  # lineage of the first model
    assert "Segments at the end of the stream" in text
    assert len(sizes) == settings.segments and sum(sizes.values()) == 1000
    # Each simulated persona, which segstream never sees, dominates a segment of its own.
    table = text.split("Segments at the end of the stream")[1]
    majority = dict(re.findall(r"  ([a-z ]+) \((\d+)%\)", table))
    assert set(majority) == {p.name for p in PERSONAS}
    assert all(int(purity) >= 70 for purity in majority.values())
