"""Time ``imgrec.evaluate`` on a synthetic labelled index (``python -m bench evaluate``)."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from .machine import machine


def synthetic(work: Path, n: int, dim: int, classes: int, seed: int = 0):
    """An index of ``n`` rows in ``classes`` folders: class centres plus noise, real-ish spread."""
    from imgrec import Index
    from imgrec.features.color import DIM

    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, n)
    centres = np.abs(rng.standard_normal((classes, dim))).astype(np.float32)
    emb = np.abs(centres[label] + 1.5 * rng.standard_normal((n, dim)).astype(np.float32))
    hist = rng.gamma(0.3, size=(n, DIM)).astype(np.float32)
    hist /= hist.reshape(n, 3, -1).sum(2).repeat(DIM // 3, axis=1)
    paths = [f"class{c:03d}/img{i:06d}.jpg" for i, c in enumerate(label)]
    if work.exists():
        shutil.rmtree(work)
    return Index.from_arrays(work, paths, emb, hist, model="synthetic")


def run(args: argparse.Namespace) -> dict:
    from imgrec.insights.evaluate import evaluate

    idx = synthetic(args.work / "evaluate-index", args.n, args.dim, args.classes)
    t = time.perf_counter()
    rep = evaluate(idx, labels="folder", ks=(5, 10, 20), bootstrap=1000)
    total = time.perf_counter() - t
    return {"machine": machine(), "n": args.n, "dim": args.dim, "classes": args.classes,
            "seconds_total": round(total, 2), "seconds_per_method": rep.seconds,
            "best": rep.best, "n_queries": rep.n_queries}
