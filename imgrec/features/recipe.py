"""Embedding recipes: how an image becomes its stored vector (framing, backbone, post-processing).

A recipe names the input framing (``crop``: the centre square, the ``v1`` recipe every index
built before recipes used; ``letterbox``: the whole image scaled to fit the square input and
padded with white) and a stateless finish (signed power normalisation, then L2). The
default for the EfficientNet-Lite backbones is ``v2`` (letterbox + signed square root);
ResNet50 keeps ``v1``. The manifest records the recipe; queries use the one the index
names, through :func:`with_recipe`, so a gallery image used as a query gets exactly its
stored vector. Gallery-learned post-processing (:class:`PostProcess`: mean-centring,
PCA-whitening with shrinkage) is measured by ``python -m bench quality`` but is part of no
product recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.errors import ImgrecError
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
    about: str = ""
    #: cosine a pair needs to be a duplicate candidate (``imgrec duplicates``, ``check``)
    duplicate_threshold: float = 0.65
    #: lowest candidate threshold the dashboard's duplicates slider offers
    duplicate_floor: float = 0.5
    #: cosine a link of the neighbour graph needs (``imgrec graph``)
    graph_threshold: float = 0.5

    def post(self) -> PostProcess | None:
        """An unfitted gallery-learned stage (centring/whitening), or None without one."""
        if not self.center and not self.whiten:
            return None
        return PostProcess(None, self.center, self.whiten, self.shrink)

    def frame(self, work: Image.Image, size: int) -> np.ndarray:
        """The (size, size, 3) uint8 network input of a prepared image (:func:`frame`)."""
        return frame(work, size, self.framing, self.fill)

    def finish(self, vecs: np.ndarray) -> np.ndarray:
        """The stateless finish of the backbone's unit rows: signed power, then L2 (rows
        are returned unchanged when the recipe has no power step)."""
        if self.power is None:
            return vecs
        x = np.asarray(vecs, np.float64)
        return l2_normalise(np.sign(x) * np.abs(x) ** self.power)


#: ``v1`` is what every index built before recipes existed used (no ``recipe`` in its
#: manifest); ``v2`` measured better on every benchmark (README "Quality"). The signed
#: square root raises the cosine of unrelated pairs (median clip-art pair 0.30 -> 0.45), so
#: each recipe carries its own thresholds; v2's admit as many pairs of the 1,130-image
#: clip-art subsample as v1's (cosine >= 0.75: 1,969 pairs, v1 >= 0.65: 2,040; >= 0.62:
#: 23,152, v1 >= 0.5: 22,995) and keep every demo variant with its original (README
#: "Duplicates").
RECIPES = {
    "v1": Recipe("v1", about="centre crop"),
    "v2": Recipe("v2", framing="letterbox", power=0.5,
                 about="whole image letterboxed on white, signed square root",
                 duplicate_threshold=0.75, duplicate_floor=0.62, graph_threshold=0.62),
}
DEFAULT_RECIPE = "v2"


def recipe_for(model: str) -> Recipe:
    """The recipe a new build with backbone ``model`` uses (ResNet50 keeps ``v1``)."""
    return RECIPES["v1" if model == "resnet50" else DEFAULT_RECIPE]


def recipe_named(name: str | None) -> Recipe:
    """The recipe an index's manifest names (None: built before recipes, ``v1``).

    Raises:
        ImgrecError: a recipe this imgrec does not know (built by a newer one).
    """
    try:
        return RECIPES[name or "v1"]
    except KeyError:
        raise ImgrecError(f"the index was built with embedding recipe {name!r}, which this "
                          f"imgrec does not know ({', '.join(RECIPES)}): upgrade imgrec or "
                          "rebuild the index") from None


def recipe_of(index: Any) -> Recipe:
    """The recipe of an opened index (plain or sharded, or a sample drawn from one: its
    ``source``'s), whose thresholds are the defaults of the duplicate finder and the
    neighbour graph; a bare matrix of vectors has the default recipe's.

    Example:
        >>> recipe_of(np.zeros((2, 4))).duplicate_threshold
        0.75
    """
    for obj in (index, getattr(index, "source", None)):
        r = getattr(obj, "recipe", None)
        if isinstance(r, Recipe):
            return r
    return RECIPES[DEFAULT_RECIPE]


def rebuild_hint(model: str, recipe: str | None) -> str | None:
    """What to tell the owner of an index whose recipe is older than a new build's, or None."""
    have, new = recipe_named(recipe), recipe_for(model)
    if have.name == new.name or model not in _KNOWN_MODELS:
        return None
    return (f"built with embedding recipe {have.name} ({have.about}); a rebuild uses "
            f"{new.name} ({new.about}), which finds better matches (README \"Quality\"): "
            "run `imgrec index` on the gallery again")


def describe(model: str, recipe: str | None) -> tuple[str, str | None]:
    """An index's recipe in words (``v2 (whole image ...)``) and its :func:`rebuild_hint`
    (for a recipe this imgrec does not know: the error saying so)."""
    try:
        r = recipe_named(recipe)
    except ImgrecError as exc:
        return f"{recipe} (unknown to this imgrec)", str(exc)
    return f"{r.name} ({r.about})", rebuild_hint(model, r.name)


_KNOWN_MODELS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "resnet50")


class RecipeEmbedder:
    """A backbone fed and finished by one recipe: what builds and queries embed with.

    ``framing`` tells the decoders how to cut the network input; :meth:`embed` and
    :meth:`forward` apply the recipe's finish. Name, size and dimension are the backbone's.
    """

    def __init__(self, base: Embedder, recipe: Recipe) -> None:
        self.base = base
        self.recipe = recipe
        self.name = base.name
        self.dim = base.dim
        self.input_size = base.input_size
        self.framing = recipe.framing

    def load(self) -> RecipeEmbedder:
        """Load the backbone's weights now, where it can."""
        load = getattr(self.base, "load", None)
        if callable(load):
            load()
        return self

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """The recipe's vectors of network inputs (n, s, s, 3) uint8."""
        return self.recipe.finish(self.base.embed(crops))

    def forward(self, crops: np.ndarray) -> tuple[np.ndarray, Any]:
        """The recipe's vectors and the backbone's class probabilities (None without)."""
        forward = getattr(self.base, "forward", None)
        if not callable(forward):
            return self.embed(crops), None
        vecs, probs = forward(crops)
        return self.recipe.finish(vecs), probs


def with_recipe(embedder: Embedder, recipe: Recipe) -> RecipeEmbedder:
    """``embedder`` (or the backbone inside a :class:`RecipeEmbedder`) under ``recipe``."""
    base = embedder.base if isinstance(embedder, RecipeEmbedder) else embedder
    return RecipeEmbedder(base, recipe)


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
    return np.array(canvas, dtype=np.uint8)  # writable, as torch.from_numpy wants


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
        recipe: framing, finish and gallery-learned post-processing.
        post: the fitted post-processing of the gallery (required when the recipe has one).
    """
    if recipe.post() is not None and post is None:
        raise ValueError(f"recipe {recipe.name} needs the gallery's fitted post-processing")
    emb = with_recipe(embedder, recipe)
    crops = np.stack([recipe.frame(images.prepare(im), emb.input_size) for im in rgbs])
    vecs = emb.embed(crops)
    return vecs if post is None else post.transform(vecs)
