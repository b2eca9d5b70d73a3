"""Build the photo copy-detection set from Debian's wallpaper photos (fixed seed, outside the repo).

Usage: ``python -m bench.make_photos [--out DIR] [--originals 40] [--distractors 240]``.
The wallpapers of ``shared/corpus/make_photo_corpus.sh`` (plasma-workspace-wallpapers,
gnome-backgrounds, mate-backgrounds) are fetched with ``apt-get download``; each original is
a 1024x768 crop of a different wallpaper; every original gets one copy per transformation in
:data:`TRANSFORMS`; distractors are crops of the remaining wallpapers and crops of the
originals' wallpapers that overlap their original by less than 10 %. Written as
``OUT/gallery/{orig,distractor}_NNNN.jpg`` and ``OUT/copies/orig_NNNN__<transform>.jpg``.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from .data import data_dir

PACKAGES = ["plasma-workspace-wallpapers", "gnome-backgrounds", "mate-backgrounds"]
W, H = 1024, 768


def _crop(frac: float, rng: random.Random) -> Callable[[Image.Image], Image.Image]:
    def f(im: Image.Image) -> Image.Image:
        s = frac ** 0.5  # area fraction -> side fraction
        w, h = round(im.width * s), round(im.height * s)
        x, y = rng.randrange(im.width - w + 1), rng.randrange(im.height - h + 1)
        return im.crop((x, y, x + w, y + h))
    return f


def transforms(rng: random.Random) -> dict[str, Callable[[Image.Image], Image.Image]]:
    """Name -> transformation of an original (JPEG quality is applied on save)."""
    return {
        "reencode_q30": lambda im: im,
        "resize_50": lambda im: im.resize((im.width // 2, im.height // 2), Image.BICUBIC),
        "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
        "rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
        "rot270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
        "mirror": ImageOps.mirror,
        "crop_70": _crop(0.7, rng),
        "crop_50": _crop(0.5, rng),
        "colour": lambda im: ImageEnhance.Brightness(ImageEnhance.Color(im).enhance(1.5)).enhance(1.2),
        "contrast": lambda im: ImageEnhance.Contrast(im).enhance(0.6),
    }


def fetch(work: Path) -> list[str]:
    def download() -> bool:
        return subprocess.run(["apt-get", "download", *PACKAGES], cwd=work,
                              capture_output=True).returncode == 0
    if not download():
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        if not download():
            raise SystemExit("apt-get download of the wallpaper packages failed")
    for deb in work.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(work / "x")], check=True)
    return sources(str(work / "x"))


def sources(src: str) -> list[str]:
    """Photographic wallpapers (as make_photo_corpus.sh picks them): wide, RGB, not flat."""
    files = sorted({os.path.realpath(f) for f in glob.glob(src + "/**/*", recursive=True)
                    if f.lower().endswith((".jpg", ".jpeg", ".png")) and os.path.isfile(f)})
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                if im.width < 1600 or im.mode in ("RGBA", "LA", "P"):
                    continue
                small = im.convert("RGB").resize((64, 48))
            if max(hi - lo for lo, hi in small.getextrema()) > 60:
                out.append(f)
        except Exception:
            pass
    return out


def _random_box(im: Image.Image, rng: random.Random) -> tuple[float, float, float]:
    """A crop position (scale, x, y): the source scaled by ``scale`` and cut at (x, y)."""
    s = max(W / im.width, H / im.height, rng.uniform(0.35, 0.6))
    x = rng.uniform(0, max(0.0, im.width * s - W))
    y = rng.uniform(0, max(0.0, im.height * s - H))
    return s, x, y


def _cut(im: Image.Image, pos: tuple[float, float, float]) -> Image.Image:
    """The W x H crop at ``pos``, resampled from the source region only."""
    s, x, y = pos
    box = (x / s, y / s, min(im.width, (x + W) / s), min(im.height, (y + H) / s))
    return im.resize((W, H), Image.BICUBIC, box=box)


def _overlap(a: tuple, b: tuple) -> float:
    """Overlap of two crops (scale, x, y) of one source, as a share of a crop's area."""
    ax, ay, aw, ah = a[1] / a[0], a[2] / a[0], W / a[0], H / a[0]
    bx, by, bw, bh = b[1] / b[0], b[2] / b[0], W / b[0], H / b[0]
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / min(aw * ah, bw * bh)


def build(srcs: list[str], out: Path, n_orig: int, n_distract: int, seed: int) -> None:
    rng = random.Random(seed)
    order = srcs[:]
    rng.shuffle(order)
    orig_src, rest = order[:n_orig], order[n_orig:]
    if out.exists():
        shutil.rmtree(out)
    (out / "gallery").mkdir(parents=True)
    (out / "copies").mkdir()
    where: dict[str, tuple] = {}
    tf = transforms(rng)
    for i, f in enumerate(orig_src):
        with Image.open(f) as im:
            rgb = im.convert("RGB")
        where[f] = _random_box(rgb, rng)
        crop = _cut(rgb, where[f])
        crop.save(out / "gallery" / f"orig_{i:04d}.jpg", quality=90)
        for name, t in tf.items():
            q = 30 if name == "reencode_q30" else 85
            t(crop).save(out / "copies" / f"orig_{i:04d}__{name}.jpg", quality=q)
    pool = rest + orig_src
    rng.shuffle(pool)
    per = 4 * -(-n_distract // len(pool))  # each wallpaper is decoded once
    j = 0
    for f in pool:
        with Image.open(f) as im:
            rgb = im.convert("RGB")
        made = 0
        for _ in range(20 * per):
            if made == per or j == n_distract:
                break
            pos = _random_box(rgb, rng)
            if f in where and _overlap(pos, where[f]) > 0.1:
                continue
            crop = _cut(rgb, pos)
            crop.save(out / "gallery" / f"distractor_{j:04d}.jpg", quality=90)
            made += 1
            j += 1
    if j < n_distract:
        raise SystemExit(f"only {j} distractors overlap their originals by less than 10 %")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.make_photos", description=__doc__)
    p.add_argument("--out", type=Path, default=data_dir() / "photos")
    p.add_argument("--originals", type=int, default=40)
    p.add_argument("--distractors", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", type=Path, help="an unpacked folder of the packages (no download)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        srcs = sources(str(a.source)) if a.source else fetch(Path(tmp))
        if len(srcs) <= a.originals:
            raise SystemExit(f"only {len(srcs)} wallpapers: ask for fewer originals")
        build(srcs, a.out, a.originals, a.distractors, a.seed)
    print(f"{a.originals} originals x {len(transforms(random.Random()))} copies, "
          f"{a.distractors} distractors in {a.out} (from {len(srcs)} wallpapers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
