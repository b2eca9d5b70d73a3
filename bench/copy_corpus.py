"""Build the copy-detection corpus for ``python -m bench duplicates`` (outside the repo).

Usage: ``python -m bench.copy_corpus WALLPAPER_DIR OUT_DIR [--originals 60]``. WALLPAPER_DIR
holds the unpacked Debian wallpaper packages that shared/corpus/make_photo_corpus.sh uses
(plasma-workspace-wallpapers, gnome-backgrounds, mate-backgrounds). Each wallpaper is cut
into a 6 x 4 grid of non-overlapping tiles (distinct pictures, often alike: the hard
negatives); the first tile of ``--originals`` wallpapers is an original, every other tile a
distractor. Each original gets copies by every transformation at a mild and a strong
setting (``copies/<transform>/``); ``truth.json`` maps every copy to its original, and
``sources.json`` every original and distractor stem to its wallpaper file (the packages ship
some artworks at several resolutions or in colour variants: the benchmark reads this to
tell one artwork's tiles from different pictures). ``--sources-only`` writes
``sources.json`` for an existing OUT_DIR without rebuilding it.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import re
import zlib
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

TILE = (640, 480)


def transforms() -> dict[str, object]:
    """name -> function(image) -> image (both settings of every transformation)."""
    def jpeg(q):
        def f(im):
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=q)
            return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        return f

    def resize(s):
        return lambda im: im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)

    def crop(side, where):
        def f(im):
            w, h = round(im.width * side), round(im.height * side)
            x = 0 if where == "corner" else (im.width - w) // 2
            y = 0 if where == "corner" else (im.height - h) // 2
            return im.crop((x, y, x + w, y + h))
        return f

    return {
        "reencode_q70": jpeg(70), "reencode_q25": jpeg(25),
        "resize_0.6": resize(0.6), "resize_0.3": resize(0.3), "resize_1.5": resize(1.5),
        "rotate_90": lambda im: im.transpose(Image.ROTATE_90),
        "rotate_180": lambda im: im.transpose(Image.ROTATE_180),
        "rotate_270": lambda im: im.transpose(Image.ROTATE_270),
        "mirror": ImageOps.mirror, "flip": ImageOps.flip,
        "colour_bright1.25": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
        "colour_contrast0.6": lambda im: ImageEnhance.Contrast(im).enhance(0.6),
        "colour_sat0.3": lambda im: ImageEnhance.Color(im).enhance(0.3),
        "colour_gamma": lambda im: im.point(lambda v: round(255 * (v / 255) ** 0.6)),
        "crop_80pc": crop(0.894, "centre"),  # 80 % of the frame's area
        "crop_50pc_centre": crop(0.7072, "centre"),  # 50 %
        "crop_50pc_corner": crop(0.7072, "corner"),
    }


def artwork(path: str) -> str:
    """The artwork of a wallpaper file (a path relative to the wallpaper folder): its
    package folder (``.../NAME/contents/images/WxH.jpg``), else its name less the size."""
    parts = Path(path).parts
    return (parts[parts.index("contents") - 1] if "contents" in parts
            else re.sub(r"_\d+x\d+$", "", Path(path).stem))


def _stem(f: str) -> str:
    """The corpus name of a wallpaper file (its stem, cut, and a checksum of its path)."""
    return Path(f).stem.replace(" ", "_")[:40] + f"_{zlib.crc32(f.encode()) % 10000:04d}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--originals", type=int, default=60)
    ap.add_argument("--sources-only", action="store_true")
    a = ap.parse_args()
    files = sorted({os.path.realpath(f) for f in glob.glob(str(a.src) + "/**/*", recursive=True)
                    if f.lower().endswith((".jpg", ".jpeg", ".png")) and os.path.isfile(f)})
    sources = {_stem(f): os.path.relpath(f, a.src) for f in files}
    if a.sources_only:
        (a.out / "sources.json").write_text(json.dumps(sources, indent=1))
        return
    truth: dict[str, str] = {}
    n_orig = 0
    for f in files:
        with Image.open(f) as im:
            if im.width < 1280 or im.height < 720:
                continue
            im = im.convert("RGB")
        tw, th = im.width // 6, im.height // 4
        tiles = [im.crop((c * tw, r * th, (c + 1) * tw, (r + 1) * th)).resize(TILE, Image.LANCZOS)
                 for r in range(4) for c in range(6)]
        stem = _stem(f)
        for t, tile in enumerate(tiles):
            if max(h - lo2 for lo2, h in tile.resize((64, 48)).getextrema()) < 40:
                continue  # a flat patch is no photo
            if t == 0 and n_orig < a.originals:
                name = f"originals/{stem}.jpg"
                (a.out / "originals").mkdir(parents=True, exist_ok=True)
                tile.save(a.out / name, quality=92)
                n_orig += 1
                for tn, fn in transforms().items():
                    cp = f"copies/{tn}/{stem}.jpg"
                    (a.out / "copies" / tn).mkdir(parents=True, exist_ok=True)
                    fn(tile).save(a.out / cp, quality=90)
                    truth[cp] = name
            else:
                (a.out / "distractors").mkdir(parents=True, exist_ok=True)
                tile.save(a.out / f"distractors/{stem}_t{t:02d}.jpg", quality=92)
    (a.out / "truth.json").write_text(json.dumps(truth, indent=1))
    (a.out / "sources.json").write_text(json.dumps(sources, indent=1))
    print(f"{n_orig} originals, {len(truth)} copies, "
          f"{len(list((a.out / 'distractors').glob('*')))} distractors in {a.out}")


if __name__ == "__main__":
    main()
