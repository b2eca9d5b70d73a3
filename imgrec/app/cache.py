"""One cache decorator for everything derived from an opened index, keyed by its version.

Every cached value is keyed by ``(index folder, index version, the call's own key)``, so a
rebuild (a new version) can never be answered from an older one; :func:`clear_index_caches`
only frees memory, and it clears every cache this decorator made because each registers
itself here when it is defined.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

R = TypeVar("R")

#: The Streamlit caches made by :func:`per_index` (filled at import, one per decorated function).
_REGISTRY: list[Any] = []


def index_key(idx: Any) -> tuple[str, str]:
    """``(index folder, version)``: the part of every cache key that names the index."""
    return str(idx.index_dir), str(idx.version)


def per_index(*, max_entries: int, spinner: str | bool = False, resource: bool = False,
              key: Callable[..., tuple] | None = None
              ) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Cache ``fn(idx, *args)`` per index version (``st.cache_data``, or ``st.cache_resource``
    for shared read-only objects).

    Args:
        max_entries: entries kept (bounded: old versions age out).
        spinner: the message shown while computing (False: none).
        resource: share one object between sessions instead of a copy per call.
        key: maps ``*args`` to the hashable cache key (default: the arguments themselves);
            use it when an argument is large or unhashable (uploaded images).
    """
    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        def compute(index: tuple[str, str], args_key: tuple, _idx: Any, _args: tuple) -> R:
            return fn(_idx, *_args)

        # Streamlit names a cache by module, qualified name and source: give each its own
        compute.__module__, compute.__qualname__ = fn.__module__, fn.__qualname__
        store = (st.cache_resource if resource else st.cache_data)(
            max_entries=max_entries, show_spinner=spinner)(compute)
        _REGISTRY.append(store)

        @functools.wraps(fn)
        def cached(idx: Any, *args: Any) -> R:
            return store(index_key(idx), key(*args) if key else args, idx, args)

        cached.clear = store.clear  # type: ignore[attr-defined]
        return cached

    return decorate


def register(cache: Any) -> Any:
    """Add a Streamlit cache made elsewhere (the opened indexes) to :func:`clear_index_caches`."""
    _REGISTRY.append(cache)
    return cache


def clear_index_caches(_state: Any = None) -> None:
    """Forget opened indexes and everything derived from them (after a build)."""
    for cache in _REGISTRY:
        cache.clear()


def registered() -> int:
    """How many caches :func:`clear_index_caches` clears (for tests)."""
    return len(_REGISTRY)
