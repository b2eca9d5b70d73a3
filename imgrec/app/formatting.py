"""Text the dashboard shows: scores, sizes, durations, card labels, pages of results, CSV."""

from __future__ import annotations

import csv
import html
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgrec.search.rank import Hit, SearchResult

#: Search methods as the dashboard names them.
METHOD_LABELS = {"embedding": "Embedding (content)", "color": "Colour histogram (chi-square)",
                 "pca": "PCA colour (cosine)"}
METRIC_LABELS = {"cosine": "Cosine", "euclidean": "Euclidean", "manhattan": "Manhattan",
                 "all": "All three"}
#: Result ranks shown per page of the result grids.
PAGE_SIZE = 10


def format_score(hit: Hit, metric: str) -> str:
    """The value a user reads for a hit: cosine similarity, or the metric's distance."""
    if metric == "all" and hit.metrics:
        m = hit.metrics
        return (f"cos {m.get('cosine', hit.score):.3f} · L2 {m.get('euclidean', float('nan')):.3f}"
                f" · L1 {m.get('manhattan', float('nan')):.2f}")
    if metric in ("cosine", "all"):
        return f"cosine {hit.score:.3f}"
    if metric == "refined":  # mean cosine to positives − weight × mean cosine to negatives
        return f"refined score {hit.score:+.3f}"
    if metric == "probability":
        return f"probability {hit.score:.2f}"
    if metric == "chi2":
        return f"χ² {hit.distance:.4f}"
    digits = 2 if metric == "manhattan" else 3
    return f"{metric} {hit.distance:.{digits}f}"


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_built_at(stamp: str | None) -> str:
    """``2025-11-25T14:49:00Z`` → ``2025-11-25 14:49 UTC``."""
    if not stamp:
        return "unknown"
    return stamp.replace("T", " ")[:16] + (" UTC" if stamp.endswith("Z") else "")


def results_csv(*results: SearchResult) -> str:
    """The CSV export of searches (query, rank, path, score, distance, method, metric): the
    image search and the label search of one result area."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["query", "rank", "path", "score", "distance", "method", "metric"],
                       lineterminator="\n")
    w.writeheader()
    for result in results:
        w.writerows(result.to_rows())
    return buf.getvalue()


def card_label(kind: str, head: str, detail: str = "", path: str | None = None) -> str:
    """The HTML line(s) under a thumbnail: a bold head, a detail, and a one-line path.

    The path stays on one line (the page's CSS ends a long one with an ellipsis rather than
    breaking it mid-name, so the cards' buttons stay in line); everything is HTML-escaped.
    ``kind`` (``hit``, ``query``, ``combined``, ``pick``) becomes
    a CSS class.

    Example:
        >>> label = card_label("hit", "#1", "cosine 0.912", "cats/tom.jpg")
        >>> label.startswith('<div class="imgrec-card imgrec-hit"><b>#1</b> · cosine 0.912<br>')
        True
        >>> label.endswith('<span class="imgrec-path">cats/tom.jpg</span></div>')
        True
    """
    out = f'<div class="imgrec-card imgrec-{kind}">'
    if head:
        out += f"<b>{html.escape(head)}</b>"
    if detail:
        out += f" · {html.escape(detail)}" if head else html.escape(detail)
    if path is not None:
        out += (("<br>" if head or detail else "") + '<span class="imgrec-path">'
                + html.escape(path) + "</span>")
    return out + "</div>"


STRENGTH_WORDS = {"strong": "strong match", "related": "related", "weak": "weak match",
                  "unrated": "unrated"}


def strength_html(label: str, percentile: float) -> str:
    """A score's strength as a coloured bar and a word (``label`` from
    :meth:`imgrec.search.calibration.Calibration.strength`); the tooltip says what it means.

    Example:
        >>> strength_html("strong", 87.0).startswith('<div class="imgrec-strength imgrec-strong"')
        True
    """
    width = 0 if not math.isfinite(percentile) else max(4, round(percentile))
    tip = ("no calibration for this index" if not math.isfinite(percentile) else
           f"closer than {percentile:.0f}% of the gallery's images are to their own nearest "
           "neighbour")
    return (f'<div class="imgrec-strength imgrec-{html.escape(label)}" title="{html.escape(tip)}">'
            f'<div class="imgrec-bar"><span style="width:{width}%"></span></div>'
            f"{html.escape(STRENGTH_WORDS.get(label, label))}</div>")


def page_count(k: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(k / page_size))


def page_of(hits: Sequence[Hit], page: int, page_size: int = PAGE_SIZE) -> list[Hit]:
    """Hits of page ``page`` (0-based); pages past the end are empty."""
    return list(hits[page * page_size:(page + 1) * page_size])


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def duplicates_csv(report: Any) -> str:
    """The CSV of a :class:`imgrec.insights.duplicates.DuplicateReport` (one row per group member),
    written by :func:`imgrec.insights.duplicates.write_csv` (the one writer of that report)."""
    from imgrec.insights.duplicates import write_csv

    buf = io.StringIO()
    write_csv(report, buf)
    return buf.getvalue()


def member_detail(member: Any, keeper: bool) -> str:
    """The line under a duplicate's thumbnail: similarity to the keeper (none for the keeper
    itself), resolution and file size."""
    size = f"{member.width}×{member.height}" if member.width and member.height else ""
    head = "" if keeper else f"cosine {member.similarity:.3f}"
    return " · ".join(p for p in (head, size, format_bytes(member.size) if member.size else "") if p)


#: The methods the "compare methods" view puts side by side.
COMPARE_METHODS = ("embedding", "color", "pca")


@dataclass(frozen=True)
class Overlap:
    """How many paths the top-k lists of methods share."""

    pairs: dict[tuple[str, str], int]
    all: int


def overlap(lists: dict[str, Sequence[str]]) -> Overlap:
    """Pairwise and all-way overlap of ranked path lists (one per method).

    Example:
        >>> o = overlap({"a": ["x", "y"], "b": ["y", "z"], "c": ["y"]})
        >>> o.pairs[("a", "b")], o.all
        (1, 1)
    """
    names = list(lists)
    sets = {m: set(v) for m, v in lists.items()}
    pairs = {(a, b): len(sets[a] & sets[b]) for a, b in itertools.combinations(names, 2)}
    common = set.intersection(*sets.values()) if sets else set()
    return Overlap(pairs, len(common))
