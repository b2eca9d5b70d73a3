"""Check before import: is each file already in the collection (tier, match, score) or new?"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgrec import images
from imgrec.errors import ImgrecError
from imgrec.insights.duplicates import signals as S
from imgrec.insights.duplicates.core import (
    catalog,
    confirm_pair,
    default_threshold,
    fine_of_file,
    signal_of_file,
)
from imgrec.insights.duplicates.fine import fine_thumb
from imgrec.insights.duplicates.report import EXACT, SAME, SIMILAR

if TYPE_CHECKING:
    from imgrec.index.index import Index


@dataclass(frozen=True)
class Verdict:
    """What the collection holds of one checked file."""

    file: str
    tier: str | None  # None: new
    match: str | None
    score: float
    evidence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "known": self.tier is not None, "tier": self.tier,
                "match": self.match, "score": round(self.score, 6), "evidence": self.evidence}


def files_of(targets: list[str | Path]) -> list[Path]:
    """The image files named, folders scanned recursively."""
    out: list[Path] = []
    for t in map(Path, targets):
        if t.is_dir():
            out += sorted(images.scan(t))
        elif t.is_file():
            out.append(t)
        else:
            raise ImgrecError(f"{t} is neither a file nor a folder")
    return out


def check(index: Index, targets: list[str | Path], threshold: float | None = None,
          k: int = 5) -> list[Verdict]:
    """For each file: exact copy (by hash), same picture (top-``k`` embedding neighbours
    above ``threshold`` confirmed by the second signal), similar shot, or new (``threshold``
    None: the one calibrated for the index's recipe, as :func:`find_duplicates` uses)."""
    by_sha, longs = _by_sha(index), _longs(index)
    return [check_image(index, str(f), f.read_bytes(), threshold, k, by_sha=by_sha,
                        longs=longs) for f in files_of(targets)]


def _by_sha(index: Index) -> dict[str, str]:
    paths = index.all_paths()
    return {m[3]: paths[r] for r, m in reversed(list(enumerate(catalog(index)))) if m[3]}


def _longs(index: Index) -> dict[str, int]:
    """path -> long side in pixels (from the catalog, as the scan reads it)."""
    return {p: max(m[0], m[1]) for p, m in zip(index.all_paths(), catalog(index), strict=True)}


def check_image(index: Index, name: str, data: bytes, threshold: float | None = None,
                k: int = 5, *, by_sha: dict[str, str] | None = None,
                longs: dict[str, int] | None = None) -> Verdict:
    """The verdict on one image given as bytes (a file's, or an upload's named ``name``).

    Args:
        index: the collection.
        name: what the verdict calls the image (its suffix tells camera RAW apart).
        data: the image file's bytes.
        threshold: embedding cosine a candidate match needs (None: the index recipe's
            :func:`~imgrec.insights.duplicates.core.default_threshold`).
        k: embedding neighbours looked at.
        by_sha: content hash -> indexed path (computed when not given).
        longs: indexed path -> long side (computed when not given): a candidate is
            confirmed as the scan confirms a pair (:func:`.core.confirm_pair`), so a crop
            must be consistent in detail too.

    Example:
        >>> v = check_image(idx, "cup.jpg", open("photos/coffee/coffee_orig.jpg", "rb").read())
        >>> v.tier, v.match
        ('exact', 'coffee/coffee_orig.jpg')
    """
    threshold = default_threshold(index) if threshold is None else float(threshold)
    sha = hashlib.sha256(data).hexdigest()
    by_sha = _by_sha(index) if by_sha is None else by_sha
    if sha in by_sha:
        return Verdict(name, EXACT, by_sha[sha], 1.0, "same bytes")
    try:
        f = io.BytesIO(data)
        f.name = name
        res = index.search([f], k=k)
        rgb, _ = images.load_image(data, draft=False, name=name)
    except ImgrecError as e:
        return Verdict(name, None, None, 0.0, f"unreadable: {e}")
    mine = S.compute(rgb)
    mine_fine = fine_thumb(rgb)
    longs = _longs(index) if longs is None else longs
    best: Verdict | None = None
    for h in res.per_query[0]:
        if h.score < threshold:
            continue
        ok, ev = confirm_pair(mine, signal_of_file(index, h.path), max(rgb.size),
                              longs.get(h.path, 0),
                              lambda p=h.path: (mine_fine, fine_of_file(index, p)))
        if ok:
            return Verdict(name, SAME, h.path, float(h.score), ev)
        if best is None:
            best = Verdict(name, SIMILAR, h.path, float(h.score),
                           f"cosine {h.score:.3f} ({ev})")
    return best or Verdict(name, None, None, 0.0)
