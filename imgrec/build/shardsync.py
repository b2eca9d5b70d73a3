"""Keep a sharded index in sync with its gallery: one scan diffed against the union of the
shards, new files routed to the smallest shard, the shards published together.

The sync is the ordinary build (:class:`~imgrec.build.builder.Build`: scan, diff, work
store, resume, progress, local or Ray features) with two steps of its own: the previous
version it diffs against is the union of the shards (a file's shard is where its row is,
rows numbered globally), and its publish writes one new version per changed shard (see
:mod:`imgrec.build.shardpublish`). The shard layout rules:

- a file already in a shard stays there (also when its content changed); a removed file
  leaves its shard; a new file (also a moved one: its new path is new) goes to the shard
  with the fewest rows after the removals (the first such shard on a tie), so the shards
  stay balanced and a file's row is never in two shards;
- files that cannot be read are listed in the first shard's catalog, as ``shard split``
  does;
- the PCA model stays shared: it is refitted once over the rows of every shard (in path
  order, as an unsharded build fits it) and every shard gets it, so scores compare across
  shards; a shard whose rows and PCA are unchanged keeps its version.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from imgrec.build import sync
from imgrec.build.builder import Build
from imgrec.build.report import BuildReport
from imgrec.build.workstore import WorkStore
from imgrec.errors import ImgrecError
from imgrec.features.embedding import Embedder
from imgrec.features.recipe import Recipe, recipe_named
from imgrec.index import catalog, writer
from imgrec.shard.split import ShardedManifest


@dataclass
class Shards:
    """What a sync reads of the sharded index before the scan.

    Attributes:
        folder: the sharded index.
        manifest: its manifest.
        previous: each shard's published version (its own rows), in manifest order.
        catalogs: each shard's catalog as it is on disk, by path.
        member: the shard of every indexed path.
    """

    folder: Path
    manifest: ShardedManifest
    previous: list[sync.Previous]
    catalogs: list[dict[str, catalog.Entry]]
    member: dict[str, int]


class _Union(sync.Previous):
    """The shards' previous versions as one: every catalogued path, rows global (the
    shard's offset + its row). Its ``index`` is unused: features are copied per shard."""


def finish_commit(folder: Path, m: ShardedManifest) -> None:
    """Bring every shard's ``CURRENT`` to the version the manifest names (a sync killed
    after its commit left some behind) and drop versions a killed sync wrote but never
    committed; call with the sharded index's build lock held."""
    for s in m.shards:
        shard = folder / s.name
        writer.remove_stale_temporaries(shard)
        cur = writer.current_version(shard)
        if s.version is not None and (cur is None or cur.name != s.version):
            if not (shard / s.version).is_dir():
                raise ImgrecError(f"shard {s.name} of {folder} cannot be synced: the version "
                                  f"{s.version} its manifest names is missing")
            writer.switch_to(shard, s.version)
        writer.discard_unpublished(shard, s.version)


def read_shards(folder: Path, root: Path, emb: Embedder, recipe: Recipe,
                notes: list[str]) -> Shards:
    """The shards of the sharded index at ``folder`` as a sync of ``root`` needs them.

    Raises:
        ImgrecError: a shard is missing, damaged or does not match the manifest, the
            backbone or embedding recipe differ from the sharded index's (a sync keeps
            them: build a new sharded index), or a path is in two shards.
    """
    m = ShardedManifest.read(folder)
    if m.model != emb.name or (m.recipe or "v1") != recipe.name:
        raise ImgrecError(f"{folder} is a sharded index of {m.model} (recipe {m.recipe or 'v1'})"
                          f": a sync keeps its backbone and recipe, not {emb.name} "
                          f"({recipe.name}); build a new sharded index for those")
    finish_commit(folder, m)
    previous, catalogs, member = [], [], {}
    for i, s in enumerate(m.shards):
        mine: list[str] = []
        prev = sync.previous(folder / s.name, root, emb, mine, recipe.name)
        if prev is None or len(prev.index) != s.count:
            why = mine[-1] if mine else (
                "it holds no index version" if prev is None else
                f"it holds {len(prev.index)} rows, its manifest says {s.count}")
            raise ImgrecError(f"shard {s.name} of {folder} cannot be synced as it is ({why}):"
                              " build a new sharded index of the gallery")
        notes += [n for n in mine if n not in notes]
        catalogs.append({e.path: e for e in prev.index.entries()})
        for p, e in catalogs[-1].items():
            if e.row is None:
                continue
            if p in member:
                raise ImgrecError(f"{p!r} is in shards {m.shards[member[p]].name} and "
                                  f"{s.name} of {folder}: an image may be in one shard only")
            member[p] = i
        previous.append(prev)
    return Shards(folder, m, previous, catalogs, member)


def union(shards: Shards) -> sync.Previous:
    """The previous versions of every shard as one, rows numbered globally."""
    entries: dict[str, catalog.Entry] = {}
    for s, prev in zip(shards.manifest.shards, shards.previous, strict=True):
        for p, e in prev.entries.items():
            if p in entries and entries[p].row is None:
                del entries[p]  # skipped in one shard, indexed in another: the row counts
            if p not in entries:
                entries[p] = e if e.row is None else replace(e, row=e.row + s.offset)
    return _Union(None, entries)  # type: ignore[arg-type]


class ShardedBuild(Build):
    """A sync of an existing sharded index (the parameters of :class:`Build`; ``index_dir``
    is the sharded index). Only new and changed files are computed, by the same local or
    Ray producer; a killed sync resumes from its work store and leaves the sharded index
    as it was (see :mod:`imgrec.build.shardpublish` for the commit)."""

    _shards: Shards

    def _recipe(self, model: str, index_dir: Path) -> Recipe:
        """The sharded index's recipe unless another is asked for (a sync keeps it; an
        index built with an older recipe is rebuilt and split again to change it)."""
        if self.recipe is not None:
            return recipe_named(self.recipe)
        return recipe_named(ShardedManifest.read(index_dir).recipe)

    def _previous(self, index_dir: Path, root: Path, emb: Embedder, recipe: Recipe,
                  work: Path, report: BuildReport) -> sync.Previous | None:
        self._shards = read_shards(index_dir, root, emb, recipe, report.notes)
        if self.full:
            report.notes.append("full rebuild: every image is recomputed (each file stays "
                                "in its shard)")
            shutil.rmtree(work, ignore_errors=True)
            return None
        return union(self._shards)

    def _publish(self, root: Path, index_dir: Path, plan: sync.Plan,
                 prev: sync.Previous | None, ws: WorkStore, emb: Embedder, recipe: Recipe,
                 report: BuildReport, t0: float) -> None:
        import time

        from imgrec.build.decode import PIPELINE_VERSION
        from imgrec.build.report import Progress
        from imgrec.build.shardpublish import publish_shards

        entries = plan.numbered()
        report.indexed = sum(1 for e in entries if e.row is not None)
        if report.indexed == 0:
            reasons = "; ".join(f"{p}: {w}" for p, w in report.skipped[:3])
            raise ImgrecError(f"none of the {len(entries)} files in {root} could be read "
                              f"({reasons}); the sharded index is unchanged")
        t_write = time.perf_counter()
        if self.progress:
            self.progress(Progress("write", 0, report.indexed, 0.0))
        fields = {"model": emb.name, "gallery_root": str(root), "pipeline": PIPELINE_VERSION,
                  "recipe": recipe.name, "source": "sync",
                  "build_seconds": round(time.perf_counter() - t0, 3)}
        report.version, notes = publish_shards(self._shards, entries, plan, prev is not None,
                                               ws, emb.dim, fields, self.pca_components)
        report.notes += notes
        if self.progress:
            self.progress(Progress("write", report.indexed, report.indexed,
                                   time.perf_counter() - t_write))
