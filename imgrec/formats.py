"""Which file names are images, and the decoders beyond Pillow's own: HEIC/HEIF and camera RAW.

Pillow reads JPEG, PNG, BMP, GIF, WebP, TIFF, AVIF and JPEG 2000 itself. HEIC/HEIF goes
through ``pillow-heif`` (registered as a Pillow plugin at the first HEIF file, never at import)
and camera RAW through ``rawpy`` (LibRaw): the embedded JPEG preview when it is large enough,
a demosaic of the sensor data otherwise. Either package may be missing: a file that needs it
is then refused with a reason naming the package.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePath
from typing import Any

from PIL import ExifTags, Image

from imgrec.errors import ImageError

PILLOW_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                             ".avif", ".jp2", ".j2k", ".jpx"})
HEIF_SUFFIXES = frozenset({".heic", ".heif"})
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
                          ".pef", ".srw"})
SUFFIXES = PILLOW_SUFFIXES | HEIF_SUFFIXES | RAW_SUFFIXES

#: How each kind of file is decoded (the value recorded as ``ImageInfo.decoder``).
DECODERS = ("pillow", "heif", "raw-preview", "raw-demosaic")

# ISO base media brands of HEIF stills and sequences (AVIF's "avif"/"avis" stay with Pillow)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm",
                          b"hevs", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# LibRaw's ``flip`` (dcraw's bits: 1 mirror columns, 2 mirror rows, 4 transpose) as the EXIF
# orientation it stands for
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def suffix_of(name: str | None) -> str:
    """The lower-case suffix of a file name (``""`` when there is none)."""
    return PurePath(name).suffix.lower() if name else ""


def is_heif(data: bytes) -> bool:
    """True for a HEIC/HEIF file, told by the brands of its ``ftyp`` box (AVIF excluded)."""
    if data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[:4], "big")
    box = data[8:min(max(size, 16), 64)]
    brands = {box[i:i + 4] for i in range(0, len(box) - 3, 4)}
    return bool(brands & _HEIF_BRANDS) and not brands & _AVIF_BRANDS


def raw_kind(data: bytes, name: str | None = None) -> str | None:
    """The camera RAW format (``"NEF"``, ``"DNG"``, ...) of a file, or None when it is not one.

    The name decides where there is one; otherwise the signatures that are unique to a RAW
    format are recognised (TIFF-based RAWs other than CR2 and DNG need their name).
    """
    suffix = suffix_of(name)
    if suffix in RAW_SUFFIXES:
        return suffix[1:].upper()
    if suffix:
        return None
    tiff = data[:4] in (b"II*\0", b"MM\0*")
    if tiff and data[8:10] == b"CR":
        return "CR2"
    if data[4:12] == b"ftypcrx ":
        return "CR3"
    if data.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if data[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if data[:4] == b"IIU\0":
        return "RW2"
    return None


def ensure_heif() -> None:
    """Register pillow-heif's HEIF opener with Pillow unless it already is.

    Raises:
        ImageError: pillow-heif is not installed.
    """
    if "HEIF" in Image.OPEN:
        return
    try:
        import pillow_heif
    except ImportError:
        raise ImageError("HEIC/HEIF needs the pillow-heif package "
                         "(pip install pillow-heif)") from None
    pillow_heif.register_heif_opener()


def orientation_transpose(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned upright for an EXIF ``orientation`` (1-8; anything else: unchanged)."""
    op = _TRANSPOSE.get(orientation)
    return im if op is None else im.transpose(op)


_EXIF_KEEP = {"Make", "Model", "DateTime", "Orientation", "Software", "Artist", "Copyright",
              "ImageDescription", "XResolution", "YResolution"}
#: Kept from the Exif sub-IFD: when the photo was taken.
_EXIF_IFD_KEEP = {"DateTimeOriginal", "OffsetTimeOriginal"}


def exif_json(im: Image.Image) -> str:
    """The EXIF fields the catalog keeps, as a JSON object (``{}`` when unreadable)."""
    try:
        raw = im.getexif()
        items = [(ExifTags.TAGS.get(t), v) for t, v in raw.items()]
        items += [(ExifTags.TAGS.get(t), v) for t, v in raw.get_ifd(ExifTags.IFD.Exif).items()
                  if ExifTags.TAGS.get(t) in _EXIF_IFD_KEEP]
    except Exception:  # metadata only: damaged EXIF never stops a decode
        return "{}"
    out: dict[str, Any] = {}
    for name, value in items:
        if name not in _EXIF_KEEP and name not in _EXIF_IFD_KEEP:
            continue
        if isinstance(value, bytes):
            continue
        if not isinstance(value, int | float | str):
            value = str(value)
        out[name] = value if not isinstance(value, str) else value.strip("\x00")[:200]
    try:
        return json.dumps(out, sort_keys=True)
    except (TypeError, ValueError):
        return "{}"


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation Pillow's ``exif_transpose`` applies (1 when none)."""
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if isinstance(value, int) else 1
    except Exception:  # metadata only
        return 1


def with_orientation(exif: str, orientation: object) -> str:
    """``exif`` (JSON) with its Orientation set to ``orientation`` (1-8; else unchanged)."""
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        return exif
    out = json.loads(exif)
    out["Orientation"] = orientation
    return json.dumps(out, sort_keys=True)


def container_exif(data: bytes) -> str:
    """EXIF of a TIFF-based camera RAW's first IFD (``{}`` for other containers)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return exif_json(im)
    except Exception:  # metadata only: the RAW decoded already
        return "{}"


class RawFile:
    """One camera RAW file opened with rawpy: its size, orientation, preview and demosaic.

    Use as a context manager; every LibRaw failure becomes an :class:`ImageError`.
    """

    def __init__(self, data: bytes, kind: str) -> None:
        self.data, self.kind = data, kind
        self._raw = None

    def __enter__(self) -> RawFile:
        try:
            import rawpy
        except ImportError:
            raise ImageError(f"camera RAW ({self.kind}) needs the rawpy package "
                             "(pip install rawpy)") from None
        self._rawpy = rawpy
        try:
            self._raw = rawpy.imread(io.BytesIO(self.data))
        except (rawpy.LibRawError, OSError, ValueError) as exc:
            raise ImageError(f"unreadable camera RAW ({self.kind}): {_why(exc)}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._raw is not None:
            self._raw.close()

    @property
    def size(self) -> tuple[int, int]:
        """Visible sensor size (width, height) as stored, before the orientation."""
        s = self._raw.sizes
        return int(s.width), int(s.height)

    @property
    def orientation(self) -> int:
        """The EXIF orientation (1-8) the camera recorded."""
        return _FLIP_TO_ORIENTATION.get(int(self._raw.sizes.flip), 1)

    def preview(self) -> bytes | Image.Image | None:
        """The embedded preview: JPEG bytes, an RGB image (bitmap previews), or None."""
        rawpy = self._rawpy
        try:
            thumb = self._raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            return None
        except (rawpy.LibRawError, OSError, ValueError):
            return None  # a damaged preview: the sensor data may still be fine
        if thumb.format == rawpy.ThumbFormat.JPEG:
            return bytes(thumb.data)
        try:
            return Image.fromarray(thumb.data).convert("RGB")
        except (TypeError, ValueError):
            return None

    def demosaic(self, half_size: bool) -> Image.Image:
        """The sensor data demosaiced to upright 8-bit RGB (camera white balance)."""
        try:
            rgb = self._raw.postprocess(half_size=half_size, use_camera_wb=True, output_bps=8)
        except (self._rawpy.LibRawError, OSError, ValueError) as exc:
            raise ImageError(f"unreadable camera RAW ({self.kind}): {_why(exc)}") from None
        return Image.fromarray(rgb, "RGB")


def _why(exc: BaseException) -> str:
    arg = exc.args[0] if len(exc.args) == 1 else None
    if isinstance(arg, bytes):  # LibRaw's messages arrive as bytes
        return arg.decode("utf-8", "replace")
    return str(exc) or type(exc).__name__
