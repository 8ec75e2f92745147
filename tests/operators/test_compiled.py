"""The compiled steps run where numba has no writable cache directory: compiled per process,
with a warning that says how to keep the machine code."""

from __future__ import annotations

from typing import Any

import numba
import pytest

from operators import compiled as compiled_module


def test_without_a_cache_directory_functions_still_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = numba.njit

    def njit(*args: Any, cache: bool = False, **options: Any) -> Any:
        if cache:
            raise RuntimeError("cannot cache function 'double': no locator available")
        return real(*args, **options)

    monkeypatch.setattr(compiled_module.numba, "njit", njit)

    def double(x: int) -> int:
        return 2 * x

    with pytest.warns(UserWarning, match="NUMBA_CACHE_DIR"):
        fast = compiled_module.compiled(double)
    assert fast(21) == 42
