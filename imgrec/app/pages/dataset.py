"""Dataset page: what the index holds, rebuild it, evaluate it, index another folder, the demo."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from imgrec.app import data, state, widgets
from imgrec.app.evaluation import evaluate_view
from imgrec.app.folders import check_gallery_folder
from imgrec.app.formatting import format_built_at, format_bytes, format_duration
from imgrec.app.resources import get_runner, load_index
from imgrec.app.state import Key
from imgrec.errors import ImgrecError
from imgrec.features.recipe import describe
from imgrec.index.index import Index


def facts_view(idx: Index) -> None:
    """Counts, dimensions, formats and skipped files of the open index."""
    f = data.facts(idx)
    c = st.columns(4)
    c[0].metric("Indexed images", f"{f.count:,}")
    c[1].metric("Skipped files", f"{len(f.skipped):,}")
    c[2].metric("Formats", f"{len(f.formats):,}")
    c[3].metric("Index size on disk", format_bytes(f.size_bytes))
    took = f" (took {format_duration(f.build_seconds)})" if f.build_seconds else ""
    recipe, hint = describe(idx.model, idx.manifest.recipe)
    st.markdown(
        f"- **Gallery folder:** `{f.gallery}`\n"
        f"- **Backbone:** `{f.model}` · embedding recipe {recipe}\n"
        f"- **Dimensions:** embedding {f.embedding_dim:,} · colour histogram {f.histogram_dim:,} "
        f"· PCA colour {f.pca_components}\n"
        f"- **Last build:** {format_built_at(f.built_at)}{took}\n"
        f"- **Index folder:** `{f.index_dir}` (version `{f.version}`)")
    if hint:
        st.info(f"This index was {hint}.", icon=":material/upgrade:")
    c1, c2 = st.columns([1, 2])
    with c1:
        st.markdown("**Images per format**")
        st.dataframe(pd.DataFrame(list(f.formats.items()), columns=["format", "images"]),
                     hide_index=True, width="stretch")
    with c2:
        st.markdown("**Skipped files**")
        if f.skipped:
            st.dataframe(pd.DataFrame(f.skipped[:5000], columns=["file", "reason"]),
                         hide_index=True, width="stretch")
            if len(f.skipped) > 5000:
                st.caption(f"Showing 5,000 of {len(f.skipped):,}.")
        else:
            st.caption("None: every image file in the gallery was indexed.")


def changes_view(idx: Index, target: str, busy: str | None) -> None:
    """New / changed / removed files since the last build, with a "Sync now" button."""
    try:
        new, changed, removed = data.changes(idx)
    except (ImgrecError, OSError) as exc:  # an unreadable gallery: say so, the page goes on
        st.warning(f"Cannot compare the gallery with the index: {exc}", icon=":material/warning:")
        return
    c = st.columns(4)
    c[0].metric("New files", f"{new:,}")
    c[1].metric("Changed files", f"{changed:,}")
    c[2].metric("Removed files", f"{removed:,}")
    with c[3]:
        sync = st.button("Sync now", key="sync", icon=":material/sync:",
                         disabled=busy is not None or not (new or changed or removed),
                         help=busy or "index the new and changed files, drop the removed ones")
    if sync and widgets.start_build(idx.root, target, "rebuild"):
        data.changes_since_build.clear()
        st.rerun()
    st.caption("Since the last build, from file sizes and modification times (nothing decoded)."
               if new or changed or removed else "The index is up to date with the gallery.")


def rebuild_view(idx: Index, target: str, busy: str | None) -> None:
    st.subheader("Rebuild")
    changes_view(idx, target, busy)
    st.caption("Re-scans the gallery: new and changed files are indexed, removed ones dropped. "
               "The current index stays in use until the new one is published.")
    rebuild = st.button("Rebuild dataset", type="primary", icon=":material/refresh:", key="rebuild",
                        disabled=busy is not None, help=busy)
    if rebuild and widgets.start_build(idx.root, target, "rebuild"):
        st.rerun()
    if busy:
        st.caption(f"Rebuild unavailable: {busy}.")


def other_folder_view(target: str, busy: str | None, has_index: bool) -> None:
    st.subheader("Index another folder" if has_index else "Index a folder")
    st.caption(f"Indexes the folder into `{target}`, replacing what is indexed there. To keep "
               "this index, switch to another index folder in the sidebar first." if has_index
               else f"Indexes the folder into `{target}` (empty now).")
    text = st.text_input("Gallery folder", key=Key.GALLERY_TEXT, placeholder="/path/to/photos")
    check = check_gallery_folder(text, target) if text.strip() else None
    if check is not None:
        (st.success if check.ok else st.error)(check.message)
    go = st.button("Index this folder", key="index_folder", icon=":material/folder_open:",
                   disabled=busy is not None or check is None or not check.ok)
    if (go and check is not None and check.path is not None
            and widgets.start_build(check.path, target, "folder")):
        st.rerun()


def demo_view(target: str, busy: str | None) -> None:
    st.subheader("Demo gallery")
    demo_dir = state.settings().demo_dir
    st.caption(f"{widgets.demo_size()} (crops, flips, rotations, recompressions of images that "
               f"ship with scikit-image, scikit-learn and matplotlib), written to `{demo_dir}` "
               f"and indexed into `{target}`.")
    demo = st.button("Build the demo gallery", key="demo", icon=":material/auto_awesome:",
                     disabled=busy is not None)
    if demo and widgets.start_build(None, target, "demo", demo=True):
        st.rerun()


def render() -> None:
    st.title("Dataset")
    target = state.index_dir()
    widgets.build_status(target)
    busy = get_runner().busy(target)
    idx, why = load_index(target)
    if idx is not None:
        facts_view(idx)
        rebuild_view(idx, str(target), busy)
        evaluate_view(idx)
    else:
        st.info(why or "No index yet.", icon=":material/info:")
    other_folder_view(str(target), busy, idx is not None)
    demo_view(str(target), busy)


if __name__ == "__main__":  # Streamlit runs a page as __main__; importing it draws nothing
    render()
