"""The view in the URL: :data:`imgrec.app.state.VIEW_KEYS` as ``st.query_params``.

A search can be bookmarked and shared: ``?index=/photos-index&method=color&k=8&q=cats/tom.jpg
&label=cat``. :func:`restore` reads the URL once per session, before any widget is drawn
(the widgets take the restored values as their defaults, so Streamlit never sees a widget
value set twice); :func:`publish` writes the current view back after every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from imgrec.app import state
from imgrec.app.folders import refused
from imgrec.app.formatting import METHOD_LABELS, METRIC_LABELS
from imgrec.app.state import Key
from imgrec.search.rank import MAX_QUERIES

#: URL parameter -> session key.
PARAMS = {"index": Key.INDEX_DIR, "method": Key.METHOD, "metric": Key.METRIC, "k": Key.K,
          "label": Key.LABEL_QUERY, "q": Key.QUERIES}
#: The widgets' own defaults (left out of the URL).
DEFAULTS: dict[str, Any] = {Key.METHOD: "embedding", Key.METRIC: "cosine", Key.K: 5,
                            Key.LABEL_QUERY: ""}
K_RANGE = (1, 50)
_RESTORED = "url_view"  # the session key holding the values read from the URL


def parse(params: Mapping[str, list[str]]) -> tuple[dict[str, Any], list[str]]:
    """The view a URL asks for, and a note for each value ignored.

    Example:
        >>> parse({"k": ["8"], "method": ["colour"], "q": ["a.jpg", "a.jpg", "b.jpg"]})
        ({'k': 8, 'queries': ['a.jpg', 'b.jpg']}, ['Unknown method “colour” in the link: ignored.'])
    """
    view: dict[str, Any] = {}
    notes: list[str] = []
    last = {name: values[-1] for name, values in params.items() if values}
    for name, choices in (("method", METHOD_LABELS), ("metric", METRIC_LABELS)):
        if name in last:
            if last[name] in choices:
                view[PARAMS[name]] = last[name]
            else:
                notes.append(f"Unknown {name} “{last[name]}” in the link: ignored.")
    if "k" in last:
        try:
            view[Key.K] = min(max(int(last["k"]), K_RANGE[0]), K_RANGE[1])
        except ValueError:
            notes.append(f"k “{last['k']}” in the link is not a number: ignored.")
    if last.get("label", "").strip():
        view[Key.LABEL_QUERY] = last["label"].strip()
    if "index" in last and last["index"].strip():
        view[Key.INDEX_DIR] = last["index"].strip()
    paths = list(dict.fromkeys(p for p in params.get("q", []) if p.strip()))
    if paths:
        view[Key.QUERIES] = paths[:MAX_QUERIES]
    return view, notes


def restore() -> None:
    """Take the view from the URL, once per session (later runs keep what the user chose)."""
    if state.get(_RESTORED) is not None:
        return
    view, notes = parse({name: st.query_params.get_all(name) for name in st.query_params})
    folder = view.pop(Key.INDEX_DIR, None)
    if folder is not None:
        why = refused(folder)
        if why is None:
            state.set_index_dir(folder)
        else:
            notes.append(f"The link's index folder is not opened: {why}")
    paths = view.pop(Key.QUERIES, None)
    if paths:
        state.set_stored_queries(paths)
    state.put(_RESTORED, view)
    if notes:
        state.put(Key.INDEX_NOTE, " ".join(notes))


def default(key: str) -> Any:
    """The starting value of a view widget: from the URL, else the widget's own default."""
    return (state.get(_RESTORED) or {}).get(key, DEFAULTS[key])


def current(key: str) -> Any:
    """The value of a view widget now (the restored default until the widget is drawn)."""
    value = state.get(key)
    return default(key) if value is None else value


def view_params() -> dict[str, str | list[str]]:
    """The URL parameters of this session's view (defaults left out)."""
    out: dict[str, str | list[str]] = {}
    folder = state.index_dir().expanduser().resolve()
    if folder != state.settings().index_dir.expanduser().resolve():
        out["index"] = str(folder)
    for name in ("method", "metric", "k", "label"):
        value = current(PARAMS[name])
        if name == "metric" and current(Key.METHOD) != "embedding":
            continue
        if value not in (None, "", DEFAULTS[PARAMS[name]]):
            out[name] = str(value).strip()
    stored = state.queries().stored
    if stored:
        out["q"] = list(stored)
    return out


def publish() -> None:
    """Write the view into the URL (only when it changed)."""
    want = view_params()
    have = {name: st.query_params.get_all(name) for name in st.query_params}
    norm = {k: v if isinstance(v, list) else [v] for k, v in want.items()}
    if norm != have:
        st.query_params.from_dict(want)

