"""Check before import: is each file already in the collection (tier, match, score) or new?"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgrec import images
from imgrec.errors import ImgrecError
from imgrec.insights.duplicates import signals as S
from imgrec.insights.duplicates.core import DEFAULT_THRESHOLD, catalog, signal_of_file
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


def check(index: Index, targets: list[str | Path], threshold: float = DEFAULT_THRESHOLD,
          k: int = 5) -> list[Verdict]:
    """For each file: exact copy (by hash), same picture (top-``k`` embedding neighbours
    above ``threshold`` confirmed by the second signal), similar shot, or new."""
    files = files_of(targets)
    meta = catalog(index)
    by_sha = {m[3]: r for r, m in enumerate(meta) if m[3]}
    paths = index.all_paths()
    out = []
    for f in files:
        sha = hashlib.sha256(f.read_bytes()).hexdigest()
        if sha in by_sha:
            out.append(Verdict(str(f), EXACT, paths[by_sha[sha]], 1.0, "same bytes"))
            continue
        try:
            res = index.search([str(f)], k=k)
            rgb, _ = images.load_image(f, draft=False)
        except ImgrecError as e:
            out.append(Verdict(str(f), None, None, 0.0, f"unreadable: {e}"))
            continue
        mine = S.compute(rgb)
        best: Verdict | None = None
        for h in res.per_query[0]:
            if h.score < threshold:
                continue
            theirs = signal_of_file(index, h.path)
            ok, ev = S.confirm(mine, theirs) if theirs is not None else (False, "")
            if ok:
                best = Verdict(str(f), SAME, h.path, float(h.score), ev)
                break
            if best is None:
                best = Verdict(str(f), SIMILAR, h.path, float(h.score), f"cosine {h.score:.3f}")
        out.append(best or Verdict(str(f), None, None, 0.0))
    return out
