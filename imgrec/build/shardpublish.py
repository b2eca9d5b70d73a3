"""The publish step of a sharded sync: route the rows to their shards, fill one new version
per shard, refit the shared PCA once over all of them, and commit them at once.

The commit is the manifest: each shard's new version is written complete beside its
published one without switching its ``CURRENT``; then ``sharded.json``, naming every
shard's version, is replaced atomically; only then is each shard's ``CURRENT`` switched.
A sync killed before the manifest is replaced leaves the sharded index as it was (its
unfinished versions are dropped by the next sync); one killed after it is already
complete for every reader, and the next sync switches the shards it had not reached (see
:func:`imgrec.build.shardsync.finish_commit`). So at every moment the sharded index is
one consistent set of versions: no row in two shards, none lost.
"""

from __future__ import annotations

import heapq
import json
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec.build.sync import Plan
from imgrec.build.workstore import WorkStore
from imgrec.errors import ImgrecError
from imgrec.features.pca import PCAModel, fit_pca
from imgrec.index import catalog
from imgrec.index.writer import VersionWriter, discard_unpublished, switch_to
from imgrec.shard.split import MANIFEST, ShardedManifest, ShardInfo

if TYPE_CHECKING:
    from imgrec.build.shardsync import Shards

_STEP = 8192


def route(entries: list[catalog.Entry], member: dict[str, int], n: int) -> dict[str, int]:
    """The shard of every indexed entry: the one it is in, else (new paths, in path
    order) the shard with the fewest rows so far, the first such on a tie."""
    target = {e.path: member[e.path] for e in entries
              if e.row is not None and e.path in member}
    sizes = np.bincount(np.array(list(target.values()), np.int64), minlength=n).tolist()
    smallest = [(c, i) for i, c in enumerate(sizes)]
    heapq.heapify(smallest)
    for e in entries:
        if e.row is not None and e.path not in target:
            c, t = heapq.heappop(smallest)
            target[e.path] = t
            heapq.heappush(smallest, (c + 1, t))
    return target


class _PathOrder:
    """The new shards' histograms as one matrix in global path order (what an unsharded
    build fits its PCA on), read block by block for :func:`fit_pca`."""

    def __init__(self, writers: list[VersionWriter], place: np.ndarray) -> None:
        self.writers, self.place = writers, place  # place[g] = (shard, local row)
        self.shape = (len(place), writers[0].histograms.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        at = self.place[rows]
        out = np.empty((len(at), self.shape[1]), np.float32)
        for i, w in enumerate(self.writers):
            sel = np.flatnonzero(at[:, 0] == i)
            if len(sel):
                out[sel] = w.histograms[at[sel, 1]]
        return out


def _same_pca(a: PCAModel, b: PCAModel) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(
        (a.mean, a.components, a.explained_variance),
        (b.mean, b.components, b.explained_variance), strict=True))


def publish_shards(shards: Shards, entries: list[catalog.Entry], plan: Plan, reuse: bool,
                   ws: WorkStore, dim: int, fields: dict[str, Any], pca_components: int
                   ) -> tuple[str, list[str]]:
    """Write ``entries`` (numbered in path order by :meth:`Plan.numbered`) into the shards
    and commit the new sharded index (see the module docstring).

    Rows of :attr:`Plan.from_prev` (global rows of the previous union, when ``reuse``)
    are copied from the shard that held them; those of :attr:`Plan.from_work` come from
    the work store. Returns the name of the newest shard version and notes for the report.

    Raises:
        ImgrecError: a shard would be left without rows (the sharded index is unchanged).
    """
    m, folder = shards.manifest, shards.folder
    n = len(m.shards)
    target = route(entries, shards.member, n)
    local: list[list[catalog.Entry]] = [[] for _ in range(n)]
    place = np.zeros((sum(1 for e in entries if e.row is not None), 2), np.int64)
    counts = [0] * n
    for e in entries:
        if e.row is None:
            local[0].append(e)
            continue
        t = target[e.path]
        place[e.row] = (t, counts[t])
        local[t].append(replace(e, row=counts[t]))
        counts[t] += 1
    if 0 in counts:
        empty = m.shards[counts.index(0)].name
        raise ImgrecError(f"the sync would leave {empty} of {folder} without images (the "
                          "gallery lost them and too few new ones came): split an index of "
                          "the gallery again with fewer shards; the sharded index is unchanged")
    writers = [VersionWriter(folder / s.name, c, dim) for s, c in zip(m.shards, counts,
                                                                       strict=True)]
    try:
        same, labelled = _fill(shards, writers, entries, place, plan, reuse, ws)
        pca = fit_pca(_PathOrder(writers, place), pca_components)
        versions, changed = _write(shards, writers, local, same, labelled, pca, fields)
    except BaseException:
        for w in writers:
            w.abort()
        for s in m.shards:
            discard_unpublished(folder / s.name, s.version)
        raise
    new = ShardedManifest(fields["model"], len(place), pca.n_components, fields["gallery_root"],
                          tuple(ShardInfo(s.name, int(sum(counts[:i])), counts[i], versions[i])
                                for i, s in enumerate(m.shards)), fields["recipe"])
    _commit(folder, new)
    for i in changed:
        switch_to(folder / m.shards[i].name, versions[i])
    note = (f"sharded index of {n} shards: " + ", ".join(
        f"{s.name} {c} rows{' (new version)' if i in changed else ''}"
        for i, (s, c) in enumerate(zip(m.shards, counts, strict=True)))
        + ("; the shared PCA was refitted over every shard" if changed else
           "; nothing changed, no shard was rewritten"))
    return max(versions), [note]


def _fill(shards: Shards, writers: list[VersionWriter], entries: list[catalog.Entry],
          place: np.ndarray, plan: Plan, reuse: bool, ws: WorkStore
          ) -> tuple[list[bool], bool]:
    """Fill every writer's rows. Returns, per shard, whether all its rows are its old rows
    at the same places (then it may keep its version), and whether labels were written."""
    old = np.array([s.offset for s in shards.manifest.shards], np.int64)
    labelled = ws.has_labels or any(p.labels is not None for p in shards.previous)
    labels = [w.labels() if labelled else None for w in writers]
    src = np.full((len(place), 2), -1, np.int64)  # (old shard, old local row) per new row
    want: dict[str, list[int]] = {}
    for e in entries:
        if e.row is None:
            continue
        if reuse and e.path in plan.from_prev:
            g = plan.from_prev[e.path]
            j = int(np.searchsorted(old, g, side="right")) - 1
            src[e.row] = (j, g - old[j])
        elif e.path in plan.from_work:
            want.setdefault(e.sha256, []).append(e.row)
    moved = (src[:, 0] != place[:, 0]) | (src[:, 1] != place[:, 1])
    same = (np.bincount(place[:, 0], weights=moved, minlength=len(writers)) == 0).tolist()
    _copy(shards, writers, labels, place, src)
    for chunk in ws.chunks():
        for i, sha in enumerate(chunk.shas):
            for g in want.pop(sha, ()):
                t, r = place[g]
                writers[t].embeddings[r] = chunk.embeddings[i]
                writers[t].histograms[r] = chunk.histograms[i]
                lab = labels[t]
                if lab is not None and chunk.top5 is not None and chunk.prob5 is not None:
                    lab[0][r], lab[1][r] = chunk.top5[i], chunk.prob5[i]
    if want:
        raise ImgrecError(f"internal error: features missing for {len(want)} files")
    return same, labelled


def _copy(shards: Shards, writers: list[VersionWriter], labels: list[Any], place: np.ndarray,
          src: np.ndarray) -> None:
    """Copy every reused row from the old shard version holding it (``src``: old shard
    and row per new row, -1 for none) to its new place, grouped by (new shard, old shard)."""
    rows = np.flatnonzero(src[:, 0] >= 0)
    key = place[rows, 0] * len(shards.previous) + src[rows, 0]
    order = np.argsort(key, kind="stable")
    rows, key = rows[order], key[order]
    for group in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(key)) + 1):
        if not len(group):
            continue
        t, j = divmod(int(key[group[0]]), len(shards.previous))
        prev, w, lab = shards.previous[j], writers[t], labels[t]
        for s in range(0, len(group), _STEP):
            g = rows[group[s:s + _STEP]]
            d, o = place[g, 1], src[g, 1]
            w.embeddings[d] = prev.index.embeddings[o]
            w.histograms[d] = prev.index.histograms[o]
            if lab is not None and prev.labels is not None:
                for mine, theirs in zip(lab, prev.labels, strict=True):
                    mine[d] = theirs[o]


def _write(shards: Shards, writers: list[VersionWriter], local: list[list[catalog.Entry]],
           same: list[bool], labelled: bool, pca: PCAModel, fields: dict[str, Any]
           ) -> tuple[list[str], set[int]]:
    """Publish (without switching) each shard that changed; keep the version of each
    whose catalog, rows and PCA are as they were. Returns the versions and the changed."""
    versions, changed = [], set()
    for i, w in enumerate(writers):
        prev = shards.previous[i]
        kept = (same[i] and w.n == len(prev.index) and _same_pca(pca, prev.index.pca())
                and {e.path: e for e in local[i]} == shards.catalogs[i]
                and (prev.labels is not None) == labelled
                and str(prev.index.root) == fields["gallery_root"])
        if kept:
            w.abort()
            versions.append(prev.index.version)
            continue
        versions.append(w.publish(local[i], fields, pca, switch=False).name)
        changed.add(i)
    return versions, changed


def _commit(folder: Any, new: ShardedManifest) -> None:
    """Replace the manifest atomically (fsynced): the sharded index is now ``new``."""
    tmp = folder / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(new.to_json(), indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
