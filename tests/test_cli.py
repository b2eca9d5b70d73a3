"""The command line end to end, in subprocesses: demo -> index -> search / info, and errors.

``demo --out D`` and ``index D --index I`` run once per session (the ``demo_cli`` fixture in
conftest.py; their output is checked here). The remaining commands are started together
and run concurrently, then each test checks its own command's result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from imgrec.index.writer import current_version

QUERIES = ["chelsea/chelsea_orig.jpg", "coffee/coffee_orig.jpg"]


def _commands(d: SimpleNamespace, old: Path) -> dict[str, list[str | Path]]:
    g, i, w = d.gallery, d.index, d.work
    six = sorted(p.name for p in (g / "coins").iterdir())[:6]
    q = g / "coins/coins_orig.jpg"
    return {
        "search_json": ["search", *(g / x for x in QUERIES), "--index", i, "-k", "4", "--json"],
        "search_table": ["search", "@chelsea/chelsea_flip.jpg", "--index", i, "--method",
                         "color", "-k", "3"],
        "search_pca": ["search", "@coffee/coffee_orig.jpg", "@coins/coins_orig.jpg", "--index", i,
                       "--method", "pca", "--pca-components", "500", "--json"],
        "info_json": ["info", "--index", i, "--json"],
        "info_text": ["info", "--index", i],
        "missing_query": ["search", w / "no-such-photo.jpg", "--index", i],
        "six_files": ["search", *(g / "coins" / n for n in six), "--index", i, "--json"],
        "no_index_search": ["search", q, "--index", w / "nope"],
        "old_format_search": ["search", q, "--index", old],
        "resnet50": ["index", g, "--index", w / "r50", "--model", "resnet50"],
        "bad_metric": ["search", "x.jpg", "--metric", "hamming"],
    }


@pytest.fixture(scope="module")
def runs(demo_cli, cli_env) -> dict[str, subprocess.CompletedProcess[str]]:
    old = demo_cli.work / "old-format-index"  # a copy whose manifest claims another version
    if not old.exists():
        shutil.copytree(demo_cli.index, old)
        manifest_path = current_version(old) / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["format_version"] = 99
        manifest_path.write_text(json.dumps(manifest))
    procs = {name: subprocess.Popen([sys.executable, "-m", "imgrec", *map(str, args)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=cli_env, cwd=demo_cli.work)
             for name, args in _commands(demo_cli, old).items()}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


def assert_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, starting with 'imgrec:', no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("imgrec:")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.stdout == ""
    return lines[0]


def _gallery_files(gallery: Path) -> list[Path]:
    return sorted(p for p in gallery.rglob("*") if p.is_file() and not p.name.startswith("."))


# ---- the happy path ----------------------------------------------------------------------

def test_demo_and_index(demo_cli):
    gallery = demo_cli.gallery
    n = len(_gallery_files(gallery))
    assert 100 <= n <= 200
    families = [p for p in gallery.iterdir() if p.is_dir()]
    assert len(families) >= 8
    assert (f"demo gallery: {n} images in {len(families)} folders at {gallery}"
            in demo_cli.demo.stdout)
    out, err = demo_cli.build.stdout, demo_cli.build.stderr
    assert f"indexed {n} images from {gallery} into {demo_cli.index} (efficientnet-lite0)" in out
    assert "skipped 0" in out and "images/s" in out
    assert "features" in err and "img/s" in err and "ETA" in err  # the progress bar
    assert f"{n}/{n}" in err
    assert current_version(demo_cli.index) is not None
    data = demo_cli.work / "data"  # nothing written to the default data folder
    assert not data.exists() or not any(data.iterdir())


def test_search_json(runs, demo_cli):
    res = json.loads(_ok(runs["search_json"]))
    assert (res["method"], res["metric"], res["k"]) == ("embedding", "cosine", 4)
    assert [q["query"] for q in res["queries"]] == ["chelsea_orig.jpg", "coffee_orig.jpg"]
    for q, rel in zip(res["queries"], QUERIES, strict=True):
        hits = q["hits"]
        assert [h["rank"] for h in hits] == [1, 2, 3, 4]
        assert hits[0]["path"] == rel
        assert hits[0]["score"] >= 0.9999 and abs(hits[0]["distance"]) < 1e-4
        family = rel.split("/")[0]
        assert all(h["path"].startswith(family + "/") for h in hits)
        for h in hits:
            assert set(h) >= {"rank", "path", "score", "distance"}
            assert h["distance"] == pytest.approx(1 - h["score"], abs=1e-9)
            assert not Path(h["path"]).is_absolute() and (demo_cli.gallery / h["path"]).is_file()
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
    combined = res["combined"]
    assert [h["rank"] for h in combined] == [1, 2, 3, 4]
    assert {h["path"] for h in combined[:2]} == set(QUERIES)
    assert [h["score"] for h in combined] == sorted((h["score"] for h in combined), reverse=True)


def test_search_table_with_stored_query(runs):
    out = _ok(runs["search_table"])
    assert "method color, metric chi2, k 3" in out
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert len(rows) == 3 and [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][-1] == "chelsea/chelsea_flip.jpg" and float(rows[0][2]) == 0.0


def test_search_pca_components_clipped_note(runs):
    res = json.loads(_ok(runs["search_pca"]))
    assert res["method"] == "pca" and any("clipped" in n for n in res["notes"])
    assert [q["hits"][0]["path"] for q in res["queries"]] == ["coffee/coffee_orig.jpg",
                                                              "coins/coins_orig.jpg"]


def test_info(runs, demo_cli):
    info = json.loads(_ok(runs["info_json"]))
    n = len(_gallery_files(demo_cli.gallery))
    assert (info["count"], info["skipped"], info["skipped_files"]) == (n, 0, [])
    assert (info["model"], info["format_version"], info["embedding_dim"]) == (
        "efficientnet-lite0", 1, 1280)
    assert info["pca_components"] == 75 and info["histogram_dim"] == 768
    assert Path(info["gallery_root"]) == demo_cli.gallery.resolve()
    assert sum(info["formats"].values()) == n and "JPEG" in info["formats"]
    assert f"{n} indexed, 0 skipped" in _ok(runs["info_text"])
    assert info["first_pass"] == "float16"
    assert "first pass over the float16 copy" in _ok(runs["info_text"])


# ---- bad usage and bad input: exit code 2 and one line on stderr ----------------------------

def test_missing_query_file(runs):
    assert_usage_error(runs["missing_query"], "not found", "no-such-photo.jpg")


def test_six_queries(runs):
    assert_usage_error(runs["six_files"], "at most 5")


def test_nonexistent_index(runs, demo_cli):
    assert_usage_error(runs["no_index_search"], "no index at")
    assert not (demo_cli.work / "nope").exists()


def test_index_of_another_format_version(runs):
    line = assert_usage_error(runs["old_format_search"], "format version")
    assert "99" in line and "rebuild" in line


def test_resnet50_without_weights(runs, demo_cli):
    proc = runs["resnet50"]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # torch announces the download it attempts ("Downloading: ..." on stdout); beside that
    # notice, imgrec says in one line how to provide the weights
    assert all(ln.startswith("Downloading:") for ln in proc.stdout.splitlines()), proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("imgrec:") and "--weights" in lines[0]
    assert "resnet50-0676ba61.pth" in lines[0] and "https://" in lines[0]
    assert current_version(demo_cli.work / "r50") is None


def test_argument_errors(runs):
    assert_usage_error(runs["bad_metric"], "--metric", "hamming")
