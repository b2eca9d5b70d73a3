"""What a search accepts as a query (imgrec.search.query): odd objects, streams that cannot
seek, text-mode files and paths that are not regular files are answered or refused with a
QueryError naming what was given; request parameters are checked, never coerced."""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest

from imgrec import ImgrecError, Index, Stored
from imgrec.errors import QueryError
from imgrec.search.query import MAX_STREAM_BYTES

ACCEPTED = "a query is an image file path, bytes, a binary file object"
REL = "coffee/coffee_orig.jpg"


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Index:
    rng = np.random.default_rng(5)
    hist = rng.random((40, 768)).astype(np.float32)
    hist /= hist.sum(1, keepdims=True)
    return Index.from_arrays(tmp_path_factory.mktemp("q") / "ix",
                             [f"{i:02d}.jpg" for i in range(40)],
                             rng.normal(size=(40, 16)), hist, model="m")


def _in_thread(fn, timeout: float = 120):
    """Run ``fn`` in a thread: a call that blocks forever fails the test instead of hanging it."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the search blocked"
    if "error" in box:
        raise box["error"]
    return box["value"]


class OnlyRead:
    """A binary stream with ``read`` and nothing else (no seek, no seekable)."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


class NoPath(os.PathLike):
    """A path-like object whose path is not a string."""

    def __fspath__(self):
        return 5


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Endless:
    """A stream that never ends (like /dev/zero behind a pipe)."""

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        return b"\0" * (n if n >= 0 else 1 << 20)


@pytest.mark.parametrize("given, named", [
    (None, "got None"), (123, "got int 123"), (1.5, "got float 1.5"),
    (np.zeros((4, 4, 3), np.uint8), r"got numpy\.ndarray of shape \(4, 4, 3\)"),
    ({"path": "x.jpg"}, "got dict"), (object(), "got object"), ({1, 2}, "got set"),
])
def test_objects_that_are_not_images_are_refused(small_index, given, named):
    for method in ("embedding", "color", "pca"):
        with pytest.raises(QueryError, match=rf"query 1: {named}.*{ACCEPTED}"):
            small_index.search(given, method=method)
    with pytest.raises(QueryError, match=rf"query 2: {named}"):  # among good queries
        small_index.search([Stored("01.jpg"), given], method="color")
    with pytest.raises(QueryError, match=rf"query 2: {named}"):  # as a negative example
        small_index.search(Stored("01.jpg"), negatives=[given])


def test_text_mode_files_are_refused(small_index, demo_gallery):
    with open(demo_gallery / REL) as fh, pytest.raises(QueryError, match="text-mode"):
        small_index.search(fh, method="color")
    with pytest.raises(QueryError, match=r"query 1: .*text-mode"):
        small_index.search(io.StringIO("not bytes"), method="color")


def test_a_pipe_is_read_into_memory(demo_index_cached, demo_gallery):
    data = (demo_gallery / REL).read_bytes()
    assert len(data) > 65536  # more than a pipe buffer holds: the writer must keep up

    def search_through_pipe(method: str, buffering: int = -1):
        r, w = os.pipe()
        writer = threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True)
        writer.start()
        with os.fdopen(r, "rb", buffering=buffering) as stream:
            assert not stream.seekable()
            res = _in_thread(lambda: demo_index_cached.search(stream, method=method, k=1))
        writer.join()
        return res.per_query[0][0]

    top = search_through_pipe("color")
    assert top.path == REL and top.distance == pytest.approx(0.0, abs=1e-6)
    top = search_through_pipe("embedding")
    assert top.path == REL and top.score >= 0.9999
    top = search_through_pipe("color", buffering=0)  # raw reads return what the pipe holds
    assert top.path == REL and top.distance == pytest.approx(0.0, abs=1e-6)
    top = demo_index_cached.search(OnlyRead(data), method="color", k=1).per_query[0][0]
    assert top.path == REL and top.distance == pytest.approx(0.0, abs=1e-6)


def test_a_stream_is_read_up_to_the_upload_limit(small_index):
    with pytest.raises(QueryError, match=f"more than {MAX_STREAM_BYTES // 2 ** 20} MB"):
        small_index.search(Endless(), method="color")


def test_a_closed_file_is_refused(small_index, demo_gallery):
    fh = open(demo_gallery / REL, "rb")  # noqa: SIM115 - closed on purpose
    fh.close()
    with pytest.raises(QueryError, match="closed file"):
        small_index.search(fh, method="color")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_paths_that_are_not_regular_files_are_refused_unopened(small_index, tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    for q in (fifo, str(fifo)):
        with pytest.raises(QueryError, match=r"x\.jpg: .*not a regular file"):
            _in_thread(lambda q=q: small_index.search(q, method="color"))
    with pytest.raises(QueryError, match="not a regular file"):
        _in_thread(lambda: small_index.search(Stored("01.jpg"), negatives=[fifo]))
    with pytest.raises(QueryError, match="is a folder"):
        small_index.search(tmp_path, method="color")
    if os.path.exists("/dev/null"):
        with pytest.raises(QueryError, match="not a regular file"):
            small_index.search("/dev/null", method="color")
    with pytest.raises(QueryError, match="cannot read"):
        small_index.search("bad\0name.jpg", method="color")


@pytest.mark.parametrize("k", [True, False, 1.5, 2.0, np.float64(3), "3", None])
def test_k_is_not_coerced(small_index, k):
    with pytest.raises(QueryError, match="k must be a positive integer"):
        small_index.search(Stored("01.jpg"), k=k)


@pytest.mark.parametrize("c", ["x", "5", 1.5, 5.0, True, False, np.float32(3), [5]])
def test_pca_components_are_not_coerced(small_index, c):
    with pytest.raises(QueryError, match="pca_components must be a whole number"):
        small_index.search(Stored("01.jpg"), method="pca", pca_components=c)


def test_integer_parameters_of_numpy_types_are_accepted(small_index):
    res = small_index.search(Stored("01.jpg"), method="pca", k=np.int64(3),
                             pca_components=np.int32(5))
    assert [h.row for h in res.per_query[0]][:1] == [1] and len(res.per_query[0]) == 3


@pytest.mark.parametrize("given", [None, 0, "", b"\xff\xd8", float("nan"), (), {}, set(),
                                   io.BytesIO(b""), Stored(""), Stored(None), NoPath(),
                                   BadRepr()])
def test_any_query_object_gives_a_result_or_an_imgrec_error(small_index, given):
    """The whole API answers with an ImgrecError, never a raw TypeError or ValueError."""
    try:
        small_index.search(given, method="color", k=2)
    except ImgrecError as exc:
        assert str(exc) and "\n" not in str(exc)
