"""The duplicate report: members, groups with their tier and evidence, CSV and JSON."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

EXACT, SAME, SIMILAR = "exact", "same picture", "similar shots"
TIERS = (EXACT, SAME, SIMILAR)
CSV_COLUMNS = ("group", "tier", "kind", "action", "path", "similarity_to_keeper", "evidence",
               "width", "height", "size", "sha256")


@dataclass(frozen=True)
class Member:
    """One image of a duplicate group."""

    path: str
    row: int
    width: int
    height: int
    size: int
    sha256: str
    similarity: float  # cosine similarity to the group's keeper (1.0 for the keeper)
    evidence: str = ""  # why it belongs with the keeper (the keeper: why it is the keeper)


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that duplicate each other; ``members[0]`` is the suggested keeper.

    ``tier`` is ``"exact"`` (one content hash), ``"same picture"`` (every member confirmed
    as the keeper's picture by a second signal) or ``"similar shots"``. ``kind`` is the
    older two-way label: ``"exact"`` or ``"near"``.
    """

    id: int
    kind: str
    members: list[Member]
    tier: str = ""
    reason: str = ""  # why members[0] is the keeper

    def __post_init__(self) -> None:
        if not self.tier:
            object.__setattr__(self, "tier", EXACT if self.kind == EXACT else SIMILAR)

    @property
    def keeper(self) -> Member:
        return self.members[0]


@dataclass
class DuplicateReport:
    """Every duplicate group of an index: exact, then same picture, then similar shots."""

    threshold: float
    groups: list[DuplicateGroup]
    images: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    decisions_applied: int = 0

    @property
    def exact(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == "exact"]

    @property
    def near(self) -> list[DuplicateGroup]:
        return [g for g in self.groups if g.kind == "near"]

    def tier(self, name: str) -> list[DuplicateGroup]:
        """The groups of one tier (``"exact"``, ``"same picture"``, ``"similar shots"``)."""
        return [g for g in self.groups if g.tier == name]

    @property
    def redundant(self) -> int:
        """Images beyond one keeper per group."""
        return sum(len(g.members) - 1 for g in self.groups)

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per member (keeper first in each group), the columns of the CSV."""
        return [{"group": g.id, "tier": g.tier, "kind": g.kind,
                 "action": "keep" if i == 0 else "review", "path": m.path,
                 "similarity_to_keeper": round(m.similarity, 6),
                 "evidence": g.reason if i == 0 else m.evidence,
                 "width": m.width, "height": m.height, "size": m.size, "sha256": m.sha256}
                for g in self.groups for i, m in enumerate(g.members)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``imgrec duplicates --json``."""
        return {"threshold": self.threshold, "images": self.images,
                "tiers": {t: len(self.tier(t)) for t in TIERS},
                "groups": [{"id": g.id, "tier": g.tier, "kind": g.kind,
                            "keeper": g.keeper.path, "reason": g.reason,
                            "members": [{"path": m.path, "similarity": round(m.similarity, 6),
                                         "evidence": m.evidence, "width": m.width,
                                         "height": m.height, "size": m.size,
                                         "sha256": m.sha256} for m in g.members]}
                           for g in self.groups],
                "redundant": self.redundant, "seconds": round(self.seconds, 3),
                "decisions_applied": self.decisions_applied, "notes": self.notes}


def write_csv(report: DuplicateReport, path: str | os.PathLike | TextIO) -> Path | TextIO:
    """Write one CSV row per group member (columns :data:`CSV_COLUMNS`); returns the path.

    ``action`` is ``keep`` for the suggested keeper and ``review`` for the others. ``path``
    may also be an open text stream (e.g. ``io.StringIO``), which is written to and returned.
    """
    if hasattr(path, "write"):
        _write_rows(report, path)  # type: ignore[arg-type]
        return path  # type: ignore[return-value]
    path = Path(path)  # its folder must exist: no folder is created outside the one named
    with open(path, "w", newline="", encoding="utf-8") as fh:
        _write_rows(report, fh)
    return path


def _write_rows(report: DuplicateReport, fh: TextIO) -> None:
    w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
    w.writeheader()
    w.writerows(report.to_rows())
