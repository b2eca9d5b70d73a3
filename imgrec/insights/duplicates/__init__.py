"""Duplicates people can act on: exact copies, the same picture, similar shots.

* ``exact``: same bytes (SHA-256, from the catalog);
* ``same picture``: a candidate pair (CNN cosine >= the threshold, found by the exact
  pruned all-pairs scan of :mod:`.scan`) confirmed by a second, independent signal
  (:mod:`.signals`: a DCT hash under all eight rotations/mirrorings, or a crop keeping at
  least half the frame found by correlation);
* ``similar shots``: candidates not confirmed (same scene, burst, or a small rotation).

Groups are stars around the keeper (:mod:`.group`), never chains; the keeper has the most
real detail (an upscaled copy loses to its original), then is uncropped, then has the
earliest EXIF date. Decisions ("not duplicates", chosen keeper) live in
``duplicates.sqlite`` beside the index (:mod:`.store`), keyed by content hash.
:mod:`.actions` moves non-keepers to a quarantine folder and back; :mod:`.check` says
whether new files are already in the collection.

Default threshold: each embedding recipe carries its own
(:attr:`~imgrec.features.recipe.Recipe.duplicate_threshold`, :func:`.core.default_threshold`),
chosen to admit as many pairs of a 1,130-image clip-art subsample as ``v1``'s 0.65 and
checked on the demo gallery (14 photos x 12-14 variants, ``python -m bench thresholds``).
``v1`` (centre crop): the most similar pair of *different* demo photos has cosine 0.42; 0.65
keeps 938 of the 949 variant pairs. ``v2`` (letterbox, signed square root) raises every
cosine: the most similar different pair has 0.61, and 0.75 keeps all 949. ``v3`` (own aspect
ratio, stage pools, signed square root): 0.66 across photos at most; 0.78 keeps 936 (the
rest, JPEG q30 copies and small rotations, at 0.74 or more: the DCT hash still finds and
confirms the JPEG copies).

Example:
    >>> rep = find_duplicates(idx)
    >>> [(g.tier, g.keeper.path, len(g.members)) for g in rep.groups][:2]
    [('same picture', 'astronaut/astronaut_grey.png', 12), ('same picture', 'chelsea/chelsea_orig.jpg', 10)]
    >>> write_csv(rep, "duplicates.csv")
    PosixPath('duplicates.csv')
"""

from imgrec.insights.duplicates.core import (
    DEFAULT_THRESHOLD,
    MAX_NEIGHBOURS,
    default_threshold,
    find_duplicates,
)
from imgrec.insights.duplicates.report import (
    CSV_COLUMNS,
    EXACT,
    SAME,
    SIMILAR,
    TIERS,
    DuplicateGroup,
    DuplicateReport,
    Member,
    write_csv,
)
from imgrec.insights.duplicates.scan import _cap, components, near_pairs

__all__ = ["CSV_COLUMNS", "DEFAULT_THRESHOLD", "EXACT", "MAX_NEIGHBOURS", "SAME", "SIMILAR",
           "TIERS", "DuplicateGroup", "DuplicateReport", "Member", "_cap", "components",
           "default_threshold", "find_duplicates", "near_pairs", "write_csv"]
