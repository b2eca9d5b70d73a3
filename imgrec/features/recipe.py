"""Embedding recipes: how an image becomes its stored vector (framing, backbone, post-processing).

A recipe names the input framing (``crop``: today's centre crop; ``letterbox``: the whole
image scaled to fit the square input and padded with a neutral fill) and the gallery-learned
post-processing (:class:`PostProcess`: power normalisation, mean-centring, PCA-whitening
with shrinkage), fitted on the gallery's embeddings at build time, saved beside the index
with ``np.savez`` (no pickles) and applied to every query, so a gallery image used as a
query gets exactly its stored vector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.features.embedding import Embedder, l2_normalise

FRAMINGS = ("crop", "letterbox")


@dataclass(frozen=True)
class Recipe:
    """One way of embedding images (its ``name`` goes into the index manifest)."""

    name: str
    framing: str = "crop"
    fill: tuple[int, int, int] = (255, 255, 255)
    power: float | None = None  # signed power normalisation exponent (None: off)
    center: bool = False
    whiten: bool = False
    shrink: float = 0.5  # whitening eigenvalues: (1 - shrink) * l + shrink * mean(l)

    def post(self) -> PostProcess | None:
        """An unfitted post-processing stage, or None when the recipe has none."""
        if self.power is None and not self.center and not self.whiten:
            return None
        return PostProcess(self.power, self.center, self.whiten, self.shrink)


#: ``v1`` is what every index built before recipes existed used.
RECIPES = {
    "v1": Recipe("v1"),
    "v2": Recipe("v2", framing="letterbox", power=0.5, center=True),
}


def frame(work: Image.Image, size: int, framing: str = "crop",
          fill: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The (size, size, 3) uint8 network input of a prepared RGB image.

    Args:
        work: the prepared working image (:func:`imgrec.images.prepare`).
        size: the backbone's input side.
        framing: ``crop`` (the centre square) or ``letterbox`` (the whole image, padded).
        fill: the padding colour of ``letterbox``.
    """
    if framing == "crop":
        return images.center_crop(work, size)
    if framing != "letterbox":
        raise ValueError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    w, h = work.size
    s = size / max(w, h)
    im = work.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


class PostProcess:
    """Gallery-learned post-processing of unit-length embeddings (scikit-learn style).

    ``transform``: signed power ``sign(x)|x|^power`` (when set), L2, subtract the gallery
    mean (``center``), rotate onto the gallery's principal axes and divide by the shrunk
    square-root eigenvalues (``whiten``), L2 again.

    Example:
        >>> x = l2_normalise(np.random.default_rng(0).random((50, 8)))
        >>> pp = PostProcess(power=0.5, center=True).fit(x)
        >>> pp.transform(x).shape
        (50, 8)
    """

    def __init__(self, power: float | None = None, center: bool = True, whiten: bool = False,
                 shrink: float = 0.5) -> None:
        self.power = power
        self.center = center
        self.whiten = whiten
        self.shrink = shrink

    def _pre(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.power is not None:
            x = np.sign(x) * np.abs(x) ** self.power
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1)

    def fit(self, x: np.ndarray) -> PostProcess:
        """Learn the mean (and principal axes) of the gallery embeddings ``x`` (n, d)."""
        z = self._pre(x)
        self.mean_ = z.mean(0) if self.center or self.whiten else np.zeros(z.shape[1])
        if self.whiten:
            c = z - self.mean_
            _, s, vt = np.linalg.svd(c, full_matrices=False)
            lam = s ** 2 / max(1, len(z) - 1)
            lam = (1 - self.shrink) * lam + self.shrink * lam.mean()
            self.axes_ = vt / np.sqrt(lam)[:, None]
        else:
            self.axes_ = np.zeros((0, z.shape[1]))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Post-processed float32 unit rows of ``x`` (n, d)."""
        z = self._pre(x) - self.mean_
        if self.whiten:
            z = z @ self.axes_.T
        return l2_normalise(z)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state to an ``.npz`` file (plain arrays)."""
        np.savez(path, power=np.array(np.nan if self.power is None else self.power),
                 center=np.array(self.center), whiten=np.array(self.whiten),
                 shrink=np.array(self.shrink), mean=self.mean_, axes=self.axes_)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PostProcess:
        """Read a state written by :meth:`save` (no pickles are loaded)."""
        with np.load(path, allow_pickle=False) as f:
            power = float(f["power"])
            pp = cls(None if np.isnan(power) else power, bool(f["center"]), bool(f["whiten"]),
                     float(f["shrink"]))
            pp.mean_, pp.axes_ = f["mean"].astype(np.float64), f["axes"].astype(np.float64)
        return pp


def embed_images(rgbs: list[Image.Image], embedder: Embedder, recipe: Recipe,
                 post: PostProcess | None = None) -> np.ndarray:
    """The stored vectors of decoded RGB images under ``recipe`` (index and query path alike).

    Args:
        rgbs: decoded RGB images (:func:`imgrec.images.load_image`).
        embedder: the backbone (``embed`` takes square uint8 inputs of ``input_size``).
        recipe: framing and post-processing.
        post: the fitted post-processing of the gallery (required when the recipe has one).
    """
    if recipe.post() is not None and post is None:
        raise ValueError(f"recipe {recipe.name} needs the gallery's fitted post-processing")
    crops = np.stack([frame(images.prepare(im), embedder.input_size, recipe.framing,
                            recipe.fill) for im in rgbs])
    vecs = embedder.embed(crops)
    return vecs if post is None else post.transform(vecs)
