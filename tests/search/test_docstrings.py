"""The docstring examples of imgrec.search run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import imgrec.search

MODULES = sorted(m.name for m in pkgutil.iter_modules(imgrec.search.__path__,
                                                        "imgrec.search."))


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    assert "+SKIP" not in inspect.getsource(module)  # every example here can really run
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_module_has_examples():
    counts = {n: doctest.testmod(importlib.import_module(n)).attempted for n in MODULES}
    assert all(counts[f"imgrec.search.{m}"] > 0 for m in (
        "engine", "methods", "query", "rank", "refine", "results", "topk")), counts
