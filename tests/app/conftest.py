"""Shared fixtures for the dashboard tests: one tiny real gallery and index per session.

The gallery is 3 families x 4 images taken from the demo gallery plus one corrupt file;
its index is built once with the real CNN (the app's own cached instance).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from imgrec import build_index
from imgrec.demo import DemoGallery, build_demo_gallery

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"
FAMILIES = ("chelsea", "coffee", "rocket")
PER_FAMILY = 4
CORRUPT = "broken.jpg"


@pytest.fixture(scope="session")
def app_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoGallery:
    return build_demo_gallery(tmp_path_factory.mktemp("demo") / "gallery")


def make_gallery(demo: DemoGallery, dest: Path, per_family: int = PER_FAMILY) -> Path:
    """Copy ``per_family`` images of each of FAMILIES from the demo, plus a corrupt file."""
    for fam in FAMILIES:
        for rel in demo.families[fam][:per_family]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(demo.root / rel, dest / rel)
    (dest / CORRUPT).write_bytes(b"this is not a JPEG")
    return dest


@pytest.fixture(scope="session")
def gallery_maker(app_demo: DemoGallery) -> Callable[..., Path]:
    """``gallery_maker(dest, per_family=4)``: a fresh small gallery at ``dest``."""
    return lambda dest, per_family=PER_FAMILY: make_gallery(app_demo, dest, per_family)


@pytest.fixture(scope="session")
def app_embedder():
    """The dashboard's own cached CNN, so the tests and the app load the weights once."""
    from imgrec.app.resources import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def tiny_gallery(app_demo: DemoGallery, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gallery(app_demo, tmp_path_factory.mktemp("tiny") / "gallery")


@pytest.fixture(scope="session")
def tiny_index(tiny_gallery: Path, app_embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real index of the tiny gallery (12 images, 1 skipped), built once per session."""
    index_dir = tmp_path_factory.mktemp("tiny-index") / "index"
    build_index(tiny_gallery, index_dir, embedder=app_embedder, workers=0)
    return index_dir


@pytest.fixture
def gallery_bytes(tiny_gallery: Path) -> Callable[[str], bytes]:
    return lambda rel: (tiny_gallery / rel).read_bytes()


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
             tmp_path_factory: pytest.TempPathFactory):
    """An AppTest factory for a given index folder (the demo folder points to a temp dir; the
    dashboard may open any folder under pytest's temporary root)."""
    from streamlit.testing.v1 import AppTest

    def factory(index_dir: Path) -> AppTest:
        monkeypatch.setenv("IMGREC_INDEX_DIR", str(index_dir))
        monkeypatch.setenv("IMGREC_DEMO_DIR", str(tmp_path / "demo"))
        monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
        return AppTest.from_file(str(APP), default_timeout=120)

    return factory
