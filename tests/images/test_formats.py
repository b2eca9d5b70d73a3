"""HEIC, AVIF, JPEG 2000 and camera RAW: decoded upright, through the same features path.

Every file is written here from a real photo: HEIC by pillow-heif, AVIF and JPEG 2000 by
Pillow, DNG by ``tests/dng.py`` (a Bayer mosaic of the photo plus an embedded JPEG preview,
which LibRaw reads as it reads a camera's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dng import write_dng
from PIL import Image

from imgrec import Index
from imgrec.build.decode import process
from imgrec.errors import ImageError, ImgrecError
from imgrec.images import DRAFT_MIN, load_image
from imgrec.images import SUFFIXES as SCANNED

ROT = Image.Transpose.ROTATE_90  # pixels stored this way show upright with orientation 6


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, float) - np.asarray(b.convert("RGB"), float)).mean())


@pytest.fixture(scope="module")
def upright(full_photos) -> Image.Image:
    """A landscape photo (512 x 460) large enough for a RAW preview to be used."""
    return full_photos["astronaut"].crop((0, 20, 512, 480))


def _write(kind: str, img: Image.Image, folder: Path, orientation: int = 1) -> Path:
    stored = img.transpose(ROT) if orientation == 6 else img
    path = folder / {"heic": "p.heic", "avif": "p.avif", "jp2": "p.jp2", "j2k": "p.j2k",
                     "jpx": "p.jpx", "dng-preview": "p.dng", "dng-demosaic": "q.dng"}[kind]
    if kind == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
        stored.save(path, "HEIF", quality=90, exif=_exif(orientation))
    elif kind == "avif":
        stored.save(path, "AVIF", quality=90, exif=_exif(orientation))
    elif kind in ("jp2", "j2k", "jpx"):
        stored.save(path, "JPEG2000", no_jp2=kind == "j2k")
    else:
        small = stored.resize((stored.width // 2, stored.height // 2))
        write_dng(path, stored, stored if kind == "dng-preview" else small,
                  orientation=orientation)
    return path


KINDS = {"heic": ("HEIF", "heif", 3.0), "avif": ("AVIF", "pillow", 3.0),
         "jp2": ("JPEG2000", "pillow", 0.5), "j2k": ("JPEG2000", "pillow", 0.5),
         "jpx": ("JPEG2000", "pillow", 0.5), "dng-preview": ("DNG", "raw-preview", 3.0),
         "dng-demosaic": ("DNG", "raw-demosaic", 12.0)}


def test_every_suffix_is_scanned():
    for s in (".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpx", ".dng", ".cr2", ".cr3", ".nef",
              ".arw", ".orf", ".rw2", ".raf", ".pef", ".srw"):
        assert s in SCANNED


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_decodes_like_the_photo(upright, tmp_path, kind):
    fmt, decoder, tol = KINDS[kind]
    rgb, info = load_image(_write(kind, upright, tmp_path))
    assert (info.format, info.decoder) == (fmt, decoder)
    assert (info.width, info.height) == upright.size and rgb.mode == "RGB"
    assert _diff(rgb, upright) < tol  # the photo itself, not some other picture


@pytest.mark.parametrize("kind", ["heic", "avif", "dng-preview", "dng-demosaic"])
def test_orientation_is_honoured(upright, tmp_path, kind):
    _, decoder, tol = KINDS[kind]
    path = _write(kind, upright, tmp_path, orientation=6)
    rgb, info = load_image(path)
    assert info.decoder == decoder
    assert rgb.size == upright.size and (info.width, info.height) == upright.size
    assert json.loads(info.exif)["Orientation"] == 6
    assert _diff(rgb, upright) < tol
    assert _diff(rgb, upright.transpose(Image.Transpose.ROTATE_180)) > 3 * tol


def test_each_format_finds_itself_through_the_build_path(upright, photos, tmp_path):
    gallery = tmp_path / "g"
    kinds = sorted(KINDS)
    paths = []
    for i, kind in enumerate(kinds):  # a different photo in each file
        img = upright if kind.startswith("dng") else list(photos.values())[i % len(photos)]
        folder = gallery / kind
        folder.mkdir(parents=True)
        paths.append(_write(kind, img, folder))
    results = [process(str(p), p.relative_to(gallery).as_posix(), 0, 0, 224) for p in paths]
    assert [r.error for r in results] == [None] * len(kinds)
    assert [r.decoder for r in results] == [KINDS[k][1] for k in kinds]
    emb = np.eye(len(kinds), 16, dtype=np.float32)
    idx = Index.from_arrays(tmp_path / "ix", [r.rel for r in results], emb,
                            np.stack([r.hist for r in results]), model="tiny-test",
                            gallery_root=gallery, pca_components=2)
    for path, res in zip(paths, results, strict=True):
        top = idx.search([str(path)], method="color", k=1).per_query[0][0]
        assert top.path == res.rel and top.distance == pytest.approx(0.0, abs=1e-9)


def test_raw_preview_or_demosaic_by_size(upright, tmp_path):
    big = upright.resize((1024, 920))
    # a small preview: demosaic; at half size where that still gives >= 448 px
    rgb, info = load_image(write_dng(tmp_path / "a.dng", big, big.resize((256, 230))))
    assert info.decoder == "raw-demosaic" and rgb.size == (512, 460)
    assert (info.width, info.height) == (1024, 920)
    rgb, _ = load_image(tmp_path / "a.dng", draft=False)
    assert rgb.size == (1024, 920)
    # half size would be too small (460 // 2 < 448): full size
    rgb, info = load_image(write_dng(tmp_path / "b.dng", upright, upright.resize((200, 180))))
    assert info.decoder == "raw-demosaic" and rgb.size == upright.size
    # a preview whose shorter side reaches 448 px is used
    rgb, info = load_image(write_dng(tmp_path / "c.dng", big, big.resize((500, 450))))
    assert info.decoder == "raw-preview" and rgb.size == (500, 450) and min(rgb.size) >= DRAFT_MIN
    assert (info.width, info.height) == (1024, 920)  # the sensor's size is recorded
    # a DNG given as bytes (an upload) is still recognised by its content
    _, info = load_image((tmp_path / "c.dng").read_bytes())
    assert (info.format, info.decoder) == ("DNG", "raw-preview")


def test_damaged_raw_is_refused_with_its_reason(upright, tmp_path):
    path = write_dng(tmp_path / "a.dng", upright, None)
    data = path.read_bytes()
    (tmp_path / "cut.nef").write_bytes(data[:200])
    with pytest.raises(ImageError, match=r"camera RAW \(NEF\)"):
        load_image(tmp_path / "cut.nef")
    res = process(str(tmp_path / "cut.nef"), "cut.nef", 0, 0, 224)
    assert res.error and "camera RAW" in res.error and res.hist is None


def test_missing_decoder_packages_are_named(upright, tmp_path, monkeypatch):
    heic = _write("heic", upright, tmp_path)
    dng = _write("dng-preview", upright, tmp_path)
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now fails
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    with pytest.raises(ImageError, match=r"needs the rawpy package"):
        load_image(dng)
    with pytest.raises(ImageError, match=r"needs the pillow-heif package"):
        load_image(heic)
    res = process(str(heic), "p.heic", 0, 0, 224)
    assert "pillow-heif" in res.error


def test_heif_is_registered_at_the_first_heif_file_not_at_import(upright, tmp_path):
    heic = _write("heic", upright, tmp_path)
    code = ("import imgrec, imgrec.images as m; from PIL import Image\n"
            "before = 'HEIF' in Image.OPEN\n"
            f"m.load_image({str(tmp_path / 'x.png')!r})\n"
            "after_png = 'HEIF' in Image.OPEN\n"
            f"print(before, after_png, m.load_image({str(heic)!r})[1].decoder)\n")
    upright.save(tmp_path / "x.png")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "heif"]


def test_max_megapixels(photos, tmp_path):
    path = tmp_path / "c.png"
    photos["chelsea"].save(path)  # 320 x 213 = 0.07 megapixels
    with pytest.raises(ImageError, match=r"too large: 320x213 pixels.*--max-megapixels"):
        load_image(path, max_megapixels=0.05)
    assert load_image(path, max_megapixels=0.07)[0].size == (320, 213)
    res = process(str(path), "c.png", 0, 0, 224, 0.05)
    assert res.error.startswith("too large") and "--max-megapixels" in res.error
    assert process(str(path), "c.png", 0, 0, 224, 1).error is None
    for bad in (0, -1, float("nan"), float("inf"), "10", True, None):
        with pytest.raises(ImgrecError, match="max_megapixels"):
            load_image(path, max_megapixels=bad)


def test_default_limit_names_the_option(tmp_path, png_header):
    path = tmp_path / "bomb.png"
    for side in (12500, 30000):  # imgrec's own check, and Pillow's bomb guard beyond it
        path.write_bytes(png_header(side, side))
        with pytest.raises(ImageError, match=r"too large.*limit 150; raise it with --max-megapixels"):
            load_image(path)


def test_a_raised_limit_goes_past_pillows_own(tmp_path, png_header):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(13500, 13500))  # 182 Mpx: over Pillow's 179 Mpx guard
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"too large: 182 megapixels"):
        load_image(path, max_megapixels=180)
    with pytest.raises(ImageError) as got:  # opened; the data itself is missing
        load_image(path, max_megapixels=200)
    assert "too large" not in str(got.value)
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's setting is left as it was
