"""Embedding recipes: how an image becomes its stored vector (framing, backbone, post-processing).

A recipe names the input framing (``crop``: the centre square, the ``v1`` recipe every index
built before recipes used; ``letterbox``: the whole image scaled to fit the square input and
padded with white; ``aspect``: the whole image at its own aspect ratio, about as many
pixels as the square input), the pools of the forward pass that make the vector (default:
the backbone's global average; see :data:`imgrec.features.embedding.POOLS`) and a
stateless finish (signed power normalisation, then L2). The default for the
EfficientNet-Lite backbones is ``v3`` (own aspect ratio, GeM of the head + two earlier
stages, signed square root); ResNet50 keeps ``v1``; a backbone without stage pools (one a
caller brings) gets ``v2`` (letterbox + signed square root). The manifest records the
recipe; queries use the one the index names, through :func:`with_recipe`, so a gallery
image used as a query gets exactly its stored vector. Gallery-learned post-processing
(:class:`PostProcess`: mean-centring, PCA-whitening with shrinkage) is measured by
``python -m bench quality`` but is part of no product recipe.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.errors import ImgrecError
from imgrec.features.embedding import Embedder, Pooling, l2_normalise

FRAMINGS = ("crop", "letterbox", "aspect")
#: ``aspect``: the longest side / shortest side beyond which the input is squeezed to this
#: ratio (the working image is already at most :data:`imgrec.images.MAX_ASPECT`)
MOST_ASPECT = 3.0


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
    #: ((pool, weight), ...) of one forward pass, concatenated (empty: the backbone's vector)
    pooling: Pooling = ()
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
        """The uint8 network input of a prepared image (:func:`frame`)."""
        return frame(work, size, self.framing, self.fill)

    def dim(self, backbone: Any) -> int:
        """The length of this recipe's vectors from ``backbone`` (its own ``dim`` unless the
        recipe pools stages).

        Raises:
            ImgrecError: the backbone cannot give this recipe's pools.
        """
        if not self.pooling:
            return int(backbone.dim)
        base = backbone.base if isinstance(backbone, RecipeEmbedder | Backbone) else backbone
        pooled = getattr(base, "pooled_dim", None)
        if not callable(pooled):
            raise ImgrecError(f"recipe {self.name} pools the stages of an EfficientNet-Lite; "
                              f"the backbone {base.name} has none: use recipe v2")
        return int(pooled(self.pooling))

    def finish(self, vecs: np.ndarray) -> np.ndarray:
        """The stateless finish of the backbone's unit rows: signed power, then L2 (rows
        are returned unchanged when the recipe has no power step)."""
        if self.power is None:
            return vecs
        x = np.asarray(vecs, np.float64)
        return l2_normalise(np.sign(x) * np.abs(x) ** self.power)


#: ``v1`` is what every index built before recipes existed used (no ``recipe`` in its
#: manifest); ``v2`` and then ``v3`` measured better on every benchmark (README "Quality").
#: The signed square root and the stage pools raise the cosine of unrelated pairs (median
#: clip-art pair 0.31 under v1, 0.46 under v2, 0.55 under v3), so each recipe carries its
#: own thresholds, chosen to admit as many pairs of the 1,130-image clip-art subsample as
#: v1's 0.65 and 0.5 (1,946 and 24,474 pairs; v2 >= 0.75: 1,835, >= 0.62: 23,852; v3 >=
#: 0.78: 2,038, >= 0.69: 22,494; ``python -m bench thresholds``) and checked on the demo
#: gallery (README "Duplicates").
RECIPES = {
    "v1": Recipe("v1", about="centre crop"),
    "v2": Recipe("v2", framing="letterbox", power=0.5,
                 about="whole image letterboxed on white, signed square root",
                 duplicate_threshold=0.75, duplicate_floor=0.62, graph_threshold=0.62),
    "v3": Recipe("v3", framing="aspect", power=0.5,
                 pooling=(("gem", 1.0), ("s2", 0.5), ("s3", 1.0)),
                 about="whole image at its own aspect ratio, GeM of the head and two "
                       "earlier stages, signed square root",
                 duplicate_threshold=0.78, duplicate_floor=0.69, graph_threshold=0.69),
}
DEFAULT_RECIPE = "v3"
#: the backbones whose stage pools ``v3`` uses (others get ``v2``; ResNet50 ``v1``)
POOLED_BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def recipe_for(model: str) -> Recipe:
    """The recipe a new build with backbone ``model`` uses: ``v3`` for EfficientNet-Lite,
    ``v1`` for ResNet50, ``v2`` for a backbone imgrec does not know (it has no stage pools).

    Example:
        >>> recipe_for("efficientnet-lite0").name, recipe_for("resnet50").name
        ('v3', 'v1')
    """
    if model == "resnet50":
        return RECIPES["v1"]
    return RECIPES[DEFAULT_RECIPE if model in POOLED_BACKBONES else "v2"]


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
        0.78
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
    :meth:`forward` apply the recipe's pools and finish (:meth:`raw` the pools alone, as
    the build's producers store them before the finish). Name and input size are the
    backbone's, ``dim`` the recipe's.
    """

    def __init__(self, base: Embedder, recipe: Recipe) -> None:
        self.base = base
        self.recipe = recipe
        self.name = base.name
        self.dim = recipe.dim(base)
        self.input_size = base.input_size
        self.framing = recipe.framing

    def load(self) -> RecipeEmbedder:
        """Load the backbone's weights now, where it can."""
        load = getattr(self.base, "load", None)
        if callable(load):
            load()
        return self

    def embed(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The recipe's vectors of network inputs framed by it (uint8; an array, or a
        list of differently shaped ones under the ``aspect`` framing)."""
        return self.forward(crops)[0]

    def forward(self, crops: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """The recipe's vectors and the backbone's class probabilities (None without)."""
        vecs, probs = self.raw(crops)
        return self.recipe.finish(vecs), probs

    def raw(self, crops: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, Any]:
        """The recipe's pools before its finish, and the class probabilities (None without)."""
        forward = getattr(self.base, "forward", None)
        if self.recipe.pooling:
            if not callable(getattr(self.base, "pooled_dim", None)):
                self.recipe.dim(self.base)  # raises: this backbone has no stage pools
            return forward(crops, self.recipe.pooling)
        if not callable(forward):
            return self.base.embed(np.asarray(crops)), None
        return forward(np.asarray(crops))


class Backbone:
    """The backbone as a build's producer calls it under a recipe: ``forward`` gives the
    recipe's pools before its finish (the builder applies the finish as it stores them)
    and ``dim`` their length; name and input size are the backbone's.
    """

    def __init__(self, base: Embedder, recipe: Recipe) -> None:
        self._emb = with_recipe(base, recipe)
        self.base, self.recipe = self._emb.base, recipe
        self.name, self.dim, self.input_size = base.name, self._emb.dim, base.input_size

    def load(self) -> Backbone:
        self._emb.load()
        return self

    def forward(self, crops: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, Any]:
        return self._emb.raw(crops)

    def embed(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        return self._emb.raw(crops)[0]


def with_recipe(embedder: Embedder, recipe: Recipe) -> RecipeEmbedder:
    """``embedder`` (or the backbone inside a :class:`RecipeEmbedder`) under ``recipe``."""
    base = embedder.base if isinstance(embedder, RecipeEmbedder | Backbone) else embedder
    return RecipeEmbedder(base, recipe)


def aspect_shape(w: int, h: int, size: int, most: float = MOST_ASPECT) -> tuple[int, int]:
    """(width, height) of the ``aspect`` input of a ``w`` x ``h`` image: about ``size``²
    pixels at the image's aspect ratio (clamped to ``most``), each side a multiple of 32.

    Example:
        >>> aspect_shape(1024, 768, 224), aspect_shape(500, 500, 224), aspect_shape(4000, 100, 224)
        ((256, 192), (224, 224), (384, 128))
    """
    r = min(max(w / h, 1 / most), most)
    return (max(32, round(size * math.sqrt(r) / 32) * 32),
            max(32, round(size / math.sqrt(r) / 32) * 32))


def max_side(framing: str, size: int) -> int:
    """The longest side a ``framing`` input of a ``size`` backbone can have."""
    return max(aspect_shape(1, 1 / MOST_ASPECT, size)) if framing == "aspect" else size


def frame(work: Image.Image, size: int, framing: str = "crop",
          fill: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The uint8 network input (h, w, 3) of a prepared RGB image: ``size`` x ``size``, or
    under ``aspect`` the shape of :func:`aspect_shape`.

    Args:
        work: the prepared working image (:func:`imgrec.images.prepare`).
        size: the backbone's input side.
        framing: ``crop`` (the centre square), ``letterbox`` (the whole image, padded) or
            ``aspect`` (the whole image resized to its own aspect ratio, a ratio beyond
            :data:`MOST_ASPECT` squeezed to it).
        fill: the padding colour of ``letterbox``.
    """
    if framing == "crop":
        return images.center_crop(work, size)
    if framing == "aspect":
        sw, sh = aspect_shape(*work.size, size)
        return np.array(work.resize((sw, sh), Image.BILINEAR), dtype=np.uint8)
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
    crops = [recipe.frame(images.prepare(im), emb.input_size) for im in rgbs]
    vecs = emb.embed(crops if recipe.pooling else np.stack(crops))
    return vecs if post is None else post.transform(vecs)
