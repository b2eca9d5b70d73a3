"""The Search page's filter panel: folders, dates taken, minimum size, formats, orientation;
the search is then the exact top-k among the images that pass (see imgrec.search.filters)."""

from __future__ import annotations

import streamlit as st

from imgrec.app import data
from imgrec.app.cache import per_index
from imgrec.errors import QueryError
from imgrec.index.columns import ORIENTATIONS
from imgrec.index.index import Index
from imgrec.search.filters import Where

ANY = "any"


@per_index(max_entries=4)
def folders(idx: Index) -> list[str]:
    """The gallery's top-level folders that hold indexed images, sorted."""
    return sorted({p.split("/", 1)[0] for p in data.all_paths(idx) if "/" in p})


def filter_panel(idx: Index) -> Where | None:
    """The filter widgets (in an expander); the filter they describe, or None for none.

    A value that is not valid (a date like "last year") is shown as an error and the
    search runs unfiltered.
    """
    with st.expander("Filters", icon=":material/filter_alt:"):
        c1, c2, c3 = st.columns(3)
        chosen = c1.multiselect("In folders", folders(idx), key="filter_folders",
                                help="Only images under any of these gallery folders.")
        formats = c1.multiselect("Formats", [f for f in data.facts(idx).formats if f != "?"],
                                 key="filter_formats", help="Only images of these formats.")
        after = c2.text_input("Taken on or after", key="filter_after", placeholder="e.g. 2019-06",
                              help="EXIF date taken, else the file's modification time.")
        before = c2.text_input("Taken before", key="filter_before", placeholder="e.g. 2020")
        min_w = c3.number_input("Minimum width (px)", 0, 100_000, 0, step=100,
                                key="filter_min_width")
        min_h = c3.number_input("Minimum height (px)", 0, 100_000, 0, step=100,
                                key="filter_min_height")
        orient = c3.selectbox("Orientation", [ANY, *ORIENTATIONS], key="filter_orientation")
        try:
            where = Where(folders=tuple(chosen), after=after.strip() or None,
                          before=before.strip() or None, min_width=int(min_w),
                          min_height=int(min_h), formats=tuple(formats),
                          orientation=None if orient == ANY else orient)
        except QueryError as exc:
            st.error(f"Filter not applied: {exc}", icon=":material/filter_alt_off:")
            return None
    return where if where != Where() else None
