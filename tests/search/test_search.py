"""Exact search: imgrec.search.rank.rank and Index.search against a float64 brute-force reference.

The reference computes every distance with scipy.spatial.distance.cdist in float64 and
sorts by (value, row number): the documented tie-break.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist

from imgrec import Index, Stored
from imgrec.errors import ImageError, IndexFormatError, IndexNotFoundError, QueryError
from imgrec.index import half as H
from imgrec.index.writer import current_version
from imgrec.search.rank import LARGER_IS_BETTER, SearchResult, rank

METRICS = ("cosine", "euclidean", "manhattan", "chi2")


def _chi2_pair(a: np.ndarray, b: np.ndarray) -> float:
    s = a + b
    m = s > 0
    return float(0.5 * np.sum((a[m] - b[m]) ** 2 / s[m]))


def reference_values(metric: str, data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q, n) float64 values by brute force (cosine: similarity; others: distance)."""
    d, q = np.asarray(data, np.float64), np.atleast_2d(np.asarray(queries, np.float64))
    if metric == "cosine":
        return 1.0 - cdist(q, d, "cosine")
    if metric == "chi2":
        return cdist(q, d, _chi2_pair)
    return cdist(q, d, {"euclidean": "euclidean", "manhattan": "cityblock"}[metric])


def reference_top(values: np.ndarray, k: int, larger: bool) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(values))
    o = np.lexsort((rows, -values if larger else values))[:k]
    return rows[o], values[o]


def reference_rank(metric: str, data: np.ndarray, queries: np.ndarray, k: int):
    """([(rows, values, all values) per query], (rows, values, all values) combined)."""
    vals = reference_values(metric, data, queries)
    larger = LARGER_IS_BETTER[metric]
    per = [(*reference_top(v, k, larger), v) for v in vals]
    mean = vals.mean(0)
    return per, (*reference_top(mean, k, larger), mean)


def assert_same(got, ref) -> None:
    """``got`` = (rows, values) equals the reference top-k.

    Rows must match exactly, except that rows whose reference values agree to float64
    rounding (1e-12; e.g. a mathematically exact tie computed along two different paths)
    may swap places. Exact duplicates tie bit for bit and are checked strictly elsewhere.
    """
    rows, values = got
    ref_rows, ref_values, full = ref
    assert len(rows) == len(ref_rows) == len(set(rows.tolist()))
    np.testing.assert_allclose(values, ref_values, rtol=1e-10, atol=1e-12)
    tol = 1e-12 * np.maximum(1.0, np.abs(ref_values))
    bad = np.abs(full[rows] - ref_values) > tol  # the row does not hold that rank's value
    assert not bad.any(), (rows.tolist(), ref_rows.tolist())


def norms_of(data: np.ndarray) -> np.ndarray:
    return np.linalg.norm(data.astype(np.float64), axis=1).astype(np.float32)


def copy_of(data: np.ndarray, first_pass: str) -> H.HalfCopy | None:
    """The float16 copy an index would store for ``data`` (None: float32 first pass)."""
    return H.HalfCopy(*H.encode(data)) if first_pass == "float16" else None


#: (metric, first pass) cases of rank(): chi-square has no float16 pass
PASSES = [(m, p) for m in METRICS for p in ("float32", "float16")
          if not (m == "chi2" and p == "float16")]


def random_data(metric: str, rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    if metric == "chi2":
        h = rng.random((n, d)) * (rng.random((n, d)) < 0.4)
        h[:, 0] += 1e-3
        return (h / h.sum(1, keepdims=True)).astype(np.float32)
    return rng.normal(size=(n, d)).astype(np.float32)


# ---- rank(): exactness on random matrices -----------------------------------------------------

@pytest.mark.parametrize("metric, first_pass", PASSES)
@pytest.mark.parametrize("n_queries", [1, 2, 3, 5])
def test_rank_is_exact(metric, first_pass, n_queries):
    rng = np.random.default_rng([METRICS.index(metric), n_queries])  # fixed per case
    n, d = 600, 96 if metric != "chi2" else 768
    data = random_data(metric, rng, n, d)
    q = random_data(metric, rng, n_queries, d)
    q[0] = data[17]  # a stored row as query: it must come first
    copy = copy_of(data, first_pass)
    for k in (1, 7, 50):
        per, comb = rank(metric, data, q, k, norms=norms_of(data), half=copy)
        ref_per, ref_comb = reference_rank(metric, data, q, k)
        assert len(per) == n_queries
        for got, ref in zip(per, ref_per, strict=True):
            assert len(got[0]) == k
            assert_same(got, ref)
        assert_same(comb, ref_comb)
        assert per[0][0][0] == 17


@pytest.mark.parametrize("metric, first_pass", PASSES)
def test_rank_k_at_least_the_gallery(metric, first_pass):
    rng = np.random.default_rng(7)
    data = random_data(metric, rng, 12, 768 if metric == "chi2" else 8)
    q = random_data(metric, rng, 3, data.shape[1])
    for k in (12, 13, 1000):
        per, comb = rank(metric, data, q, k, norms=norms_of(data), half=copy_of(data, first_pass))
        ref_per, ref_comb = reference_rank(metric, data, q, 12)
        for got, ref in zip(per, ref_per, strict=True):
            assert_same(got, ref)
        assert_same(comb, ref_comb)
        assert sorted(comb[0].tolist()) == list(range(12))


@pytest.mark.parametrize("metric, first_pass", PASSES)
def test_rank_ties_follow_row_order(metric, first_pass):
    """Duplicate rows tie exactly; the documented tie-break is the smaller row number."""
    rng = np.random.default_rng(99)
    d = 768 if metric == "chi2" else 64
    base = random_data(metric, rng, 40, d)
    data = base[rng.integers(0, 8, size=300)]  # 300 rows, only 8 distinct values
    q = np.stack([base[3], random_data(metric, rng, 1, d)[0]])
    copy = copy_of(data, first_pass)
    for k in (1, 10, 60, 300):
        per, comb = rank(metric, data, q, k, norms=norms_of(data), half=copy)
        ref_per, ref_comb = reference_rank(metric, data, q, k)
        for got, ref in zip(per, ref_per, strict=True):
            assert_same(got, ref)
        assert_same(comb, ref_comb)
    per, _ = rank(metric, data, q[:1], 300, norms=norms_of(data), half=copy)
    rows, values = per[0]
    dup_rows = np.flatnonzero((data == base[3]).all(1))
    assert rows[: len(dup_rows)].tolist() == dup_rows.tolist()  # the copies, in row order
    for v in np.unique(values):  # within every group of equal values: ascending rows
        same = rows[values == v]
        assert same.tolist() == sorted(same.tolist())


@pytest.mark.parametrize("metric, first_pass", PASSES)
def test_rank_resolves_differences_below_float32_precision(metric, first_pass):
    """Rows that differ by a few float32 ulps: a float32 scan cannot order them (and
    their float16 copies are identical), the float64 rescoring must (and must match the
    float64 reference)."""
    rng = np.random.default_rng(5)
    d = 768 if metric == "chi2" else 256
    base = random_data(metric, rng, 1, d)[0]
    n = 400
    data = np.repeat(base[None], n, axis=0)
    cols = rng.integers(0, d, size=n)
    steps = rng.integers(1, 40, size=n)
    for i in range(n):  # move one coordinate of each row by a few ulps
        v = data[i, cols[i]]
        for _ in range(steps[i]):
            v = np.nextafter(v, np.float32(np.inf) if i % 2 else np.float32(0))
        data[i, cols[i]] = v
    noise = random_data(metric, rng, 2, d)
    # (for cosine the query must not be ``base`` itself: near 1, cosine differences fall
    # below float64 resolution and every order is a tie)
    q = np.stack([base + noise[0] * 0.01, base + noise[1] * 0.5 if metric == "cosine" else base])
    q = np.abs(q) if metric == "chi2" else q
    vals = reference_values(metric, data, q)
    assert len(np.unique(vals[0])) > 50  # the reference does tell them apart
    copy = copy_of(data, first_pass)
    if copy is not None:
        assert len(np.unique(copy.data, axis=0)) < 20  # float16 rows cannot
    for k in (1, 5, 25):
        per, comb = rank(metric, data, q, k, norms=norms_of(data), half=copy)
        ref_per, ref_comb = reference_rank(metric, data, q, k)
        for got, ref in zip(per, ref_per, strict=True):
            assert_same(got, ref)
        assert_same(comb, ref_comb)


@pytest.mark.parametrize("first_pass", ["float32", "float16"])
def test_rank_cosine_does_not_need_unit_rows(first_pass):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 16)).astype(np.float32) * rng.uniform(0.01, 100, (200, 1)).astype(
        np.float32)
    data[7] = 0  # a zero row has cosine 0 with everything
    q = rng.normal(size=(2, 16)).astype(np.float32) * 7
    per, comb = rank("cosine", data, q, 10, norms=norms_of(data), half=copy_of(data, first_pass))
    ref_per, ref_comb = reference_rank("cosine", data, q, 10)
    for got, ref in zip(per, ref_per, strict=True):
        assert_same(got, ref)
    assert_same(comb, ref_comb)


def test_rank_empty_gallery():
    per, comb = rank("manhattan", np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32), 5)
    assert [len(r) for r, _ in per] == [0, 0] and len(comb[0]) == 0


# ---- Index.from_arrays + Index.search with stored queries ------------------------------------

N, DIM = 300, 64


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    rng = np.random.default_rng(2024)
    paths = [f"fam{i % 7}/img_{i:03d}.jpg" for i in range(N)]
    emb = rng.normal(size=(N, DIM)).astype(np.float32) * rng.uniform(0.5, 3, (N, 1)).astype(
        np.float32)
    emb[250:260] = emb[5]  # exact ties: rows 5 and 250..259 are the same vector
    hist = random_data("chi2", rng, N, 768).reshape(N, 3, 256)
    hist /= hist.sum(-1, keepdims=True)
    hist = hist.reshape(N, 768).astype(np.float32)
    hist[270:275] = hist[9]
    index_dir = tmp_path_factory.mktemp("arrays") / "index"
    idx = Index.from_arrays(index_dir, paths, emb, hist, model="random-64")
    return idx, paths, emb, hist


def test_from_arrays_writes_what_it_was_given(arrays):
    idx, paths, emb, hist = arrays
    assert len(idx) == N and idx.model == "random-64"
    assert idx.all_paths() == paths
    unit = emb.astype(np.float64) / np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(idx.embeddings), unit, atol=1e-6)
    np.testing.assert_allclose(np.asarray(idx.embedding_norms), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(idx.histograms), hist)
    m = idx.manifest
    assert (m.count, m.embedding_dim, m.histogram_dim, m.pca_components) == (N, DIM, 768, 75)
    pca = idx.pca()
    np.testing.assert_allclose(np.asarray(idx.pca_histograms), pca.transform(hist), atol=1e-5)
    for name in ("embeddings.npy", "histograms.npy", "pca_histograms.npy"):
        assert isinstance(np.load(idx.dir / name, mmap_mode="r", allow_pickle=False), np.memmap)
    assert not list(idx.dir.glob("*.pkl"))


QUERY_SETS = [[0], [5], [3, 250], [11, 40, 77], [1, 2, 3, 4], [9, 100, 200, 299, 150]]
CASES = [("embedding", "cosine", "cosine"), ("embedding", "euclidean", "euclidean"),
         ("embedding", "manhattan", "manhattan"), ("color", "cosine", "chi2"),
         ("pca", "cosine", "cosine")]


def _matrix(idx: Index, method: str) -> np.ndarray:
    return {"embedding": idx.embeddings, "color": idx.histograms,
            "pca": idx.pca_histograms}[method]


def _check_hits(hits, ref, paths, metric) -> None:
    got_rows = np.array([h.row for h in hits])
    assert_same((got_rows, np.array([h.score if metric == "cosine" else h.distance
                                     for h in hits])), ref)
    rows, values, _ = ref
    assert [h.path for h in hits] == [paths[r] for r in got_rows]
    assert [h.rank for h in hits] == list(range(1, len(rows) + 1))
    for h, v in zip(hits, values, strict=True):
        if metric == "cosine":
            assert h.score == pytest.approx(v, abs=1e-12)
            assert h.distance == pytest.approx(1 - v, abs=1e-12)
        else:
            assert h.distance == pytest.approx(v, rel=1e-10, abs=1e-12)
            assert h.score == pytest.approx(1 / (1 + v), rel=1e-10)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("method, metric, kernel", CASES)
@pytest.mark.parametrize("rows", QUERY_SETS, ids=lambda r: f"q{len(r)}")
@pytest.mark.parametrize("first_pass", ["float16", "float32"])
def test_index_search_stored_is_exact(arrays, method, metric, kernel, rows, first_pass):
    idx, paths, _, _ = arrays
    data = np.asarray(_matrix(idx, method))
    idx = Index.open(idx.index_dir, first_pass=first_pass)
    assert idx.first_pass == first_pass
    for k in (1, 8, N + 20):
        res = idx.search([Stored(paths[r]) for r in rows], method=method, metric=metric, k=k)
        assert isinstance(res, SearchResult)
        assert res.method == method and res.metric == kernel and res.k == k
        assert res.queries == [paths[r] for r in rows]
        ref_per, ref_comb = reference_rank(kernel, data, data[rows], min(k, N))
        for hits, ref, r in zip(res.per_query, ref_per, rows, strict=True):
            _check_hits(hits, ref, paths, kernel)
            assert hits[0].row == min(np.flatnonzero((data == data[r]).all(1)))  # itself
        _check_hits(res.combined, ref_comb, paths, kernel)


def test_index_search_ties_by_row(arrays):
    idx, paths, _, _ = arrays
    res = idx.search([Stored(paths[255])], k=12)
    assert [h.row for h in res.per_query[0][:11]] == [5, *range(250, 260)]
    assert res.per_query[0][0].score == pytest.approx(1.0, abs=1e-6)
    res = idx.search([Stored(paths[272])], method="color", k=6)
    assert [h.row for h in res.per_query[0]] == [9, 270, 271, 272, 273, 274]
    assert all(h.distance == 0.0 for h in res.per_query[0])


def test_search_all_metrics(arrays):
    """'all': the union of the cosine, euclidean and manhattan top-k, ordered by cosine."""
    idx, paths, _, _ = arrays
    data = np.asarray(idx.embeddings)
    rows = [20, 21, 22]
    q = data[rows]
    k = 6
    res = idx.search([Stored(paths[r]) for r in rows], metric="all", k=k)
    assert res.metric == "all" and len(res.per_query) == 3
    vals = {m: reference_values(m, data, q) for m in ("cosine", "euclidean", "manhattan")}

    def expected(pick) -> list[int]:
        union = set()
        for m, v in vals.items():
            union |= set(reference_top(pick(v), k, m == "cosine")[0].tolist())
        union = np.array(sorted(union))
        return reference_top(pick(vals["cosine"])[union], len(union), True)[0].tolist(), union

    for j, hits in enumerate(res.per_query):
        order, union = expected(lambda v, j=j: v[j])
        assert [h.row for h in hits] == union[order].tolist()
        for h in hits:
            assert set(h.metrics) == {"cosine", "euclidean", "manhattan"}
            for m in h.metrics:
                assert h.metrics[m] == pytest.approx(vals[m][j, h.row], rel=1e-10, abs=1e-12)
            assert h.score == pytest.approx(h.metrics["cosine"])
    order, union = expected(lambda v: v.mean(0))
    assert [h.row for h in res.combined] == union[order].tolist()
    assert k <= len(res.combined) <= 3 * k


def test_pca_components(arrays):
    idx, paths, _, _ = arrays
    queries = [Stored(paths[r]) for r in (8, 80)]
    full = idx.search(queries, method="pca", k=10)
    assert full.notes == []
    clipped = idx.search(queries, method="pca", k=10, pca_components=1000)
    assert any("clipped" in n and "75" in n for n in clipped.notes)
    assert [h.row for h in clipped.combined] == [h.row for h in full.combined]
    data = np.asarray(idx.pca_histograms)[:, :5]
    few = idx.search(queries, method="pca", k=10, pca_components=5)
    ref_per, ref_comb = reference_rank("cosine", data, data[[8, 80]], 10)
    for hits, ref in zip(few.per_query, ref_per, strict=True):
        _check_hits(hits, ref, paths, "cosine")
    _check_hits(few.combined, ref_comb, paths, "cosine")
    with pytest.raises(QueryError, match="at least 1"):
        idx.search(queries, method="pca", pca_components=-3)


def test_pca_components_zero_is_refused(arrays):
    idx, paths, _, _ = arrays
    with pytest.raises(QueryError, match="at least 1"):
        idx.search([Stored(paths[0])], method="pca", pca_components=0)


def test_pca_components_clipped_to_what_the_data_allows(tmp_path):
    rng = np.random.default_rng(0)
    hist = random_data("chi2", rng, 10, 768)
    idx = Index.from_arrays(tmp_path / "ix", [f"{i}.png" for i in range(10)],
                            rng.normal(size=(10, 4)), hist, model="m")
    assert idx.manifest.pca_components == 9  # n - 1
    assert idx.pca_histograms.shape == (10, 9)
    res = idx.search([Stored("3.png")], method="pca", k=3, pca_components=75)
    assert res.per_query[0][0].path == "3.png" and res.notes


def test_request_validation(arrays):
    idx, paths, _, _ = arrays
    six = [Stored(p) for p in paths[:6]]
    with pytest.raises(QueryError, match="at most 5"):
        idx.search(six)
    with pytest.raises(QueryError, match="at most 5"):
        idx.search(six, method="color")
    with pytest.raises(QueryError, match="at least one"):
        idx.search([])
    with pytest.raises(QueryError, match="unknown method"):
        idx.search(Stored(paths[0]), method="sift")
    with pytest.raises(QueryError, match="unknown metric"):
        idx.search(Stored(paths[0]), metric="hamming")
    for k in (0, -1, 2.5, "3"):
        with pytest.raises(QueryError, match="k must be"):
            idx.search(Stored(paths[0]), k=k)
    with pytest.raises(QueryError, match="not an indexed image"):
        idx.search(Stored("fam0/missing.jpg"))
    one = idx.search(Stored(paths[4]), k=2)  # a single query need not be in a list
    assert one.queries == [paths[4]] and one.per_query[0][0].row == 4


def test_from_arrays_validation(tmp_path):
    e, h = np.ones((2, 4)), np.ones((2, 768))
    with pytest.raises(ValueError, match="unique"):
        Index.from_arrays(tmp_path / "a", ["x.jpg", "x.jpg"], e, h, model="m")
    with pytest.raises(ValueError, match="shape"):
        Index.from_arrays(tmp_path / "b", ["x.jpg", "y.jpg"], e, np.ones((2, 10)), model="m")
    with pytest.raises(ValueError, match="shape"):
        Index.from_arrays(tmp_path / "c", ["x.jpg"], e, h, model="m")
    assert current_version(tmp_path / "a") is None


def test_from_arrays_refuses_non_finite_features(tmp_path):
    rng = np.random.default_rng(0)
    emb, hist = rng.normal(size=(20, 8)), random_data("chi2", rng, 20, 768)
    emb[3] = np.nan
    with pytest.raises(ValueError, match=r"(?i)finite|nan"):
        Index.from_arrays(tmp_path / "ix", [f"{i}.jpg" for i in range(20)], emb, hist, model="m")


def test_to_dict_is_the_json_shape(arrays):
    idx, paths, _, _ = arrays
    res = idx.search([Stored(paths[1]), Stored(paths[2])], method="color", k=3)
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) >= {"method", "metric", "k", "queries", "combined"}
    assert (d["method"], d["metric"], d["k"]) == ("color", "chi2", 3)
    assert [q["query"] for q in d["queries"]] == [paths[1], paths[2]]
    for hit in d["queries"][0]["hits"] + d["combined"]:
        assert set(hit) == {"rank", "path", "score", "distance"}
    rows = res.to_rows()
    assert len(rows) == 3 * 3 and rows[-1]["query"] == "combined"


# ---- opening: missing index, other format version, damaged files ----------------------------

def test_open_missing_index(tmp_path):
    with pytest.raises(IndexNotFoundError, match=r"no index at .*imgrec index"):
        Index.open(tmp_path / "nothing-here")
    assert issubclass(IndexNotFoundError, FileNotFoundError)


def _copy(idx: Index, dest: Path) -> Path:
    shutil.copytree(idx.index_dir, dest)
    return current_version(dest)


def test_open_other_format_version(arrays, tmp_path):
    idx = arrays[0]
    for found in (2, 0, None, "1"):
        version = _copy(idx, tmp_path / f"ix{found}")
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["format_version"] = found
        (version / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IndexFormatError, match=r"format version .*rebuild"):
            Index.open(tmp_path / f"ix{found}")
    assert len(Index.open(idx.index_dir)) == N  # the original is untouched


def test_open_damaged_index(arrays, tmp_path):
    idx = arrays[0]
    version = _copy(idx, tmp_path / "bad-manifest")
    (version / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="damaged"):
        Index.open(tmp_path / "bad-manifest")
    version = _copy(idx, tmp_path / "bad-shape")
    np.save(version / "embeddings.npy", np.zeros((N, DIM + 1), np.float32))
    with pytest.raises(IndexFormatError, match="shape"):
        Index.open(tmp_path / "bad-shape")
    version = _copy(idx, tmp_path / "pickled")
    np.save(version / "histograms.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexFormatError):  # object arrays are never unpickled
        Index.open(tmp_path / "pickled")
    version = _copy(idx, tmp_path / "no-catalog")
    (version / "catalog.sqlite").unlink()
    with pytest.raises(IndexFormatError, match="catalog"):
        Index.open(tmp_path / "no-catalog")


# ---- real queries on the demo index: path, PIL image, bytes, file object ------------------------

EUCLID_LIMIT = float(np.sqrt(2 * 1e-4))  # |a - b| for unit vectors with cosine 0.9999
QUERY_FILES = ["astronaut/astronaut_exif6.jpg", "retina/retina_scale150.jpg", "coins/coins_orig.jpg"]
ALL_CASES = [("embedding", "cosine"), ("embedding", "euclidean"), ("embedding", "manhattan"),
             ("embedding", "all"), ("color", "cosine"), ("pca", "cosine")]


@pytest.mark.parametrize("rel", QUERY_FILES)
def test_gallery_image_finds_itself_from_any_source(demo_index_cached, demo_gallery, rel):
    """Through the caching embedder: the CNN runs once per distinct crop, so five sources
    decoding to the same crop cost one forward pass, and any that decodes differently is
    embedded separately (and would then miss the cosine threshold)."""
    demo_index = demo_index_cached
    path = demo_gallery / rel
    data = path.read_bytes()
    for method, metric in ALL_CASES:
        with open(path, "rb") as fh:
            sources = [str(path), path, Image.open(io.BytesIO(data)), data, fh]
            res = demo_index.search(sources, method=method, metric=metric, k=3)
        assert len(res.per_query) == 5
        for hits in res.per_query:
            top = hits[0]
            assert top.path == rel, (method, metric, [h.path for h in hits])
            if method == "color":
                assert top.distance == pytest.approx(0.0, abs=1e-6)
            else:
                assert top.score >= 0.9999
                if metric in ("euclidean", "manhattan"):  # what cosine >= 0.9999 allows
                    limit = EUCLID_LIMIT * (np.sqrt(1280) if metric == "manhattan" else 1)
                    assert 0 <= top.distance < limit
                if metric == "all":
                    assert top.metrics["cosine"] >= 0.9999
        assert res.combined[0].path == rel
    assert res.queries[0] == Path(rel).name


def test_decoded_pil_image_of_large_jpeg_is_near_its_file(demo_index, demo_gallery):
    """Documented limit: pixels decoded at full size cannot reproduce the DCT-scaled draft
    decode of the indexed file, so the match is near (cosine > 0.999), not exact. An
    unloaded ``Image.open`` object is read from its file and matches exactly."""
    rel = "retina/retina_scale150.jpg"  # 1536 x 1536: draft-decoded at index time
    with Image.open(demo_gallery / rel) as im:
        decoded = im.convert("RGB")
    hits = demo_index.search([decoded], k=3).per_query[0]
    assert rel in [h.path for h in hits]
    assert all(h.score > 0.999 for h in hits if h.path == rel)
    with Image.open(demo_gallery / rel) as lazy:
        top = demo_index.search([lazy], k=1).per_query[0][0]
    assert top.path == rel and top.score >= 0.9999


def test_search_does_not_modify_the_callers_image(demo_index, demo_gallery):
    im = Image.open(demo_gallery / "retina/retina_scale150.jpg")
    size = im.size
    demo_index.search([im], method="color", k=1)
    assert im.size == size


def test_stored_query_equals_query_from_disk(demo_index, demo_gallery):
    rel = "coffee/coffee_tone.jpg"
    for method, metric in ALL_CASES:
        a = demo_index.search([Stored(rel)], method=method, metric=metric, k=5)
        b = demo_index.search([demo_gallery / rel], method=method, metric=metric, k=5)
        assert [h.path for h in a.per_query[0]] == [h.path for h in b.per_query[0]]
        for x, y in zip(a.per_query[0], b.per_query[0], strict=True):
            assert x.score == pytest.approx(y.score, abs=1e-4)


def test_bad_query_files(demo_index, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        demo_index.search([tmp_path / "does-not-exist.jpg"], method="color")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        demo_index.search([tmp_path / "notes.png"], method="color")
    with pytest.raises(ImageError, match="empty"):
        demo_index.search([b""], method="color")


def test_query_with_another_embedder_is_refused(demo_index, tiny_embedder):
    other = Index.open(demo_index.index_dir, embedder=tiny_embedder)
    with pytest.raises(QueryError, match="built with efficientnet-lite0"):
        other.search([Image.new("RGB", (64, 64))], k=1)
