"""Bad input gets a clear 4xx with a one-line JSON ``detail``, never a 500 or a traceback."""

from __future__ import annotations

import pytest
from server_support import start_server, stop_server

pytestmark = pytest.mark.slow

GOOD = "chelsea/chelsea_crop_center.jpg"


def image(gallery_file, rel: str = GOOD, field: str = "images") -> tuple:
    return (field, (rel.rsplit("/", 1)[-1], gallery_file(rel).read_bytes(), "image/jpeg"))


def field(name: str, value: str) -> tuple:
    return (name, (None, value.encode()))


CASES = {
    "six query images": (lambda g: ("POST", "/search", [image(g)] * 6), 400, "at most 5"),
    "three uploads and three paths": (lambda g: ("POST", "/search", [image(g)] * 3 + [
        field("paths", GOOD)] * 3), 400, "at most 5"),
    "six negatives": (lambda g: ("POST", "/search", [image(g)] + [
        field("negative_paths", GOOD)] * 6), 400, "at most 5"),
    "eleven files": (lambda g: ("POST", "/search", [image(g)] * 11), 400, "files"),
    "no query": (lambda g: ("POST", "/search", [field("k", "3")]), 400, "give 1-5 query"),
    "a text file upload": (lambda g: ("POST", "/search", [
        ("images", ("notes.txt", b"hello, not an image", "text/plain"))]), 422,
        "notes.txt: not an image"),
    "text in the images field": (lambda g: ("POST", "/search", [field("images", GOOD)]), 422,
                                 "images.0: Value error, Expected UploadFile"),
    "an empty upload": (lambda g: ("POST", "/search", [
        ("images", ("empty.jpg", b"", "image/jpeg"))]), 422, "empty"),
    "a truncated JPEG": (lambda g: ("POST", "/search", [
        ("images", ("cut.jpg", g(GOOD).read_bytes()[:600], "image/jpeg"))]), 422, "cut.jpg"),
    "a path out of the gallery": (lambda g: ("POST", "/search", [
        field("paths", "../../etc/passwd")]), 400, "outside the gallery"),
    "an absolute path": (lambda g: ("POST", "/search", [field("paths", "/etc/passwd")]), 400,
                         "outside the gallery"),
    "a negative path out of the gallery": (lambda g: ("POST", "/search", [
        image(g), field("negative_paths", "../secret.jpg")]), 400, "outside the gallery"),
    "a path not indexed": (lambda g: ("POST", "/search", [field("paths", "chelsea/nope.jpg")]),
                           404, "not an indexed image"),
    "the corrupt gallery file": (lambda g: ("POST", "/search", [field("paths", "broken.jpg")]),
                                 404, "not an indexed image"),
    "an unknown method": (lambda g: ("POST", "/search", [image(g), field("method", "sift")]),
                          422, "method: Input should be 'embedding', 'color' or 'pca'"),
    "an unknown metric": (lambda g: ("POST", "/search", [image(g), field("metric", "hamming")]),
                          422, "metric: Input should be"),
    "k = 0": (lambda g: ("POST", "/search", [image(g), field("k", "0")]), 422,
              "k: Input should be greater than or equal to 1"),
    "a huge k": (lambda g: ("POST", "/search", [image(g), field("k", "10" * 20)]), 422,
                 "k: Input should be less than or equal to 1000"),
    "k not a number": (lambda g: ("POST", "/search", [image(g), field("k", "five")]), 422,
                       "k: Input should be a valid integer"),
    "negatives with colour": (lambda g: ("POST", "/search", [
        image(g), field("negative_paths", GOOD), field("method", "color")]), 400,
        "negative examples work with method 'embedding'"),
    "a NaN negative weight": (lambda g: ("POST", "/search", [
        image(g), field("negative_paths", GOOD), field("negative_weight", "nan")]), 422,
        "negative_weight"),
    "a gallery path sent as a file": (lambda g: ("POST", "/search", [
        ("paths", ("x.jpg", b"abc", "image/jpeg"))]), 422, "paths.0: Input should be a valid string"),
    "similar, traversal": (lambda g: ("GET", "/similar/..%2F..%2Fetc%2Fpasswd", None), 400,
                           "outside the gallery"),
    "similar, unknown path": (lambda g: ("GET", "/similar/chelsea/nope.jpg", None), 404,
                              "not an indexed image"),
    "similar, unknown method": (lambda g: ("GET", f"/similar/{GOOD}?method=sift", None), 422,
                                "method: Input should be"),
    "similar, k = 0": (lambda g: ("GET", f"/similar/{GOOD}?k=0", None), 422, "k: Input"),
    "thumbnail, traversal": (lambda g: ("GET", "/thumbnail/%2E%2E/%2E%2E/etc/passwd", None),
                             400, "outside the gallery"),
    "thumbnail, absolute": (lambda g: ("GET", "/thumbnail//etc/passwd", None), 400,
                            "outside the gallery"),
    "thumbnail, not indexed": (lambda g: ("GET", "/thumbnail/broken.jpg", None), 404,
                               "not an indexed image"),
    "thumbnail, huge size": (lambda g: ("GET", f"/thumbnail/{GOOD}?size=100000", None), 422,
                             "size: Input should be less than or equal to 1024"),
    "labels, no match": (lambda g: ("GET", "/labels/search?q=zzzqqq", None), 400,
                         "no ImageNet class matches 'zzzqqq'"),
    "labels, empty": (lambda g: ("GET", "/labels/search?q=%20", None), 400, "give a label"),
    "labels, no q": (lambda g: ("GET", "/labels/search", None), 422, "q: Field required"),
    "a write method": (lambda g: ("DELETE", "/info", None), 405, "Method Not Allowed"),
    "an unknown endpoint": (lambda g: ("GET", "/admin", None), 404, "Not Found"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_clear_one_line_error(server, gallery_file, case) -> None:
    build, status, detail = CASES[case]
    method, url, files = build(gallery_file)
    with server.client() as c:
        r = c.request(method, url, files=files)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert detail in body["detail"], body
    assert "\n" not in body["detail"] and "Traceback" not in r.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8600", "10.1.2.3"])
def test_requests_addressed_to_another_host_are_refused(server, host) -> None:
    """Bound to 127.0.0.1, the server ignores pages whose domain resolves there."""
    with server.client() as c:
        r = c.get("/info", headers={"host": host})
        ok = [c.get("/healthz", headers={"host": h}).status_code
              for h in ("localhost", "localhost:1234", "127.0.0.1", "[::1]:8600")]
    assert r.status_code == 400
    assert r.json()["detail"].startswith("this server answers to 127.0.0.1, ::1, localhost, "
                                         f"not to the Host {host!r}")
    assert ok == [200] * 4


def test_the_server_still_answers_after_the_bad_requests(server) -> None:
    with server.client() as c:
        r = c.get(f"/similar/{GOOD}", params={"k": 1})
    assert r.status_code == 200 and r.json()["combined"][0]["path"] == GOOD
    assert "Traceback" not in server.log.read_text()


def test_uploads_over_the_limit_are_refused(server_index, gallery_file, tmp_path) -> None:
    """A server with a 10 kB limit: a photo is refused by name; a body of more than ten
    uploads' worth is refused, unread when it declares its length."""
    srv = start_server(server_index, tmp_path, "--max-upload-mb", "0.01")
    try:
        with srv.client() as c:
            one = c.post("/search", files=[image(gallery_file)])
            body = c.post("/search", content=b"x" * 2_000_000,
                          headers={"content-type": "multipart/form-data; boundary=b"})
            head = (b'--b\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"'
                    b"\r\nContent-Type: image/jpeg\r\n\r\n")
            streamed = c.post("/search", content=iter([head] + [b"x" * 400_000] * 5),
                              headers={"content-type": "multipart/form-data; boundary=b"})
            small = c.post("/search", files=[("images", ("dot.png", _png_1x1(), "image/png"))])
            info = c.get("/info").json()
    finally:
        stop_server(srv)
    assert one.status_code == 413, one.text
    assert one.json()["detail"] == ("chelsea_crop_center.jpg: larger than the upload limit of "
                                    "10,485 bytes")
    for r in (body, streamed):
        assert r.status_code == 413, r.text
        assert r.json()["detail"] == "the request body is larger than 1,153,426 bytes"
    assert small.status_code == 200, small.text  # under the limit: searched
    assert info["max_upload_bytes"] == 10_485


def _png_1x1() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()
