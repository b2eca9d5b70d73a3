"""Widgets shared by the pages: the sidebar, the no-index state, build status, cards, pagers."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from imgrec.app import data, router, state
from imgrec.app.builds import running_build
from imgrec.app.cache import clear_index_caches
from imgrec.app.folders import refused
from imgrec.app.formatting import format_built_at, page_count
from imgrec.app.insights import cluster_k_bounds
from imgrec.app.resources import get_embedder, get_runner, load_index, warm_embedder
from imgrec.app.state import Key
from imgrec.errors import BuildLockedError
from imgrec.features.embedding import BACKBONES, DEFAULT_MODEL
from imgrec.index.index import Index
from imgrec.index.writer import current_version

FINISHED_SHOWN_S = 1800  # how long the outcome of the last build stays on the pages


def require_index() -> Index:
    """The open index, or render the no-index state and stop the page."""
    idx, why = load_index()
    if idx is None:
        no_index(why or "There is no index yet.")
        st.stop()
    return idx


def start_build(gallery: str | Path | None, target: str | Path, kind: str,
                demo: bool = False) -> bool:
    """Start a background build; shows why when it cannot start. True when started."""
    runner = get_runner()
    try:
        runner.start(gallery, target, kind=kind, embedder=get_embedder(),
                     demo_dir=state.settings().demo_dir if demo else None,
                     on_success=clear_index_caches)
    except BuildLockedError as exc:
        st.warning(f"Not started: {exc}.", icon=":material/hourglass_top:")
        return False
    state.put(Key.WATCHING_BUILD, runner.job(target).id)  # type: ignore[union-attr]
    return True


def _status_once(directory: str | Path, show_finished: bool) -> None:
    """One look at the build of ``directory``: progress, or its outcome (reruns the page
    once when a build it watched has ended, so the page picks up the new index)."""
    j = get_runner().job(directory)
    if j is not None and j.running:
        if state.get(Key.WATCHING_BUILD) is None:
            state.put(Key.WATCHING_BUILD, j.id)
        st.progress(j.fraction, text=j.progress_text())
        return
    busy = running_build(directory)
    if busy:
        st.info(f"{busy[0].upper()}{busy[1:]}.", icon=":material/hourglass_top:")
        state.put(Key.WATCHING_BUILD, -1)
        return
    if j is None:
        if state.pop(Key.WATCHING_BUILD) is not None:
            st.rerun()
        return
    if state.get(Key.WATCHING_BUILD) in (j.id, -1):
        state.pop(Key.WATCHING_BUILD)
        st.rerun()
    if j.finished is not None and time.time() - j.finished > FINISHED_SHOWN_S:
        return
    if j.status == "done" and show_finished:
        st.success(j.message, icon=":material/check_circle:")
    elif j.status == "failed":
        st.error(f"The build failed: {j.message.rstrip('.')}. The previous index (if any) is "
                 "still in use.", icon=":material/error:")


def build_status(directory: str | Path, show_finished: bool = True) -> None:
    """Live progress of the build of ``directory`` (refreshes itself while it runs)."""
    job = get_runner().job(directory)
    other = None if job is not None and job.running else running_build(directory)
    if job is None and other is None:
        return
    running = other is not None or (job is not None and job.running)

    @st.fragment(run_every=1.0 if running else None)
    def _status() -> None:
        _status_once(directory, show_finished)

    _status()


def demo_size() -> str:
    """The demo gallery's size as the Dataset page and the no-index state describe it."""
    from imgrec.demo import demo_counts

    photos, families = demo_counts()
    return f"{photos} photos in {families} families"


def no_index(reason: str) -> None:
    """What a page shows when there is no usable index: build the demo or go to Dataset."""
    d = state.index_dir()
    st.info(f"{reason}\n\nBuild the demo gallery ({demo_size()}, about two minutes) or index "
            "your own folder on the Dataset page.", icon=":material/info:")
    busy = get_runner().busy(d)
    c1, c2 = st.columns([1, 1])
    with c1:
        if st.button("Build the demo gallery", type="primary", key="no_index_demo",
                     icon=":material/auto_awesome:", disabled=busy is not None):
            start_build(None, d, "demo", demo=True)
    with c2:
        st.page_link(router.page("dataset"), label="Go to the Dataset page",
                     icon=":material/dataset:")
    build_status(d)


def _switch_form() -> None:
    with st.form("switch_index", border=False):
        text = st.text_input("Index folder", value=str(state.index_dir()), key=Key.INDEX_DIR_TEXT)
        if st.form_submit_button("Open"):
            p = Path(text.strip()).expanduser()
            if not text.strip():
                st.error("Type a folder.")
            elif (why := refused(p)) is not None:
                st.error(why)
            elif p.exists() and not p.is_dir():
                st.error(f"{p} is a file, not a folder.")
            else:
                state.set_index_dir(p)
                from imgrec.shard.cli import is_sharded

                if current_version(p.resolve()) is None and not is_sharded(p):
                    state.put(Key.INDEX_NOTE,
                              f"No index in {p.resolve()} yet: build one on the Dataset page.")
                st.rerun()
    note = state.pop(Key.INDEX_NOTE)
    if note:
        st.warning(note)
    st.caption(f"Open now: `{state.index_dir()}`")


def sidebar() -> None:
    """The index status shown on every page, and the index-folder switcher."""
    with st.sidebar:
        st.markdown("### Index")
        idx, why = load_index()
        if idx is not None:
            f = data.facts(idx)
            st.markdown(f"**{f.count:,}** images · `{f.model}`")
            st.caption(f"Gallery: `{f.gallery}`  \nLast build: {format_built_at(f.built_at)}")
        else:
            st.caption(why or "No index.")
        sidebar_progress(state.index_dir())
        model_status(idx.model if idx is not None else DEFAULT_MODEL)
        with st.expander("Switch index folder"):
            _switch_form()


def sidebar_progress(directory: str | Path) -> None:
    """A running build's progress in the sidebar: the same bar and line as the page's
    (images whose features are written, rate, ETA), read from the same build runner and
    refreshed each second as the page's is; reruns the page once when the build ends."""
    job = get_runner().job(directory)
    if job is None or not job.running:
        return

    @st.fragment(run_every=1.0)
    def _live() -> None:
        j = get_runner().job(directory)
        if j is None or not j.running:
            st.rerun()  # the index facts above and the page change with the new index
        st.progress(j.fraction, text=j.progress_text())  # type: ignore[union-attr]

    _live()


def model_status(model: str) -> None:
    """"Loading the CNN…" while its weights load in the background (refreshes itself, then
    reruns the page once when they are in)."""
    if model not in BACKBONES or warm_embedder(model).ready:
        return

    @st.fragment(run_every=1.0)
    def _watch() -> None:
        warm = warm_embedder(model)
        if warm.ready:
            st.rerun()
        st.caption(f":material/hourglass_top: Loading the CNN ({model}) in the background…")

    _watch()


def cluster_slider(idx: Index, key: str, disabled: bool = False) -> tuple[int, str]:
    """The cluster-count slider of Insights and Explore, starting at the k the data chose.
    Each page has its own widget ``key``; both read and write one session value, so both
    pages always show the same clustering. Returns ``(k, how it was chosen)``."""
    auto = data.auto_k(idx)
    lo, hi, default = cluster_k_bounds(len(idx), auto.k)
    if hi <= lo:
        return hi, "one per image"
    state.cluster_k(default, lo, hi)
    state.put(key, state.get(Key.CLUSTER_K))
    k = st.slider("Clusters (k)", lo, hi, key=key, disabled=disabled,
                  on_change=lambda: state.put(Key.CLUSTER_K, state.get(key)),
                  help=f"Default {auto.k}: the best silhouette of {len(auto.silhouettes)} "
                       f"cluster counts tried on {auto.sample:,} images.")
    chose = (f"k = {auto.k} chosen from the data: the best silhouette" if k == auto.k
             else f"you chose k; the data's choice is {auto.k}")
    return int(k), chose


def image_card(img: bytes | None, label_html: str) -> None:
    """A thumbnail (or a placeholder) with its label from
    :func:`imgrec.app.formatting.card_label`."""
    if img is not None:
        st.image(img, width="stretch")
    else:
        st.markdown(":gray[(image unavailable)]")
    st.markdown(label_html, unsafe_allow_html=True)


def use_button(path: str, key: str, close: str | None = None) -> None:
    """"Use as query": search with this gallery image on the Search page (``close``: the
    session key of a dialog to close first)."""
    if st.button("Use as query", key=key, icon=":material/search:", type="tertiary"):
        if close is not None:
            state.pop(close)
        state.set_stored_queries([path])
        router.go("search")


def pager(label: str, n: int, per_page: int, key: str) -> int:
    """A segmented control choosing one page of ``n`` items; returns the page number."""
    pages = page_count(n, per_page)
    if pages <= 1:
        return 0
    if state.get(key) not in range(pages):
        state.put(key, 0)
    return st.segmented_control(
        label, list(range(pages)), key=key, required=True,
        format_func=lambda p: f"{p * per_page + 1}–{min(n, (p + 1) * per_page)}") or 0
