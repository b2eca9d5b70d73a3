"""The image detail dialog: the image, its facts and labels, duplicate group and neighbours.

The image is fit to the window and zoomable into the full-resolution original; below it
what the catalog knows of it, its duplicate group, its 10 nearest neighbours to keep
browsing, and "search with this image".
"""

from __future__ import annotations

import streamlit as st

from imgrec.app import data, known, router, state
from imgrec.app.cache import per_index
from imgrec.app.formatting import format_bytes
from imgrec.app.zoom import ZOOMS, Window, zoomed
from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.insights.detail import image_detail, original
from imgrec.thumbcache import ThumbCache

DETAIL = "detail_path"  # session key: the gallery path the dialog shows
VIEW_SIZE = 2048  # longer side the image is shown at (decoded once, cached on disk)


def open_detail(path: str) -> None:
    """Button callback: show ``path`` in the detail dialog."""
    state.put(DETAIL, path)


def _facts(d) -> str:
    taken = f"{d.taken.replace('T', ' ')} ({'EXIF' if d.taken_from == 'exif' else 'file time'})"
    rows = [("Path", f"`{d.path}`"), ("File size", format_bytes(d.size_bytes)),
            ("Format", f"{d.format} (decoded by {d.decoder or 'unknown'})"),
            ("Dimensions", f"{d.width:,} × {d.height:,} px ({d.orientation})"),
            ("Date taken", taken if d.taken else "unknown"),
            ("Camera", d.camera or "unknown")]
    if d.labels:
        rows.append(("Labels", ", ".join(f"{n} {p:.0%}" for n, p in d.labels)))
    return "\n".join(f"- **{k}:** {v}" for k, v in rows)


@per_index(max_entries=24, spinner="Zooming into the full-resolution original…")
def _zoomed(idx: Index, path: str, zoom: float, cx: float, cy: float
            ) -> tuple[bytes, Window] | None:
    try:
        return zoomed(original(idx, path), zoom, cx, cy)
    except (ImgrecError, OSError):
        return None


def _image(idx: Index, path: str) -> None:
    """The image fit to the dialog, or (zoomed in) a window of the original around the
    point the two sliders place, cut from the full resolution on the server."""
    zoom = st.select_slider("Zoom", ZOOMS, value=1.0, key=f"detail_zoom:{path}",
                            format_func=lambda z: "fit" if z == 1 else f"{z:g}×",
                            help="Zoom into the original at full resolution")
    if zoom == 1:
        with st.spinner("Opening the image…"):
            view = ThumbCache.for_index(idx).thumbnail(idx, path, VIEW_SIZE, square=False)
        got = None if view is None else (view, None)
    else:
        c1, c2 = st.columns(2)
        cx = c1.slider("Across", 0, 100, 50, key=f"detail_x:{path}", format="%d%%")
        cy = c2.slider("Down", 0, 100, 50, key=f"detail_y:{path}", format="%d%%")
        got = _zoomed(idx, path, float(zoom), cx / 100, cy / 100)
    if got is None:
        st.warning("The file cannot be read now.", icon=":material/broken_image:")
        return
    st.image(got[0], width="stretch")
    if got[1] is not None:
        st.caption(f"Zoom {zoom:g}× · {got[1].caption()}")


@st.dialog("Image", width="large", on_dismiss=lambda: state.pop(DETAIL))
def detail_dialog(idx: Index, path: str) -> None:
    """The detail of one indexed image (the original is read only from the gallery)."""
    report = known.report_for_detail(idx)
    try:
        with st.spinner("Reading the image's facts and nearest images…"):
            d = image_detail(idx, path, duplicates=report)
    except ImgrecError as exc:
        st.error(f"Cannot show {path}: {exc}", icon=":material/error:")
        return
    _image(idx, path)
    st.markdown(_facts(d))
    known.duplicate_section(idx, d, report, open_detail)
    if st.button("Search with this image", key="detail_search", icon=":material/search:",
                 type="primary"):
        state.set_stored_queries([path])
        state.pop(DETAIL)
        router.go("search")  # from any page: the Search page shows the results
    if d.neighbours:
        st.markdown("**Nearest images**")
        cols = st.columns(len(d.neighbours))
        for i, (col, hit) in enumerate(zip(cols, d.neighbours, strict=True)):
            with col:
                thumb = data.thumbnail(idx, hit.path)
                if thumb is not None:
                    st.image(thumb, width="stretch")
                st.button("Open", key=f"detail_nb_{i}", on_click=open_detail, args=(hit.path,),
                          type="tertiary", help=hit.path)


def show_if_open(idx: Index) -> None:
    """Open the dialog when a card asked for it."""
    path = state.get(DETAIL)
    if path:
        detail_dialog(idx, path)
