"""Unit tests of the Streamlit-free logic behind the dashboard pages (imgrec.app view models)."""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrec import BuildLockedError, BuildReport, ImgrecError, Index, Progress, Stored
from imgrec.app import builds, facts, figures, folders, formatting, insights, projection, queries, thumbs
from imgrec.build.lock import BuildLock
from imgrec.insights.clusters import clusters
from imgrec.insights.graph import sample_rows
from imgrec.search.rank import Hit, SearchResult


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


# ---- uploads and queries -------------------------------------------------------------------


def test_validate_uploads_names_each_bad_file_and_keeps_the_good() -> None:
    files = [("red.png", png((255, 0, 0))), ("notes.jpg", b"hello"), ("empty.png", b""),
             ("cut.png", png((0, 0, 255))[:60])]
    check = queries.validate_uploads(files)
    assert [q.name for q in check.accepted] == ["red.png"]
    assert check.messages[0] == "notes.jpg: not an image (unrecognised format)"
    assert check.messages[1] == "empty.png: empty file (0 bytes)"
    assert check.messages[2].startswith("cut.png: ")
    assert len(check.messages) == 3


def test_validate_uploads_keeps_the_first_five_valid_ones() -> None:
    files = [("bad.jpg", b"nope")] + [(f"{i}.png", png((i * 40, 0, 0))) for i in range(6)]
    check = queries.validate_uploads(files)
    assert [q.name for q in check.accepted] == [f"{i}.png" for i in range(5)]
    assert check.messages[0].startswith("bad.jpg:")
    assert check.messages[1].startswith("5.png: not searched — at most 5 query images")
    assert len(check.messages) == 2


def test_validate_uploads_accepts_uploaded_file_like_objects() -> None:
    class Uploaded(io.BytesIO):  # what st.file_uploader gives: a BytesIO with a name
        name = "photo.png"

    check = queries.validate_uploads([Uploaded(png((1, 2, 3))), queries.QueryImage("q.png", png((9, 9, 9)))])
    assert [q.name for q in check.accepted] == ["photo.png", "q.png"]
    assert not check.messages


def test_image_problem_refuses_oversized_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "MAX_UPLOAD_BYTES", 10)
    assert queries.image_problem(png((0, 0, 0))).startswith("too large")


def test_query_set() -> None:
    assert not queries.QuerySet() and queries.QuerySet().kind == "none"
    qs = queries.QuerySet.from_paths(["a.jpg", "b.jpg", "a.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"])
    assert qs.stored == ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg") and qs.kind == "stored"
    assert qs.queries()[0] == Stored("a.jpg") and len(qs) == 5
    up = queries.QuerySet(uploads=(queries.QueryImage("x.png", png((1, 1, 1))),))
    f = up.queries()[0]
    assert f.name == "x.png" and f.read() == up.uploads[0].data and up.kind == "upload"
    other = queries.QuerySet(uploads=(queries.QueryImage("x.png", png((2, 2, 2))),))
    assert up.cache_key() != other.cache_key()  # same name, other content


# ---- formatting ----------------------------------------------------------------------------


def hit(rank: int, path: str, score: float, distance: float, metrics=None) -> Hit:
    return Hit(rank, path, score, distance, rank - 1, metrics)


def test_format_score_per_metric() -> None:
    assert formatting.format_score(hit(1, "a", 0.98765, 0.01235), "cosine") == "cosine 0.988"
    assert formatting.format_score(hit(1, "a", 0.5, 1.0), "euclidean") == "euclidean 1.000"
    assert formatting.format_score(hit(1, "a", 0.1, 9.126), "manhattan") == "manhattan 9.13"
    assert formatting.format_score(hit(1, "a", 0.9, 0.12345), "chi2") == "χ² 0.1235"
    h = hit(1, "a", 0.9, 0.1, {"cosine": 0.9, "euclidean": 0.44, "manhattan": 12.5})
    assert formatting.format_score(h, "all") == "cos 0.900 · L2 0.440 · L1 12.50"
    assert formatting.format_score(hit(1, "a", 1.25, -0.25), "refined") == "refined score +1.250"
    assert formatting.format_score(hit(1, "a", 0.931, 0.069), "probability") == "probability 0.93"


def test_strength_html_colours_and_explains_a_score() -> None:
    strong = formatting.strength_html("strong", 87.0)
    assert 'imgrec-strong' in strong and 'width:87%' in strong and "strong match" in strong
    assert "closer than 87% of the gallery" in strong
    assert "weak match" in formatting.strength_html("weak", 0.0)
    assert "no calibration" in formatting.strength_html("unrated", float("nan"))


def test_format_helpers() -> None:
    assert formatting.format_bytes(512) == "512 B"
    assert formatting.format_bytes(3 * 1024 * 1024) == "3.0 MB"
    assert formatting.format_duration(None) == "unknown"
    assert formatting.format_duration(42.4) == "42 s"
    assert formatting.format_duration(125) == "2 min 05 s"
    assert formatting.format_duration(3 * 3600 + 120) == "3 h 02 min"
    assert formatting.format_built_at("2025-11-25T14:49:03Z") == "2025-11-25 14:49 UTC"
    assert formatting.format_built_at("") == "unknown"


def test_results_csv_has_every_query_and_the_combined_ranking() -> None:
    res = SearchResult("embedding", "cosine", 2, ["a.png", "b.png"],
                       [[hit(1, "x/1.jpg", 0.9, 0.1), hit(2, "x/2.jpg", 0.8, 0.2)],
                        [hit(1, "y/1.jpg", 0.7, 0.3), hit(2, "x/1.jpg", 0.6, 0.4)]],
                       [hit(1, "x/1.jpg", 0.75, 0.25), hit(2, "y/1.jpg", 0.5, 0.5)])
    rows = list(csv.DictReader(io.StringIO(formatting.results_csv(res))))
    assert list(rows[0]) == ["query", "rank", "path", "score", "distance", "method", "metric"]
    assert [r["query"] for r in rows] == ["a.png"] * 2 + ["b.png"] * 2 + ["combined"] * 2
    assert rows[0] == {"query": "a.png", "rank": "1", "path": "x/1.jpg", "score": "0.9",
                       "distance": "0.1", "method": "embedding", "metric": "cosine"}
    single = SearchResult("color", "chi2", 1, ["a.png"], [[hit(1, "x/1.jpg", 0.5, 1.0)]],
                          [hit(1, "x/1.jpg", 0.5, 1.0)])
    assert formatting.results_csv(single).count("\n") == 2  # header + one row, no combined row


def test_pages() -> None:
    hits = [hit(i, f"{i}.jpg", 1.0, 0.0) for i in range(1, 24)]
    assert formatting.page_count(1) == 1 and formatting.page_count(10) == 1 and formatting.page_count(11) == 2
    assert formatting.page_count(50) == 5
    assert [h.rank for h in formatting.page_of(hits, 2)] == [21, 22, 23]
    assert formatting.page_of(hits, 3) == []
    assert formatting.chunks([1, 2, 3, 4, 5, 6, 7], 5) == [[1, 2, 3, 4, 5], [6, 7]]


# ---- index-backed helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    """An index of three real files (features from from_arrays: no CNN needed here)."""
    root = tmp_path_factory.mktemp("gallery")
    (root / "reds").mkdir()
    (root / "reds" / "wide.png").write_bytes(png((220, 10, 10), (300, 100)))
    (root / "reds" / "tall.jpg").write_bytes(png((200, 30, 30), (50, 200)))
    (root / "blue.png").write_bytes(png((10, 10, 220)))
    (root / "outside.png").write_bytes(png((0, 0, 0)))
    paths = ["blue.png", "reds/tall.jpg", "reds/wide.png"]
    rng = np.random.default_rng(0)
    hist = rng.random((3, 768)).astype(np.float32)
    return Index.from_arrays(tmp_path_factory.mktemp("index") / "ix", paths,
                             rng.random((3, 16)), hist, model="test-features", gallery_root=root)


def test_thumbnails_are_square_and_stay_inside_the_gallery(small_index: Index) -> None:
    data = thumbs.thumbnail_bytes(small_index, "reds/wide.png", size=64)
    assert data is not None
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.size == (64, 64)
        assert im.getpixel((32, 32))[0] > 180  # the red photo, centred
        assert im.getpixel((32, 2)) == pytest.approx(thumbs.THUMB_BACKGROUND, abs=6)  # letterbox
    assert thumbs.thumbnail_bytes(small_index, "missing.png") is None
    assert thumbs.thumbnail_bytes(small_index, "../index/ix/CURRENT") is None
    assert thumbs.thumbnail_bytes(small_index, "/etc/passwd") is None
    up = thumbs.upload_thumbnail(png((0, 200, 0), (500, 20)), size=32)
    with Image.open(io.BytesIO(up)) as im:
        assert im.size == (32, 32)
    assert thumbs.upload_thumbnail(b"not an image") is None


def test_index_facts(small_index: Index) -> None:
    f = facts.index_facts(small_index)
    assert f.count == 3 and f.skipped == [] and f.model == "test-features"
    assert f.formats == {"?": 3}  # from_arrays records no file formats
    assert f.embedding_dim == 16 and f.histogram_dim == 768 and f.pca_components == 2
    assert f.size_bytes == sum(p.stat().st_size for p in small_index.dir.iterdir())
    assert f.gallery == str(small_index.root) and f.version == small_index.version


def test_check_gallery_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = tmp_path / "index"
    monkeypatch.setenv("IMGREC_ALLOWED_ROOTS", str(tmp_path))
    assert "is outside the folders this dashboard may open" in folders.check_gallery_folder(
        "/", index_dir).message
    assert not folders.check_gallery_folder("  ", index_dir).ok
    assert "does not exist" in folders.check_gallery_folder(str(tmp_path / "nope"), index_dir).message
    (tmp_path / "file.txt").write_text("x")
    assert "is a file" in folders.check_gallery_folder(str(tmp_path / "file.txt"), index_dir).message
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert folders.check_gallery_folder(str(empty), index_dir).message.startswith("No images in")
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "a.png").write_bytes(png((1, 2, 3)))
    (photos / "sub" / "b.jpg").write_bytes(png((1, 2, 3)))
    ok = folders.check_gallery_folder(str(photos), index_dir)
    assert ok.ok and ok.images == 2 and ok.path == photos.resolve()
    assert ok.message == f"2 images found in {photos.resolve()}."
    (photos / "sub" / "broken.jpg").write_bytes(b"not a JPEG")  # named like one, unreadable
    told = folders.check_gallery_folder(str(photos), index_dir)
    assert told.ok and told.images == 2
    assert told.message == (f"2 images found in {photos.resolve()}; 1 file named like an image "
                            "cannot be read (sub/broken.jpg) and will be skipped.")
    (photos / "sub" / "broken.jpg").unlink()
    inside = folders.check_gallery_folder(str(tmp_path), index_dir)
    assert not inside.ok and "lies inside" in inside.message
    (index_dir / "x").mkdir(parents=True)
    assert "inside the index folder" in folders.check_gallery_folder(str(index_dir / "x"), index_dir).message
    monkeypatch.chdir(tmp_path)
    assert folders.check_gallery_folder("photos", index_dir).path == photos.resolve()
    assert folders.check_gallery_folder(str(photos), index_dir, limit=1).message.startswith("1+ image")


# ---- Explore -------------------------------------------------------------------------------


def blobs(n_per: int = 20, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    centres = np.eye(3, d) * 10
    x = np.concatenate([c + rng.normal(0, 0.3, (n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), n_per)


def test_sample_rows() -> None:
    """The Explore scatter samples with the neighbour graph's one ``sample_rows``."""
    assert sample_rows(5, 10).tolist() == [0, 1, 2, 3, 4]
    s = sample_rows(1000, 100)
    assert len(s) == 100 and len(set(s.tolist())) == 100 and (np.diff(s) > 0).all()
    assert (s == sample_rows(1000, 100)).all()  # the same sample every time
    p = projection.project(np.random.default_rng(0).random((1000, 8), dtype=np.float32), 100)
    assert (p.rows == s).all()


def test_project_and_transform() -> None:
    x, _ = blobs()
    p = projection.project(x)
    assert p.coords.shape == (60, 3) and p.rows.tolist() == list(range(60)) and not p.sampled
    assert p.explained[0] >= p.explained[1] >= p.explained[2] > 0 and p.explained.sum() <= 1
    assert np.allclose(p.transform(x[:4]), p.coords[:4], atol=1e-4)
    sampled = projection.project(x, limit=25)
    assert sampled.sampled and len(sampled.rows) == 25 and sampled.total == 60
    two = projection.project(x[:2])
    assert two.coords.shape == (2, 3) and (two.coords[:, 1:] == 0).all()
    one = projection.project(x[:1])
    assert one.pca is None and (one.coords == 0).all() and one.transform(x[:3]).shape == (3, 3)
    two = projection.explained_text(p.explained, 2)
    assert "PC1" in two and "PC3" not in two


def test_the_one_kmeans_finds_the_blobs() -> None:
    """Explore and Insights share imgrec.insights.clusters.clusters (the only K-means)."""
    x, truth = blobs()
    labels = clusters(x, 3).labels
    assert len(set(labels.tolist())) == 3
    for c in range(3):  # each blob is one cluster
        assert len(set(labels[truth == c].tolist())) == 1
    assert clusters(x[:2], 10).labels.shape == (2,)
    assert clusters(x, 1).labels.tolist() == [0] * 60
    with pytest.raises(ValueError, match="empty"):
        clusters(x[:0], 3)


def test_folders_and_groups() -> None:
    assert projection.top_folder("cats/a/b.jpg") == "cats" and projection.top_folder("b.jpg") == "(top level)"
    assert projection.top_folder("dogs\\x.jpg") == "dogs"
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d", "e"]
    assert projection.group_labels(values, max_groups=3) == ["a"] * 5 + ["b"] * 4 + ["other"] * 5
    assert projection.group_labels(values, max_groups=10) == values


def test_scatter_figure_2d_and_3d() -> None:
    x, truth = blobs(5)
    p = projection.project(x)
    paths = [f"f{i}.jpg" for i in range(15)]
    groups = [f"cluster {c + 1}" for c in truth]
    hl = [projection.Highlight("search results", p.coords[:2], ["f0.jpg", "f1.jpg"], [0, 1], "result"),
          projection.Highlight("queries", p.transform(x[:1]), ["up.png"], [-1], "query")]
    fig = figures.scatter_figure(p, paths, groups, hl)
    types = [t.type for t in fig.data]
    assert types == ["scattergl"] * 5
    assert [t.name for t in fig.data] == ["cluster 1", "cluster 2", "cluster 3", "search results",
                                          "queries"]
    assert list(fig.data[1].customdata) == [5, 6, 7, 8, 9]
    assert list(fig.data[1].hovertext) == [f"f{i}.jpg" for i in range(5, 10)]
    assert fig.layout.xaxis.title.text.startswith("PC1 (")
    fig3 = figures.scatter_figure(p, paths, None, hl, dims=3)
    assert [t.type for t in fig3.data] == ["scatter3d"] * 3
    assert fig3.data[0].showlegend is False


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


@pytest.mark.parametrize("n", [1, 5, 14, 30])
def test_thumbnails_never_overlap_nor_leave_the_axes(n: int) -> None:
    """Thumbnail boxes (image + caption) of crowded anchors: pairwise apart, inside the
    axis ranges, none over its own point, near it when there is room."""
    from imgrec.app.placement import BOX_W, place

    x, _ = blobs(20, 2)
    anchors = np.concatenate([x[:1] + 0.01 * i for i in range(n)])  # all in one crowd
    pl = place(anchors, x)
    boxes = pl.boxes()
    assert not any(_overlap(boxes[i], boxes[j]) for i in range(n) for j in range(i))
    (x0, x1), (y0, y1) = pl.xrange, pl.yrange
    assert (boxes[:, 0] >= x0).all() and (boxes[:, 2] <= x1).all()
    assert (boxes[:, 1] >= y0).all() and (boxes[:, 3] <= y1).all()
    assert x0 <= x[:, 0].min() and x[:, 0].max() <= x1 and y0 <= x[:, 1].min() and x[:, 1].max() <= y1
    for (ax, ay), b in zip(anchors, boxes, strict=True):
        assert not (b[0] < ax < b[2] and b[1] < ay < b[3])
    if n <= 14:  # room for all at full size (about 70 px on the dashboard's plot)
        assert pl.size[0] == pytest.approx(BOX_W * (x1 - x0))
    span = np.array([x1 - x0, y1 - y0])
    near = np.hypot(*((pl.centres[0] - anchors[0]) / span))
    assert near < 0.2  # the first box lies next to its point, not somewhere far


def test_plot_thumbnail_has_its_frame_and_caption_in_the_image() -> None:
    """The caption is drawn into the thumbnail (under it), so it scales with it and cannot
    run into a neighbour's; a long one is cut to the width."""
    import base64

    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (120, 160, 200)).save(buf, "JPEG")

    def decoded(uri: str) -> Image.Image:
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            return im.convert("RGB")

    rgb = decoded(thumbs.plot_thumb_uri(buf.getvalue(), "#ff0000", "cluster 3"))
    assert rgb.size == (96, 96 + round(thumbs.CAPTION_SHARE * 96))
    corner, centre = rgb.getpixel((1, 1)), rgb.getpixel((48, 48))
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60  # red frame
    assert abs(centre[0] - 120) < 12 and abs(centre[2] - 200) < 12  # the picture untouched
    strip = np.asarray(rgb)[97:].min(axis=2)
    ink = np.flatnonzero((strip < 100).any(axis=0))
    assert len(ink) and ink.min() > 20 and ink.max() < 76  # dark text, centred
    long = decoded(thumbs.plot_thumb_uri(buf.getvalue(), None, "community 12: academic gown"))
    assert long.size == rgb.size  # the strip keeps its size, the text is cut to fit
    assert np.abs(np.asarray(long)[:96].astype(int) - np.asarray(rgb)[:96]).max() > 100  # no frame
    assert figures.group_colours(["cluster 1", "cluster 0"])["cluster 0"] != figures.group_colours(
        ["cluster 1", "cluster 0"])["cluster 1"]


def test_scatter_figure_draws_placed_thumbnails_with_captions() -> None:
    x, truth = blobs(10)
    p = projection.project(x)
    thumbs_ = [figures.Thumb(float(p.coords[i, 0]), float(p.coords[i, 1]), "data:image/jpeg;base64,",
                             f"cluster {c}") for c, i in enumerate((0, 10, 20))]
    fig = figures.scatter_figure(p, [f"f{i}.jpg" for i in range(30)],
                                 [f"cluster {c}" for c in truth], images=thumbs_)
    images = fig.layout.images
    assert len(images) == 3 and all(im.sizing == "contain" for im in images)
    assert [im.name for im in images] == ["cluster 0", "cluster 1", "cluster 2"]
    lo, hi = fig.layout.xaxis.range
    assert images[0].sizex / (hi - lo) >= 0.09  # readable: about a tenth of the plot wide
    assert len(fig.layout.shapes) == 3  # a line from each thumbnail to its point
    assert "click" in fig.data[0].hovertemplate  # hovering says a click opens the image
    assert "hovertext" in fig.data[0].hovertemplate


def test_selected_rows() -> None:
    event = {"selection": {"points": [{"customdata": 4}, {"customdata": [2]}, {"customdata": 4},
                                      {"customdata": -1}, {"x": 1.0}, {"customdata": "junk"}]}}
    assert projection.selected_rows(event) == [4, 2]
    assert projection.selected_rows(event["selection"]) == [4, 2]
    assert projection.selected_rows(None) == []
    assert projection.selected_rows({"selection": {"points": []}}) == []


# ---- background builds ---------------------------------------------------------------------


class SlowBuild:
    """A stand-in for build_index that reports progress and waits to be released."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = fail
        self.calls: list[tuple] = []

    def __call__(self, gallery, index_dir, *, embedder=None, workers=None, progress=None):
        self.calls.append((gallery, index_dir, embedder, workers))
        progress(Progress("features", 0, 10, 0.0))
        time.sleep(0.3)
        progress(Progress("features", 6, 10, 0.3))
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise self.fail
        return BuildReport(gallery=Path(gallery), index_dir=Path(index_dir), indexed=9,
                           computed=10, skipped=[("x.jpg", "corrupt")], seconds=1.5)


def test_runner_runs_one_build_per_index(tmp_path: Path) -> None:
    build = SlowBuild()
    done: list[builds.JobState] = []
    runner = builds.BuildRunner(build=build)
    first = runner.start(tmp_path / "g", tmp_path / "ix", embedder="cnn", on_success=done.append)
    assert first.running and first.kind == "rebuild" and first.id == 1
    assert build.started.wait(5)
    state = runner.job(tmp_path / "ix")
    assert (state.stage, state.done, state.total) == ("features", 6, 10)
    assert state.rate > 0 and state.eta is not None and state.fraction == 0.6
    assert state.progress_text().startswith("Indexing images: 6 / 10 · ")
    assert "left" in state.progress_text()
    with pytest.raises(BuildLockedError, match="a build is running"):
        runner.start(tmp_path / "g", tmp_path / "ix")
    assert runner.busy(tmp_path / "ix") and runner.busy(tmp_path / "other") is None
    build.release.set()
    final = runner.wait(tmp_path / "ix", 10)
    assert final.status == "done" and final.count == 9 and not final.running
    assert final.message.startswith("Indexed 9 images") and "1 skipped" in final.message
    assert done == [final] and build.calls[0][2] == "cnn"
    again = runner.start(tmp_path / "g", tmp_path / "ix")  # finished: a new build may start
    assert again.id == 2
    build.release.set()
    runner.wait(tmp_path / "ix", 10)


def test_runner_shows_the_builds_own_rate_and_eta(tmp_path: Path) -> None:
    """Progress counts images whose features are written, at the rate the build measured
    (the files unchanged at the stage's start are not counted as speed)."""
    release = threading.Event()

    def build(gallery, index_dir, *, embedder=None, workers=None, progress=None):
        progress(Progress("features", 6, 10, 3.0, start=2))  # 4 finished in 3 s
        assert release.wait(10)
        raise ImgrecError("stopped")

    runner = builds.BuildRunner(build=build)
    runner.start(tmp_path / "g", tmp_path / "ix")
    for _ in range(100):
        state = runner.job(tmp_path / "ix")
        if state.done:
            break
        time.sleep(0.05)
    assert state.rate == pytest.approx(4 / 3) and state.eta == pytest.approx(3.0)
    assert state.progress_text() == "Indexing images: 6 / 10 · 1.3 images/s · about 3 s left"
    release.set()
    assert runner.wait(tmp_path / "ix", 10).status == "failed"


def test_runner_reports_a_failed_build(tmp_path: Path) -> None:
    build = SlowBuild(fail=ImgrecError("no images found in /photos"))
    build.release.set()
    called: list = []
    runner = builds.BuildRunner(build=build)
    runner.start(tmp_path / "g", tmp_path / "ix", on_success=called.append)
    state = runner.wait(tmp_path / "ix", 10)
    assert state.status == "failed" and state.message == "no images found in /photos"
    assert called == []


def test_runner_refuses_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    runner = builds.BuildRunner(build=SlowBuild())
    with BuildLock(tmp_path / "ix"):
        msg = builds.running_build(tmp_path / "ix")
        assert msg and msg.startswith("a build is running for this index (pid ")
        assert runner.busy(tmp_path / "ix") == msg
        with pytest.raises(BuildLockedError, match="a build is running"):
            runner.start(tmp_path / "g", tmp_path / "ix")
    assert builds.running_build(tmp_path / "ix") is None and runner.job(tmp_path / "ix") is None


def test_runner_builds_the_demo_gallery_first(tmp_path: Path) -> None:
    class Demo:
        root = tmp_path / "demo"

    def demo(out_dir, progress=None):
        progress(1, 2)
        progress(2, 2)
        return Demo

    build = SlowBuild()
    build.release.set()
    runner = builds.BuildRunner(build=build, demo=demo)
    runner.start(None, tmp_path / "ix", kind="demo", demo_dir=tmp_path / "demo")
    state = runner.wait(tmp_path / "ix", 10)
    assert state.status == "done" and state.kind == "demo" and state.gallery == str(tmp_path / "demo")
    assert build.calls[0][0] == tmp_path / "demo"


def test_job_state_texts() -> None:
    s = builds.JobState(1, "/ix", "/g", "rebuild", "running")
    assert s.progress_text() == "Starting the build…" and s.fraction == 0.0
    s = builds.JobState(1, "/ix", "/g", "demo", "running", stage="demo", done=3, total=170)
    assert s.progress_text() == "Writing demo images: 3 / 170"
    s = builds.JobState(1, "/ix", "/g", "rebuild", "running", stage="write", total=170)
    assert s.fraction == 1.0 and s.progress_text().startswith("Writing the index (170 images)")


# ---- issue 6: insights and search additions ------------------------------------------------


def test_label_chart_has_the_most_frequent_label_on_top() -> None:
    from imgrec.insights.labels import LabelCount

    counts = [LabelCount(285, "Egyptian cat", 7), LabelCount(967, "espresso", 4),
              LabelCount(812, "space shuttle", 1)]
    fig = figures.label_chart(counts)
    bar = fig.data[0]
    assert bar.type == "bar" and bar.orientation == "h"
    assert list(bar.y) == ["space shuttle", "espresso", "Egyptian cat"]  # plotly draws bottom-up
    assert list(bar.x) == [1, 4, 7]
    assert figures.label_chart([]).data[0].type == "bar"


def test_cluster_k_bounds() -> None:
    assert insights.cluster_k_bounds(1) == (1, 1, 1)
    assert insights.cluster_k_bounds(12) == (1, 12, 12)
    assert insights.cluster_k_bounds(5000) == (1, 100, 30)
    assert insights.cluster_k_bounds(5000, default=8) == (1, 100, 8)


def test_duplicates_csv_and_member_detail() -> None:
    from imgrec.insights.duplicates import CSV_COLUMNS, DuplicateGroup, DuplicateReport, Member

    keeper = Member("a/big.jpg", 0, 800, 600, 2048, "aa", 1.0)
    copy = Member("a/small.jpg", 3, 400, 300, 900, "bb", 0.91234)
    report = DuplicateReport(0.65, [DuplicateGroup(1, "near", [keeper, copy])], 10)
    rows = list(csv.DictReader(io.StringIO(formatting.duplicates_csv(report))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["group"], r["action"], r["path"]) for r in rows] == [
        ("1", "keep", "a/big.jpg"), ("1", "review", "a/small.jpg")]
    assert formatting.member_detail(keeper, True) == "800×600 · 2.0 KB"
    assert formatting.member_detail(copy, False) == "cosine 0.912 · 400×300 · 900 B"
    assert formatting.member_detail(Member("x", 1, 0, 0, 0, "", 0.7), False) == "cosine 0.700"
    empty = DuplicateReport(0.65, [], 3)
    assert formatting.duplicates_csv(empty).strip() == ",".join(CSV_COLUMNS)


def test_graph_figure_draws_edges_as_one_trace_and_nodes_by_community() -> None:
    from imgrec.insights.graph import neighbour_graph

    x, _ = blobs(8)
    g = neighbour_graph(x, k=3, threshold=0.5, iterations=0)
    paths = [f"img{r}.jpg" for r in g.rows]
    fig = figures.graph_figure(g, paths)
    assert fig.data[0].mode == "lines" and fig.data[0].type == "scattergl"
    assert len(fig.data[0].x) == 3 * len(g.edges) > 0
    nodes = fig.data[1:]
    assert all(t.type == "scattergl" and t.mode == "markers" for t in nodes)
    assert len(nodes) == g.n_communities >= 2
    assert sorted(r for t in nodes for r in t.customdata) == g.rows.tolist()
    assert len({t.marker.color for t in nodes}) == len(nodes)
    first = nodes[0]
    assert [paths[int(np.flatnonzero(g.rows == r)[0])] for r in first.customdata] == list(
        first.hovertext)
    assert fig.layout.margin.t >= 40  # room for the toolbar above the legend
    assert [t.name for t in nodes] == [f"community {c + 1}" for c in range(len(nodes))]
    labels = ["tabby" if g.community[i] == 0 else "espresso" for i in range(len(g.rows))]
    named = figures.graph_figure(g, paths, labels).data[1:]
    assert named[0].name == "community 1: tabby" and named[1].name == "community 2: espresso"
    captions = figures.community_captions(g, labels)
    assert captions[:2] == ["1: tabby", "2: espresso"] and len(captions) == g.n_communities
    reps = figures.community_thumbs(g, ["data:image/jpeg;base64,"] * g.n_communities, captions)
    assert [(t.x, t.y) for t in reps] == [(g.x[n], g.y[n]) for n in g.representatives]
    drawn = figures.graph_figure(g, paths, labels, reps)
    assert [im.name for im in drawn.layout.images] == captions


def test_filter_hits_by_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    top5 = np.array([[285, 281, 1, 2, 3], [967, 968, 4, 5, 6], [3, 4, 5, 6, 282],
                     [-1, -1, -1, -1, -1]], np.int16)
    prob5 = np.full((4, 5), 0.1, np.float32)
    paths = ["cat.jpg", "coffee.jpg", "maybe-cat.jpg", "none.jpg"]
    idx = Index.from_arrays(tmp_path / "ix", paths, rng.random((4, 8)),
                            rng.random((4, 768)).astype(np.float32), model="test",
                            labels_top5=top5, labels_prob5=prob5)
    hits = [Hit(i + 1, p, 1.0, 0.0, r) for i, (r, p) in enumerate([(1, paths[1]), (2, paths[2]),
                                                                    (0, paths[0]), (3, paths[3])])]
    kept = queries.filter_hits_by_label(idx, hits, "cat")
    assert [(h.rank, h.path) for h in kept] == [(2, "maybe-cat.jpg"), (3, "cat.jpg")]
    assert [h.path for h in queries.filter_hits_by_label(idx, hits, "espresso, cat")] == [
        "coffee.jpg", "maybe-cat.jpg", "cat.jpg"]
    assert queries.filter_hits_by_label(idx, hits, "xyzzy-no-class") == []
    assert queries.filter_hits_by_label(idx, [], "cat") == []
    no_labels = Index.from_arrays(tmp_path / "ix2", paths, rng.random((4, 8)),
                                  rng.random((4, 768)).astype(np.float32), model="test")
    assert queries.filter_hits_by_label(no_labels, hits, "cat") == []


def test_feedback_marks_toggle_and_cap_at_five() -> None:
    fb = queries.Feedback()
    assert not fb and fb.state("a") is None
    fb = fb.mark("a", "positive").mark("b", "negative")
    assert fb.positives == ("a",) and fb.negatives == ("b",) and fb
    assert fb.state("a") == "positive" and fb.state("b") == "negative"
    fb = fb.mark("a", "negative")  # switches kind
    assert fb.positives == () and fb.negatives == ("b", "a")
    fb = fb.mark("a", "negative")  # toggles off
    assert fb.negatives == ("b",)
    for i in range(10):
        fb = fb.mark(f"n{i}", "negative")
    assert fb.negatives == ("b", "n0", "n1", "n2", "n3")


def test_refine_queries() -> None:
    qs = queries.QuerySet.from_paths(["q1.jpg", "q2.jpg"])
    fb = queries.Feedback(positives=("q2.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg"))
    got = queries.refine_queries(qs, fb)
    assert got == [Stored("q1.jpg"), Stored("q2.jpg"), Stored("p1.jpg"), Stored("p2.jpg"),
                   Stored("p3.jpg")]
    up = queries.QuerySet(uploads=(queries.QueryImage("u.png", png((1, 2, 3))),))
    got = queries.refine_queries(up, queries.Feedback(positives=("p.jpg",)))
    assert got[0].name == "u.png" and got[1] == Stored("p.jpg")
    assert queries.refine_queries(queries.QuerySet(), queries.Feedback()) == []


def test_overlap() -> None:
    o = formatting.overlap({"embedding": ["a", "b", "c"], "color": ["b", "c", "d"], "pca": ["c", "d"]})
    assert o.pairs == {("embedding", "color"): 2, ("embedding", "pca"): 1, ("color", "pca"): 2}
    assert o.all == 1
    assert formatting.overlap({}).all == 0


def test_representatives_are_marked_and_can_carry_thumbnails() -> None:
    from imgrec.insights.clusters import clusters

    x, truth = blobs(5)
    res = clusters(x, k=3, seed=0)
    p = projection.project(x)
    paths = [f"dir/f{i}.jpg" for i in range(15)]
    rep = projection.representatives(res, p, x, paths)
    assert rep.kind == "rep" and rep.rows == res.representatives.tolist()
    assert sorted(truth[rep.rows].tolist()) == [0, 1, 2]  # one per blob
    np.testing.assert_allclose(rep.coords, p.coords[rep.rows], atol=1e-4)
    uri = thumbs.data_uri(b"\xff\xd8jpeg")
    assert uri.startswith("data:image/jpeg;base64,")
    groups = [f"cluster {c + 1}" for c in res.labels]
    fig = figures.scatter_figure(p, paths, groups, [rep],
                                 images=[figures.Thumb(float(a), float(b), uri, f"cluster {c + 1}")
                                         for c, (a, b, _) in enumerate(rep.coords)])
    marks = fig.data[-1]
    # the squares carry no file-name text (it overlapped): each thumbnail has its caption
    assert marks.name == "representatives" and marks.mode == "markers" and not marks.text
    assert list(marks.hovertext) == [paths[r] for r in rep.rows]
    assert len(fig.layout.images) == 3 and fig.layout.images[0].source == uri
    assert [im.name for im in fig.layout.images] == ["cluster 1", "cluster 2", "cluster 3"]
    assert figures.scatter_figure(p, paths, groups, [rep], dims=3).data[-1].type == "scatter3d"
