"""The dashboard's shape: Streamlit only in imgrec/app, no Streamlit internals, one cache."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from imgrec.app import cache

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_streamlit_is_imported_only_by_the_dashboard_and_never_its_internals() -> None:
    files = [*sorted((ROOT / "imgrec").rglob("*.py")), ROOT / "app.py"]
    users = set()
    for f in files:
        mods = _imports(f)
        if any(m == "streamlit" or m.startswith("streamlit.") for m in mods):
            users.add(f.relative_to(ROOT).as_posix())
        internal = [m for m in mods if m.startswith("streamlit.") and m != "streamlit.testing.v1"]
        assert not internal, f"{f}: {internal}"
    assert users and all(u.startswith("imgrec/app/") for u in users), sorted(users)
    assert not (ROOT / "pages").exists()  # see imgrec.app.router: it would break deep links


def test_page_scripts_import_without_drawing_and_are_the_routed_files() -> None:
    from imgrec.app import router

    for name in router.PAGES:
        mod = importlib.import_module(f"imgrec.app.pages.{name}")
        assert callable(mod.render)
        assert Path(mod.__file__) == router.PAGES_DIR / f"{name}.py"


class FakeIndex:
    def __init__(self, version: str) -> None:
        self.index_dir, self.version = "/somewhere/index", version


def test_cache_is_keyed_by_index_version_and_clear_misses_nothing() -> None:
    calls: list[tuple[str, int]] = []

    @cache.per_index(max_entries=8)
    def double(idx: FakeIndex, x: int) -> int:
        calls.append((idx.version, x))
        return 2 * x

    a, b = FakeIndex("v-1"), FakeIndex("v-2")
    assert double(a, 3) == 6 and double(a, 3) == 6
    assert calls == [("v-1", 3)]
    assert double(b, 3) == 6  # a new version is computed afresh, never served from v-1
    assert calls == [("v-1", 3), ("v-2", 3)]
    cache.clear_index_caches()  # registered when defined: nothing to list by hand
    double(a, 3)
    assert calls[-1] == ("v-1", 3) and len(calls) == 3


def test_every_index_cache_of_the_dashboard_is_registered() -> None:
    """Every Streamlit cache over index data is made by cache.per_index or registered."""
    from imgrec.app import data, resources  # noqa: F401  (import registers their caches)

    allowed = {"cache.py", "resources.py", "data.py", "router.py"}
    for f in sorted((ROOT / "imgrec" / "app").rglob("*.py")):
        text = f.read_text(encoding="utf-8")
        if "st.cache_data" in text or "st.cache_resource" in text:
            assert f.name in allowed, f
    names = {s.__qualname__ for s in cache._REGISTRY}
    assert {"_open_index", "facts", "search", "_clusters", "thumbnail", "all_paths",
            "_projection", "_duplicates", "_near_pairs", "_graph", "_label_search", "_refine",
            "label_counts", "_upload_features"} <= names


@pytest.mark.parametrize("key", ["index_dir", "queries", "explore_selected", "graph_selected"])
def test_state_names_the_keys_the_tests_and_pages_use(key: str) -> None:
    from imgrec.app.state import Key

    assert key in vars(Key).values()


def test_the_dashboard_listens_on_localhost_only() -> None:
    """config.toml and `make run` bind to 127.0.0.1: the dashboard has no login."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    make = (ROOT / "Makefile").read_text()
    assert "ADDRESS ?= 127.0.0.1" in make
    assert "streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS)" in make


#: cached steps of the dashboard that stay well under a second, so they show no status
QUICK_STEPS = {"_embedder",  # the CNN object only: its weights load in Warmup (with a status)
               "_warmup", "get_runner", "favicon",  # start a thread, make an object, draw 64 px
               "folders", "facts", "all_paths", "_hashes"}  # one catalog statement each


def test_every_cached_step_that_can_take_a_second_says_what_it_does() -> None:
    """A cached computation of the dashboard (loading, searching, clustering, scanning, ...)
    shows a spinner with words while it runs, unless it is one of QUICK_STEPS."""
    found = {}
    for f in sorted((ROOT / "imgrec" / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and ast.unparse(d.func) in (
                        "per_index", "st.cache_data", "st.cache_resource"):
                    kw = {k.arg: k.value for k in d.keywords}
                    text = kw.get("spinner", kw.get("show_spinner"))
                    found[node.name] = text.value if isinstance(text, ast.Constant) else None
    assert {"search", "_open_index", "changes_since_build", "_clusters", "_graph",
            "_near_pairs", "_projection", "_label_search", "_zoomed"} <= set(found)
    silent = {name for name, text in found.items()
              if not (isinstance(text, str) and len(text.split()) >= 1 and text.endswith("…"))}
    assert silent == QUICK_STEPS & set(found), silent - QUICK_STEPS
