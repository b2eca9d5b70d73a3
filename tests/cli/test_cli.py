"""The command line end to end, in subprocesses: demo -> index -> search / info, and errors.

``demo --out D`` and ``index D --index I`` run once per session (the ``demo_cli`` fixture in
conftest.py; their output is checked here). The remaining commands are started together
and run concurrently, then each test checks its own command's result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import imgrec
from imgrec import Index, build_index
from imgrec.cli.main import main as cli_main
from imgrec.cli.parser import build_parser, defaults
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
        "search_absolute_json": ["search", "@chelsea/chelsea_orig.jpg", "--index", i, "-k", "2",
                                 "--json", "--absolute"],
        "search_absolute_table": ["search", "@chelsea/chelsea_orig.jpg", "--index", i, "-k", "2",
                                  "--absolute"],
        "csv_into_missing_folder": ["export", "csv", w / "nonexistent-dir" / "out.csv", "--index", i],
        "csv_into_proc": ["duplicates", "--exact-only", "--csv", "/proc/x.csv", "--index", i],
        "csv_full_disk": ["duplicates", "--exact-only", "--csv", "/dev/full", "--index", i],
        "export_full_disk": ["export", "csv", "/dev/full", "--index", i],
        "help": ["--help"],
        "search_help": ["search", "--help"],
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
    top = {h["path"]: h["score"] for h in combined}
    assert set(QUERIES) <= set(top)  # each query's combined score is mean(1, cos(a, b)) ...
    assert top[QUERIES[0]] == pytest.approx(top[QUERIES[1]], abs=1e-6)  # ... the same for both
    # only the queries and their near-copies (one may be a little closer to the other query)
    assert all(h["path"].split("/")[0] in ("chelsea", "coffee") for h in combined)
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
        "efficientnet-lite0", 1, 1584)
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


def test_search_absolute_paths(runs, demo_cli):
    root = demo_cli.gallery.resolve()
    res = json.loads(_ok(runs["search_absolute_json"]))
    hits = res["queries"][0]["hits"]
    assert hits[0]["path"] == str(root / "chelsea/chelsea_orig.jpg")
    assert all(Path(h["path"]).is_absolute() and Path(h["path"]).is_file() for h in hits)
    rows = [ln.split() for ln in _ok(runs["search_absolute_table"]).splitlines()
            if ln.strip()[:1].isdigit()]
    assert [r[-1] for r in rows][:1] == [str(root / "chelsea/chelsea_orig.jpg")]
    assert all(Path(r[-1]).is_file() for r in rows) and len(rows) == 2


def test_output_into_a_missing_folder_creates_none(runs, demo_cli):
    assert_usage_error(runs["csv_into_missing_folder"], "nonexistent-dir/out.csv",
                       "No such file or directory")
    assert not (demo_cli.work / "nonexistent-dir").exists()
    assert_usage_error(runs["csv_into_proc"], "/proc/x.csv")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full to simulate a full disk")
def test_full_disk_is_one_line_naming_the_file(runs):
    for name in ("csv_full_disk", "export_full_disk"):
        assert_usage_error(runs[name], "/dev/full", "No space left on device")


def test_help_shows_every_default(runs):
    main_help = _ok(runs["help"])
    assert "defaults: index directory $IMGREC_INDEX_DIR" in main_help
    assert "each with its default" in main_help
    text = " ".join(_ok(runs["search_help"]).split())
    for flag, default in (("--method", "embedding"), ("--metric", "cosine"), ("-k N", "5"),
                          ("--negative-weight W", "0.5"), ("--pca-components N", "all stored"),
                          ("--index DIR", "$IMGREC_INDEX_DIR"), ("--absolute", "relative")):
        after = text.split(f" {flag} ", 1)
        assert len(after) == 2, flag
        assert f"(default: {default}" in after[1].split(" --")[0], (flag, after[1][:200])


# ---- in process: the parser and table output ------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:  # argparse offers no public walk over sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _subparsers(sub)
    return out


def test_every_flag_has_a_help_text_with_its_default():
    for parser in _subparsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) \
                    or not action.option_strings or action.dest == "version":
                continue
            assert action.help and "(default: " in action.help, (parser.prog, action.dest)
            if action.default not in (None, False, []):
                assert "%(default)s" in action.help, (parser.prog, action.dest)


def test_parser_defaults_are_those_of_the_functions_it_calls():
    from imgrec.insights.clusters import DEFAULT_K
    from imgrec.insights.duplicates import find_duplicates
    from imgrec.insights.export import DEFAULT_SAMPLE
    from imgrec.insights.graph import DEFAULT_SAMPLE as GRAPH_SAMPLE

    p = build_parser()
    built = p.parse_args(["index", "g"])
    for name, value in defaults(build_index).items():
        if hasattr(built, name):
            assert getattr(built, name) == value, name
    searched = p.parse_args(["search", "q.jpg"])
    for name in ("method", "metric", "k", "pca_components", "negative_weight"):
        assert getattr(searched, name) == defaults(Index.search)[name], name
    assert p.parse_args(["clusters"]).k is None  # chosen from the data (auto_k), as the dashboard
    assert p.parse_args(["clusters", "-k", "7"]).k == 7
    # None: the threshold calibrated for the index's recipe (find_duplicates, check and
    # neighbour_graph resolve it from the index they are given)
    assert p.parse_args(["duplicates"]).threshold is None
    assert defaults(find_duplicates)["threshold"] is None
    assert p.parse_args(["check", "a.jpg"]).threshold is None
    assert p.parse_args(["graph"]).threshold is None
    assert p.parse_args(["duplicates", "--threshold", "0.8"]).threshold == 0.8
    assert p.parse_args(["graph"]).sample == GRAPH_SAMPLE
    assert p.parse_args(["export", "projector", "out"]).sample == DEFAULT_SAMPLE
    assert p.parse_args(["export", "csv", "out.csv"]).clusters == DEFAULT_K


def test_file_names_with_control_characters_are_escaped_in_tables(tmp_path, capsys):
    gallery = tmp_path / "g"
    gallery.mkdir()
    names = ["a\nfake   1   1.0000   0.0000  row.jpg", "b\x1b[31mred.jpg", "c\td.jpg", "plain.jpg"]
    for n in names:
        (gallery / n).write_bytes(b"x")
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((4, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    Index.from_arrays(tmp_path / "ix", names, emb, np.full((4, 768), 1 / 256, np.float32),
                      model="tiny-test", gallery_root=gallery)
    for argv in (["search", "@plain.jpg", "-k", "4"], ["clusters", "-k", "4"],
                 ["search", "@plain.jpg", "-k", "4", "--absolute"]):
        assert cli_main([*argv, "--index", str(tmp_path / "ix")]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\t" not in out, out
        assert "a\\nfake" in out and "b\\x1b[31mred.jpg" in out and "c\\td.jpg" in out
        rows = [ln for ln in out.splitlines() if ln.startswith("  ") and ln.strip()[:1].isdigit()]
        assert len(rows) == 4, out  # one line per image: the newline did not add a row
    assert cli_main(["search", "@plain.jpg", "--json", "--index", str(tmp_path / "ix")]) == 0
    hits = json.loads(capsys.readouterr().out)["queries"][0]["hits"]
    assert {h["path"] for h in hits} == set(names)  # JSON keeps the real names


# ---- as a user without write access ----------------------------------------------------------

@pytest.fixture
def nobody(tmp_path_factory, cli_env):
    """Run ``python -m imgrec`` as the unprivileged user 65534 (through setpriv when the tests
    run as root), in a folder that user can read but not write."""
    base = Path(tempfile.mkdtemp(prefix="imgrec-nobody-", dir="/tmp"))
    base.chmod(0o755)
    env = {**cli_env, "HOME": "/nonexistent", "NUMBA_CACHE_DIR": str(base / "numba"),
           "PYTHONPATH": str(Path(imgrec.__file__).parent.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    (base / "numba").mkdir(mode=0o777)
    (base / "numba").chmod(0o777)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop to a non-root user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, sys.executable, "-m", "imgrec", *map(str, args)],
                              capture_output=True, text=True, env=env, cwd=base, timeout=300)

    probe = subprocess.run([*prefix, sys.executable, "-c", "import imgrec, os; print(os.geteuid())"],
                           capture_output=True, text=True, env=env, cwd=base, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() == "0":
        pytest.skip(f"cannot run imgrec as a non-root user here: {probe.stderr.strip()[-200:]}")
    yield SimpleNamespace(base=base, run=run)
    shutil.rmtree(base, ignore_errors=True)


def test_os_errors_are_one_line_naming_path_and_cause(nobody):
    g = nobody.base / "g"
    g.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(g / f"{i}.png")
    emb = rng.standard_normal((3, 1280)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ix = nobody.base / "ix"  # owned by root: read-only for the user running the commands
    Index.from_arrays(ix, ["0.png", "1.png", "2.png"], emb, np.full((3, 768), 1 / 256, np.float32),
                      model="efficientnet-lite0", gallery_root=g)
    version = current_version(ix)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in version.iterdir())
    query = nobody.base / "secret.png"
    shutil.copy(g / "0.png", query)
    query.chmod(0)
    (nobody.base / "ro").mkdir(mode=0o555)
    (nobody.base / "ro").chmod(0o555)

    assert_usage_error(nobody.run("search", query, "--index", ix), str(query), "Permission denied")
    for extra in ([], ["--full"]):
        assert_usage_error(nobody.run("index", g, "--index", ix, "--workers", "0", "--quiet", *extra),
                           str(ix / "build.lock"), "Permission denied")
    assert_usage_error(nobody.run("export", "csv", nobody.base / "ro" / "out.csv", "--index", ix),
                       "ro/out.csv", "Permission denied")
    assert_usage_error(nobody.run("duplicates", "--csv", nobody.base / "ro" / "d.csv", "--index", ix),
                       "ro/d.csv", "Permission denied")
    assert current_version(ix) == version  # the index is untouched
    assert sorted((p.name, p.stat().st_mtime_ns) for p in version.iterdir()) == before
    assert not list((nobody.base / "ro").iterdir())


def test_search_rates_each_score_against_the_gallery(demo_cli, cli_env, tmp_path):
    """A near-copy is a strong match; the best match of an unrelated colour gradient is
    weak, in the table and in --json (calibrated on the gallery's own neighbours)."""
    from support import run_cli

    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    grad = np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[:, None], (1, 256)),
                     np.full((256, 256), 128, np.uint8)], axis=2)
    Image.fromarray(grad).save(tmp_path / "gradient.png")
    out = run_cli("search", tmp_path / "gradient.png", "@chelsea/chelsea_orig.jpg", "-k", "2",
                  "--index", demo_cli.index, "--json", env=cli_env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    weak, strong = got["queries"][0]["hits"][0], got["queries"][1]["hits"][1]
    assert weak["strength"] == "weak" and weak["percentile"] < 10, weak
    assert strong["strength"] == "strong" and strong["percentile"] >= 50, strong
    assert all("strength" not in h for h in got["combined"])  # a mean over queries: unrated
    table = run_cli("search", tmp_path / "gradient.png", "-k", "1", "--index", demo_cli.index,
                    env=cli_env)
    assert table.returncode == 0, table.stderr
    assert "match" in table.stdout and " weak " in table.stdout
