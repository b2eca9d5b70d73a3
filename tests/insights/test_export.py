"""Exports: TensorBoard projector files that parse and agree, and the catalog as CSV."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image
from support import run_cli

from imgrec.errors import ImgrecError
from imgrec.insights.clusters import clusters
from imgrec.insights.export import CSV_COLUMNS, export_csv, export_projector, sprite_geometry


def _pbtxt(text: str) -> dict:
    """The fields of a one-embedding projector_config.pbtxt (a tiny text-proto reader)."""
    assert re.fullmatch(r"\s*embeddings\s*\{.*\}\s*", text, re.S), text
    fields = dict(re.findall(r'(\w+): "([^"]*)"', text))
    dims = [int(v) for v in re.findall(r"single_image_dim: (\d+)", text)]
    assert re.search(r"sprite\s*\{[^}]*image_path[^}]*single_image_dim[^}]*\}", text)
    assert text.count("{") == text.count("}") == 2
    return {**fields, "single_image_dim": dims}


def test_projector_files_parse_and_agree(demo_index, tmp_path):
    out = tmp_path / "proj"
    ex = export_projector(demo_index, out, sample=None)
    n = len(demo_index)
    assert all(f.is_file() for f in ex.files) and ex.unreadable == 0
    tensors = np.loadtxt(out / "tensors.tsv", delimiter="\t", dtype=np.float64)
    assert tensors.shape == (n, 1584)
    np.testing.assert_allclose(tensors, demo_index.embeddings, atol=1e-5)
    lines = (out / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path\tlabel\tcluster" and len(lines) == n + 1
    meta = [line.split("\t") for line in lines[1:]]
    assert all(len(m) == 3 for m in meta)
    assert [m[0] for m in meta] == demo_index.all_paths()
    chelsea = next(m for m in meta if m[0] == "chelsea/chelsea_orig.jpg")
    assert "cat" in chelsea[1]
    want_clusters = clusters(demo_index, 30, seed=0).labels
    assert [int(m[2]) for m in meta] == want_clusters.tolist()

    cfg = _pbtxt((out / "projector_config.pbtxt").read_text())
    assert (cfg["tensor_path"], cfg["metadata_path"], cfg["image_path"]) == (
        "tensors.tsv", "metadata.tsv", "sprite.png")
    cols, thumb = sprite_geometry(n)
    assert (cols, thumb) == (14, 100) and cfg["single_image_dim"] == [thumb, thumb]
    with Image.open(out / "sprite.png") as sprite:
        assert sprite.size == ex.sprite_size == (cols * thumb, -(-n // cols) * thumb)
        assert max(sprite.size) <= 8192
        first = np.asarray(sprite.convert("RGB").crop((0, 0, thumb, thumb)))
        assert first.std() > 10  # a real thumbnail, not a blank cell
    js = json.loads((out / "projector_config.json").read_text())["embeddings"][0]
    assert js["tensorShape"] == [n, 1584] and js["sprite"]["singleImageDim"] == [thumb, thumb]


def test_projector_sample_and_sprite_geometry(demo_index, tmp_path):
    ex = export_projector(demo_index, tmp_path / "p", sample=50, seed=1, k_clusters=5)
    assert len(ex.rows) == 50 and len(set(ex.rows.tolist())) == 50
    lines = (tmp_path / "p" / "metadata.tsv").read_text().splitlines()
    assert len(lines) == 51 and {int(line.split("\t")[2]) for line in lines[1:]} <= set(range(5))
    assert len((tmp_path / "p" / "tensors.tsv").read_text().splitlines()) == 50
    assert ex.thumb == 100 and ex.sprite_size == (800, 700)
    assert sprite_geometry(10_000) == (100, 81)
    assert sprite_geometry(400_000) == (633, 12)
    assert sprite_geometry(1) == (1, 100)


def test_exports_refuse_the_gallery(demo_index, demo_gallery):
    with pytest.raises(ImgrecError, match="inside the gallery"):
        export_projector(demo_index, demo_gallery / "proj")
    with pytest.raises(ImgrecError, match="inside the gallery"):
        export_csv(demo_index, demo_gallery / "x.csv")
    assert not (demo_gallery / "proj").exists()


def test_catalog_csv(demo_index, tmp_path):
    (tmp_path / "c").mkdir()  # the CSV's folder must exist: export creates no folders
    path = export_csv(demo_index, tmp_path / "c" / "catalog.csv", k_clusters=14)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == len(demo_index.entries())
    by_path = {r["path"]: r for r in rows}
    coffee = by_path["coffee/coffee_orig.jpg"]
    assert coffee["label"] == "espresso" and float(coffee["label_probability"]) > 0.5
    assert coffee["labels_top5"].startswith("espresso:") and coffee["labels_top5"].count(";") == 4
    assert int(coffee["row"]) == demo_index.row_of("coffee/coffee_orig.jpg")
    assert len(coffee["sha256"]) == 64 and coffee["error"] == ""
    assert {int(r["cluster"]) for r in rows} == set(range(14))


def test_cli_exports(demo_cli, cli_env, tmp_path):
    out = run_cli("export", "projector", tmp_path / "p", "--index", demo_cli.index,
                  "--sample", "20", "--clusters", "4", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "wrote 20 of 170 images" in out.stdout
    assert len((tmp_path / "p" / "metadata.tsv").read_text().splitlines()) == 21
    c = run_cli("export", "csv", tmp_path / "c.csv", "--index", demo_cli.index, env=cli_env)
    assert c.returncode == 0, c.stderr
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 171
    bad = run_cli("export", "csv", demo_cli.gallery / "c.csv", "--index", demo_cli.index,
                  env=cli_env)
    assert bad.returncode == 2 and "inside the gallery" in bad.stderr
