"""Helpers shared by test modules (import them from here, not from conftest: tests/app has a
conftest of its own, and both cannot be imported under the one name ``conftest``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


class TinyEmbedder:
    """A deterministic 48-d embedder: mean colour of a 4 x 4 grid over the crop.

    Implements the ``Embedder`` protocol (``name``, ``dim``, ``input_size``, ``embed``).
    """

    name = "tiny-test"
    dim = 48
    input_size = 32

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops, dtype=np.float64)
        n, s = len(crops), self.input_size
        assert crops.shape == (n, s, s, 3), crops.shape
        self.calls += 1
        self.images += n
        cells = crops.reshape(n, 4, s // 4, 4, s // 4, 3).mean(axis=(2, 4)).reshape(n, -1)
        v = cells / 255.0 + 0.05  # never a zero row
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def run_cli(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m imgrec ARGS`` in a subprocess, output captured as text."""
    return subprocess.run([sys.executable, "-m", "imgrec", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)
