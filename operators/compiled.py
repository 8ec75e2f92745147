"""Functions compiled to machine code by numba: the batch's sequential steps, where a loop over
events or moments must run in order and Python's per-item cost would dominate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def compiled(function: F) -> F:
    """``function`` compiled on first use (about a second each), and cached on disk beside its
    module, so later processes load it in milliseconds. Still callable from Python."""
    return cast(F, numba.njit(cache=True, nogil=True)(function))
