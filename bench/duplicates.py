"""Duplicates: scan speed at scale and copy-detection accuracy (`python -m bench duplicates`).

Speed: ``n`` synthetic 1,280-d embeddings drawn from a Gaussian with the mean and
covariance of a real gallery's embeddings (``--stats-index``; its spectrum is what the
first pass's bound depends on), 1 % of them with a planted copy (cosine ~0.9-0.99); each
size runs in its own process (peak RSS is that process's), timing ``near_pairs`` at the
default threshold with its exactness bound, and the first pass's pruning rate; and the
dihedral hash lookup (:mod:`imgrec.insights.duplicates.hashlookup`) over as many DCTs drawn
from the stats index's cached ones.

Keeper (``--keeper-corpus``, built by ``python -m bench.keeper_corpus``, and its
``--keeper-index``): which version keeps each original's ``same picture`` group.

Accuracy (``--corpus``, built by ``python -m bench.copy_corpus`` and indexed with ``imgrec
index``): per transformation, the share of copies found with their original (any tier) and
in the ``same picture`` tier, the tier they landed in, and the precision of ``same picture``
pairs; beside it, imagehash's pHash at hamming <= 10 and plain CNN cosine at the default
threshold of the index's recipe on the same pairs. ``--corpus-index`` takes one index per
recipe (each measured in turn, in one run). A pair is correct when both images show one tile
of one artwork: the wallpaper packages ship some artworks at several resolutions (Elephants
three times, Patak light and dark), so with the corpus's ``sources.json`` the artwork is the
wallpaper's folder or its file name without the resolution; and two pictures whose fine
detail correlates >= 0.5 under a rotation/mirroring are one picture too
(:class:`PixelTruth`: colourings of one photograph, mirror-image tiles of a symmetric
artwork; the pairs it relabels are listed in ``same_by_pixels``). ``by_artwork_only`` leaves
out that second rule, ``by_file`` both (the original file alone is the family).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .machine import machine


def synthetic(path: Path, n: int, stats_index: Path, seed: int = 0) -> Path:
    """A cached (n, 1280) float32 .npy of Gaussian embeddings with planted copies."""
    from imgrec import Index

    if path.exists():
        return path
    emb = np.asarray(Index.open(stats_index).embeddings, np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    mu, cov = emb.mean(0), np.cov(emb, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    scale = np.sqrt(np.maximum(vals, 0))
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float32,
                                    (n, emb.shape[1]))
    planted = n // 100
    base = n - planted
    for s in range(0, base, 20000):
        m = min(20000, base - s)
        out[s:s + m] = mu + (rng.standard_normal((m, len(vals))) * scale) @ vecs.T
    src = rng.choice(base, planted, replace=False)
    for s in range(0, planted, 20000):
        part = np.asarray(out[src[s:s + 20000]], np.float64)
        noise = rng.standard_normal(part.shape) * scale @ vecs.T
        k = rng.uniform(0.1, 0.5, (len(part), 1))
        out[base + s:base + s + len(part)] = part + k * noise
    out.flush()
    del out
    path.with_suffix(".tmp.npy").rename(path)
    return path


def speed_one(path: Path, threshold: float, rank: int) -> dict:
    """Time the scan over one synthetic matrix (run in a fresh process)."""
    from imgrec.insights.duplicates.scan import near_pairs

    data = np.load(path, mmap_mode="r")
    st: dict = {}
    t, c = time.perf_counter(), time.process_time()
    i, _, _ = near_pairs(data, None, threshold, rank=rank, stats=st)
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    past = dict(zip(["first_pass", "top_m_test"] + [f"{r}_d" for r in st["dims"][1:]],
                    st["stages"], strict=True))
    return {"n": len(data), "dim": data.shape[1], "threshold": threshold, "dims": st["dims"],
            "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1),
            "cpu_seconds_by_phase": st["cpu_seconds"], "pairs": st["pairs"],
            "pairs_found": len(i), "exact_checks": st["stages"][-1],
            "pairs_past": past,
            "share_past": {k: round(v / st["pairs"], 7) for k, v in past.items()},
            "pruned_first_pass": round(1 - st["survivors"] / st["pairs"], 6),
            "pruned_before_exact": round(1 - st["stages"][-1] / st["pairs"], 7),
            "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_speed(args) -> list[dict]:
    out = []
    for n in args.n:
        path = synthetic(args.work / f"dup-synth-{n}.npy", n, args.stats_index)
        code = ("import json,sys; from pathlib import Path; from bench.duplicates import "
                f"speed_one; print(json.dumps(speed_one(Path({str(path)!r}), "
                f"{args.threshold}, {args.rank})))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def hash_speed_one(n: int, stats_index: Path, seed: int = 0) -> dict:
    """Time the dihedral hash lookup over ``n`` DCTs drawn from a Gaussian with the mean
    and covariance of the cached DCTs of ``stats_index`` (real pHash bits are correlated,
    which fills the lookup's buckets unevenly), 1 % of them turned, noisy copies."""
    from imgrec import Index
    from imgrec.insights.duplicates import dihedral as D
    from imgrec.insights.duplicates import hashlookup as H
    from imgrec.insights.duplicates.core import catalog
    from imgrec.insights.duplicates.store import Store

    idx = Index.open(stats_index)
    real = np.stack([s.dct for s in Store(idx.index_dir).signals(
        [m[3] for m in catalog(idx)]).values()]).reshape(-1, 64).astype(np.float64)
    rng = np.random.default_rng(seed)
    cov = np.cov(real, rowvar=False)
    dcts = rng.multivariate_normal(real.mean(0), cov, n, method="cholesky").astype(np.float32)
    dcts = dcts.reshape(n, 8, 8)
    k = n // 100
    turned = D.variants(dcts[:k])[np.arange(k), rng.integers(1, 8, k)]
    dcts[-k:] = turned + rng.standard_normal(turned.shape).astype(np.float32) * 0.05 * np.sqrt(
        np.diag(cov)).reshape(8, 8).astype(np.float32)
    t = time.perf_counter()
    h = H.packed(dcts)
    t_pack = time.perf_counter() - t
    t = time.perf_counter()
    i, _, _ = H.dihedral_pairs(h, H.RADIUS)
    return {"n": n, "radius": H.RADIUS, "band_radii": H.band_radii(H.RADIUS),
            "pack_seconds": round(t_pack, 1), "lookup_seconds": round(time.perf_counter() - t, 1),
            "pairs_found": len(i), "planted": k,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_hash_speed(args) -> list[dict]:
    out = []
    for n in args.n:
        code = ("import json; from pathlib import Path; from bench.duplicates import "
                f"hash_speed_one; print(json.dumps(hash_speed_one({n}, "
                f"Path({str(args.stats_index)!r}))))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def _family(path: str, truth: dict[str, str], sources: dict[str, str] | None = None) -> str:
    """The original file of ``path``, or with ``sources`` its artwork and tile."""
    orig = truth.get(path, path)
    if sources is None:
        return orig
    m = re.match(r"(.*)_t(\d\d)$", Path(orig).stem)
    stem, tile = (m.group(1), m.group(2)) if m else (Path(orig).stem, "00")
    from .copy_corpus import artwork

    return f"{artwork(sources.get(stem, stem))}/t{tile}"


#: fine-detail correlation at which two corpus pictures are one picture whatever their files
SAME_DETAIL = 0.5


class PixelTruth:
    """The ground truth's second rule: two corpus pictures (originals and distractor tiles;
    a copy stands for its original) whose fine detail (the grey picture at 320 x 240 minus
    its Gaussian blur, sigma 1) correlates at least :data:`SAME_DETAIL` under one of the
    rotations/mirrorings show the same picture, whatever files they were cut from. The
    wallpaper packages ship one star-field photograph in several colourings (Ubuntu-Mate
    Cold, Warm, Radioactive: 0.97-0.98) and symmetric artworks whose tiles are mirror
    images of each other (Stripes: 0.85); smooth tiles that merely share a gradient
    correlate about 0 (their grey pixels alone would correlate 0.98)."""

    def __init__(self, root: Path, truth: dict[str, str]) -> None:
        self.root, self.truth = root, truth
        self.known: dict[tuple[str, str], bool] = {}
        self.fine: dict[str, np.ndarray] = {}
        self.relabelled: list[str] = []

    def _load(self, path: str) -> np.ndarray:
        from PIL import Image
        from scipy.ndimage import gaussian_filter

        if path not in self.fine:
            with Image.open(self.root / path) as im:
                x = np.asarray(im.convert("L").resize((320, 240)), np.float32)
            x = x - gaussian_filter(x, 1.0)
            x -= x.mean()
            self.fine[path] = x / (np.sqrt((x * x).mean()) + 1e-6)
        return self.fine[path]

    def __call__(self, a: str, b: str) -> bool:
        a, b = sorted((self.truth.get(a, a), self.truth.get(b, b)))
        if a == b:
            return True
        if (a, b) not in self.known:
            x, y = self._load(a), self._load(b)
            best = max(float((x * y[::-1 if v & 2 else 1, ::-1 if v & 1 else 1]).mean())
                       for v in range(4))  # tiles are 4:3, so no transposed variant fits
            self.known[(a, b)] = best >= SAME_DETAIL
            if best >= SAME_DETAIL:
                self.relabelled.append(f"{a} = {b} ({best:.3f})")
        return self.known[(a, b)]


def _transform(path: str) -> str:
    return path.split("/")[1]


def run_accuracy(args, index_dir: Path) -> dict:
    """Per-transformation recall and same-picture precision, with the two peers, on the
    corpus index ``index_dir`` at its recipe's default threshold."""
    import imagehash
    from PIL import Image

    from imgrec import Index
    from imgrec.insights.duplicates import SAME, default_threshold, find_duplicates

    idx = Index.open(index_dir)
    cnn_t = default_threshold(idx)
    truth = json.loads((args.corpus / "truth.json").read_text())
    paths = idx.all_paths()
    t = time.perf_counter()
    rep = find_duplicates(idx)
    secs = time.perf_counter() - t
    group, keeper_of = {}, {}
    for g in rep.groups:
        for m in g.members:
            group.setdefault(m.path, (g.id, g.tier))
            keeper_of.setdefault(m.path, f"{g.tier} group of {g.keeper.path}")
    missed: list[str] = []
    row = {p: r for r, p in enumerate(paths)}
    emb = np.asarray(idx.embeddings, np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    hashes = np.array([int(str(imagehash.phash(Image.open(idx.root / p))), 16) for p in paths],
                      dtype=np.uint64)
    per: dict[str, dict] = defaultdict(lambda: {"copies": 0, "found": 0, "same_picture": 0,
                                                "tiers": Counter(), "phash": 0, "cnn": 0})
    for cp, orig in truth.items():
        if cp not in row or orig not in row:
            continue
        r = per[_transform(cp)]
        r["copies"] += 1
        gc, go = group.get(cp), group.get(orig)
        tier = gc[1] if gc and go and gc[0] == go[0] else "missed"
        if tier == "missed" and len(missed) < 80:
            missed.append(f"{cp}: in {keeper_of.get(cp, 'no group')}, original in "
                          f"{keeper_of.get(orig, 'no group')}")
        r["tiers"][tier] += 1
        r["found"] += tier != "missed"
        r["same_picture"] += tier == SAME
        r["phash"] += bin(int(hashes[row[cp]] ^ hashes[row[orig]])).count("1") <= 10
        r["cnn"] += float(emb[row[cp]] @ emb[row[orig]]) >= cnn_t
    table = {k: {"copies": v["copies"], "recall_any_tier": round(v["found"] / v["copies"], 3),
                 "recall_same_picture": round(v["same_picture"] / v["copies"], 3),
                 "tiers": dict(v["tiers"]), "phash_recall": round(v["phash"] / v["copies"], 3),
                 "cnn_recall": round(v["cnn"] / v["copies"], 3)} for k, v in sorted(per.items())}
    src_file = args.corpus / "sources.json"
    sources = json.loads(src_file.read_text()) if src_file.is_file() else None
    fam = [_family(p, truth, sources) for p in paths]
    by_file = [_family(p, truth) for p in paths]
    pix = PixelTruth(args.corpus, truth)

    def correct(r: int, c: int) -> bool:
        return fam[r] == fam[c] or pix(paths[r], paths[c])

    keepers: Counter = Counter()  # who keeps each same-picture group holding an original
    for g in rep.groups:
        if g.tier == SAME and any(m.path in truth.values() for m in g.members):
            k = g.keeper.path
            keepers["the original" if k in truth.values() else
                    _transform(k) if k in truth else "another picture"] += 1
    same = [(g.keeper, m) for g in rep.groups if g.tier == SAME for m in g.members[1:]]
    ours = [correct(k.row, m.row) for k, m in same]
    wrong = [f"{k.path} ~ {m.path}: {m.evidence}" for k, m in same if not correct(k.row, m.row)]
    return {"recipe": idx.recipe.name, "threshold": cnn_t,
            "images": len(paths), "originals": len(set(truth.values())),
            "copies": len(truth), "distractors": len(paths) - len(truth) - len(set(truth.values())),
            "seconds": round(secs, 1), "per_transformation": table,
            "same_picture_wrong": wrong[:60],
            "keeper_of_groups_with_an_original": dict(keepers.most_common()),
            "same_picture_precision": {
                "ours": _ratio(ours),
                "ours_by_artwork_only": _ratio([fam[k.row] == fam[m.row] for k, m in same]),
                "ours_by_file": _ratio([by_file[k.row] == by_file[m.row] for k, m in same]),
                "phash_hamming_10": _pair_precision(hashes, fam, "phash", correct),
                "cnn_cosine_default": _pair_precision(emb, fam, "cnn", correct, cnn_t)},
            "same_by_pixels": sorted(pix.relabelled), "missed": missed}


def run_keeper(args) -> dict:
    """Who keeps, on the keeper corpus (``python -m bench.keeper_corpus``: originals with real
    detail): for each original, the keeper of the ``same picture`` group that holds it (the
    original itself, one of its copies by transformation, or another original, for
    artworks shipped in several colourings), with the keeper's reason where it is not the
    original."""
    from imgrec import Index
    from imgrec.insights.duplicates import SAME, find_duplicates

    truth = json.loads((args.keeper_corpus / "truth.json").read_text())
    t = time.perf_counter()
    rep = find_duplicates(Index.open(args.keeper_index))
    secs = time.perf_counter() - t
    group = {m.path: g for g in rep.groups if g.tier == SAME for m in g.members}
    kept: Counter = Counter()
    not_original: list[str] = []
    for orig in sorted(set(truth.values())):
        g = group.get(orig)
        k = g.keeper if g else None
        who = ("in no same-picture group" if k is None else "the original" if k.path == orig
               else _transform(k.path) if truth.get(k.path) == orig else "another original")
        kept[who] += 1
        if k is not None and k.path != orig:
            not_original.append(f"{orig}: {k.path} keeps ({g.reason})")
    return {"originals": len(set(truth.values())), "copies": len(truth),
            "seconds": round(secs, 1), "keeper": dict(kept.most_common()),
            "not_the_original": not_original}


def _ratio(flags: list[bool]) -> dict:
    return {"pairs": len(flags), "correct": int(sum(flags)),
            "precision": round(sum(flags) / len(flags), 4) if flags else None}


def _pair_precision(x: np.ndarray, fam: list[str], kind: str, correct,
                    cnn_t: float = 0.65) -> dict:
    """Precision over every pair a peer calls a duplicate (``correct(row, row)`` decides
    the pairs of different artworks; ``cnn_t``: the cosine the CNN peer needs)."""
    f = np.array(fam)
    flags: list[bool] = []
    for s in range(0, len(x), 512):
        if kind == "phash":
            xor = x[s:s + 512, None] ^ x[None, :]
            dist = np.unpackbits(xor.view(np.uint8).reshape(*xor.shape, 8), axis=-1).sum(-1)
            hit = dist <= 10
        else:
            hit = (x[s:s + 512] @ x.T) >= cnn_t
        i, j = np.nonzero(hit)
        i += s
        keep = i < j
        i, j = i[keep], j[keep]
        ok = f[i] == f[j]
        flags += [bool(o) or correct(int(a), int(b)) for o, a, b in zip(ok, i, j, strict=True)]
    return _ratio(flags)


def run(args) -> dict:
    out: dict = {"machine": machine()}
    if args.corpus:
        out["accuracy"] = [run_accuracy(args, i) for i in args.corpus_index]
    if args.keeper_corpus:
        out["keeper"] = run_keeper(args)
    if args.n:
        out["speed"] = run_speed(args)
        out["hash_lookup_speed"] = run_hash_speed(args)
    return out
