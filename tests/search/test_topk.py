"""imgrec.search.topk: candidate rows from bounded fast scores, checked against NumPy, and
the tie-breaking order."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec.search import topk


def numpy_candidates(values: np.ndarray, err: np.ndarray, k: int, larger: bool) -> np.ndarray:
    """The same selection with np.partition, from explicit bounds lo <= exact <= hi.

    For smaller-is-better, a row whose lower bound exceeds the k-th smallest upper bound
    cannot be in the top-k (k rows are surely better); symmetrically for larger-is-better.
    """
    lo, hi = values - err, values + err
    n = len(lo)
    if k >= n:
        return np.arange(n)
    if larger:
        return np.flatnonzero(hi >= np.partition(lo, n - k)[n - k])
    return np.flatnonzero(lo <= np.partition(hi, k - 1)[k - 1])


@pytest.mark.parametrize("larger", [True, False])
@pytest.mark.parametrize("nq", [1, 2, 5])
@pytest.mark.parametrize("err_shape", ["scalar", "row", "query", "full"])
def test_same_rows_as_numpy_selection(larger, nq, err_shape):
    rng = np.random.default_rng([nq, len(err_shape), int(larger)])
    n = 3000
    fast = rng.normal(size=(nq, n)).astype(np.float32)
    fast[:, 100:140] = fast[:, 7:8]  # exact ties in the fast scores
    scale = rng.uniform(0.5, 2.0, n)
    shapes = {"scalar": (1, 1), "row": (1, n), "query": (nq, 1), "full": (nq, n)}
    err = rng.random(shapes[err_shape]) * 0.01
    rel, const = 1e-3, 1e-4
    for k in (1, 10, 139, 2999):
        rows, thr = topk.candidates(fast, k, larger, scale=scale, err=err, rel=rel, const=const)
        assert len(rows) == nq + (nq > 1) and np.isfinite(thr).all()
        values = fast.astype(np.float64) * scale
        bounds = rel * np.abs(values) + np.broadcast_to(err, (nq, n)) + const
        for j in range(nq):
            np.testing.assert_array_equal(rows[j], numpy_candidates(values[j], bounds[j], k,
                                                                    larger))
        if nq > 1:
            np.testing.assert_array_equal(
                rows[-1], numpy_candidates(values.mean(0), bounds.mean(0), k, larger))


@pytest.mark.parametrize("larger", [True, False])
def test_every_possible_winner_is_kept(larger):
    """Whatever exact values lie within the bounds, the exact top-k is among the rows."""
    rng = np.random.default_rng(11)
    exact = rng.random((3, 2000))
    err = rng.random((3, 2000)) * 0.02
    fast = exact + err * rng.uniform(-1, 1, exact.shape)  # any value within the bound
    for k in (1, 5, 50):
        rows, _ = topk.candidates(fast, k, larger, err=err)
        for j in range(3):
            best = np.argsort(-exact[j] if larger else exact[j], kind="stable")[:k]
            assert set(best) <= set(rows[j].tolist())
            assert len(rows[j]) < 2000
        mean = exact.mean(0)
        best = np.argsort(-mean if larger else mean, kind="stable")[:k]
        assert set(best) <= set(rows[3].tolist())


def test_k_at_least_n_keeps_everything():
    fast = np.zeros((2, 5), np.float32)
    rows, _ = topk.candidates(fast, 5, True)
    assert [r.tolist() for r in rows] == [list(range(5))] * 3


def test_nan_scores_give_a_nan_threshold():
    fast = np.array([[0.1, np.nan, 0.3, 0.2]], np.float32)
    _, thr = topk.candidates(fast, 2, True)
    assert np.isnan(thr).all()


def test_bad_shapes_are_refused():
    fast = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="err"):
        topk.candidates(fast, 1, True, err=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="scale"):
        topk.candidates(fast, 1, True, scale=np.ones(4))


@pytest.mark.parametrize("larger", [True, False])
def test_candidates_keep_every_possible_winner(larger):
    rng = np.random.default_rng(1234)
    exact = rng.random(500)
    err = rng.random(500) * 0.05

    def cand(k: int) -> np.ndarray:
        return topk.candidates(exact[None], k, larger, err=err[None])[0][0]

    for k in (1, 5, 50):
        rows = cand(k)
        best = np.argsort(-exact if larger else exact, kind="stable")[:k]
        assert set(best) <= set(rows.tolist())
        assert np.all(np.diff(rows) > 0)  # sorted row numbers
        assert len(rows) < 500 or k == 50
    assert cand(500).tolist() == list(range(500))
    assert cand(900).tolist() == list(range(500))


def test_order_breaks_ties_by_row():
    values = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    rows = np.array([40, 30, 20, 10, 0])
    assert rows[topk.order(values, rows, larger_is_better=True)].tolist() == [10, 30, 20, 40, 0]
    assert rows[topk.order(values, rows, larger_is_better=False)].tolist() == [0, 20, 40, 10, 30]
