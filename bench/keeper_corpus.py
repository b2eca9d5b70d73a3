"""Build the keeper corpus for ``python -m bench duplicates --keeper-corpus`` (outside the repo).

Usage: ``python -m bench.keeper_corpus WALLPAPER_DIR OUT_DIR [--originals 60]``.
WALLPAPER_DIR is the one that ``bench.copy_corpus`` reads. The copy corpus's originals are
tiles enlarged from 320-427 pixels, so they carry little detail and cannot show whether
the suggested keeper is the version a photographer would keep. Here each original is one
artwork's largest wallpaper (at least 1,920 x 1,080), its largest centred 4:3 region
*reduced* to 640 x 480: it has detail up to its own resolution, like a camera photo
downsized for the web. Each original gets the copies that a keeper must see through:
enlarged x1.5 (more pixels, no more detail), reduced x0.6, JPEG q25 saved directly (its
header says 25) and q25 saved again at 90 (its header says 90), brightened, lower
contrast, turned by 90 degrees, mirrored and cropped to 80 %. ``truth.json`` maps every
copy to its original.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
from pathlib import Path

from PIL import Image

from .copy_corpus import TILE, _stem, artwork, transforms

COPIES = ("resize_1.5", "resize_0.6", "reencode_q25", "colour_bright1.25",
          "colour_contrast0.6", "rotate_90", "mirror", "crop_80pc")


def original(im: Image.Image) -> Image.Image:
    """The largest centred region of ``TILE``'s aspect, reduced to ``TILE``."""
    w = min(im.width, im.height * TILE[0] // TILE[1])
    h = w * TILE[1] // TILE[0]
    x, y = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((x, y, x + w, y + h)).resize(TILE, Image.LANCZOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--originals", type=int, default=60)
    a = ap.parse_args()
    best: dict[str, tuple[int, str]] = {}
    for f in sorted({os.path.realpath(f) for f in glob.glob(str(a.src) + "/**/*", recursive=True)
                     if f.lower().endswith((".jpg", ".jpeg", ".png")) and os.path.isfile(f)}):
        with Image.open(f) as im:
            if im.width < 1920 or im.height < 1080:  # reduced at least 2.25x
                continue
            px = im.width * im.height
        art = artwork(os.path.relpath(f, a.src))
        if px > best.get(art, (0, ""))[0]:
            best[art] = (px, f)
    fns = transforms()
    truth: dict[str, str] = {}
    for art in sorted(best)[:a.originals]:
        with Image.open(best[art][1]) as im:
            orig = original(im.convert("RGB"))
        stem = _stem(best[art][1])
        name = f"originals/{stem}.jpg"
        (a.out / "originals").mkdir(parents=True, exist_ok=True)
        orig.save(a.out / name, quality=92)
        for tn in COPIES:
            (a.out / "copies" / tn).mkdir(parents=True, exist_ok=True)
            cp = f"copies/{tn}/{stem}.jpg"
            if tn == "reencode_q25":  # saved directly: the header keeps the quality
                buf = io.BytesIO()
                orig.save(buf, "JPEG", quality=25)
                (a.out / cp).write_bytes(buf.getvalue())
                (a.out / "copies" / "reencode_q25_resaved").mkdir(parents=True, exist_ok=True)
                rs = f"copies/reencode_q25_resaved/{stem}.jpg"
                fns[tn](orig).save(a.out / rs, quality=90)
                truth[rs] = name
            else:
                fns[tn](orig).save(a.out / cp, quality=90)
            truth[cp] = name
    (a.out / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"{len(set(truth.values()))} originals, {len(truth)} copies in {a.out}")


if __name__ == "__main__":
    main()
