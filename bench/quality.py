"""`python -m bench quality`: retrieval quality of every method and embedding recipe on the
clip-art categories, the photo copy-detection set and the demo families (JSON + a table).

Features come from :mod:`bench.levers` (cached .npy per corpus, backbone, framing and
pooling; computed when missing); each recipe's vectors go into an index through
``Index.from_arrays`` and are scored by :func:`imgrec.insights.evaluate.evaluate` (the exact
search scoring). Make the corpora first: ``python -m bench.make_clipart``,
``python -m bench.make_photos`` (both write outside the repository).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from imgrec.features.embedding import l2_normalise
from imgrec.features.recipe import PostProcess
from imgrec.insights.evaluate import evaluate
from imgrec.insights.evaluate_rank import exact_topk
from imgrec.search import topk
from imgrec.search.rerank import expand, fused
from imgrec.search.rerank import parse as parse_rerank

from . import levers, levers_pool
from .machine import machine

EMB = ("embedding:cosine", "embedding:euclidean", "embedding:manhattan")
#: name -> (backbone, framing, pooling, post-processing keywords or None[, re-ranking]);
#: a re-ranking (``aqe:n=5,alpha=3``) is measured beside the plain cosine; a backbone
#: "a+b" concatenates the unit features of both (same framing and pooling); a pooling
#: "gap+s1:0.5" concatenates unit features of several pools of one pass, each times its
#: weight (default 1; see :mod:`bench.levers_pool` for the pools and the ``asp`` framing).
P = {"power": 0.5}
PC = {"power": 0.5, "center": True}
PW = {"power": 0.5, "whiten": True, "shrink": 0.8}
L0, L1, L2 = "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"
ML = "gap+s2:0.5+s3:0.5"  # multi-layer: the head and the last-but-one and -two stages
MLG = "gem+s2:0.5+s3"  # the best weights of a small grid on the full categories set
RECIPES = {
    "v1: lite0 crop (old default)": (L0, "crop", "gap", None),
    "lite0 crop + power + centre": (L0, "crop", "gap", PC),
    "lite0 crop + GeM": (L0, "crop", "gem", None),
    "lite0 letterbox": (L0, "lbw", "gap", None),
    "lite0 letterbox + GeM": (L0, "lbw", "gem", None),
    "v2: lite0 letterbox + power (previous default)": (L0, "lbw", "gap", P),
    "lite0 letterbox + power + centre": (L0, "lbw", "gap", PC),
    "lite0 letterbox + power + whiten 0.8": (L0, "lbw", "gap", PW),
    "lite1 letterbox": (L1, "lbw", "gap", None),
    "lite1 letterbox + power": (L1, "lbw", "gap", P),
    "lite1 letterbox head + stages -2, -3 x0.5 + power": (L1, "lbw", ML, P),
    "lite2 letterbox": (L2, "lbw", "gap", None),
    "lite2 letterbox + power": (L2, "lbw", "gap", P),
    "lite2 letterbox + power + centre": (L2, "lbw", "gap", PC),
    "lite2 letterbox + power + whiten 0.8": (L2, "lbw", "gap", PW),
    "lite0+lite2 letterbox + power": (f"{L0}+{L2}", "lbw", "gap", P),
    # one Lite0 pass, other pools (bench.levers_pool): multi-layer, regional, own aspect
    "lite0 letterbox stage -1 + power": (L0, "lbw", "s1", P),
    "lite0 letterbox head + stage -1 + power": (L0, "lbw", "gap+s1", P),
    "lite0 letterbox head + stage -1 x0.5 + power": (L0, "lbw", "gap+s1:0.5", P),
    "lite0 letterbox head + stages -1, -2 + power": (L0, "lbw", "gap+s1+s2", P),
    "lite0 letterbox head + stages -1..-3 + power": (L0, "lbw", "gap+s1+s2+s3", P),
    "lite0 letterbox head + stages x0.5 + power": (L0, "lbw", "gap+s1:0.5+s2:0.5+s3:0.5", P),
    "lite0 letterbox R-MAC + power": (L0, "lbw", "rmac", P),
    "lite0 letterbox regional average + power": (L0, "lbw", "ravg", P),
    "lite0 letterbox head + R-MAC + power": (L0, "lbw", "gap+rmac", P),
    "lite0 own aspect": (L0, "asp", "gap", None),
    "lite0 own aspect + power": (L0, "asp", "gap", P),
    "lite0 own aspect + power + centre": (L0, "asp", "gap", PC),
    "lite0 own aspect R-MAC + power": (L0, "asp", "rmac", P),
    "lite0 own aspect head + stages -1, -2 + power": (L0, "asp", "gap+s1+s2", P),
    "lite0 letterbox head + stages -2, -3 x0.5 + power": (L0, "lbw", ML, P),
    "lite0 letterbox head + stages -2, -3 x0.5 + power + centre": (L0, "lbw", ML, PC),
    "lite0 letterbox head + stages -2, -3 x0.5 + power + whiten 0.8": (L0, "lbw", ML, PW),
    "lite0 own aspect head + stages -2, -3 x0.5 + power": (L0, "asp", ML, P),
    "lite0 own aspect head + stages -2, -3 x0.5 + power + centre": (L0, "asp", ML, PC),
    "lite0 own aspect head + stages -2, -3 x0.5 + power + whiten 0.8": (L0, "asp", ML, PW),
    "v3: lite0 own aspect GeM head + stage -2 x0.5 + stage -3 + power (default)":
        (L0, "asp", MLG, P),
    "lite0 own aspect GeM head + stage -2 x0.5 + stage -3 + power + whiten 0.8":
        (L0, "asp", MLG, PW),
    "lite0 letterbox GeM head + stage -2 x0.5 + stage -3 + power": (L0, "lbw", MLG, P),
    # query-side re-ranking (imgrec.search.rerank) on the default's vectors
    "v2 + alpha-QE n=3": (L0, "lbw", "gap", P, "aqe:n=3,alpha=3"),
    "v2 + alpha-QE n=5": (L0, "lbw", "gap", P, "aqe:n=5,alpha=3"),
    "v2 + alpha-QE n=10": (L0, "lbw", "gap", P, "aqe:n=10,alpha=3"),
    "v2 + alpha-QE n=5, alpha 1": (L0, "lbw", "gap", P, "aqe:n=5,alpha=1"),
    "v2 + alpha-QE n=10, alpha 5": (L0, "lbw", "gap", P, "aqe:n=10,alpha=5"),
    "letterbox head + stages -2, -3 x0.5 + power + alpha-QE n=3": (L0, "lbw", ML, P,
                                                                    "aqe:n=3,alpha=3"),
}


def _one(corpus: Path, backbone: str, framing: str, pool: str, extract: bool
         ) -> tuple[np.ndarray, float] | None:
    d = levers.CACHE / corpus.name
    f = d / f"{backbone}-{framing}-{pool}.npy"
    if not f.is_file():
        if not extract:
            return None
        if framing == "asp" or pool not in ("gap", "gem"):
            levers_pool.extract(corpus, backbone, framing)
        else:
            levers.extract(corpus, backbone, framing)
    info = json.loads((d / f"{backbone}-{framing}-time.json").read_text())
    return np.load(f), info["seconds_per_image"]


def _features(corpus: Path, spec: tuple, extract: bool) -> tuple[np.ndarray, list[str], float] | None:
    backbone, framing, pool = spec[:3]
    weighted = [(name, float(w or 1)) for name, _, w in
                (part.partition(":") for part in pool.split("+"))]
    parts, seconds = [], 0.0
    for b in backbone.split("+"):
        for name, w in weighted:
            got = _one(corpus, b, framing, name, extract)
            if got is None:
                return None
            parts.append(w * l2_normalise(got[0]))
        seconds += got[1]  # one forward pass per backbone gives all its pools
    paths = (levers.CACHE / corpus.name / "paths.txt").read_text().split()
    return np.hstack(parts), paths, seconds


def _post(spec: tuple, x: np.ndarray, fit_rows: np.ndarray | None = None) -> np.ndarray:
    x = l2_normalise(x)
    if spec[3] is None:
        return x
    pp = PostProcess(**{"center": False, **spec[3]}).fit(x if fit_rows is None else x[fit_rows])
    return pp.transform(x)


def _index(work: Path, paths: list[str], emb: np.ndarray, hist: np.ndarray):
    from imgrec import Index

    if work.exists():
        shutil.rmtree(work)
    return Index.from_arrays(work, paths, emb, hist, model="bench")


def _summary(rep) -> dict:
    return {m: {f"{met}@{k}" if met != "first_hit" else met: round(rep.value(m, met, k), 4)
                for met, k in (("precision", 5), ("precision", 10), ("mAP", 10), ("first_hit", 1))}
            for m in rep.methods}


def _split(methods: tuple) -> dict:
    """``evaluate``'s methods and rerank keywords of methods like ``embedding:cosine+aqe:...``
    (the re-ranked cosine, measured beside the plain one)."""
    plain = [m for m in methods if "+" not in m]
    reranks = [m.split("+", 1)[1] for m in methods if "+" in m]
    return {"methods": plain, "rerank": reranks[0] if reranks else None}


def categories(corpus: Path, work: Path, spec: tuple, methods: tuple, extract: bool) -> dict | None:
    got = _features(corpus, spec, extract)
    if got is None:
        return None
    x, paths, spi = got
    hist = np.load(levers.CACHE / corpus.name / "hist.npy")
    idx = _index(work, paths, _post(spec, x), hist)
    out = {"images": len(paths), "seconds_per_image": round(spi, 4)}
    for name, labels in (("category", "depth:1"), ("subcategory", "folder")):
        rep = evaluate(idx, labels=labels, ks=(5, 10), bootstrap=1000, **_split(methods))
        out[name] = _summary(rep)
        out[name + "_ci95_P@5"] = {r["method"]: [round(r["low"], 4), round(r["high"], 4)]
                                   for r in rep.rows if r["metric"] == "precision" and r["k"] == 5}
    return out


def _reranked(idx, q: np.ndarray, spec: str) -> np.ndarray:
    """Every gallery row for each query, ordered by the re-ranked score of ``spec`` (the
    better of the plain and the expanded cosine; ties by row), as the search ranks them."""
    data, norms = idx.embeddings, idx.embedding_norms
    rr = parse_rerank(spec)
    near, sims = exact_topk("cosine", data, q, rr.n, norms)
    q2 = expand(q, data, norms, near, sims, rr.alpha).astype(np.float32)
    every = np.arange(len(data))
    score = fused(data, every, q, q2)
    return np.stack([every[topk.order(v, every, True)] for v in score])


def copies(corpus: Path, work: Path, spec: tuple, methods: tuple, extract: bool) -> dict | None:
    """mAP of finding each copy's original among the originals and distractors."""
    got = _features(corpus, spec, extract)
    if got is None:
        return None
    x, paths, spi = got
    hist = np.load(levers.CACHE / corpus.name / "hist.npy")
    g = np.array([p.startswith("gallery/") for p in paths])
    gpaths = [p for p, k in zip(paths, g, strict=True) if k]
    qpaths = [p for p, k in zip(paths, g, strict=True) if not k]
    truth = np.array([gpaths.index("gallery/" + Path(p).name.split("__")[0] + ".jpg")
                      for p in qpaths])
    emb = _post(spec, x, np.flatnonzero(g))
    idx = _index(work, gpaths, emb[g], hist[g])
    out = {"gallery": len(gpaths), "copies": len(qpaths), "seconds_per_image": round(spi, 4)}
    tf = np.array([Path(p).stem.split("__")[1] for p in qpaths])
    for m in methods:
        if m.startswith("embedding:cosine+"):  # re-ranked: the copy expanded over the gallery
            rows = _reranked(idx, np.asarray(emb[~g], np.float32), m.split("+", 1)[1])
        elif m.startswith("embedding"):
            metric, data, norms, q = m.split(":")[1], idx.embeddings, idx.embedding_norms, emb[~g]
        elif m == "color":
            metric, data, norms, q = "chi2", idx.histograms, None, hist[~g]
        else:
            data = np.ascontiguousarray(idx.pca_histograms)
            metric, norms = "cosine", np.linalg.norm(data.astype(np.float64), axis=1).astype(np.float32)
            q = idx.pca().transform(hist[~g])
        if not m.startswith("embedding:cosine+"):
            rows, _ = exact_topk(metric, data, np.asarray(q, np.float32), len(gpaths), norms)
        rank = np.argmax(rows == truth[:, None], axis=1) + 1
        ap = 1.0 / rank
        out[m] = {"mAP": round(float(ap.mean()), 4), "top1": round(float((rank == 1).mean()), 4),
                  "per_transform_mAP": {t: round(float(ap[tf == t].mean()), 4)
                                        for t in sorted(set(tf))}}
    return out


def demo(corpus: Path, work: Path, spec: tuple, methods: tuple, extract: bool) -> dict | None:
    got = _features(corpus, spec, extract)
    if got is None:
        return None
    x, paths, _ = got
    idx = _index(work, paths, _post(spec, x), np.load(levers.CACHE / corpus.name / "hist.npy"))
    return _summary(evaluate(idx, labels="depth:1", ks=(5, 10), bootstrap=1000,
                             **_split(methods)))


def table(result: dict) -> str:
    head = (f"{'recipe / method':<52} {'cat P@5':>8} {'sub P@5':>8} {'copy mAP':>9} "
            f"{'demo P@5':>9} {'s/img':>6}")
    lines = [head, "-" * len(head)]
    for name, r in result["recipes"].items():
        for m in r.get("methods", []):
            c, p, d = r.get("categories") or {}, r.get("copies") or {}, r.get("demo") or {}
            def cell(v):
                return f"{v:.3f}" if isinstance(v, float) else "-"
            lines.append(f"{(name + ' / ' + m)[:52]:<52} "
                         f"{cell(c.get('category', {}).get(m, {}).get('precision@5')):>8} "
                         f"{cell(c.get('subcategory', {}).get(m, {}).get('precision@5')):>8} "
                         f"{cell(p.get(m, {}).get('mAP')):>9} "
                         f"{cell(d.get(m, {}).get('precision@5')):>9} "
                         f"{cell(c.get('seconds_per_image')):>6}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    wanted = [r for r in RECIPES if not args.recipes or r in args.recipes.split(";")]
    result: dict = {"machine": machine(), "corpora": {"categories": str(args.clipart),
                    "copies": str(args.photos), "demo": str(args.demo)}, "recipes": {}}
    for i, name in enumerate(wanted):
        spec = RECIPES[name]
        # colour and PCA are recipe-independent; the three metrics for the old and new
        # defaults, cosine (the search's default) for the other levers
        methods = ((*EMB, "color", "pca") if i == 0 else EMB if "default)" in name
                   else ("embedding:cosine",))
        if len(spec) > 4:  # a re-ranking, measured beside the plain cosine
            methods = (*methods, f"embedding:cosine+{parse_rerank(spec[4])}")
        r: dict = {"spec": {"backbone": spec[0], "framing": spec[1], "pooling": spec[2],
                            "post": spec[3], "rerank": spec[4] if len(spec) > 4 else None},
                   "methods": list(methods)}
        for key, fn, corpus in (("categories", categories, args.clipart),
                                ("copies", copies, args.photos), ("demo", demo, args.demo)):
            r[key] = fn(corpus, args.work / "quality-index", spec, methods, args.extract)
        result["recipes"][name] = r
        print(f"[{time.perf_counter() - t0:.0f} s] {name}", file=sys.stderr)
    timed = levers.CACHE / args.clipart.name / "timing.json"
    if timed.is_file():  # python -m bench.levers CORPUS --time N: every backbone, one run
        result["timing"] = json.loads(timed.read_text())
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(result), file=sys.stderr)
    return result
