"""Quality on the demo gallery with the real EfficientNet-Lite0.

Every gallery image, queried from disk, must find itself first for every method, and the
images of its family (same top-level folder: variants of one photo) must rank high.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from imgrec import Stored
from imgrec.demo import family_of
from imgrec.images import center_crop, load_image, prepare

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
BATCH = 5  # queries per search (the maximum)


@pytest.fixture(scope="module")
def from_disk(demo_index_cached, demo_gallery):
    """Every gallery image searched from its file: embedding (all metrics), colour, PCA.

    (The caching embedder runs the CNN once per image although each file is decoded for
    three searches.)"""
    idx = demo_index_cached
    paths = idx.all_paths()
    results: dict[str, dict[str, list]] = defaultdict(dict)
    for s in range(0, len(paths), BATCH):
        batch = paths[s:s + BATCH]
        files = [str(demo_gallery / p) for p in batch]
        for method, metric in (("embedding", "all"), ("color", "cosine"), ("pca", "cosine")):
            res = idx.search(files, method=method, metric=metric, k=6)
            for rel, hits in zip(batch, res.per_query, strict=True):
                results[rel][method] = hits
    return paths, results


def test_every_image_finds_itself_first_from_disk(from_disk):
    paths, results = from_disk
    euclid = float(np.sqrt(2 * 1e-4))  # the distance of unit vectors with cosine 0.9999
    limits = {"euclidean": euclid, "manhattan": euclid * np.sqrt(1280)}
    failures = []
    for rel in paths:
        emb = results[rel]["embedding"]  # union of the three metrics' top-6, by cosine
        top = emb[0]
        if top.path != rel or top.metrics["cosine"] < 0.9999:
            failures.append((rel, "cosine", top.path, top.metrics["cosine"]))
        for metric in ("euclidean", "manhattan"):  # best of that metric among the union
            best = min(emb, key=lambda h, m=metric: (h.metrics[m], h.row))
            if best.path != rel or best.metrics[metric] > limits[metric]:
                failures.append((rel, metric, best.path, best.metrics[metric]))
        for method in ("color", "pca"):
            top = results[rel][method][0]
            ok = top.distance < 1e-6 if method == "color" else top.score >= 0.9999
            if top.path != rel or not ok:
                failures.append((rel, method, top.path, top.score))
    assert failures == [], failures


def test_stored_queries_find_themselves(demo_index):
    paths = demo_index.all_paths()
    for method, metric in (("embedding", "cosine"), ("embedding", "euclidean"),
                           ("embedding", "manhattan"), ("color", "cosine"), ("pca", "cosine")):
        for s in range(0, len(paths), BATCH):
            batch = paths[s:s + BATCH]
            res = demo_index.search([Stored(p) for p in batch], method=method, metric=metric, k=1)
            assert [h[0].path for h in res.per_query] == batch, (method, metric)


def _precision_at_5(ranked: dict[str, list[str]]) -> float:
    """Mean over queries of the share of the 5 best other images in the query's family."""
    values = []
    for rel, hit_paths in ranked.items():
        others = [p for p in hit_paths if p != rel][:5]
        assert len(others) == 5
        values.append(np.mean([family_of(p) == family_of(rel) for p in others]))
    return float(np.mean(values))


def test_same_family_precision_at_5(from_disk, capsys):
    paths, results = from_disk
    n = len(paths)
    sizes = defaultdict(int)
    for p in paths:
        sizes[family_of(p)] += 1
    chance = float(np.mean([(sizes[family_of(p)] - 1) / (n - 1) for p in paths]))
    p_at_5 = {
        "embedding (cosine)": _precision_at_5(
            {rel: [h.path for h in r["embedding"]][:6] for rel, r in results.items()}),
        "color (chi-square)": _precision_at_5(
            {rel: [h.path for h in r["color"]] for rel, r in results.items()}),
        "pca colour (cosine)": _precision_at_5(
            {rel: [h.path for h in r["pca"]] for rel, r in results.items()}),
    }
    with capsys.disabled():
        print(f"\n[demo quality] same-family precision@5 over {n} images "
              f"in {len(sizes)} families (chance {chance:.3f}):")
        for name, value in p_at_5.items():
            print(f"[demo quality]   {name:22} {value:.3f}")
    assert chance < 0.1
    assert p_at_5["embedding (cosine)"] > 0.8
    assert p_at_5["color (chi-square)"] > 0.6
    assert p_at_5["pca colour (cosine)"] > 0.6


def test_real_labels_on_demo_photos(demo_gallery, real_embedder):
    crops = np.stack([center_crop(prepare(load_image(demo_gallery / rel)[0]), 224)
                      for rel in ("chelsea/chelsea_orig.jpg", "coffee/coffee_orig.jpg")])
    _, probs = real_embedder.forward(crops)
    assert probs is not None
    cat_top5, coffee_top5 = (np.argsort(p)[::-1][:5].tolist() for p in probs)
    assert set(cat_top5) & set(CAT_CLASSES), cat_top5
    assert probs[0, list(CAT_CLASSES)].sum() > 0.5
    assert ESPRESSO in coffee_top5, coffee_top5
    assert int(np.argmax(probs[1])) == ESPRESSO
