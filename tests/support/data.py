"""The real-data files, found through settings; missing data fails under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.servers import missing

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared/data"


def _data_file(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.is_file():
        missing(
            f"{path}",
            FileNotFoundError("no such file"),
            f"download it (see docs/evaluation.md) and set {env} to its path",
        )
    return path


def online_retail_path() -> Path:
    """``SEGSTREAM_ONLINE_RETAIL``, else ``../shared/data/online_retail/online_retail.csv.gz``."""
    return _data_file("SEGSTREAM_ONLINE_RETAIL", SHARED_DATA / "online_retail/online_retail.csv.gz")


def rees46_sample_path() -> Path:
    """``SEGSTREAM_REES46_SAMPLE``, else ``../shared/data/rees46/2019-Oct-head1000.csv``."""
    return _data_file("SEGSTREAM_REES46_SAMPLE", SHARED_DATA / "rees46/2019-Oct-head1000.csv")
