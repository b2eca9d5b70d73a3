"""Build the built-in demo gallery from photographs that ship inside installed packages."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from PIL import Image, ImageEnhance, ImageFilter, ImageOps, features

__all__ = ["MARKER", "SOURCES", "VERSION", "DemoGallery", "DemoSource", "build_demo_gallery",
           "demo_counts", "family_of"]

MARKER = ".imgrec-demo.json"
VERSION = 2
_MAX_SIDE = 1024  # larger bases (only retina) are downscaled first to keep the gallery small
_log = logging.getLogger(__name__)


class DemoSource(NamedTuple):
    """One base photograph: family name, providing package, loader call and credit text."""

    name: str
    package: str
    loader: str
    credit: str


_SK, _SL, _MPL = "scikit-image", "scikit-learn", "matplotlib"
_CC_BY = "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)"
SOURCES: tuple[DemoSource, ...] = tuple(DemoSource(n, p, {
    _SK: f"skimage.data.{r}()", _SL: f"sklearn.datasets.load_sample_image('{r}')",
    _MPL: f"matplotlib.cbook.get_sample_data('{r}')"}[p], c) for n, p, r, c in (
    ("astronaut", _SK, "astronaut", ("Eileen Collins, NASA Great Images (https://flic.kr/p/"
     "r9qvLn); no known copyright restrictions, public domain.")),
    ("camera", _SK, "camera", "Lav Varshney; CC0 by the photographer."),
    ("chelsea", _SK, "chelsea", "Chelsea the cat, Stefan van der Walt; CC0 by the photographer."),
    ("clock", _SK, "clock", "Motion-blurred clock, Stefan van der Walt; public domain."),
    ("coffee", _SK, "coffee", "Pikolo Espresso Bar, Rachel Michetti; CC0 by the photographer."),
    ("coins", _SK, "coins", "Greek coins from Pompeii, Brooklyn Museum; no known copyright."),
    ("hubble_deep_field", _SK, "hubble_deep_field", ("Hubble eXtreme Deep Field, NASA "
     "(HubbleSite); may be freely used in the public domain.")),
    ("immunohistochemistry", _SK, "immunohistochemistry", ("Center for Microscopy And "
     "Molecular Imaging (CMMI); no known copyright restrictions.")),
    ("motorcycle", _SK, "stereo_motorcycle", ("Left view, Middlebury 2014 stereo benchmark "
     "(Nesic, Westling, Wang, Kitajima, Krathwohl, Scharstein); no licence stated.")),
    ("retina", _SK, "retina", ("Fundus photograph of normal left eye, Mikael Häggström "
     "(Wikimedia Commons); CC0 1.0.")),
    ("rocket", _SK, "rocket", "DSCOVR launch on Falcon 9, SpaceX Photos; public domain."),
    ("china", _SL, "china.jpg", ("danielbuechele (https://www.flickr.com/photos/danielbuechele/"
     f"6061409035), retrieved by Robert Layton; {_CC_BY}.")),
    ("flower", _SL, "flower.jpg", ("vultilion (https://www.flickr.com/photos/vultilion/"
     f"6056698931), retrieved by Robert Layton; {_CC_BY}.")),
    ("grace_hopper", _MPL, "grace_hopper.jpg", ("Grace M. Hopper, U.S. Navy photograph; "
     "public domain (matplotlib ships it uncredited).")),
))


@dataclass(frozen=True)
class DemoGallery:
    """A built demo gallery.

    Attributes:
        root: Folder holding the gallery.
        families: Family name mapped to the sorted relative posix paths of its images.
        count: Total number of images.
    """

    root: Path
    families: dict[str, list[str]]
    count: int


def family_of(rel_path: str) -> str:
    """Return the ground-truth family of a gallery image.

    Args:
        rel_path: Path relative to the gallery root, e.g. ``"chelsea/chelsea_flip.jpg"``.

    Returns:
        The top-level folder name, or ``""`` when the path has no folder.
    """
    parts = [p for p in PurePosixPath(rel_path.replace("\\", "/")).parts if p not in ("/", ".")]
    return parts[0] if len(parts) > 1 else ""


def _load(src: DemoSource) -> Image.Image:
    """Load one base photo as an ``RGB`` or ``L`` image no larger than ``_MAX_SIDE``."""
    if src.package == _SK:
        import skimage.data
        arr = getattr(skimage.data, src.loader[len("skimage.data."):-2])()
        img = Image.fromarray(arr[0] if isinstance(arr, tuple) else arr)  # stereo: left view
    elif src.package == _SL:
        from sklearn.datasets import load_sample_image
        img = Image.fromarray(load_sample_image(src.loader.split("'")[1]))
    else:
        from matplotlib.cbook import get_sample_data
        with Image.open(get_sample_data(src.loader.split("'")[1], asfileobj=False)) as f:
            img = f.convert("RGB")
    img = img.convert("L" if img.mode in ("L", "1", "I;16") else "RGB")
    return _scale(img, _MAX_SIDE / max(img.size)) if max(img.size) > _MAX_SIDE else img


def _scale(img: Image.Image, f: float) -> Image.Image:
    """Resize by factor ``f`` with Lanczos resampling."""
    return img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.LANCZOS)


def _crop(img: Image.Image, frac: float, anchor: str) -> Image.Image:
    """Keep ``frac`` of each side, anchored at the centre (``"c"``) or a corner (``"tl"``...)."""
    w, h = round(img.width * frac), round(img.height * frac)
    x = {"l": 0, "r": img.width - w}.get(anchor[-1], (img.width - w) // 2)
    y = {"t": 0, "b": img.height - h}.get(anchor[0], (img.height - h) // 2)
    return img.crop((x, y, x + w, y + h))


def _rotate(img: Image.Image, deg: float) -> Image.Image:
    """Rotate without expanding, then crop centrally so that no empty corner remains."""
    w, h = img.size
    c, s = abs(math.cos(math.radians(deg))), abs(math.sin(math.radians(deg)))
    frac = min(w / (w * c + h * s), h / (w * s + h * c)) - 0.01
    return _crop(img.rotate(deg, Image.Resampling.BICUBIC, expand=False), frac, "c")


_Op = Callable[[Image.Image], Image.Image]
_Job = tuple[str, Image.Image, _Op, int, int]  # rel path, base, transform, quality, orientation


def _variants(name: str, grey: bool) -> list[tuple[str, _Op, int]]:
    """List ``(variant, transform, JPEG quality)``; parameters come from a name-seeded RNG."""
    rng = random.Random(zlib.crc32(name.encode()))  # stable across runs, unlike hash()
    c, f1, f2 = rng.choice(["tl", "tr", "bl", "br"]), rng.choice([0.8, 0.9]), rng.choice([0.71, 0.75])
    ccw, cw, blur = rng.randint(5, 10), rng.randint(5, 10), rng.choice([1.0, 1.5, 2.0])
    bright, contrast, sat = rng.choice([0.75, 1.3]), rng.choice([0.7, 1.3]), rng.choice([0.5, 1.6])
    return [
        ("crop_center", lambda im: _crop(im, f1, "c"), 90),
        (f"crop_{c}", lambda im: _crop(im, f2, c), 90),
        ("flip", ImageOps.mirror, 90),
        (f"rot_ccw{ccw}", lambda im: _rotate(im, ccw), 90),
        (f"rot_cw{cw}", lambda im: _rotate(im, -cw), 90),
        ("scale50", lambda im: _scale(im, 0.5), 90),
        ("scale150", lambda im: _scale(im, 1.5), 90),
        ("jpeg30", lambda im: im, 30),
        ("tone", lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(bright))
         .enhance(contrast), 90),
        ("blur", lambda im: im.filter(ImageFilter.GaussianBlur(blur)), 90),
        ("contrast", lambda im: ImageEnhance.Contrast(im).enhance(1.5), 90) if grey
        else ("color", lambda im: ImageEnhance.Color(im).enhance(sat), 90),
    ]


def _plan(bases: list[tuple[str, Image.Image]]) -> list[_Job]:
    """List every file to write; formats are mostly JPEG with a few PNG, WEBP, TIFF and BMP."""
    special = {(1, "flip"): "webp" if features.check("webp") else "png",
               (2, "blur"): "tiff", (3, "crop_center"): "bmp"}
    jobs: list[_Job] = []
    for i, (name, base) in enumerate(bases):
        jobs.append((f"{name}/{name}_orig.jpg", base, lambda im: im, 95, 0))
        for var, op, quality in _variants(name, base.mode == "L"):
            ext = special.get((i, var), "png" if var == "scale50" and i % 3 == 0 else "jpg")
            jobs.append((f"{name}/{name}_{var}.{ext}", base, op, quality, 0))
        if base.mode == "RGB" and not any("_exif6" in j[0] for j in jobs):  # first colour base
            jobs.append((f"{name}/{name}_grey.png", base, lambda im: im.convert("L"), 90, 0))
            # Pixels stored rotated 90° counter-clockwise; EXIF Orientation=6 shows them upright.
            jobs.append((f"{name}/{name}_exif6.jpg", base,
                         lambda im: im.transpose(Image.Transpose.ROTATE_90), 90, 6))
    return jobs


def _save(img: Image.Image, path: Path, quality: int, orientation: int) -> None:
    """Save deterministically (no timestamps; EXIF only for the orientation tag)."""
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    if path.suffix == ".jpg":
        img.save(path, quality=quality, exif=exif.tobytes() if orientation else b"")
    elif path.suffix == ".webp":
        img.save(path, quality=85, method=4)
    else:
        img.save(path)  # PNG, TIFF, BMP: lossless, no metadata


def _gallery(root: Path, files: list[str]) -> DemoGallery:
    """Describe the gallery at ``root`` holding the sorted relative paths ``files``."""
    families = {k: [f for f in files if family_of(f) == k] for k in {family_of(f) for f in files}}
    return DemoGallery(root=root, families=dict(sorted(families.items())), count=len(files))


def _read_marker(root: Path) -> DemoGallery | None:
    """Return the gallery described by ``root``'s marker if it is current and complete."""
    try:
        meta = json.loads((root / MARKER).read_text(encoding="utf-8"))
        files = sorted(str(f) for f in meta["files"])
        ok = meta["version"] == VERSION and all(
            family_of(f) and ".." not in f.split("/") and (root / f).is_file() for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _gallery(root, files) if ok else None


def demo_counts() -> tuple[int, int]:
    """``(photos, families)`` of the demo gallery when every base photograph loads.

    Example:
        >>> demo_counts()
        (170, 14)
    """
    bases = [(src.name, Image.new("RGB", (1, 1))) for src in SOURCES]
    return len(_plan(bases)), len(bases)


def build_demo_gallery(out_dir: str | Path, *, overwrite: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> DemoGallery:
    """Build the demo gallery in ``out_dir``, or return the complete one already there.

    Files go to a hidden sibling folder, the marker last, which is then renamed into
    place, so an interrupted build never looks complete.

    Args:
        out_dir: Target folder: missing, empty, or holding an earlier demo gallery.
        overwrite: Rebuild even if ``out_dir`` already holds a complete demo gallery.
        progress: Called as ``progress(done, total)`` after each image is written.

    Returns:
        The gallery description.

    Raises:
        ValueError: If ``out_dir`` is a file, or a non-empty folder that is not a demo gallery.
        RuntimeError: If no base photo could be loaded.
    """
    root = Path(out_dir).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder")
    existing = _read_marker(root)
    if existing is not None and not overwrite:
        return existing
    if root.is_dir() and not (root / MARKER).is_file() and any(root.iterdir()):
        raise ValueError(f"refusing to build the demo gallery in {root}: the folder is not "
                         "empty and is not a demo gallery; choose an empty or new folder")
    bases: list[tuple[str, Image.Image]] = []
    for src in SOURCES:
        try:
            bases.append((src.name, _load(src)))
        except Exception as exc:
            _log.info("demo photo %r skipped: %s", src.name, exc)
    if not bases:
        raise RuntimeError("no demo photographs could be loaded from the installed packages")
    jobs = _plan(bases)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        for done, (rel, base, op, quality, orientation) in enumerate(jobs, 1):
            (tmp / rel).parent.mkdir(exist_ok=True)
            _save(op(base), tmp / rel, quality, orientation)
            if progress is not None:
                progress(done, len(jobs))
        files = sorted(job[0] for job in jobs)
        meta = json.dumps({"version": VERSION, "files": files}, indent=1)
        (tmp / MARKER).write_text(meta + "\n", encoding="utf-8")  # written last
        if root.exists():  # an empty folder or an earlier demo gallery: swap it out
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            root.rename(old)
            tmp.rename(root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _gallery(root, files)
