"""`python -m bench thresholds`: the cosine thresholds of each embedding recipe that admit as
many pairs of a gallery as ``v1``'s (0.65 for duplicate candidates, 0.5 for graph links).

Every recipe raises or lowers the cosine of unrelated images differently (the signed square
root raises it), so a fixed threshold means something else under each; the thresholds in
:data:`imgrec.features.recipe.RECIPES` are chosen to admit as many pairs of the 1,130-image
clip-art subsample (``python -m bench.make_clipart --per-folder 10 --out DIR``) as ``v1``'s
do. Each recipe's index is built with the product's build (``build_index``); prints JSON.

``--families DIR`` checks the thresholds on a gallery of one folder per family of variants
(the demo gallery, ``imgrec demo``): how many pairs within a family reach each recipe's
candidate threshold, and the median and highest cosine of two images of different families.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

V1 = {"duplicate_threshold": 0.65, "graph_threshold": 0.5}


def pairs_above(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pairs of rows (i < j) whose cosine is at least each threshold of ``t``."""
    x = np.asarray(x, np.float64)
    c = x @ x.T
    v = np.sort(c[np.triu_indices(len(x), 1)])
    return len(v) - np.searchsorted(v, t, side="left")


def matching(x: np.ndarray, count: int) -> float:
    """The threshold (two decimals) admitting the pair count closest to ``count``."""
    grid = np.round(np.arange(0.30, 1.0, 0.01), 2)
    got = pairs_above(x, grid)
    return float(grid[int(np.argmin(np.abs(got - count)))])


def run(args: argparse.Namespace) -> dict:
    """``python -m bench thresholds`` (``args``: corpus, recipes, work)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        out = measure(args.corpus, args.recipes.split(","), work / "corpus")
        if args.families:
            out["families"] = families(args.families, out, work / "families")
        return out


def families(gallery: Path, measured: dict, work: Path) -> dict:
    """Within-family pairs at each recipe's candidate threshold; cross-family cosines."""
    from imgrec import Index
    from imgrec.build.builder import build_index
    from imgrec.features.embedding import CNNEmbedder

    emb = CNNEmbedder()
    out: dict = {"gallery": str(gallery)}
    for r, m in measured["recipes"].items():
        build_index(gallery, work / r, embedder=emb, recipe=r)
        idx = Index.open(work / r, embedder=emb)
        x = np.asarray(idx.embeddings, np.float64)
        fam = np.array([p.split("/")[0] for p in idx.paths(range(len(idx)))])
        c = x @ x.T
        iu = np.triu_indices(len(x), 1)
        same = fam[iu[0]] == fam[iu[1]]
        t = m["thresholds"]["duplicate_threshold"]
        out[r] = {"family_pairs": int(same.sum()),
                  "family_pairs_at_threshold": int((c[iu][same] >= t).sum()),
                  "median_cross_family_cosine": round(float(np.median(c[iu][~same])), 3),
                  "highest_cross_family_cosine": round(float(c[iu][~same].max()), 3)}
    return out


def measure(corpus: Path, recipes: list[str], work: Path) -> dict:
    from imgrec import Index
    from imgrec.build.builder import build_index
    from imgrec.features.embedding import CNNEmbedder

    emb = CNNEmbedder()
    vecs = {}
    for r in recipes:
        build_index(corpus, work / r, embedder=emb, recipe=r)
        vecs[r] = np.asarray(Index.open(work / r, embedder=emb).embeddings)
    base = vecs.get("v1")
    if base is None:
        raise SystemExit("the thresholds are matched to v1's: include v1 in --recipes")
    want = {k: int(pairs_above(base, np.array([t]))[0]) for k, t in V1.items()}
    out: dict = {"corpus": str(corpus), "images": len(base), "v1_pairs": want,
                 "recipes": {}}
    for r, x in vecs.items():
        got = {k: matching(x, n) for k, n in want.items()}
        out["recipes"][r] = {"thresholds": got,
                             "pairs": {k: int(pairs_above(x, np.array([t]))[0])
                                       for k, t in got.items()},
                             "median_pair_cosine": round(float(np.median(
                                 (x @ x.T)[np.triu_indices(len(x), 1)])), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.thresholds", description=__doc__)
    add_arguments(p)
    print(json.dumps(run(p.parse_args(argv)), indent=1))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, required=True,
                   help="e.g. the clip-art subsample: python -m bench.make_clipart "
                        "--per-folder 10 --out DIR")
    p.add_argument("--recipes", default="v1,v2,v3", help="comma-separated; v1 first")
    p.add_argument("--families", type=Path, help="a gallery of one folder per family of "
                   "variants to check the thresholds on (the demo gallery)")
    p.add_argument("--work", type=Path, help="keep each recipe's index here")
    p.add_argument("--save", type=Path)


if __name__ == "__main__":
    sys.exit(main())
