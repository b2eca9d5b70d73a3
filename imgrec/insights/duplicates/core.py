"""find_duplicates: the catalog, the scan, the signals, decisions and star groups together."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from imgrec.errors import ImgrecError, QueryError
from imgrec.features.recipe import DEFAULT_RECIPE, RECIPES, recipe_of
from imgrec.insights.duplicates import hashlookup as H
from imgrec.insights.duplicates import signals as S
from imgrec.insights.duplicates.fine import fine_thumb
from imgrec.insights.duplicates.group import Links, Unit, exif_date, star_groups
from imgrec.insights.duplicates.report import TIERS, DuplicateGroup, DuplicateReport
from imgrec.insights.duplicates.scan import Progress, near_pairs
from imgrec.insights.duplicates.store import Store

if TYPE_CHECKING:
    from imgrec.index.index import Index

#: cosine similarity a pair needs to be a candidate in an index built now; every index has
#: its recipe's own (:func:`default_threshold`; see the package docstring)
DEFAULT_THRESHOLD = RECIPES[DEFAULT_RECIPE].duplicate_threshold
MAX_NEIGHBOURS = 32


def catalog(index: Index) -> list[tuple[int, int, int, str, str]]:
    """(width, height, size, sha256, exif JSON) of every indexed row, in row order: the
    one place this package reads the catalog."""
    out: list[tuple[int, int, int, str, str]] = [(0, 0, 0, "", "{}")] * len(index)
    for e in index.entries():
        if e.row is not None:
            out[int(e.row)] = (int(e.width or 0), int(e.height or 0), int(e.size or 0),
                               str(e.sha256 or ""), str(e.exif or "{}"))
    return out


def default_threshold(index: Index) -> float:
    """The candidate threshold calibrated for the embedding recipe of ``index`` (0.65 for
    ``v1``, 0.75 for ``v2``, 0.78 for ``v3``)."""
    return recipe_of(index).duplicate_threshold


def find_duplicates(index: Index, threshold: float | None = None, *, near: bool = True,
                    max_neighbours: int = MAX_NEIGHBOURS,
                    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    confirm: bool = True, decisions: bool = True, hashes: bool = True,
                    progress: Progress | None = None) -> DuplicateReport:
    """Group the duplicate images of an index in three tiers, without chaining.

    Args:
        index: an opened index.
        threshold: cosine similarity (0..1] a pair needs to be a candidate (None: the
            one calibrated for the index's embedding recipe, :func:`default_threshold`).
        near: also look beyond exact copies (False: exact copies only, no embedding pass).
        max_neighbours: candidate partners kept per image.
        pairs: ``near_pairs(index.embeddings, index.embedding_norms, t0, max_neighbours)``
            for some ``t0 <= threshold``, to reuse (a slider computes it once).
        confirm: check candidates with the second signal (reads each file once, every
            file with ``hashes``; the signals are cached in ``duplicates.sqlite`` beside
            the index). False: every candidate is a similar shot.
        decisions: apply the remembered decisions (distinct pairs, chosen keepers).
        hashes: also take as same-picture candidates the pairs whose DCT hashes lie within
            :data:`hashlookup.RADIUS` bits under some rotation/mirroring (found exactly by
            :mod:`.hashlookup`, whatever their cosine: rotated and heavily compressed
            copies often fall below the threshold). Needs the signal of every image
            (cached; the first run reads every file). Such a pair below the threshold is
            never a similar shot. Only with ``near`` and ``confirm``.
        progress: ``progress(rows_done, rows)`` during the scan.

    Returns:
        A :class:`DuplicateReport`: groups of two or more images (exact, then same
        picture, then similar shots; largest first), keeper first with its reason.

    Raises:
        QueryError: ``threshold`` outside (0, 1].

    Example:
        >>> rep = find_duplicates(idx)
        >>> [(g.tier, g.keeper.path, g.reason) for g in rep.groups][:1]
        [('same picture', 'astronaut/astronaut_grey.png', 'most detail (~0.08 MP effective),
          original orientation (1 rotated/mirrored copy)')]
    """
    t = _check_threshold(default_threshold(index) if threshold is None else threshold)
    t0 = time.perf_counter()
    n = len(index)
    meta = catalog(index)
    paths = index.all_paths()
    units: dict[str, Unit] = {}
    for row, (w, h, size, sha, exif) in enumerate(meta):
        key = sha or f"row:{row}"
        u = units.get(key)
        if u is None:
            units[key] = Unit(key, [row], w * h, max(w, h), size, exif_date(exif))
        else:
            u.rows.append(row)
            u.date = min((d for d in (u.date, exif_date(exif)) if d), default="")
    unit_of = [sha or f"row:{r}" for r, (_, _, _, sha, _) in enumerate(meta)]
    cand: dict[tuple[str, str], float] = {}
    if near and n > 1:
        if pairs is None:
            pi, pj, ps = near_pairs(index.embeddings, index.embedding_norms, t,
                                    max_neighbours, progress=progress)
        else:
            keep = np.asarray(pairs[2]) >= t
            pi, pj, ps = (np.asarray(p)[keep] for p in pairs)
        for i, j, s in zip(pi.tolist(), pj.tolist(), ps.tolist(), strict=True):
            a, b = sorted((unit_of[i], unit_of[j]))
            if a != b and s > cand.get((a, b), -2.0):
                cand[(a, b)] = s
    store = Store(index.index_dir)
    notes: list[str] = [] if near else ["exact copies only (near-duplicates not searched)"]
    applied = 0
    if decisions:
        distinct, chosen = store.decisions()
        applied = sum(1 for k in cand if k in distinct)
        cand = {k: v for k, v in cand.items() if k not in distinct}
        for k in chosen:
            if k in units:
                units[k].chosen = True
                applied += 1
    same_only: set[tuple[str, str]] = set()
    if near and confirm and hashes and n > 1:
        distinct = store.decisions()[0] if decisions else set()
        same_only = _hash_candidates(index, units, cand, t, max_neighbours, paths, store,
                                     notes, distinct)
    links = (_links(index, units, cand, paths, store, notes) if confirm
             else Links(cand, None))
    links.same_only = same_only
    groups = star_groups(units, links, paths)
    groups = _finish(groups, meta)
    return DuplicateReport(t if near else 1.0, groups, n, time.perf_counter() - t0, notes,
                           applied)


def _check_threshold(threshold: float) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise QueryError(f"threshold must be a number, got {threshold!r}") from None
    if not 0 < t <= 1:
        raise QueryError(f"threshold must lie in (0, 1], got {threshold!r}")
    return t


def signals_for(index: Index, units: dict[str, Unit], keys: set[str], paths: list[str],
                store: Store, notes: list[str]) -> None:
    """Attach the signal of every unit in ``keys`` (from the cache, else from its file)."""
    cached = store.signals(sorted(k for k in keys if not k.startswith("row:")))
    fresh: dict[str, S.Signal] = {}
    unreadable = 0
    for k in keys:
        if k in cached:
            units[k].signal = cached[k]
            continue
        sig = signal_of_file(index, paths[units[k].rows[0]])
        if sig is None:
            unreadable += 1
            continue
        units[k].signal = sig
        if not k.startswith("row:"):
            fresh[k] = sig
    try:
        store.put_signals(fresh)
    except (sqlite3.Error, OSError):
        notes.append("signals not cached (the index folder is not writable)")
    if unreadable:
        notes.append(f"{unreadable} candidate files unreadable: not confirmed")


def signal_of_file(index: Index, path: str) -> S.Signal | None:
    """The signal of one gallery file, or None when it cannot be read."""
    from imgrec import images
    from imgrec.insights.duplicates.compression import jpeg_quality

    file = index.resolve(path)
    try:
        rgb, _ = images.load_image(file, draft=False)
    except (ImgrecError, OSError, ValueError):
        return None
    return S.compute(rgb, jpeg_quality(file))


def _hash_candidates(index: Index, units: dict[str, Unit], cand: dict[tuple[str, str], float],
                     threshold: float, cap: int, paths: list[str], store: Store,
                     notes: list[str], distinct: set[tuple[str, str]]
                     ) -> set[tuple[str, str]]:
    """Add to ``cand`` the unit pairs within :data:`hashlookup.RADIUS` hash bits under some
    variant (with their cosine); returns those below ``threshold`` (same picture only)."""
    signals_for(index, units, set(units), paths, store, notes)
    keys = [k for k, u in units.items() if u.signal is not None]
    if len(keys) < 2:
        return set()
    found = [(a, b) for a, b, _ in H.unit_pairs(keys, np.stack([units[k].signal.dct
                                                                 for k in keys]),
                                                  max_per_row=cap)
             if (a, b) not in cand and (a, b) not in distinct]
    if not found:
        return set()
    ri = np.array([units[a].rows[0] for a, _ in found])
    rj = np.array([units[b].rows[0] for _, b in found])
    cos = H.cosines(index.embeddings, index.embedding_norms, ri, rj)
    low: set[tuple[str, str]] = set()
    for pair, c in zip(found, cos.tolist(), strict=True):
        cand[pair] = c
        if c < threshold:
            low.add(pair)
    return low


def _links(index: Index, units: dict[str, Unit], cand: dict[tuple[str, str], float],
           paths: list[str], store: Store, notes: list[str]) -> Links:
    """Candidate links whose confirmation reads the signals (cached, else from files)."""
    signals_for(index, units, {k for pair in cand for k in pair}, paths, store, notes)

    @lru_cache(maxsize=FINE_CACHE)
    def fine_of(k: str) -> np.ndarray | None:
        return fine_of_file(index, paths[units[k].rows[0]])

    def check(a: str, b: str) -> tuple[bool, str]:
        return confirm_pair(units[a].signal, units[b].signal, units[a].long, units[b].long,
                            lambda: (fine_of(a), fine_of(b)))

    return Links(cand, check)


#: fine thumbnails (:func:`.signals.fine_thumb`, ~77 KB each) kept while grouping
FINE_CACHE = 1024


def fine_of_file(index: Index, path: str) -> np.ndarray | None:
    """The fine thumbnail of one gallery file (decoded reduced where the format allows),
    or None when it cannot be read."""
    from imgrec import images

    try:
        rgb, _ = images.load_image(index.resolve(path), draft=True)
    except (ImgrecError, OSError, ValueError):
        return None
    return fine_thumb(rgb)


def confirm_pair(a: S.Signal | None, b: S.Signal | None, long_a: int, long_b: int,
                 fine: S.Fine | None = None) -> tuple[bool, str]:
    """Whether two images are the same picture, and the evidence: the one confirmation
    that the scan and :mod:`.check` share (:func:`.signals.confirm` with the long sides
    of both images, so a crop must also be consistent in detail, and with ``fine``, the
    two fine thumbnails read when the thumbnails alone would confirm, so the fine detail
    must agree too)."""
    if a is None or b is None:
        return False, "no second signal"
    return S.confirm(a, b, (int(long_a), int(long_b)), fine)


def _finish(groups: list[DuplicateGroup], meta: list[tuple[int, int, int, str, str]]
            ) -> list[DuplicateGroup]:
    """Members with their catalog facts; groups by tier, largest first, numbered."""
    full = []
    for g in groups:
        ms = [replace(m, width=meta[m.row][0], height=meta[m.row][1], size=meta[m.row][2],
                      sha256=meta[m.row][3]) for m in g.members]
        full.append(replace(g, members=ms))
    full.sort(key=lambda g: (TIERS.index(g.tier), -len(g.members), g.keeper.path))
    return [replace(g, id=k + 1) for k, g in enumerate(full)]


def hashes_by_path(index: Index) -> dict[str, str]:
    """path -> content hash of every indexed image."""
    meta = catalog(index)
    return {p: meta[r][3] for r, p in enumerate(index.all_paths())}


def group_rows(report: DuplicateReport) -> dict[int, list[int]]:
    """group id -> member rows (helper for views)."""
    out: dict[int, list[int]] = defaultdict(list)
    for g in report.groups:
        out[g.id] = [m.row for m in g.members]
    return out
