"""Split an index into a sharded index: N ordinary indexes over contiguous row ranges that
share one PCA model, listed by a small manifest (``sharded.json``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imgrec.errors import ImgrecError, IndexFormatError
from imgrec.index.index import Index
from imgrec.index.writer import VersionWriter

MANIFEST = "sharded.json"
FORMAT = "imgrec-sharded"
FORMAT_VERSION = 1
_BLOCK = 65536


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its index folder (relative to the sharded index), first global row, rows,
    and the version of it the sharded index is made of (None: its published one)."""

    name: str
    offset: int
    count: int
    version: str | None = None


@dataclass(frozen=True)
class ShardedManifest:
    """What ``sharded.json`` says: the shards in row order and the facts they share."""

    model: str
    count: int
    pca_components: int
    gallery_root: str
    shards: tuple[ShardInfo, ...]
    recipe: str | None = None  # the source's embedding recipe (None: v1)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": self.model,
                "count": self.count, "pca_components": self.pca_components,
                "gallery_root": self.gallery_root, "recipe": self.recipe,
                "shards": [{"name": s.name, "offset": s.offset, "count": s.count,
                            **({"version": s.version} if s.version else {})}
                           for s in self.shards]}

    @classmethod
    def read(cls, folder: Path) -> ShardedManifest:
        """The manifest of the sharded index at ``folder``.

        Raises:
            IndexFormatError: missing, damaged, of another format, or rows not contiguous.
        """
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise IndexFormatError(f"{folder} is not a sharded index (no {MANIFEST}): make "
                                   "one with `imgrec shard split INDEX OUT --shards N`") from None
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexFormatError(f"{path} is not a sharded-index manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(f"{path} says format version {data.get('format_version')!r};"
                                   f" this imgrec reads version {FORMAT_VERSION}")
        try:
            shards = tuple(ShardInfo(str(s["name"]), int(s["offset"]), int(s["count"]),
                                     _version(s.get("version")))
                           for s in data["shards"])
            out = cls(str(data["model"]), int(data["count"]), int(data["pca_components"]),
                      str(data["gallery_root"]), shards, data.get("recipe") or None)
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"{path} is damaged ({exc!r} missing or invalid)") from None
        at = 0
        for s in shards:
            if s.offset != at or s.count < 1 or Path(s.name).name != s.name:
                raise IndexFormatError(f"{path} is damaged: shard {s.name!r} does not start "
                                       f"at row {at} or names a folder outside {folder}")
            at += s.count
        if at != out.count or not shards:
            raise IndexFormatError(f"{path} is damaged: its shards hold {at} rows, not "
                                   f"{out.count}")
        return out


def _version(name: object) -> str | None:
    """A shard's version name from the manifest (None when absent)."""
    from imgrec.index.format import VERSION_NAME

    if name is None:
        return None
    if not isinstance(name, str) or not VERSION_NAME.fullmatch(name):
        raise ValueError(f"version {name!r}")
    return name


def version_dir(folder: Path, shard: ShardInfo) -> Path | None:
    """The version folder of ``shard`` (of the sharded index at ``folder``) that the
    manifest names, else the shard's published one (None when it has none).

    Raises:
        IndexFormatError: the shard's ``CURRENT`` is damaged.
    """
    from imgrec.index.writer import current_version

    if shard.version is not None:
        return folder / shard.name / shard.version
    return current_version(folder / shard.name)


def open_shard(shard_dir: Path, version: str | None) -> Index:
    """The shard at ``shard_dir`` at the version its sharded index's manifest names (an
    interrupted sync may not have switched the shard's ``CURRENT`` yet); None: its
    published version.

    Raises:
        IndexFormatError: that version is missing or damaged (the message names the shard).
    """
    from imgrec.index.reader import read_manifest

    if version is None:
        return Index.open(shard_dir)
    path = Path(shard_dir) / version
    if not path.is_dir():
        raise IndexFormatError(f"shard {path.parent.name} of {path.parent.parent} cannot be "
                               f"opened: its version {version} is missing")
    return Index(path, read_manifest(path), None, "auto")


def sharded_version(shards: Sequence[tuple[str, str]]) -> str:
    """The version of a sharded index: a digest of each shard's (name, index version).

    Example:
        >>> sharded_version([("shard-000", "v1"), ("shard-001", "v7")])
        'ca02bcc769788837'
    """
    key = "|".join(f"{name}={version}" for name, version in shards)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def current_key(folder: Path) -> str:
    """What names the content of the sharded index at ``folder`` now: its manifest and
    the current version of each shard (a cache key that changes when any shard does).

    Raises:
        IndexFormatError: as :meth:`ShardedManifest.read`, or a shard has no version.
    """
    m = ShardedManifest.read(folder)
    parts = []
    for s in m.shards:
        version = version_dir(folder, s)
        if version is None:
            raise IndexFormatError(f"shard {s.name} of {folder} cannot be opened: it holds "
                                   "no index version")
        parts.append(f"{s.name}={version.name}")
    return f"{(folder / MANIFEST).stat().st_mtime_ns}:" + ",".join(parts)


def split(index_dir: str | os.PathLike, out: str | os.PathLike, shards: int) -> Path:
    """Write the index at ``index_dir`` as a sharded index of ``shards`` shards in ``out``.

    Shard ``i`` holds a contiguous range of rows (global row = its offset + local row,
    so ties rank as in the unsharded index) with their features copied unchanged, the
    one PCA model of the source, and its labels; the skipped files go into the first
    shard's catalog. Each shard is an ordinary versioned index.

    Raises:
        ImgrecError: ``shards`` is not between 1 and the number of rows, or ``out`` is
            not empty.

    Example:
        >>> split("photos-index", "photos-sharded", shards=4)
        PosixPath('photos-sharded')
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImgrecError(f"{out} exists and is not an empty folder: choose a new one")
    return write_shards(Index.open(index_dir), out, shards, source="split")


def write_shards(src: Index, out: Path, shards: int, source: str) -> Path:
    """Write ``src`` as ``shards`` shards and their manifest into the folder ``out``.

    The one implementation behind :func:`split` and ``build_index(..., shards=N)``;
    ``source`` is recorded in each shard's manifest. The score calibrations of ``src``
    are kept as the sharded index's (see :func:`imgrec.search.calibration.carry_over`:
    the sharded search answers as ``src``'s). The manifest is written last (an
    interrupted write leaves no sharded index), replacing any earlier one.

    Raises:
        ImgrecError: ``shards`` is not between 1 and the number of rows.
    """
    n = len(src)
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= n:
        raise ImgrecError(f"--shards must be a whole number from 1 to {n} (the rows of the "
                          f"index), got {shards!r}")
    entries = src.entries()
    skipped = [e for e in entries if e.row is None]
    indexed = sorted((e for e in entries if e.row is not None), key=lambda e: e.row)
    pca = src.pca()
    bounds = [i * n // shards for i in range(shards + 1)]
    infos, versions = [], []
    for i in range(shards):
        a, b = bounds[i], bounds[i + 1]
        name = f"shard-{i:03d}"
        rows = [replace(e, row=e.row - a) for e in indexed[a:b]]
        version = _write_shard(src, out / name, a, b, rows + (skipped if i == 0 else []), pca,
                               source)
        infos.append(ShardInfo(name, a, b - a, version))
        versions.append((name, version))
    from imgrec.search.calibration import carry_over

    carry_over(src, out, sharded_version(versions))
    manifest = ShardedManifest(src.model, n, pca.n_components, str(src.root), tuple(infos),
                               src.manifest.recipe)
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
    return out


def _write_shard(src: Index, folder: Path, a: int, b: int, entries: list, pca: Any,
                 source: str) -> str:
    """One shard: rows ``a:b`` of ``src`` copied as they are, published with ``pca``;
    returns the version's name."""
    writer = VersionWriter(folder, b - a, src.embeddings.shape[1])
    try:
        for s in range(a, b, _BLOCK):
            e = min(b, s + _BLOCK)
            writer.embeddings[s - a:e - a] = src.embeddings[s:e]
            writer.histograms[s - a:e - a] = src.histograms[s:e]
        if src.labels_top5 is not None and src.labels_prob5 is not None:
            top5, prob5 = writer.labels()
            top5[:] = src.labels_top5[a:b]
            prob5[:] = src.labels_prob5[a:b]
        return writer.publish(entries, {"model": src.model, "gallery_root": str(src.root),
                                        "pipeline": src.manifest.pipeline,
                                        "recipe": src.manifest.recipe, "source": source},
                              pca).name
    except BaseException:
        writer.abort()
        raise
