"""Process-wide dashboard resources: the CNN, the build runner and the opened indexes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from imgrec.app import state
from imgrec.app.builds import BuildRunner
from imgrec.app.cache import register
from imgrec.errors import ImgrecError
from imgrec.features.embedding import BACKBONES, DEFAULT_MODEL, CNNEmbedder
from imgrec.index.index import Index
from imgrec.index.writer import current_version


@st.cache_resource(show_spinner=False)
def _embedder(model: str) -> CNNEmbedder:
    return CNNEmbedder(model)


def get_embedder(model: str = DEFAULT_MODEL) -> CNNEmbedder:
    """The one CNN ``model`` of this process (weights load on first use, not here). The
    cache is called with the name always given, so ``get_embedder()`` and
    ``get_embedder("efficientnet-lite0")`` are one object."""
    return _embedder(str(model))


class Warmup:
    """The CNN's weights loading in a background thread (and one forward pass, which pays
    the first-call costs), so the first search does not wait ~10 s for them."""

    def __init__(self, embedder: CNNEmbedder) -> None:
        self.embedder = embedder
        self.done = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"imgrec-warm-{embedder.name}",
                                       daemon=True)

    def _run(self) -> None:
        try:
            size = self.embedder.input_size
            self.embedder.load().forward(np.zeros((1, size, size, 3), np.uint8))
        except Exception as exc:  # the search that needs the model reports it again
            logging.getLogger("imgrec.app").exception("loading the CNN failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    @property
    def ready(self) -> bool:
        return self.done.is_set()


@st.cache_resource(show_spinner=False)
def _warmup(model: str) -> Warmup:
    warm = Warmup(get_embedder(model))
    warm.thread.start()
    return warm


def warm_embedder(model: str = DEFAULT_MODEL) -> Warmup:
    """Start loading the CNN ``model`` in the background, once per process (every session
    shares it); returns the :class:`Warmup` to wait on."""
    return _warmup(str(model))


def wait_for_model(model: str = DEFAULT_MODEL) -> None:
    """Block, with a visible status, until the background load of ``model`` has finished."""
    warm = warm_embedder(model)
    if not warm.ready:
        with st.spinner(f"Loading the CNN ({model}) — only the first search waits for it…"):
            warm.done.wait()


@st.cache_resource(show_spinner=False)
def get_runner() -> BuildRunner:
    """The build runner shared by every session (one build per index at a time)."""
    return BuildRunner()


@register
@st.cache_resource(show_spinner="Opening the index…", max_entries=4)
def _open_index(index_dir: str, version: str) -> Index:
    idx = Index.open(index_dir)
    if idx.model in BACKBONES:
        idx = Index.open(index_dir, embedder=warm_embedder(idx.model).embedder)
    return idx


@register
@st.cache_resource(show_spinner="Opening the shards (a Ray worker per shard)…", max_entries=2)
def _open_sharded(index_dir: str, key: str) -> Any:
    from imgrec.shard.cli import ray_address
    from imgrec.shard.sharded import ShardedIndex
    from imgrec.shard.split import ShardedManifest

    model = ShardedManifest.read(Path(index_dir)).model
    embedder = warm_embedder(model).embedder if model in BACKBONES else None
    return ShardedIndex.open(index_dir, ray_address=ray_address(None), embedder=embedder)


def load_index(directory: str | Path | None = None) -> tuple[Index | None, str | None]:
    """The index of this session's folder, or ``(None, reason)``; never raises. A sharded
    index opens as a ShardedIndex on ``$IMGREC_RAY_ADDRESS`` (unset: a local Ray)."""
    from imgrec.shard.cli import is_sharded

    d = Path(directory) if directory is not None else state.index_dir()
    try:
        if is_sharded(d):
            from imgrec.shard.split import current_key

            return _open_sharded(str(d), current_key(d)), None
        version = current_version(d)
        if version is None:
            return None, f"There is no index in {d} yet."
        return _open_index(str(d), version.name), None
    except ImgrecError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"The index in {d} cannot be read: {exc}"
