"""Process-wide dashboard resources: the CNN, the build runner and the opened indexes."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgrec.app import state
from imgrec.app.builds import BuildRunner
from imgrec.app.cache import register
from imgrec.errors import ImgrecError
from imgrec.features.embedding import BACKBONES, DEFAULT_MODEL, CNNEmbedder
from imgrec.index.index import Index
from imgrec.index.writer import current_version


@st.cache_resource(show_spinner=False)
def get_embedder(model: str = DEFAULT_MODEL) -> CNNEmbedder:
    """The one CNN of this process (weights load on first use, not here)."""
    return CNNEmbedder(model)


@st.cache_resource(show_spinner=False)
def get_runner() -> BuildRunner:
    """The build runner shared by every session (one build per index at a time)."""
    return BuildRunner()


@register
@st.cache_resource(show_spinner=False, max_entries=4)
def _open_index(index_dir: str, version: str) -> Index:
    idx = Index.open(index_dir)
    if idx.model in BACKBONES:
        idx = Index.open(index_dir, embedder=get_embedder(idx.model))
    return idx


def load_index(directory: str | Path | None = None) -> tuple[Index | None, str | None]:
    """The index of this session's folder, or ``(None, reason)``; never raises."""
    d = Path(directory) if directory is not None else state.index_dir()
    try:
        version = current_version(d)
        if version is None:
            return None, f"There is no index in {d} yet."
        return _open_index(str(d), version.name), None
    except ImgrecError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"The index in {d} cannot be read: {exc}"
