"""Every docstring example of the imgrec package runs against a tiny real index."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import imgrec
from imgrec import Index, Stored, build_index
from imgrec.demo import build_demo_gallery

# Page scripts draw on import and ``__main__`` modules run the command line on import.
MODULES = ["imgrec", *sorted(m.name for m in pkgutil.walk_packages(imgrec.__path__, "imgrec.")
                             if not m.name.startswith("imgrec.app.pages")
                             and not m.name.endswith("__main__"))]
FAMILIES = ("astronaut", "coffee", "chelsea")  # three demo families: a small real gallery
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# The only examples that cannot run in a test, and why: a Ray cluster (ray_producer,
# sharded), a HEIC photo (images), a listening server or one that never returns (server),
# a watcher that runs until Ctrl-C (watch).
SKIPPED = {"imgrec.build.ray_producer": 1, "imgrec.build.watch": 1, "imgrec.images": 2, "imgrec.server": 1,
           "imgrec.server.app": 1, "imgrec.server.client": 1, "imgrec.shard.sharded": 2}


@pytest.fixture(scope="session")
def doc_world(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> SimpleNamespace:
    """A folder holding ``photos/`` (three demo families), its index ``photos-index`` (also
    at ``data/index``), and ``query.jpg``, indexed once with the real EfficientNet-Lite0."""
    root = tmp_path_factory.mktemp("docs")
    demo = build_demo_gallery(root / "demo")
    for family in FAMILIES:
        shutil.copytree(demo.root / family, root / "photos" / family)
    shutil.rmtree(demo.root)
    build_index(root / "photos", root / "photos-index", embedder=real_embedder, workers=0)
    shutil.copytree(root / "photos-index", root / "data" / "index")
    shutil.copyfile(root / "photos" / "chelsea" / "chelsea_orig.jpg", root / "query.jpg")
    return SimpleNamespace(root=root, embedder=real_embedder)


@pytest.fixture
def globs(doc_world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(doc_world.root)
    monkeypatch.setenv("IMGREC_INDEX_DIR", str(doc_world.root / "data" / "index"))
    idx = Index.open("data/index", embedder=doc_world.embedder)
    return {"idx": idx, "Index": Index, "Stored": Stored, "np": np}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str, globs: dict) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs=globs, optionflags=FLAGS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_only_unrunnable_examples_are_skipped() -> None:
    counts = {name: inspect.getsource(importlib.import_module(name)).count("doctest: +SKIP")
              for name in MODULES}
    assert {name: n for name, n in counts.items() if n} == SKIPPED
