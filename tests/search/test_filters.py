"""Restricted search (``where=``): the exact top-k among the rows that pass, for selective
filters (gathered rows) and broad ones (a row mask), every method and metric, against brute
force; the catalog conditions against the catalog itself."""

from __future__ import annotations

import numpy as np
import pytest
from test_search import _check_hits, random_data, reference_rank

from imgrec import Index, Stored
from imgrec.errors import QueryError
from imgrec.search import filters
from imgrec.search.filters import Where, parse_date
from imgrec.search.methods import TABLE

N, DIM, FOLDERS = 2000, 32, 100
CASES = [("embedding", "cosine", "cosine"), ("embedding", "euclidean", "euclidean"),
         ("embedding", "manhattan", "manhattan"), ("color", "cosine", "chi2"),
         ("pca", "cosine", "cosine")]


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    rng = np.random.default_rng(7)
    paths = sorted(f"d{i % FOLDERS:02d}/img_{i:04d}.jpg" for i in range(N))
    emb = rng.normal(size=(N, DIM)).astype(np.float32)
    emb[1500:1510] = emb[20]  # exact ties across the filter's edge
    hist = random_data("chi2", rng, N, 768).reshape(N, 3, 256)
    hist = (hist / hist.sum(-1, keepdims=True)).reshape(N, 768).astype(np.float32)
    top5 = rng.integers(0, 1000, (N, 5)).astype(np.int16)
    top5[::3, 0] = 207  # golden retriever: a third of the rows
    top5[5::97, 2] = 340  # zebra: 1 % of the rows, scattered
    top5[np.arange(N) % 10 != 3, 4] = 1  # goldfish: 90 % of the rows, scattered
    prob5 = np.sort(rng.random((N, 5)).astype(np.float32), 1)[:, ::-1].copy()
    idx = Index.from_arrays(tmp_path_factory.mktemp("f") / "ix", paths, emb, hist, model="r",
                            labels_top5=top5, labels_prob5=prob5)
    return idx, paths


def _where_cases(paths, top5):
    """(where, passing rows): 1 % (one folder: one run of rows; or a label: scattered rows)
    and 90 % (90 folders) of the rows."""
    from imgrec.insights.labels import match_classes

    def under(prefixes):
        return np.array([i for i, p in enumerate(paths) if p.split("/")[0] in prefixes])

    zebra = np.flatnonzero(np.isin(top5, match_classes("zebra")).any(1))
    goldfish = np.flatnonzero(np.isin(top5, match_classes("goldfish")).any(1))
    assert 0.005 < len(zebra) / len(paths) < 0.02 and 0.89 < len(goldfish) / len(paths) < 0.92
    return {"1%": ({"folders": ["d17"]}, under({"d17"})),
            "1%-scattered": ({"label": "zebra"}, zebra),
            "90%": ({"folders": [f"d{i:02d}/" for i in range(90)]},
                    under({f"d{i:02d}" for i in range(90)})),
            "90%-scattered": ({"label": "goldfish"}, goldfish)}


def _reference(kernel, data, rows, qrows, k):
    per, comb = reference_rank(kernel, data[rows], data[qrows], min(k, len(rows)))

    def back(ref):
        r, v, full = ref
        out = np.full(len(data), np.nan)
        out[rows] = full
        return rows[r], v, out
    return [back(r) for r in per], back(comb)


@pytest.mark.parametrize("share", ["1%", "1%-scattered", "90%", "90%-scattered"])
@pytest.mark.parametrize("method, metric, kernel", CASES)
@pytest.mark.parametrize("first_pass", ["float16", "float32"])
def test_filtered_search_is_exact(arrays, share, method, metric, kernel, first_pass):
    idx, paths = arrays
    idx = Index.open(idx.index_dir, first_pass=first_pass)
    where, rows = _where_cases(paths, np.asarray(idx.labels_top5))[share]
    data = np.asarray({"embedding": idx.embeddings, "color": idx.histograms,
                       "pca": idx.pca_histograms}[method], np.float64)
    for qrows in ([20], [3, 1500], [11, 40, 77, 900, 1999]):  # inside and outside the filter
        for k in (1, 10, N):
            res = idx.search([Stored(paths[r]) for r in qrows], method=method, metric=metric,
                             k=k, where=where)
            ref_per, ref_comb = _reference(kernel, data, rows, qrows, k)
            for hits, ref in zip(res.per_query, ref_per, strict=True):
                _check_hits(hits, ref, paths, kernel)
                assert set(h.row for h in hits) <= set(rows.tolist())
            _check_hits(res.combined, ref_comb, paths, kernel)
            assert len(res.combined) == min(k, len(rows))  # never fewer than k that pass


@pytest.mark.parametrize("share", ["1%", "1%-scattered", "90%", "90%-scattered"])
def test_filtered_all_metrics_and_refine(arrays, share):
    idx, paths = arrays
    where, rows = _where_cases(paths, np.asarray(idx.labels_top5))[share]
    allowed = set(rows.tolist())
    data = np.asarray(idx.embeddings, np.float64)
    res = idx.search([Stored(paths[3]), Stored(paths[700])], metric="all", k=7, where=where)
    for m in ("cosine", "euclidean", "manhattan"):
        ref_per, _ = _reference(m, data, rows, [3, 700], 7)
        for hits, ref in zip(res.per_query, ref_per, strict=True):
            assert set(ref[0].tolist()) <= {h.row for h in hits} <= allowed
    # refined: mean cosine to positives - w * mean cosine to negatives, among the rows
    pos, neg, w = [3, 700], [5], 0.7
    res = idx.search([Stored(paths[r]) for r in pos], k=9, negatives=[Stored(paths[5])],
                     negative_weight=w, where=where)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    score = unit @ unit[pos].T
    score = score.mean(1) - w * (unit @ unit[neg].T).mean(1)
    o = np.lexsort((rows, -score[rows]))[:9]
    assert [h.row for h in res.combined] == rows[o].tolist()
    np.testing.assert_allclose([h.score for h in res.combined], score[rows[o]], atol=1e-12)
    for hits in res.per_query:
        assert {h.row for h in hits} <= allowed and len(hits) == 9


def test_label_and_combined_filters(arrays):
    idx, paths = arrays
    top5 = np.asarray(idx.labels_top5)
    has_dog = (top5 == 207).any(1)  # "golden retriever" matches that one class
    res = idx.search(Stored(paths[0]), k=N, where=Where(label="golden retriever"))
    assert sorted(h.row for h in res.combined) == np.flatnonzero(has_dog).tolist()
    in_d05 = np.array([p.startswith("d05/") for p in paths])
    res = idx.search(Stored(paths[0]), k=N, where={"label": "golden retriever",
                                                   "folders": "d05"})
    assert sorted(h.row for h in res.combined) == np.flatnonzero(has_dog & in_d05).tolist()
    res = idx.search(Stored(paths[0]), k=5, where={"folders": "nowhere"})
    assert res.combined == [] and res.per_query == [[]]
    assert "restricted to 0 of" in res.notes[0]


def test_gather_and_mask_paths_are_both_taken(arrays):
    idx, _ = arrays
    scan = TABLE["embedding"].matrix(idx, None)
    r = filters.restrict(scan, np.arange(10, 20))  # one run: a view of the matrix
    assert r.mask is None and r.back is not None and len(r.scan.data) == 10
    assert np.shares_memory(r.scan.data, scan.data) and r.scan.half is not None
    r = filters.restrict(scan, np.arange(0, 40, 4))  # scattered: gathered
    assert r.mask is None and len(r.scan.data) == 10 and not np.shares_memory(r.scan.data,
                                                                                scan.data)
    broad = np.setdiff1d(np.arange(N), np.arange(0, N, 10))  # 90 %, scattered: a mask
    r = filters.restrict(scan, broad)
    assert r.back is None and r.mask is not None and r.mask.sum() == len(broad)


def test_where_validation():
    assert parse_date("2019") == "2019-01-01T00:00:00"
    assert Where(formats=("jpg", ".HEIC", "tif")).formats == ("JPEG", "HEIF", "TIFF")
    assert Where(folders=("./a/b/", "/c")).folders == ("a/b/", "c/")
    for bad in ({"after": "yesterday"}, {"before": "2019-13-01"}, {"min_width": -1},
                {"min_height": 2.5}, {"orientation": "diagonal"}, {"label": " "},
                {"folders": ["../x"]}, {"colour": "red"}):
        with pytest.raises(QueryError):
            Where.of(bad)
    with pytest.raises(QueryError, match="Where or a dict"):
        Where.of("folders=a")
