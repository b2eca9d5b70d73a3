"""The on-disk format of an index version: file names, shapes, checksums and the Manifest.

Layout of an index directory::

    CURRENT                  name of the published version (replaced atomically)
    v-<stamp>/manifest.json  format version, backbone, dimensions, gallery root, counts,
                             checksums of every file of the version and of the manifest
    v-<stamp>/catalog.sqlite one row per gallery file (see catalog.py)
    v-<stamp>/embeddings.npy (n, d) float32, unit rows      embedding_norms.npy (n,)
    v-<stamp>/embeddings_f16.npy (n, d) float16 copy, embeddings_f16_error.npy (n, 2)
                             its per-row rounding error bounds (see half.py)
    v-<stamp>/histograms.npy (n, 768) float32               pca.npz, pca_histograms.npy
    v-<stamp>/labels_top5.npy  (n, 5) int16 ImageNet class ids, -1 = unknown   (optional)
    v-<stamp>/labels_prob5.npy (n, 5) float32 their probabilities, 0 = unknown (optional)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgrec.errors import IndexFormatError
from imgrec.features.color import DIM as HIST_DIM

FORMAT_VERSION = 1
CURRENT = "CURRENT"
VERSION_NAME = re.compile(r"v-[0-9A-Za-z_.-]{1,100}")
TMP_PREFIX = ".tmp-"  # a version being written: TMP_PREFIX + name

MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
EMBEDDINGS = "embeddings.npy"
NORMS = "embedding_norms.npy"
HISTOGRAMS = "histograms.npy"
PCA = "pca.npz"
PCA_HISTOGRAMS = "pca_histograms.npy"
HALF_DATA = "embeddings_f16.npy"
HALF_ERROR = "embeddings_f16_error.npy"  # (n, 2) float32: L2 and L1 rounding error bounds
HALF_FILES = (HALF_DATA, HALF_ERROR)
#: Optional per-image ImageNet labels: the backbone's top-5 class ids and probabilities.
LABEL_TOP = 5
LABEL_FILES = ("labels_top5.npy", "labels_prob5.npy")
#: Files read in full on every open (small: a few bytes per image); the others are
#: checked by size on open and byte by byte by ``verify``.
SMALL_FILES = (CATALOG, PCA, NORMS, HALF_ERROR, *LABEL_FILES)
PCA_KEYS = ("mean", "components", "explained_variance", "explained_variance_ratio")
#: checksum algorithm recorded in the manifest
CHECKSUM = "blake2b-256"
_BLOCK = 1 << 20


def file_checksum(path: Path) -> str:
    """Hex BLAKE2b-256 digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of one index version (see :meth:`from_json`).

    ``checksums`` maps each file of the version to ``[size, digest]`` and holds the
    digest of the manifest itself (every other field) under ``"manifest"``; versions
    written before checksums existed have none (``{}``) and are read as before.
    """

    format_version: int
    model: str
    gallery_root: str
    embedding_dim: int
    histogram_dim: int
    pca_components: int
    count: int
    skipped: int
    version: str
    built_at: str = ""
    pipeline: int | None = None
    build_seconds: float | None = None
    source: str | None = None
    recipe: str | None = None  # the embedding recipe (imgrec.features.recipe); None: v1
    checksums: dict[str, Any] = field(default_factory=dict)
    #: fields this imgrec does not know (kept on a round trip)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, path: Path) -> Manifest:
        """Check a parsed manifest (read from ``path``) and type it.

        Raises:
            IndexFormatError: not an object, another format version, or fields missing
                or invalid.
        """
        if not isinstance(data, dict):
            raise IndexFormatError(f"{path} is damaged (not a JSON object)")
        found = data.get("format_version")
        if found != FORMAT_VERSION or isinstance(found, bool):
            raise IndexFormatError(
                f"{path} says format version {found!r}; this imgrec reads version "
                f"{FORMAT_VERSION}: rebuild it with `imgrec index GALLERY --index "
                f"{path.parent.parent} --full`")
        bad = [k for k, t in _REQUIRED.items()
               if not isinstance(data.get(k), t) or isinstance(data.get(k), bool)]
        bad += [k for k, t in _OPTIONAL.items() if data.get(k) is not None
                and (not isinstance(data[k], t) or isinstance(data[k], bool))]
        if bad:
            raise IndexFormatError(f"{path} is damaged: missing or invalid {', '.join(bad)}")
        if (data["count"] < 0 or data["embedding_dim"] < 1 or data["pca_components"] < 1
                or data["skipped"] < 0):
            raise IndexFormatError(f"{path} is damaged: negative or zero sizes")
        if data["histogram_dim"] != HIST_DIM:
            raise IndexFormatError(f"{path}: histogram_dim is {data['histogram_dim']}, "
                                   f"this imgrec uses {HIST_DIM}")
        sums = data.get("checksums") or {}
        if not _checksums_ok(sums):
            raise IndexFormatError(f"{path} is damaged: invalid checksums")
        known = {f.name for f in fields(cls)} - {"extra"}
        kw = {k: v for k, v in data.items() if k in known and v is not None}
        return cls(**kw, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def read(cls, version_dir: Path) -> Manifest:
        """The parsed, checked ``manifest.json`` of a version folder.

        Raises:
            IndexFormatError: missing, unparsable, another format version, or fields missing.
        """
        path = Path(version_dir) / MANIFEST
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise IndexFormatError(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path} is damaged (not valid JSON: {exc})") from None
        return cls.from_json(data, path)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (fields that are None are left out)."""
        out = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        if not self.checksums:
            out.pop("checksums")
        return {**self.extra, **out}

    def digest(self) -> str:
        """Digest of every field but the manifest's own checksum (binds it to its files)."""
        data = self.to_json()
        data["checksums"] = {k: v for k, v in self.checksums.items() if k != "manifest"}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(blob, digest_size=32).hexdigest()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The required float32 ``.npy`` files of this version and their shapes."""
        n, d, c = self.count, self.embedding_dim, self.pca_components
        return {EMBEDDINGS: (n, d), NORMS: (n,), HISTOGRAMS: (n, HIST_DIM),
                PCA_HISTOGRAMS: (n, c)}

    def recorded(self, name: str) -> tuple[int, str] | None:
        """(size, digest) recorded for a file, or None (no checksums, or not listed)."""
        got = self.checksums.get("files", {}).get(name)
        return (int(got[0]), str(got[1])) if got else None


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format_version": int, "model": str, "gallery_root": str, "embedding_dim": int,
    "histogram_dim": int, "pca_components": int, "count": int, "skipped": int, "version": str,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "built_at": str, "pipeline": int, "build_seconds": (int, float), "source": str,
    "recipe": str, "checksums": dict,
}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _checksums_ok(sums: dict[str, Any]) -> bool:
    if not sums:
        return True
    files = sums.get("files")
    if sums.get("algorithm") != CHECKSUM or not isinstance(files, dict):
        return False
    if not isinstance(sums.get("manifest"), str) or not _HEX64.fullmatch(sums["manifest"]):
        return False
    if not all(_FILE_NAME.fullmatch(k) for k in files):
        return False  # plain names of files in the version folder only
    return all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
               and not isinstance(v[0], bool) and v[0] >= 0 and isinstance(v[1], str)
               and _HEX64.fullmatch(v[1]) is not None for v in files.values())


def with_checksums(manifest: Manifest, version_dir: Path) -> Manifest:
    """``manifest`` with the sizes and digests of every file now in ``version_dir``."""
    files = {p.name: [p.stat().st_size, file_checksum(p)]
             for p in sorted(Path(version_dir).iterdir()) if p.is_file() and p.name != MANIFEST}
    bare = Manifest(**{**asdict(manifest), "checksums": {"algorithm": CHECKSUM,
                                                         "files": files}})
    return Manifest(**{**asdict(bare), "checksums": {**bare.checksums,
                                                     "manifest": bare.digest()}})
