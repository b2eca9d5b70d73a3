"""What the collection already holds: uploads it has, and an image's duplicate group.

The Search page names uploads :mod:`imgrec.insights.duplicates.check` finds (exact copies and
confirmed same pictures); the detail dialog names the group of the duplicate report.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from imgrec.app import data, state
from imgrec.app.cache import per_index
from imgrec.app.queries import QueryImage, QuerySet
from imgrec.app.state import Key
from imgrec.index.index import Index
from imgrec.insights.duplicates import EXACT, SAME, default_threshold

#: Galleries up to this size get their duplicate groups in the detail dialog at once (the
#: all-pairs scan, cached per index); larger ones on a click.
AUTO_GROUPS = 5_000
SHOWN = 8  # other members of a group the dialog shows
ASKED = "detail_dups_asked"  # state: (index folder, version) whose groups the user asked for


@per_index(max_entries=64, spinner="Checking the upload against the collection…",
           key=lambda q, threshold: (q.key, q.name, threshold))
def _verdict(idx: Index, q: QueryImage, threshold: float) -> Any:
    from imgrec.insights.duplicates.check import check_image

    return check_image(idx, q.name, q.data, threshold)


def known_uploads(idx: Index, qs: QuerySet) -> None:
    """Say which uploads the collection already holds (exact or same picture); nothing for
    new ones, nor on a sharded index (duplicate checks are not offered across shards)."""
    if data.sharded(idx):
        return
    for q in qs.uploads:
        v = _verdict(idx, q, default_threshold(idx))
        if v.tier in (EXACT, SAME):
            st.info(f"`{q.name}` is already in the collection as `{v.match}` "
                    f"({v.tier}, score {v.score:.3f}; {v.evidence}).",
                    icon=":material/content_copy:")


def threshold(idx: Index) -> float:
    """The threshold the Insights page's slider has, else the index recipe's default."""
    t = state.get(Key.DUP_THRESHOLD)
    return float(t) if isinstance(t, int | float) else default_threshold(idx)


def report_for_detail(idx: Index) -> Any | None:
    """The duplicate report the detail dialog names groups from (None: not asked yet on a
    large gallery)."""
    if len(idx) > AUTO_GROUPS and state.get(ASKED) != (str(idx.index_dir), idx.version):
        return None
    return data.duplicates(idx, threshold(idx))


def duplicate_section(idx: Index, d: Any, report: Any | None, open_detail: Any) -> None:
    """The image's duplicate tier, keeper and the other members of its group."""
    if report is None:
        st.markdown("**Duplicates:** not looked for yet (it compares every image).")
        st.button("Find its duplicates", key="detail_dups", icon=":material/content_copy:",
                  on_click=state.put, args=(ASKED, (str(idx.index_dir), idx.version)))
        return
    t = report.threshold
    if d.duplicate is None:
        st.markdown(f"**Duplicates:** none (cosine ≥ {t:g}).")
        return
    tier, keeper, evidence = d.duplicate
    me = "the suggested keeper" if keeper == d.path else f"keeper `{keeper}`"
    st.markdown(f"**Duplicates:** {tier} (cosine ≥ {t:g}), {len(d.duplicate_group)} images, "
                f"{me}; {evidence}")
    rest = [p for p in d.duplicate_group if p != d.path]
    others = rest[:SHOWN]
    cols = st.columns(max(len(others), 4))
    for i, (col, p) in enumerate(zip(cols, others, strict=False)):
        with col:
            thumb = data.thumbnail(idx, p)
            if thumb is not None:
                st.image(thumb, width="stretch")
            st.button("★ keeper" if p == keeper else "Open", key=f"detail_dup_{i}",
                      on_click=open_detail, args=(p,), type="tertiary", help=p)
    if len(rest) > SHOWN:
        st.caption(f"and {len(rest) - SHOWN} more (Insights → Duplicates shows them all)")
