"""imgrec.images: decoding every kind of input into upright RGB, refusing bad files clearly."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgrec.errors import ImageError, ImgrecError
from imgrec.features.color import histogram
from imgrec.images import (
    DRAFT_MIN,
    MAX_PIXELS,
    WORK_SIZE,
    center_crop,
    load_image,
    prepare,
    scan,
    scan_entries,
    thumbnail,
)


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kwargs) -> Path:
    img.save(path, fmt, **kwargs)
    return path


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


# ---- every source kind gives the same pixels ----------------------------------------------

def test_path_bytes_file_and_pil_agree(photos, tmp_path):
    path = _save(photos["chelsea"], tmp_path / "cat.jpg", quality=92)
    data = path.read_bytes()
    ref, info = load_image(path)
    assert ref.mode == "RGB" and ref.size == photos["chelsea"].size
    assert (info.format, info.mode, (info.width, info.height)) == ("JPEG", "RGB", ref.size)
    with open(path, "rb") as fh:
        from_file = load_image(fh)[0]
    fh2 = io.BytesIO(data)
    fh2.read(10)  # a file object already read from is rewound
    for got in (load_image(str(path))[0], load_image(data)[0], from_file, load_image(fh2)[0],
                load_image(Image.open(path))[0]):
        assert got.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


# ---- bad files: each refused with its reason, never a crash ------------------------------

def test_zero_byte_jpeg(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("keep", [0.5, 0.9, 600, 60])
def test_truncated_jpeg(photos, tmp_path, keep):
    data = (tmp_path / "x.jpg")
    photos["astronaut"].save(data, quality=90)
    full = data.read_bytes()
    cut = int(len(full) * keep) if isinstance(keep, float) else keep
    (tmp_path / "cut.jpg").write_bytes(full[:cut])
    with pytest.raises(ImageError, match=r"(?i)truncated|corrupt"):
        load_image(tmp_path / "cut.jpg")


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("shopping list: eggs, milk\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.png")


@pytest.mark.parametrize("side", [30000, 12500])
def test_decompression_bomb_is_refused(tmp_path, png_header, side):
    # 30000^2 trips Pillow's own bomb guard; 12500^2 (156 Mpx) lies between imgrec's
    # MAX_PIXELS and Pillow's limit, so imgrec's own check must catch it
    assert side * side > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    assert path.stat().st_size < 200
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


# ---- odd but valid images all become RGB of the right size -----------------------------------

def test_one_pixel_image(tmp_path):
    path = _save(Image.new("RGB", (1, 1), (10, 200, 30)), tmp_path / "dot.png")
    rgb, info = load_image(path)
    assert rgb.size == (1, 1) and (info.width, info.height) == (1, 1)
    work = prepare(rgb)
    assert work.size == (WORK_SIZE, WORK_SIZE)
    assert np.all(np.asarray(work) == (10, 200, 30))
    assert center_crop(work, 224).shape == (224, 224, 3)


def _alpha_mask(size: tuple[int, int]) -> Image.Image:
    """Left third transparent, middle third half transparent, right third opaque."""
    w, h = size
    a = np.full((h, w), 255, np.uint8)
    a[:, : w // 3] = 0
    a[:, w // 3: 2 * w // 3] = 128
    return Image.fromarray(a, "L")


def _check_on_white(rgb: Image.Image, base: np.ndarray) -> None:
    """``rgb`` is ``base`` composited with :func:`_alpha_mask` onto white."""
    h, w = base.shape[:2]
    got = _arr(rgb)
    assert rgb.mode == "RGB" and rgb.size == (w, h)
    assert np.all(got[:, : w // 3 - 1] == 255)  # transparent -> white
    np.testing.assert_allclose(got[:, 2 * w // 3 + 1:], base[:, 2 * w // 3 + 1:], atol=1)
    mid = got[:, w // 3 + 1: 2 * w // 3 - 1]
    expect = base[:, w // 3 + 1: 2 * w // 3 - 1] * (128 / 255) + 255 * (127 / 255)
    np.testing.assert_allclose(mid, expect, atol=2)


def test_rgba_composited_on_white(photos, tmp_path):
    img = photos["coffee"].copy()
    img.putalpha(_alpha_mask(img.size))
    rgb, info = load_image(_save(img, tmp_path / "a.png"))
    assert info.mode == "RGBA"
    _check_on_white(rgb, _arr(photos["coffee"]))


def test_la_composited_on_white(photos, tmp_path):
    grey = photos["coffee"].convert("L")
    img = grey.convert("LA")
    img.putalpha(_alpha_mask(img.size))
    rgb, info = load_image(_save(img, tmp_path / "la.png"))
    assert info.mode == "LA"
    got = _arr(rgb)
    assert np.array_equal(got[..., 0], got[..., 1]) and np.array_equal(got[..., 1], got[..., 2])
    _check_on_white(rgb, np.repeat(_arr(grey)[..., None], 3, axis=2))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency(photos, tmp_path, fmt):
    pal = photos["chelsea"].quantize(32)
    idx = np.asarray(pal)
    assert 0.01 < (idx == 0).mean() < 0.5
    path = _save(pal, tmp_path / f"p.{fmt.lower()}", fmt, transparency=0)
    rgb, info = load_image(path)
    assert info.mode == "P" and rgb.mode == "RGB" and rgb.size == pal.size
    got = _arr(rgb)
    assert np.all(got[idx == 0] == 255)  # the transparent palette entry -> white
    opaque = _arr(pal.convert("RGB"))
    np.testing.assert_array_equal(got[idx != 0], opaque[idx != 0])


def test_palette_without_transparency(photos, tmp_path):
    pal = photos["flower"].quantize(64)
    rgb, _ = load_image(_save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(np.asarray(rgb), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("fmt, tol", [("JPEG", 6.0), ("TIFF", 0.0)])
def test_cmyk(photos, tmp_path, fmt, tol):
    cmyk = photos["china"].convert("CMYK")
    rgb, info = load_image(_save(cmyk, tmp_path / f"c.{fmt.lower()}", fmt))
    assert info.mode == "CMYK" and rgb.mode == "RGB" and rgb.size == cmyk.size
    diff = np.abs(_arr(rgb) - _arr(cmyk.convert("RGB"))).mean()
    assert diff <= tol


def test_sixteen_bit_grey_png(tmp_path):
    a = (np.arange(80 * 60, dtype=np.int64).reshape(60, 80) * 13 % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # stored as 16-bit grey
    rgb, info = load_image(path)
    assert info.mode.startswith("I") and rgb.mode == "RGB" and rgb.size == (80, 60)
    got = np.asarray(rgb).astype(np.int64)
    expect = np.rint(a / 257.0).astype(np.int64)
    for c in range(3):
        assert np.abs(got[..., c] - expect).max() <= 1


def test_grey_jpeg(photos, tmp_path):
    grey = photos["grace_hopper"].convert("L")
    rgb, info = load_image(_save(grey, tmp_path / "g.jpg", quality=95))
    got = np.asarray(rgb)
    assert info.mode == "L" and rgb.mode == "RGB"
    assert np.array_equal(got[..., 0], got[..., 2])
    assert np.abs(got[..., 0].astype(float) - _arr(grey)).mean() < 2


# Pixels stored so that applying the EXIF orientation shows the original upright.
_STORE_AS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
             6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", sorted(_STORE_AS))
def test_exif_orientation_is_applied(photos, tmp_path, orientation):
    upright = photos["chelsea"]  # 320 x 213: landscape, so a missed rotation shows
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    upright.transpose(_STORE_AS[orientation]).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        stored_size = raw.size
    assert (stored_size != upright.size) == (orientation >= 5)
    rgb, info = load_image(path)
    assert rgb.size == upright.size
    assert (info.width, info.height) == upright.size  # the catalog records the upright size
    assert f'"Orientation": {orientation}' in info.exif
    assert np.abs(_arr(rgb) - _arr(upright)).mean() < 3.0
    if stored_size == upright.size:  # flips and 180 degrees: the tag was not ignored
        raw_pixels = _arr(Image.open(path).convert("RGB"))
        assert np.abs(raw_pixels - _arr(upright)).mean() > 10


def test_animated_gif_gives_first_frame(tmp_path):
    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]
    frames = [Image.new("RGB", (48, 32), c) for c in colours]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)
    with Image.open(path) as im:
        assert im.n_frames == 3
    rgb, info = load_image(path)
    assert info.format == "GIF" and rgb.size == (48, 32)
    got = np.asarray(rgb).reshape(-1, 3)
    assert np.abs(got.astype(int) - colours[0]).max() <= 8


def test_large_jpeg_is_draft_decoded(full_photos, tmp_path):
    big = full_photos["astronaut"].resize((2400, 2400))
    path = _save(big, tmp_path / "big.jpg", quality=92)
    fast, info = load_image(path)
    slow, _ = load_image(path, draft=False)
    assert (info.width, info.height) == (2400, 2400)  # the file's true size is recorded
    assert slow.size == (2400, 2400)
    assert DRAFT_MIN <= min(fast.size) < 2 * DRAFT_MIN  # the smallest DCT scale that keeps
    assert min(fast.size) == 600  # >= 448 px: 2400 / 4 (2400 / 8 = 300 would be too small)
    hf, hs = histogram(prepare(fast)), histogram(prepare(slow))
    assert 0.5 * np.sum((hf - hs) ** 2 / np.maximum(hf + hs, 1e-12)) < 0.05


# ---- working image, crop, thumbnail ----------------------------------------------------------

@pytest.mark.parametrize("size, expect", [
    ((451, 300), (385, 256)),
    ((300, 451), (256, 385)),
    ((256, 256), (256, 256)),
    ((10, 20), (256, 512)),
    ((2000, 100), (1024, 256)),  # a panorama is centre-cropped to 4:1 first
    ((100, 2000), (256, 1024)),
])
def test_prepare_sizes(size, expect):
    work = prepare(Image.new("RGB", size, (1, 2, 3)))
    assert work.size == expect and work.mode == "RGB"


def test_prepare_panorama_keeps_the_centre():
    a = np.zeros((100, 2000, 3), np.uint8)
    a[:, 800:1200] = 255  # the middle 400 columns are white
    work = np.asarray(prepare(Image.fromarray(a)))
    assert work.mean() > 250


def test_center_crop_is_central():
    a = np.zeros((300, 400, 3), np.uint8)
    a[150, 200] = 255
    crop = center_crop(Image.fromarray(a), 224)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert crop[150 - 38, 200 - 88].tolist() == [255, 255, 255]


def test_thumbnail_is_upright(photos, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "r.jpg"
    photos["coffee"].transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes())
    th = thumbnail(path, 100)
    w, h = photos["coffee"].size
    assert th.mode == "RGB" and th.size[0] == 100 and abs(th.size[1] - 100 * h / w) <= 1


# ---- folder scan ------------------------------------------------------------------------

def test_scan(tmp_path):
    root = tmp_path / "g"
    px = Image.new("RGB", (4, 4))
    for rel in ["b/2.jpg", "b/1.PNG", "a.jpeg", "c/d/e.webp", "x.gif", "y.bmp", "z.tif",
                "z2.tiff", ".hidden.jpg", ".cache/in.jpg", "notes.txt", "c/readme.md"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    px.save(outside)
    os.symlink(outside, root / "link_out.jpg")
    os.symlink(root / "a.jpeg", root / "link_in.jpg")
    got = [p.relative_to(root.resolve()).as_posix() for p in scan(root)]
    assert got == ["a.jpeg", "link_in.jpg", "x.gif", "y.bmp", "z.tif", "z2.tiff",
                   "b/1.PNG", "b/2.jpg", "c/d/e.webp"]


def _mode_image(grey: np.ndarray, mode: str) -> Image.Image:
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257, "I")  # 16-bit range in 32 bits
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255.0, "F")  # 0..1 floats
    if mode == "I;16B":
        return Image.frombytes("I;16B", grey.shape[::-1], (grey.astype(">u2") * 257).tobytes())
    return Image.fromarray(grey, "L").convert(mode)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "I", "F", "I;16B", "RGBX"])
def test_other_tiff_modes(photos, tmp_path, mode):
    grey = np.asarray(photos["astronaut"].convert("L"))
    path = tmp_path / "m.tif"
    _mode_image(grey, mode).save(path)
    rgb, info = load_image(path)
    assert info.mode == mode.replace("RGBX", "RGB")
    assert rgb.mode == "RGB" and rgb.size == grey.shape[::-1]
    assert np.abs(_arr(rgb.convert("L")) - grey).mean() < 1.5


# ---- exclude rules --------------------------------------------------------------------------

def _tree(root: Path, rels: list[str]) -> Path:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def _rels(root: Path, **kw) -> list[str]:
    return [p.relative_to(root.resolve()).as_posix() for p in scan(root, **kw)]


def test_exclude_globs_and_imgrecignore(tmp_path):
    root = _tree(tmp_path / "g", ["a.jpg", "b.png", "raw/x.jpg", "keep/y.png", "keep/z.png",
                                  "trip/drafts/d.jpg", "trip/t.jpg", "top.jpg", "trip/top.jpg"])
    assert len(_rels(root)) == 9
    (root / ".imgrecignore").write_text("# camera dumps\nraw/\n*.png\n!keep/y.png\n/top.jpg\n")
    assert _rels(root) == ["a.jpg", "keep/y.png", "trip/t.jpg", "trip/top.jpg",
                           "trip/drafts/d.jpg"]
    assert _rels(root, exclude=["drafts/", "!b.png"]) == ["a.jpg", "b.png", "keep/y.png",
                                                          "trip/t.jpg", "trip/top.jpg"]
    assert len(_rels(root, ignore_file=None)) == 9  # the file can be turned off
    assert _rels(root, exclude=["*.jpg"], ignore_file=None) == ["b.png", "keep/y.png",
                                                                "keep/z.png"]


def test_excluded_problems_are_not_reported(tmp_path):
    root = _tree(tmp_path / "g", ["a.jpg"])
    os.symlink("loop.jpg", root / "loop.jpg")
    (root / "pipes").mkdir()
    os.mkfifo(root / "pipes" / "p.jpg")
    assert [e.rel for e in scan_entries(root) if e.problem] == ["loop.jpg", "pipes/p.jpg"]
    got = list(scan_entries(root, exclude=["loop.jpg", "pipes/"]))
    assert [(e.rel, e.problem) for e in got] == [("a.jpg", None)]


def test_bad_exclude_rules_are_one_line_errors(tmp_path):
    root = _tree(tmp_path / "g", ["a.jpg"])
    with pytest.raises(ImgrecError, match="invalid exclude rule"):
        list(scan(root, exclude=["\\"]))
    with pytest.raises(ImgrecError, match="must be text"):
        list(scan(root, exclude=[3]))
    (root / ".imgrecignore").mkdir()
    with pytest.raises(ImgrecError, match=r"\.imgrecignore: cannot read the exclude rules"):
        list(scan(root))


def test_date_taken_is_kept_from_the_exif_sub_ifd(photos, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif.get_ifd(0x8769)[0x9003] = "2019:07:14 18:30:05"  # DateTimeOriginal
    exif.get_ifd(0x8769)[0x9011] = "+02:00"  # OffsetTimeOriginal
    path = tmp_path / "d.jpg"
    photos["coffee"].save(path, exif=exif.tobytes())
    got = json.loads(load_image(path)[1].exif)
    assert got == {"Make": "Canon", "DateTimeOriginal": "2019:07:14 18:30:05",
                   "OffsetTimeOriginal": "+02:00"}
