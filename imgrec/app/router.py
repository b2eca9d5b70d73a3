"""The dashboard's pages and the router ``app.py`` runs (Streamlit's public ``st.navigation``).

The page scripts live in :mod:`imgrec.app.pages`, inside the package, so an installed wheel
carries them. There is deliberately no ``pages/`` folder beside ``app.py``: Streamlit treats
one as a legacy multipage app on the first request of a fresh server (and on every
``AppTest`` run) until ``st.navigation`` has run, which sends a deep link such as
``/explore`` straight to the page script, without the router (Streamlit's documentation: the
app ignores ``pages/`` only "as soon as any session of your app executes the st.navigation
command").
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw

PAGES_DIR = Path(__file__).resolve().parent / "pages"
#: name -> (title, icon); the name is the URL path, except for the first, the default
#: page, which Streamlit serves at ``/`` (:data:`ALIASES` makes ``/search`` open it too).
PAGES = {"search": ("Search", ":material/image_search:"),
         "explore": ("Explore", ":material/scatter_plot:"),
         "insights": ("Insights", ":material/insights:"),
         "dataset": ("Dataset", ":material/photo_library:")}

CSS = """<style>
  [data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
  .imgrec-card { font-size: 0.85rem; line-height: 1.35; color: rgba(31, 35, 48, 0.72);
                 margin-top: -0.4rem; }
  .imgrec-card b { color: #1f2330; }
  .imgrec-path { font-size: 0.8rem; display: block; white-space: nowrap; overflow: hidden;
                 text-overflow: ellipsis; }  /* one line: never "….jp / g", cards stay aligned */
  .imgrec-strength { display: flex; align-items: center; gap: 0.4rem; font-size: 0.75rem;
                     margin-top: -0.6rem; }
  .imgrec-bar { flex: 1; height: 5px; background: #e9ecef; border-radius: 3px; overflow: hidden; }
  .imgrec-bar span { display: block; height: 100%; }
  .imgrec-strong { color: #2b8a3e; } .imgrec-strong span { background: #2f9e44; }
  .imgrec-related { color: #d9480f; } .imgrec-related span { background: #f59f00; }
  .imgrec-weak, .imgrec-unrated { color: #868e96; } .imgrec-weak span { background: #adb5bd; }
</style>"""


@st.cache_resource(show_spinner=False)
def favicon() -> Image.Image:
    """The tab icon, drawn here: a ``:material/...`` page icon makes the browser fetch it from
    fonts.gstatic.com, which an offline dashboard must not do."""
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((2, 8, 61, 55), radius=8, fill="#3b5bdb")
    d.polygon([(8, 49), (26, 26), (36, 38), (43, 31), (56, 49)], fill="#ffffff")
    d.ellipse((40, 14, 50, 24), fill="#ffd43b")
    return im


#: URL paths that open a page served elsewhere: the default page lives at ``/``, and a
#: bookmark of ``/search?...`` must still open it (with the view in its parameters).
ALIASES = {"search": "search"}


def page(name: str) -> st.Page:
    """The page ``name`` (a key of :data:`PAGES`), for ``st.switch_page`` and ``st.page_link``."""
    title, icon = PAGES[name]
    default = name == next(iter(PAGES))
    return st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon,
                   url_path="" if default else name, default=default)


def alias(url_path: str) -> st.Page:
    """A hidden page at ``/url_path`` that runs the script of the page it names."""
    name = ALIASES[url_path]
    title, icon = PAGES[name]
    return st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon, url_path=url_path,
                   visibility="hidden")


def follow_alias(current: st.Page) -> None:
    """On an alias, switch to its page with the same URL parameters (ends this run), so a
    bookmark opens the page under its one address, marked in the navigation."""
    name = ALIASES.get(current.url_path)
    if name is not None:
        params = [(key, st.query_params.get_all(key)) for key in st.query_params]
        st.switch_page(page(name), query_params=params)


def go(name: str) -> None:
    """Switch to page ``name`` (ends this run)."""
    st.switch_page(page(name))


def main() -> None:
    """Page config, navigation, the shared sidebar, then the page, behind an error boundary."""
    from imgrec.app import urlview
    from imgrec.app.resources import warm_embedder
    from imgrec.app.widgets import sidebar

    st.set_page_config(page_title="imgrec — image recommender",
                       page_icon=favicon(), layout="wide")
    current = st.navigation([page(name) for name in PAGES] + [alias(p) for p in ALIASES])
    follow_alias(current)
    warm_embedder()  # the first search should not wait for the weights
    st.html(CSS)
    urlview.restore()
    sidebar()
    try:
        current.run()
    except Exception as exc:  # last line of defence: a message, never a traceback
        logging.getLogger("imgrec.app").exception("page %s failed", current.title)
        st.error(f"Unexpected error on this page: {type(exc).__name__}: {exc}",
                 icon=":material/error:")
    finally:  # also when the page stops early (st.stop, st.rerun)
        urlview.publish()
