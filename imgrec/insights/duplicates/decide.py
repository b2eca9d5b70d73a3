"""Decisions on duplicates by gallery path: not duplicates, this keeper, forget; listed.

The one implementation behind ``imgrec duplicates --distinct/--keep/--forget`` and the
Insights page's buttons: paths are checked against the index, turned into content hashes
and written to :class:`~imgrec.insights.duplicates.store.Store` (``duplicates.sqlite``
beside the index), so a decision survives rebuilds, renames and moves.

Example:
    >>> d = Decisions(idx)
    >>> d.distinct(["coffee/coffee_orig.jpg", "coffee/coffee_blur.jpg"])
    1
    >>> [(x.kind, x.paths) for x in d.listed()]
    [('distinct', ('coffee/coffee_blur.jpg', 'coffee/coffee_orig.jpg'))]
    >>> d.forget_one(d.listed()[0])
    1
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgrec.errors import QueryError
from imgrec.insights.duplicates.core import hashes_by_path
from imgrec.insights.duplicates.store import Store

if TYPE_CHECKING:
    from imgrec.index.index import Index

DISTINCT, KEEPER = "distinct", "keeper"


@dataclass(frozen=True)
class Decision:
    """One remembered decision: ``distinct`` (a pair, not duplicates) or ``keeper``.

    ``hashes`` are the content hashes it is stored under; ``paths`` the indexed paths of
    them (``""`` for content no longer in the index); ``at``: when it was made (epoch s).
    """

    kind: str
    hashes: tuple[str, ...]
    paths: tuple[str, ...]
    at: float = 0.0


class Decisions:
    """The remembered decisions of one index, read and written by gallery path."""

    def __init__(self, index: Index, hashes: dict[str, str] | None = None) -> None:
        self.index = index
        self.store = Store(index.index_dir)
        self._sha = hashes  # path -> content hash, when the caller holds it already

    def hashes(self) -> dict[str, str]:
        """path -> content hash of every indexed image (read once)."""
        if self._sha is None:
            self._sha = hashes_by_path(self.index)
        return self._sha

    def _of(self, paths: Iterable[str]) -> list[str]:
        paths = list(paths)
        sha = self.hashes()
        missing = [p for p in paths if not sha.get(p)]
        if missing:
            raise QueryError(f"not indexed images of this gallery: {', '.join(missing)}")
        return [sha[p] for p in paths]

    def distinct(self, paths: Iterable[str]) -> int:
        """Mark every pair among ``paths`` "not duplicates"; returns the pairs stored.

        Raises:
            QueryError: fewer than two different images, or a path not indexed.
        """
        hashes = self._of(paths)
        if len(set(hashes)) < 2:
            raise QueryError("not duplicates needs at least two different images")
        return self.store.mark_distinct(*hashes)

    def keep(self, path: str, instead_of: Iterable[str] = ()) -> None:
        """Remember ``path`` as its group's keeper; a keeper chosen earlier among
        ``instead_of`` (the other members of its group) is forgotten, so one stays chosen."""
        (mine,) = self._of([path])
        others = [h for h in self._of(instead_of) if h != mine]
        chosen = self.store.decisions()[1]
        for h in others:
            if h in chosen:
                self.store.forget_keeper(h)
        self.store.choose_keeper(mine)

    def forget(self, paths: Iterable[str]) -> int:
        """Forget every decision involving ``paths``; returns how many were forgotten."""
        return self.store.undo(*self._of(paths))

    def forget_one(self, d: Decision) -> int:
        """Forget exactly one decision of :meth:`listed`."""
        if d.kind == DISTINCT:
            return self.store.forget_pair(*d.hashes)
        return self.store.forget_keeper(d.hashes[0])

    def listed(self) -> list[Decision]:
        """Every remembered decision, chosen keepers first, then pairs, by path."""
        pairs, keep = self.store.decisions_made()
        path_of: dict[str, str] = {}
        for p, h in sorted(self.hashes().items(), reverse=True):
            path_of[h] = p  # the first path in order when one content has several
        out = [Decision(KEEPER, (h,), (path_of.get(h, ""),), at) for h, at in keep.items()]
        out.sort(key=lambda d: (d.paths[0] == "", d.paths))
        flat = []
        for (a, b), at in pairs.items():
            pa, pb = path_of.get(a, ""), path_of.get(b, "")
            (ha, pa), (hb, pb) = sorted([(a, pa), (b, pb)], key=lambda x: (x[1] == "", x[1]))
            flat.append(Decision(DISTINCT, (ha, hb), (pa, pb), at))
        flat.sort(key=lambda d: (("" in d.paths), d.paths))
        return out + flat

    def stamp(self) -> tuple:
        """Changes exactly when a decision is made or forgotten (a cache key)."""
        pairs, keep = self.store.decisions()
        return tuple(sorted(pairs)), tuple(sorted(keep))
