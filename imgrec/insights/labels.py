"""ImageNet labels per image: the most frequent classes, and search by label text.

At index time the backbone's classifier head (both backbones are ImageNet-1k models with
the same 1000-class order) gives each image its top-5 classes and their probabilities;
they are stored as ``labels_top5.npy`` / ``labels_prob5.npy`` (see :mod:`imgrec.index.writer`).
Class names are torchvision's (``ResNet50_Weights.IMAGENET1K_V1.meta["categories"]``,
copied into :mod:`imgrec.features.imagenet` so that reading them does not import torch).

Label text search is offline and needs no text model. A query such as ``"dog"``,
``"lakeside"`` or ``"cat, tiger"`` (commas separate alternatives) matches:

* every class whose name contains the term as whole words, case-insensitively, a plural
  ``s``/``es`` allowed on either side (``"retriever"`` matches ``golden retriever`` and
  ``Labrador retriever``; ``"car"`` matches ``car wheel`` but not ``cardigan``);
* the classes of a **group** named by the term (:data:`GROUPS`). ImageNet names breeds and
  species, not the words people search with (no dog class contains "dog" in its name: it
  is ``beagle``, ``pug``, ...), so the groups follow the contiguous ranges of the WordNet
  hierarchy that ImageNet-1k's class order preserves: 151-268 are dog breeds, 281-285
  domestic cats, 286-293 big cats, 7-24/80-100/127-146 birds, and so on, plus a few hand-made
  lists (cars, boats, fruit, ...).

An image's score for a query is the summed stored probability of its top-5 classes that
match: the probability mass the CNN put on the query, so a close-up of a beagle outranks
a photo where a dog is one guess among several.

Example:
    >>> from imgrec.insights.labels import search_by_label
    >>> search_by_label(idx, "cat", k=3).combined[0].path
    'chelsea/chelsea_jpeg30.jpg'
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from imgrec.errors import QueryError
from imgrec.features.imagenet import CATEGORIES
from imgrec.index.format import LABEL_TOP
from imgrec.search.rank import Hit, SearchResult

if TYPE_CHECKING:
    from imgrec.index.index import Index

TOP = LABEL_TOP  # labels stored per image (the index format owns the number)
CHUNK = 65536


def _r(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


#: Group word -> ImageNet-1k class ids (ranges follow the WordNet hierarchy).
GROUPS: dict[str, tuple[int, ...]] = {
    "dog": _r(151, 268),
    "canine": _r(151, 280),
    "wolf": _r(269, 271),
    "fox": _r(277, 280),
    "cat": _r(281, 285),
    "big cat": _r(286, 293),
    "feline": _r(281, 293),
    "bear": _r(294, 297),
    "bird": _r(7, 24) + _r(80, 100) + _r(127, 146),
    "fish": _r(0, 6) + _r(389, 397),
    "shark": _r(2, 4),
    "amphibian": _r(25, 32),
    "turtle": _r(33, 37),
    "lizard": _r(38, 48),
    "snake": _r(52, 68),
    "reptile": _r(33, 68),
    "spider": _r(72, 77),
    "insect": _r(300, 326),
    "bug": _r(300, 326),
    "butterfly": _r(321, 326),
    "crustacean": _r(118, 126),
    "primate": _r(365, 384),
    "ape": _r(365, 369),
    "monkey": _r(369, 382),
    "whale": (147, 148),
    "animal": _r(0, 397),
    "car": (407, 436, 468, 511, 609, 627, 656, 661, 717, 751, 817),
    "truck": (555, 569, 675, 717, 734, 864, 867),
    "bus": (654, 779, 874),
    "train": (466, 547, 565, 705, 820, 829),
    "boat": (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    "ship": (403, 510, 554, 628, 724, 780, 833),
    "aircraft": (404, 405, 895, 908),
    "airplane": (404, 895, 908),
    "plane": (404, 895, 908),
    "rocket": (657, 744, 812),
    "bicycle": (444, 671, 870, 880),
    "bike": (444, 665, 670, 671),
    "vehicle": (407, 436, 468, 511, 555, 569, 609, 627, 654, 656, 661, 675, 717, 734, 751,
                779, 817, 864, 867, 874),
    "food": _r(924, 969),
    "fruit": _r(948, 957),
    "vegetable": _r(936, 946),
    "drink": (966, 967, 969),
    "coffee": (504, 505, 550, 967, 968),
    "mushroom": (947, *_r(991, 997)),
    "flower": (984, 985, 986),
    "landscape": _r(970, 980),
    "nature": _r(970, 980),
    "mountain": (970, 972, 979, 980),
    "beach": (977, 978),
    "sea": (973, 976, 977, 978),
    "person": (981, 982, 983),
    "people": (981, 982, 983),
    "clock": (409, 530, 531, 604, 826, 835, 892),
    "instrument": (401, 402, 420, 432, 486, 494, 513, 541, 546, 558, 566, 577, 579, 593,
                   594, 641, 642, 683, 684, 687, 699, 776, 822, 875, 881, 889),
    "music": (401, 402, 420, 432, 486, 494, 513, 541, 546, 558, 566, 577, 579, 593, 594,
              641, 642, 683, 684, 687, 699, 776, 822, 875, 881, 889),
    "computer": (508, 527, 590, 620, 664, 673, 681),
    "phone": (487, 528, 707),
    "building": (415, 424, 425, 449, 454, 467, 483, 497, 498, 580, 582, 624, 663, 668, 698,
                 727, 743, 762, 788, 832, 860, 865, 900),
    "bridge": (821, 839, 888),
}

#: Other words for a group (or class) word.
SYNONYMS = {"puppy": "dog", "kitten": "cat", "kitty": "cat", "automobile": "car",
            "auto": "car", "boats": "boat", "aeroplane": "airplane", "human": "person",
            "man": "person", "woman": "person", "vegetables": "vegetable",
            "fungus": "mushroom", "bicycles": "bicycle", "shop": "store"}


@dataclass(frozen=True)
class Label:
    """One ImageNet class with its probability for an image."""

    class_id: int
    name: str
    probability: float


@dataclass(frozen=True)
class LabelCount:
    """How many indexed images have a class as their top-1 label."""

    class_id: int
    name: str
    count: int


def class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the backbones' output order (offline)."""
    return CATEGORIES


@functools.lru_cache(maxsize=1)
def _lower_names() -> tuple[str, ...]:
    return tuple(n.lower() for n in CATEGORIES)


def name_of(class_id: int) -> str:
    """A class id's name (``"class N"`` beyond the 1000 ImageNet classes; ``""`` for -1)."""
    names = class_names()
    if class_id < 0:
        return ""
    return names[class_id] if class_id < len(names) else f"class {class_id}"


def top_classes(probs: np.ndarray, top: int = TOP) -> tuple[np.ndarray, np.ndarray]:
    """The ``top`` most probable classes of each row of ``probs`` (n, classes).

    Returns:
        ``(ids, probabilities)``: (n, top) int16 and float32, best first (ties: lower
        id first); rows that are not finite, and columns beyond the class count, are
        unknown (id -1, probability 0).
    """
    p = np.asarray(probs, dtype=np.float32)
    n, c = p.shape
    ids = np.full((n, top), -1, np.int16)
    out = np.zeros((n, top), np.float32)
    ok = np.isfinite(p).all(1)
    if c == 0 or not ok.any():
        return ids, out
    m = min(top, c)
    good = p[ok]
    part = np.argpartition(-good, m - 1, axis=1)[:, :m] if m < c else np.tile(np.arange(c), (len(good), 1))
    vals = np.take_along_axis(good, part, 1)
    o = np.lexsort((part, -vals), axis=1)
    ids[ok, :m] = np.take_along_axis(part, o, 1)
    out[ok, :m] = np.clip(np.take_along_axis(vals, o, 1), 0.0, 1.0)
    return ids, out


def _require(index: Index) -> tuple[np.ndarray, np.ndarray]:
    if index.labels_top5 is None or index.labels_prob5 is None:
        raise QueryError(f"the index at {index.index_dir} holds no ImageNet labels (built by an "
                         "embedder without a classifier, or by an older imgrec): rebuild it "
                         f"with `imgrec index GALLERY --index {index.index_dir} --full`")
    return index.labels_top5, index.labels_prob5


def labels_of(index: Index, row: int) -> list[Label]:
    """The stored top-5 labels of one indexed image (matrix row), best first.

    Returns an empty list when the index holds no labels or the image has none.

    Example:
        >>> [lb.name for lb in labels_of(idx, idx.row_of("chelsea/chelsea_orig.jpg"))][:2]
        ['Egyptian cat', 'tiger cat']
    """
    if index.labels_top5 is None or index.labels_prob5 is None:
        return []
    if not 0 <= int(row) < len(index):
        raise QueryError(f"row {row} is not a row of this index (0..{len(index) - 1})")
    ids, probs = index.labels_top5[int(row)], index.labels_prob5[int(row)]
    return [Label(int(c), name_of(int(c)), float(p)) for c, p in zip(ids, probs, strict=True)
            if c >= 0]


def top_labels(index: Index) -> tuple[list[str], np.ndarray]:
    """Every image's top-1 label name (``""`` when unknown) and probability, in row order."""
    if index.labels_top5 is None or index.labels_prob5 is None:
        return [""] * len(index), np.zeros(len(index), np.float32)
    ids = np.asarray(index.labels_top5[:, 0]).astype(np.int64)
    return [name_of(int(c)) for c in ids], np.asarray(index.labels_prob5[:, 0], np.float32)


def label_counts(index: Index, top: int = 50) -> list[LabelCount]:
    """The ``top`` most frequent top-1 classes over the indexed images, most frequent first
    (ties: lower class id first). Images without labels are not counted.

    Raises:
        QueryError: the index holds no labels.
    """
    top5, _ = _require(index)
    counts: Counter[int] = Counter()
    for s in range(0, len(index), CHUNK):
        ids, n = np.unique(np.asarray(top5[s:s + CHUNK, 0]), return_counts=True)
        counts.update({int(i): int(c) for i, c in zip(ids, n, strict=True) if i >= 0})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(0, int(top))]
    return [LabelCount(c, name_of(c), n) for c, n in ranked]


def _forms(term: str) -> set[str]:
    """The term, its synonym and its singular forms."""
    forms = {term}
    if term.endswith("ies") and len(term) > 4:
        forms.add(term[:-3] + "y")
    if term.endswith("es") and len(term) > 3:
        forms.add(term[:-2])
    if term.endswith("s") and not term.endswith("ss") and len(term) > 2:
        forms.add(term[:-1])
    return forms | {SYNONYMS[f] for f in forms if f in SYNONYMS}


def match_classes(text: str) -> list[int]:
    """ImageNet class ids a label query matches (see the module docstring), sorted.

    Example:
        >>> [name_of(c) for c in match_classes("cat")]
        ['tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat', 'Madagascar cat']
    """
    names = _lower_names()
    found: set[int] = set()
    for raw in re.split(r"[,;|]", text):
        term = " ".join(raw.lower().split())
        if not term:
            continue
        for form in _forms(term):
            found.update(GROUPS.get(form, ()))
            pat = re.compile(rf"(?<![\w]){re.escape(form)}(?:e?s)?(?![\w])")
            found.update(i for i, n in enumerate(names) if pat.search(n))
    return sorted(found)


def label_scores(index: Index, class_ids: list[int] | np.ndarray) -> np.ndarray:
    """(n,) summed stored probability of each image's top-5 classes that are in
    ``class_ids`` (0 for images with none, or without labels). A label filter for a
    result grid keeps the rows whose score passes a threshold.

    Raises:
        QueryError: the index holds no labels.
    """
    top5, prob5 = _require(index)
    want = np.asarray(sorted({int(c) for c in class_ids}), dtype=np.int64)
    out = np.zeros(len(index), np.float64)
    if len(want) == 0:
        return out
    for s in range(0, len(index), CHUNK):
        t = np.asarray(top5[s:s + CHUNK]).astype(np.int64)
        p = np.asarray(prob5[s:s + CHUNK], dtype=np.float64)
        out[s:s + CHUNK] = np.where(np.isin(t, want), p, 0.0).sum(1)
    return out


def search_by_label(index: Index, text: str, k: int = 20, where: Any = None) -> SearchResult:
    """Rank the gallery by the probability the CNN gave to classes matching ``text``.

    Exact over the whole index; images with no matching class in their top 5 are left
    out, so fewer than ``k`` hits may come back. Ties are broken by row number.

    Args:
        index: an index with labels.
        text: a class name, part of one, or a group word (``"dog"``, ``"lakeside"``,
            ``"cat, tiger"``): see :func:`match_classes`.
        k: hits wanted.
        where: rank only the images passing this filter (see
            :class:`imgrec.search.filters.Where`).

    Returns:
        A :class:`~imgrec.search.rank.SearchResult` (method ``"label"``, metric
        ``"probability"``): one list, also as ``combined``; ``score`` is the matched
        probability, ``distance`` is ``1 - score``; ``notes`` names the matched classes.

    Raises:
        QueryError: empty text, no class matches, bad k, or the index holds no labels.

    Example:
        >>> [h.path for h in search_by_label(idx, "espresso", k=2).combined]
        ['coffee/coffee_rot_ccw8.jpg', 'coffee/coffee_crop_center.jpg']
    """
    if not isinstance(k, int | np.integer) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    if not text or not text.strip():
        raise QueryError("give a label to search for, e.g. 'dog' or 'lakeside'")
    _require(index)
    classes = match_classes(text)
    if not classes:
        raise QueryError(f"no ImageNet class matches {text.strip()!r}; try a broader word "
                         f"(e.g. {', '.join(sorted(GROUPS)[:6])}, ...) or `imgrec labels`")
    scores = label_scores(index, classes)
    if where is not None:
        from imgrec.search.filters import Where

        cond = Where.of(where)
        allowed = cond.rows(index) if cond is not None else None
        if allowed is not None:
            keep = np.zeros(len(scores), bool)
            keep[allowed] = True
            scores = np.where(keep, scores, 0.0)
    hit_rows = np.flatnonzero(scores > 0)
    o = np.lexsort((hit_rows, -scores[hit_rows]))[:int(k)]
    rows, vals = hit_rows[o], scores[hit_rows[o]]
    paths = index.paths(rows) if len(rows) else []
    hits = [Hit(i + 1, p, float(v), float(1.0 - v), int(r))
            for i, (r, v, p) in enumerate(zip(rows, vals, paths, strict=True))]
    shown = ", ".join(name_of(c) for c in classes[:8]) + (
        f" and {len(classes) - 8} more" if len(classes) > 8 else "")
    notes = [f"label {text.strip()!r} matches {len(classes)} ImageNet "
             f"class{'es' if len(classes) > 1 else ''}: {shown}"]
    if not hits:
        notes.append("no indexed image has a matching class among its top-5 labels")
    return SearchResult("label", "probability", int(k), [f"label: {text.strip()}"], [hits],
                        hits, notes)
