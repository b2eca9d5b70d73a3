"""A result grid of 20 thumbnails: first view (decoding HEIC / large JPEG sources) against
later views (the on-disk thumbnail cache beside the index)."""

from __future__ import annotations

import hashlib
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from .machine import machine


def _sources(folder: Path, n: int) -> list[Path]:
    """``n`` 12-megapixel photos-like images, half HEIC and half JPEG (cached)."""
    from PIL import Image

    from imgrec import formats

    formats.ensure_heif()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        f = folder / f"img_{i:02d}.{'heic' if i % 2 else 'jpg'}"
        if not f.exists():
            base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            im = Image.fromarray(base).resize((4032, 3024), Image.BICUBIC)
            im.save(f, "HEIF" if i % 2 else "JPEG", quality=90)
        out.append(f)
    return out


def run(args) -> dict:
    from imgrec.thumbcache import ThumbCache

    work = Path(args.work) / "thumbs"
    files = _sources(work / "gallery", args.grid)
    shas = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    cache_dir = work / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache = ThumbCache(cache_dir)

    def grid() -> float:
        t = time.perf_counter()
        for f, s in zip(files, shas, strict=True):
            cache.get(f, s)
        return time.perf_counter() - t

    first = grid()
    later = [grid() for _ in range(args.repeat)]
    return {"benchmark": "thumbs", "machine": machine(), "grid": args.grid,
            "source": "4032x3024, half HEIC, half JPEG",
            "first_view_s": round(first, 3), "later_view_s": round(statistics.median(later), 4),
            "cache_bytes": cache.total_bytes(), "target": "later view <= 1 s"}
