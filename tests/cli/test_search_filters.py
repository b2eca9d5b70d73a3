"""imgrec search's filter flags (--in, --after, --before, --min-size, --format, --orientation,
--has-label) on a built index, and their one-line refusals (exit 2)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imgrec import build_index
from imgrec.cli.main import main as cli_main
from imgrec.cli.parser import build_parser

#: path -> (size, EXIF date or None, format)
FILES = {"2018/a.jpg": ((300, 200), "2018:05:01 10:00:00", "JPEG"),
         "2018/b.png": ((120, 200), None, "PNG"),
         "2019/rome/c.jpg": ((800, 600), "2019:07:14 18:02:11", "JPEG"),
         "2019/rome/d.jpg": ((200, 200), "2019:12:31 23:59:59", "JPEG"),
         "2019/e.webp": ((640, 480), None, "WEBP"),
         "2020/f.jpg": ((100, 400), "2020:01:01 00:00:00", "JPEG")}


@pytest.fixture(scope="module")
def ix(tmp_path_factory):
    from support import TinyEmbedder

    root = tmp_path_factory.mktemp("filters")
    g = root / "g"
    for i, (rel, (size, date, fmt)) in enumerate(sorted(FILES.items())):
        ex = Image.Exif()
        if date:
            ex.get_ifd(0x8769)[0x9003] = date
        buf = io.BytesIO()
        im = Image.new("RGB", size, (40 * i % 255, 90, 200 - 30 * i))
        im.save(buf, fmt, **({"exif": ex.tobytes()} if fmt == "JPEG" else {}))
        (g / rel).parent.mkdir(parents=True, exist_ok=True)
        (g / rel).write_bytes(buf.getvalue())
    import os

    os.utime(g / "2018/b.png", ns=(1_531_000_000 * 10**9,) * 2)  # July 2018
    os.utime(g / "2019/e.webp", ns=(1_700_000_000 * 10**9,) * 2)  # November 2023
    build_index(g, root / "ix", embedder=TinyEmbedder(), workers=0)
    return root / "ix"


def _found(ix, capsys, *flags) -> set[str]:
    assert cli_main(["search", "@2019/rome/c.jpg", "-k", "50", "--json", "--index", str(ix),
                     *flags]) == 0
    return {h["path"] for h in json.loads(capsys.readouterr().out)["combined"]}


def test_each_filter(ix, capsys):
    assert len(_found(ix, capsys)) == 6
    assert _found(ix, capsys, "--in", "2019/rome") == {"2019/rome/c.jpg", "2019/rome/d.jpg"}
    assert _found(ix, capsys, "--in", "2018", "--in", "2020/") == {
        "2018/a.jpg", "2018/b.png", "2020/f.jpg"}
    assert _found(ix, capsys, "--after", "2019", "--before", "2020") == {
        "2019/rome/c.jpg", "2019/rome/d.jpg"}  # e.webp's file time is 2023
    assert _found(ix, capsys, "--before", "2018-06") == {"2018/a.jpg"}
    assert _found(ix, capsys, "--after", "2018-07-01", "--before", "2018-08") == {"2018/b.png"}
    assert _found(ix, capsys, "--min-size", "600x450") == {"2019/rome/c.jpg", "2019/e.webp"}
    assert _found(ix, capsys, "--format", "png", "--format", "webp") == {
        "2018/b.png", "2019/e.webp"}
    assert _found(ix, capsys, "--format", "jpg", "--orientation", "portrait") == {"2020/f.jpg"}
    assert _found(ix, capsys, "--orientation", "square") == {"2019/rome/d.jpg"}


@pytest.mark.parametrize("flags, message", [
    (["--min-size", "big"], "--min-size must be WIDTHxHEIGHT"),
    (["--after", "last year"], "--after: after must be a date"),
    (["--before", "2019-02-30"], "--before: before must be a date"),
    (["--orientation", "round"], "invalid choice"),
    (["--in", "../elsewhere"], "inside the gallery"),
    (["--has-label", "dog"], "holds no ImageNet labels"),
])
def test_bad_values_are_one_line_errors(ix, capsys, flags, message):
    try:
        code = cli_main(["search", "@2018/a.jpg", "--index", str(ix), *flags])
    except SystemExit as exc:  # the parser's own refusal
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_every_filter_flag_has_help_and_a_default(capsys):
    p = build_parser()
    args = p.parse_args(["search", "q.jpg"])
    assert (args.folders, args.after, args.before, args.min_size, args.formats,
            args.orientation, args.has_label) == (None,) * 7
    with pytest.raises(SystemExit):
        p.parse_args(["search", "-h"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--in FOLDER", "--after DATE", "--before DATE", "--min-size WxH",
                 "--format F", "--orientation", "--has-label TEXT"):
        part = text.rsplit(flag, 1)[1]  # the help entry, after the usage line
        assert "(default:" in part.split(" --", 1)[0], flag
