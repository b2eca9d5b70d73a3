"""A small index with every optional file (labels, float16 copy), copied by each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgrec import Index

N, DIM = 40, 16


def _arrays(seed: int = 5) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paths, embeddings, histograms and top-5 labels of ``N`` made-up images."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(N, DIM)).astype(np.float32)
    hist = rng.random((N, 768)).astype(np.float32)
    hist /= hist.reshape(N, 3, 256).sum(-1).repeat(256, 1)
    top5 = np.stack([(np.arange(5) + i) % 1000 for i in range(N)]).astype(np.int16)
    prob5 = np.tile(np.array([0.5, 0.2, 0.1, 0.05, 0.01], np.float32), (N, 1))
    return [f"a/img_{i:02d}.jpg" for i in range(N)], emb, hist, top5, prob5


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    paths, emb, hist, top5, prob5 = _arrays()
    d = tmp_path_factory.mktemp("small") / "index"
    Index.from_arrays(d, paths, emb, hist, model="random-16", pca_components=8,
                      labels_top5=top5, labels_prob5=prob5, gallery_root="/photos")
    return d


@pytest.fixture
def ix(small: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small index (safe to damage)."""
    dst = tmp_path / "index"
    shutil.copytree(small, dst)
    return dst


@pytest.fixture
def arrays():
    """Paths, embeddings, histograms, top-5 ids and probabilities of the small index."""
    return _arrays()
