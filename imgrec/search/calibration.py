"""What a score means in this gallery: where it falls among the gallery's own nearest neighbours.

A cosine of 0.33 and one of 0.95 look alike in a list of numbers. :func:`calibrate` measures,
once per index version and per method/metric, the similarity of each of a fixed-seed sample
of gallery images to its best match other than itself (an exact search, as every query
gets); :meth:`Calibration.strength` places a score among those: ``strong`` when it is at
least as close as a typical gallery neighbour (the median), ``related`` down to the 10th
percentile, ``weak`` below. The quantiles are kept beside the index as
``calibration-<version>.json`` (never inside a version folder), so the dashboard and the CLI
share them; a file of a version that no longer exists is removed when another is written.

``calibrate(Index.open("data/index"))`` measures (or reads) an index's calibration; the
percentiles below are made up to show what ``strength`` does with them.

Example:
    >>> cal = Calibration("embedding", "cosine", tuple(np.linspace(0.8, 1.0, 101)), 2000)
    >>> cal.strength(0.33), cal.strength(0.95)
    (('weak', 0.0), ('strong', 75.0))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from imgrec.index.index import Index

SAMPLE = 2000  # gallery images whose nearest neighbour is measured
SEED = 0
STRONG_PERCENTILE = 50.0  # at least as close as the median gallery neighbour
WEAK_PERCENTILE = 10.0  # below: closer matches than this exist for 90 % of the gallery
FILE_PREFIX = "calibration-"
_BATCH = 5  # queries per search call (the search's own limit)


@dataclass(frozen=True)
class Calibration:
    """Percentiles 0..100 of the gallery's best non-self similarities for one method/metric.

    Attributes:
        method: the search method (``embedding``, ``color``, ``pca``).
        metric: the metric whose ``Hit.score`` was measured (higher is better).
        quantiles: 101 values, the 0th to the 100th percentile (empty: fewer than 2 images).
        sample: how many gallery images were measured.
    """

    method: str
    metric: str
    quantiles: tuple[float, ...]
    sample: int

    def percentile(self, score: float) -> float:
        """Percent of the sampled gallery images whose best match is at most as close as
        ``score`` (nan without a calibration)."""
        if not self.quantiles:
            return float("nan")
        q = np.asarray(self.quantiles)
        return float(np.interp(score, q, np.linspace(0.0, 100.0, len(q))))

    def strength(self, score: float) -> tuple[str, float]:
        """``("strong" | "related" | "weak" | "unrated", percentile)`` of ``score``.

        Example:
            >>> cal = Calibration("embedding", "cosine", tuple(np.linspace(0.5, 1.0, 101)), 101)
            >>> cal.strength(0.99), cal.strength(0.6)[0], cal.strength(0.2)
            (('strong', 98.0), 'related', ('weak', 0.0))
        """
        p = self.percentile(score)
        if not np.isfinite(p):
            return "unrated", p
        label = ("strong" if p >= STRONG_PERCENTILE else "related" if p >= WEAK_PERCENTILE
                 else "weak")
        return label, round(p, 1)


def strength(score: float, calibration: Calibration) -> tuple[str, float]:
    """:meth:`Calibration.strength` as a function (for ``--json`` writers)."""
    return calibration.strength(score)


def _key(method: str, metric: str) -> str:
    return f"{method}/{metric}"


def cache_path(index: Index) -> Path:
    """``INDEX_DIR/calibration-<version>.json``."""
    return Path(index.index_dir) / f"{FILE_PREFIX}{index.version}.json"


def measure(index: Index, method: str = "embedding", metric: str = "cosine",
            sample: int = SAMPLE, seed: int = SEED) -> np.ndarray:
    """The best non-self ``Hit.score`` of each of ``sample`` gallery images (fixed seed)."""
    from imgrec.index.index import Stored

    n = len(index)
    if n < 2:
        return np.zeros(0)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, sample), replace=False))
    paths = index.paths(rows.tolist())
    best = []
    for s in range(0, len(rows), _BATCH):
        chunk = list(zip(rows[s:s + _BATCH].tolist(), paths[s:s + _BATCH], strict=True))
        res = index.search([Stored(p) for _, p in chunk], method=method,
                           metric=metric if method == "embedding" else "cosine", k=2)
        for (row, _), hits in zip(chunk, res.per_query, strict=True):
            other = next((h for h in hits if h.row != row), None)
            if other is not None:
                best.append(other.score)
    return np.asarray(best, dtype=np.float64)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("methods"), dict) else {}


def _write(index: Index, data: dict[str, Any]) -> None:
    """Write the cache of ``index`` atomically (see :func:`_store`)."""
    _store(Path(index.index_dir), index.version, data)


def _store(folder: Path, version: str, data: dict[str, Any]) -> None:
    """Write ``folder``'s cache of ``version`` atomically; remove those of versions that
    are gone. A read-only index folder is fine: the calibration is then recomputed next
    time."""
    path = folder / f"{FILE_PREFIX}{version}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        for old in folder.glob(f"{FILE_PREFIX}*.json"):
            other = old.name[len(FILE_PREFIX):-len(".json")]
            if other != version and not (folder / other).is_dir():
                old.unlink(missing_ok=True)
    except OSError:
        tmp.unlink(missing_ok=True)


def _entry(best: np.ndarray, sample: int) -> dict[str, Any]:
    quantiles = np.percentile(best, np.arange(101)).tolist() if len(best) else []
    return {"quantiles": quantiles, "sample": len(best), "sample_wanted": int(sample),
            "seed": SEED}


def calibrate(index: Index, method: str = "embedding", metric: str = "cosine",
              sample: int = SAMPLE) -> Calibration:
    """The :class:`Calibration` of ``method``/``metric`` on ``index`` (read from the cache
    beside the index, else measured and stored there). ``index`` may be a sharded index
    (:class:`~imgrec.shard.sharded.ShardedIndex`): it answers the same searches, so it
    measures the same calibration as the unsharded index of the same rows.

    The metric ``"all"`` ranks by cosine, so it shares the cosine calibration; the colour
    methods have a single metric each (give the one the search reports, e.g. ``chi2``).
    """
    from imgrec.search.rank import METHOD_METRIC

    metric = METHOD_METRIC.get(method, "cosine" if metric == "all" else metric)
    key = _key(method, metric)
    path = cache_path(index)
    data = _read(path)
    entry = data.get("methods", {}).get(key)
    if (isinstance(entry, dict) and entry.get("sample_wanted") == int(sample)
            and data.get("version") == index.version):
        return Calibration(method, metric, tuple(float(x) for x in entry["quantiles"]),
                           int(entry["sample"]))
    best = measure(index, method, metric, sample)
    methods = data.get("methods", {}) if data.get("version") == index.version else {}
    methods[key] = _entry(best, sample)
    _write(index, {"version": index.version, "count": len(index), "methods": methods})
    return Calibration(method, metric, tuple(methods[key]["quantiles"]), len(best))


def carry_over(source: Index, folder: Path, version: str) -> None:
    """Store the calibrations of ``source`` as those of version ``version`` of the index
    at ``folder``, which holds the same rows in the same order (a sharded index split
    from it, whose searches answer as the source's: the same sampled rows find the same
    best matches, so the quantiles are the source's). The default search's (embedding,
    cosine) is measured on ``source`` when it has none yet; the others are measured when
    first asked for (:func:`calibrate` works on a sharded index too)."""
    data = _read(cache_path(source))
    methods = data.get("methods", {}) if data.get("version") == source.version else {}
    key = _key("embedding", "cosine")
    if not (isinstance(methods.get(key), dict) and methods[key].get("sample_wanted") == SAMPLE):
        methods[key] = _entry(measure(source), SAMPLE)
    _store(Path(folder), version, {"version": version, "count": len(source),
                                   "methods": methods})


def add_strength(out: dict[str, Any], index: Index) -> dict[str, Any]:
    """Rate the hits of a search's JSON form (``SearchResult.to_dict()``) in place: each
    gets ``strength`` (strong / related / weak) and ``percentile``, where its score falls
    among the gallery's own nearest-neighbour scores. The combined ranking (a mean over
    queries, or a refined score) is on another scale and stays unrated, except for one
    plain query, where it is that query's list; a label search is not rated at all.
    ``imgrec search --json`` and the HTTP API both answer this."""
    if out.get("method") == "label":
        return out
    rate = calibrate(index, out["method"], out["metric"]).strength
    lists = [q["hits"] for q in out["queries"]]
    if "negatives" not in out and len(lists) == 1:
        lists.append(out["combined"])
    for hits in lists:
        for h in hits:
            h["strength"], h["percentile"] = rate(h["score"])
    return out
