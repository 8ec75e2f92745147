"""Functions compiled to machine code by numba: the batch's sequential steps, where a loop over
events or moments must run in order and Python's per-item cost would dominate."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def compiled(function: F) -> F:
    """``function`` compiled on first use (about a second each), and cached on disk beside its
    module (or in ``NUMBA_CACHE_DIR``), so later processes load it in milliseconds. Still
    callable from Python. Where no cache directory is writable (a read-only install with no
    home directory, and no ``NUMBA_CACHE_DIR``), each process compiles it again."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True)(function))
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        warnings.warn(f"{exc}; set NUMBA_CACHE_DIR to a writable directory", stacklevel=2)
        return cast(F, numba.njit(nogil=True)(function))
