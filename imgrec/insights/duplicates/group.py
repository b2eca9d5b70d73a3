"""Tiers and star groups: exact copies, confirmed same pictures, similar shots; keepers.

Images with one content hash form a *unit* (exact copies). Candidate pairs of units come
from the embedding scan (cosine >= threshold); a candidate confirmed by the second signal
(:mod:`.signals`) is a *same picture* link. Groups are stars, never chains: units are
taken best keeper first, and each still free unit becomes the keeper of the free units
linked to it, so every member is linked to the keeper itself (first the confirmed links:
``same picture``; then, among what is left and those keepers, the unconfirmed ones:
``similar shots``). A unit alone with several files is an ``exact`` group.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from imgrec.insights.duplicates.clipping import clearly_less_clipped, clipped
from imgrec.insights.duplicates.compression import clearly_finer
from imgrec.insights.duplicates.report import EXACT, SAME, SIMILAR, DuplicateGroup, Member
from imgrec.insights.duplicates.signals import DETAIL_MAX, HASH_BITS, Signal, hash_distance


@dataclass
class Unit:
    """The files sharing one content hash, and what ranks them as a keeper."""

    key: str  # the content hash ("row:N" when the catalog has none)
    rows: list[int]
    pixels: int
    long: int  # long side in pixels
    size: int
    date: str  # earliest EXIF date ("" when none)
    signal: Signal | None = None
    chosen: bool = False
    turned: int = -1  # candidates rotated/mirrored against this one (-1: not asked)
    coarser: float | None = None  # the JPEG quality of a coarser copy, when that decided
    more_clipped: float | None = None  # the clipped share of a copy, when clipping decided

    @property
    def quality(self) -> float | None:
        """The estimated JPEG quality of the unit's file (None: not a JPEG, or unknown)."""
        return None if self.signal is None else self.signal.quality

    @property
    def clipping(self) -> tuple[float, float, float, float] | None:
        """What :func:`.clipping.clipping` measured (None: not measured)."""
        return None if self.signal is None else self.signal.clipped

    def effective(self) -> float:
        """Effective pixels: the stored ones times the square of the detail factor."""
        if self.signal is None or self.long <= 0:
            return float(self.pixels)
        f = self.signal.detail / min(self.long, DETAIL_MAX)
        return self.pixels * min(1.0, f) ** 2

    def rank(self, paths: list[str]) -> tuple:
        """Sort key of the first choice: chosen, then most effective pixels."""
        return (not self.chosen, -self.effective(), min(paths[r] for r in self.rows))

    def detail_factor(self) -> float:
        """Measured detail per stored pixel, linear (1: every pixel carries detail)."""
        return math.sqrt(self.effective() / max(1, self.pixels))

    def reason(self) -> str:
        """Why this unit is a keeper, in words."""
        bits = ["chosen by you"] if self.chosen else []
        if self.coarser is not None and self.quality is not None:
            bits.append(f"least compressed (JPEG quality ~{self.quality:.0f}; a copy at "
                        f"~{self.coarser:.0f})")
        elif self.more_clipped is not None and self.clipping is not None:
            bits.append(f"least clipped ({clipped(self.clipping):.1%} of the frame white or "
                        f"black; a copy {self.more_clipped:.1%})")
        elif self.signal is not None:
            eff = self.effective()
            bits.append(f"most detail (~{eff / 1e6:.2f} MP effective)" if eff >= 1e4 else
                        f"most detail (~{eff:,.0f} effective pixels)")
        else:
            bits.append("most pixels")
        if self.turned > 0:
            bits.append(f"original orientation ({self.turned} rotated/mirrored "
                        f"cop{'y' if self.turned == 1 else 'ies'})")
        if self.date:
            bits.append(f"EXIF date {self.date}")
        return ", ".join(bits)


def exif_date(exif: str) -> str:
    """The earliest EXIF date of a catalog EXIF JSON ("" when none)."""
    try:
        tags = json.loads(exif or "{}")
    except ValueError:
        return ""
    dates = [str(tags[k]) for k in ("DateTimeOriginal", "DateTimeDigitized", "DateTime")
             if tags.get(k)]
    return min(dates) if dates else ""


class Links:
    """Candidate links, confirmed on first use (only links to a keeper are ever asked)."""

    def __init__(self, cand: dict[tuple[str, str], float],
                 check: Callable[[str, str], tuple[bool, str]] | None) -> None:
        self.adj: dict[str, dict[str, float]] = defaultdict(dict)
        for (a, b), s in cand.items():
            self.adj[a][b] = self.adj[b][a] = s
        self.check = check
        self.known: dict[tuple[str, str], tuple[bool, str]] = {}
        #: candidate pairs (smaller key first) that may only be same-picture links
        self.same_only: set[tuple[str, str]] = set()

    def __call__(self, a: str, b: str) -> tuple[bool, float, str]:
        """(confirmed, cosine, evidence) of a candidate link."""
        key = (a, b) if a < b else (b, a)
        if key not in self.known:
            self.known[key] = self.check(*key) if self.check else (False, "")
        ok, ev = self.known[key]
        if ev and key[0] != a:  # evidence names the pair in hash order
            ev = ev.replace("a is a crop", "@").replace("b is a crop", "a is a crop").replace(
                "@", "b is a crop")
        return ok, self.adj[a][b], ev


def star_groups(units: dict[str, Unit], links: Links, paths: list[str]
                ) -> list[DuplicateGroup]:
    """Exact, same-picture and similar-shot star groups (ids 0; the caller numbers them).

    Args:
        units: content hash -> unit.
        links: the candidate links between units.
        paths: row -> path.
    """
    adj = links.adj
    order = sorted(units, key=lambda k: units[k].rank(paths))
    taken: set[str] = set()
    keepers: list[str] = []
    stars: list[tuple[str, dict[str, tuple[bool, float, str]]]] = []
    groups: list[DuplicateGroup] = []
    pos = 0
    while pos < len(order):  # stage 1: exact copies and confirmed same pictures
        u = order[pos]
        if u in taken:
            pos += 1
            continue
        c = _centre(units, u, [v for v in adj[u] if v not in taken], paths, links)
        mates = {v: links(c, v) for v in adj[c] if v not in taken}
        mates = {v: x for v, x in mates.items() if x[0]}
        if c == u and not mates and len(units[u].rows) < 2:
            pos += 1
            continue
        if c != u and not mates and len(units[c].rows) < 2:
            c, mates = u, {v: x for v, x in ((v, links(u, v)) for v in adj[u]
                                              if v not in taken) if x[0]}
            if not mates and len(units[u].rows) < 2:
                pos += 1
                continue
        taken |= {c, *mates}
        keepers.append(c)
        stars.append((c, mates))
    for c, mates in stars:  # what no star took, confirmed against a keeper's whole frame
        more = _through_frames(c, mates, taken, links, paths, units)
        mates.update(more)
        taken |= set(more)
        groups.append(_group(units, c, mates, paths, SAME if mates else EXACT,
                             with_copies=True))
    free = {u for u in units if u not in taken} | set(keepers)
    done: set[str] = set()
    for u in order:  # stage 2: similar shots among what is left and those keepers
        if u not in free or u in done:
            continue
        mates = {v: links(u, v) for v in adj[u] if v in free and v not in done}
        mates = {v: x for v, x in mates.items() if not (u in keepers and v in keepers and x[0])
                 and ((u, v) if u < v else (v, u)) not in links.same_only}
        if not mates:
            continue
        done |= {u, *mates}
        groups.append(_group(units, u, mates, paths, SIMILAR,
                             with_copies=False))
    return groups


#: whole-frame members of a group that a candidate the keeper refused is checked against
FRAMES_ASKED = 4


def _through_frames(c: str, mates: dict[str, tuple[bool, float, str]], taken: set[str],
                    links: Links, paths: list[str], units: dict[str, Unit]
                    ) -> dict[str, tuple[bool, float, str]]:
    """Candidates of keeper ``c`` that no star took (asked once every star is formed, so
    none is taken from a star of its own), that its check refused, but that are confirmed
    against a member showing the keeper's whole frame (a pHash match: re-encoded,
    resized, turned or colour-edited): a crop of the original is a crop of its brightened copy too, though
    the clipped highlights of that copy can fail the check. The composition is exact, not
    a chain of likeness: the member is the keeper's frame, and the candidate is still
    within the threshold of the keeper itself (it is the keeper's candidate). At most
    :data:`FRAMES_ASKED` members are asked for each, the most similar to it first."""
    frames = [m for m, (ok, _, ev) in mates.items() if ok and ev.startswith("pHash")]
    out: dict[str, tuple[bool, float, str]] = {}
    if not frames:
        return out
    for v in links.adj[c]:
        if v in taken or v in mates or v == c or links(c, v)[0]:
            continue
        near = links.adj[v]
        for m in sorted((m for m in frames if m in near), key=lambda m: -near[m])[:FRAMES_ASKED]:
            ok, _, ev = links(m, v)
            if ok:
                via = paths[min(units[m].rows, key=lambda r: paths[r])]
                out[v] = (True, links.adj[c][v], f"{ev}; checked against {via}, which shows "
                          "the keeper's frame")
                break
    return out


def _centre(units: dict[str, Unit], u: str, near: list[str], paths: list[str],
            links: Links) -> str:
    """The keeper among ``u`` (the most effective pixels still free) and its free
    candidates within 1.3x of its effective linear resolution or clearly less compressed
    or clipped at (nearly) its size: chosen first, then those that no smaller candidate
    matches within 5 % in effective linear resolution (an upscale's added pixels carry no
    detail), those that no candidate of (nearly) their size beats by
    :data:`.compression.CLEARLY_FINER` JPEG quality points (a re-encode's blocking can
    measure as detail), those that no candidate of (nearly) their size beats by
    :data:`.clipping.CLEARLY_LESS` of the frame clipped to white or black (a brightened
    copy's lost highlights), the most pixels (uncropped), the original orientation
    (:func:`_turned`), the earliest EXIF date, the largest file; and never a confirmed
    crop of another candidate."""
    top = math.sqrt(units[u].effective()) / 1.3
    by_detail = {v for v in near if math.sqrt(units[v].effective()) >= top} | {u}
    pool = [u] + [v for v in near if v in by_detail or _finer(units[v], units[u])
                  or _less_clipped(units[v], units[u])]
    lin = {k: math.sqrt(units[k].effective()) for k in pool}

    def upscaled(k: str) -> bool:  # a smaller candidate carries (nearly) as much detail
        return any(units[o].pixels < units[k].pixels and lin[o] >= 0.95 * lin[k] for o in pool)

    coarser = {k: any(_finer(units[o], units[k]) for o in pool) for k in pool}
    clips_more = {k: any(_less_clipped(units[o], units[k]) for o in pool) for k in pool}
    turned = _turned(units, pool, [u, *near])

    def key(k: str) -> tuple:
        x = units[k]
        return (not x.chosen, upscaled(k), coarser[k], clips_more[k], -x.pixels, turned[k],
                x.date or "~", -x.size, min(paths[r] for r in x.rows))

    ranked = sorted(pool, key=key)
    c = ranked[0]

    def unruled(k: str, i: int) -> tuple:  # the key without the rule at position i
        return key(k)[:i] + key(k)[i + 1:]

    via_finer = c not in by_detail and _finer(units[c], units[u])  # how c came in
    beaten = [units[k].quality for k in pool if coarser[k] and unruled(k, 2) < unruled(c, 2)]
    if not coarser[c] and (beaten or via_finer):  # compression decided: say so
        units[c].coarser = min((q for q in beaten if q is not None),
                               default=units[u].quality)
    beaten = [clipped(units[k].clipping) for k in pool
              if clips_more[k] and unruled(k, 3) < unruled(c, 3) and units[k].clipping]
    if units[c].coarser is None and not clips_more[c] and (
            beaten or (c not in by_detail and not via_finer)):  # clipping decided: say so
        units[c].more_clipped = max(beaten, default=clipped(units[u].clipping or (0.0,) * 4))
    if any(key(k)[:5] == key(c)[:5] and turned[k] > turned[c] for k in pool):
        units[c].turned = turned[c]  # the orientation decided: say so
    if units[c].chosen:
        return c
    for v in ranked[1:]:
        if v in links.adj[c]:
            ok, _, ev = links(c, v)
            if ok and ev.startswith("a is a crop") and not ev.startswith("a is a crop of 9"):
                return v
    return c


def _less_clipped(a: Unit, b: Unit) -> bool:
    """Whether ``a`` is clearly less clipped to white or black than ``b`` at (nearly) its
    size."""
    return a.pixels >= 0.9 * b.pixels and clearly_less_clipped(a.clipping, b.clipping)


def _finer(a: Unit, b: Unit) -> bool:
    """Whether ``a`` is a clearly less compressed JPEG than ``b`` at (nearly) its size."""
    return a.pixels >= 0.9 * b.pixels and clearly_finer(a.quality, b.quality)


def _turned(units: dict[str, Unit], pool: list[str], near: list[str]) -> dict[str, int]:
    """For each keeper candidate in ``pool``: how many of ``near`` (the candidates and
    their neighbours, upright as decoded, so EXIF orientation is already applied) match
    it by pHash only rotated or mirrored. The original orientation is the one most of the
    copies share: the fewest turned copies."""
    out = dict.fromkeys(pool, 0)
    if len(pool) < 2:
        return out
    for k in pool:
        sk = units[k].signal
        n = 0
        for v in near:
            sv = units[v].signal
            if v != k and sk is not None and sv is not None:
                dist, var = hash_distance(sk.dct, sv.dct)
                n += dist <= HASH_BITS and var != 0
        out[k] = n
    return out


def _group(units: dict[str, Unit], keeper: str, mates: dict[str, tuple[bool, float, str]],
           paths: list[str], tier: str, with_copies: bool) -> DuplicateGroup:
    ku = units[keeper]
    rows = sorted(ku.rows, key=lambda r: paths[r])
    members = [Member(paths[rows[0]], rows[0], 0, 0, 0, keeper, 1.0)]
    if with_copies:
        members += [Member(paths[r], r, 0, 0, 0, keeper, 1.0, "exact copy of the keeper")
                    for r in rows[1:]]
    others = []
    for v, (ok, cos, ev) in mates.items():
        vrows = sorted(units[v].rows, key=lambda r: paths[r])
        if not with_copies:
            vrows = vrows[:1]
        ev = ev.replace("b is a crop of", "a crop keeping").replace(
            "a is a crop of", "the keeper is a crop of")
        tag = f"same picture: {ev}" if ok else f"similar: cosine {cos:.3f}" + (
            f" ({ev})" if ev else "")
        others += [Member(paths[r], r, 0, 0, 0, v, cos, tag) for r in vrows]
    others.sort(key=lambda m: (-m.similarity, m.path))
    kind = EXACT if tier == EXACT else "near"
    return DuplicateGroup(0, kind, members + others, tier, ku.reason())
