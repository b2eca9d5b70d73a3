"""Pooling and framing levers that cost one forward pass: multi-layer, regional (R-MAC),
the whole image at its own aspect ratio; cached as .npy beside :mod:`bench.levers`'s.

``python -m bench.levers_pool CORPUS_DIR --backbone efficientnet-lite0 --framing lbw``
writes ``CACHE/<corpus>/<backbone>-<framing>-<pool>.npy`` (rows in the order of the
corpus's ``paths.txt``) for the pools of one forward pass:

- ``gap``: global average of the head's map (the product's vector), ``gem`` (p = 3);
- ``s1``, ``s2``, ``s3``: global average of the outputs of the last, second-last and
  third-last stages before the head (320, 192, 112 channels for Lite0);
- ``rmac``: R-MAC of the head's map (max over the regions of 3 scales, each region's vector
  L2-normalised, summed); ``ravg``: the same with the regions' average.

Framings: ``lbw`` (letterboxed on white, as :mod:`bench.levers`), ``asp`` (the whole image
at its own aspect ratio: scaled to about the input's area, each side a multiple of 32,
batched by shape). ``--time N`` times N images under each framing and pooling, in turns.
Not part of the product: it measures candidates for it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from imgrec import images
from imgrec.features.color import histogram
from imgrec.features.recipe import aspect_shape  # the product's v3 framing

from . import levers

POOLS = ("gap", "gem", "s1", "s2", "s3", "rmac", "ravg")


def regions(h: int, w: int, levels: int = 3) -> list[tuple[int, int, int, int]]:
    """R-MAC regions (top, left, height, width) of an h x w map: at level l squares of side
    2·min(h, w)/(l + 1), l per shorter side (more along the longer), evenly spread."""
    out = []
    m = min(h, w)
    for level in range(1, levels + 1):
        side = max(1, math.floor(2 * m / (level + 1)))
        nh = level + max(0, round((h - m) / side))
        nw = level + max(0, round((w - m) / side))
        for i in range(nh):
            t = 0 if nh == 1 else round(i * (h - side) / (nh - 1))
            for j in range(nw):
                s = 0 if nw == 1 else round(j * (w - side) / (nw - 1))
                out.append((t, s, side, side))
    return out


def _unit(t):
    return t / t.norm(dim=1, keepdim=True).clamp(min=1e-12)


def pools(net, stage_ends: list[int], crops: np.ndarray) -> dict[str, np.ndarray]:
    """Every pool of :data:`POOLS` from one forward pass over uint8 inputs (n, h, w, 3)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    x = x.sub_(127.0).div_(128.0).contiguous(memory_format=torch.channels_last)
    keep: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        y = net._swish(net._bn0(net._conv_stem(x)))
        for i, block in enumerate(net._blocks):
            y = block(y)
            if i in stage_ends:
                keep[i] = y
        fm = net._swish(net._bn1(net._conv_head(y)))
        out = {"gap": fm.mean((2, 3)),
               "gem": fm.clamp(min=1e-6).pow(levers.GEM_P).mean((2, 3)).pow(1 / levers.GEM_P)}
        for n, i in enumerate(sorted(stage_ends, reverse=True), 1):
            out[f"s{n}"] = keep[i].mean((2, 3))
        mx = torch.zeros_like(out["gap"])
        av = torch.zeros_like(out["gap"])
        for t, s, hh, ww in regions(fm.shape[2], fm.shape[3]):
            r = fm[:, :, t:t + hh, s:s + ww]
            mx += _unit(r.amax((2, 3)))
            av += _unit(r.mean((2, 3)))
        out["rmac"], out["ravg"] = mx, av
    return {k: v.float().numpy() for k, v in out.items()}


def stage_ends(net, count: int = 3) -> list[int]:
    """Indices of the blocks that end the last ``count`` stages (a change of width next)."""
    blocks = net._blocks
    ends = [i for i in range(len(blocks))
            if i == len(blocks) - 1 or blocks[i + 1]._block_args.output_filters
            != blocks[i]._block_args.output_filters]
    return ends[-count:]


def _input(work: Image.Image, size: int, framing: str) -> np.ndarray:
    if framing == "lbw":
        return levers.frame(work, size, "lbw")
    sw, sh = aspect_shape(*work.size, size)
    return np.asarray(work.resize((sw, sh), Image.BILINEAR), dtype=np.uint8)


def extract(corpus: Path, backbone: str, framing: str, batch: int = 16) -> dict:
    """Write every pool of one framing and backbone; the seconds per image too."""
    import torch

    torch.set_num_threads(2)
    out = levers.CACHE / corpus.name
    files = (out / "paths.txt").read_text().split()  # the rows of every cached feature
    net, size = levers.network(backbone)
    ends = stage_ends(net)
    got: dict[str, list] = defaultdict(list)
    order: list[int] = []
    t0 = time.perf_counter()
    pending: dict[tuple, list] = defaultdict(list)

    def flush(key: tuple) -> None:
        rows = pending.pop(key)
        p = pools(net, ends, np.stack([c for _, c in rows]))
        order.extend(i for i, _ in rows)
        for k, v in p.items():
            got[k].append(v)

    for i, rel in enumerate(files):
        rgb, _ = images.load_image(corpus / rel)
        crop = _input(images.prepare(rgb), size, framing)
        key = crop.shape
        pending[key].append((i, crop))
        if len(pending[key]) == batch:
            flush(key)
    for key in list(pending):
        flush(key)
    inv = np.argsort(np.array(order))
    tag = f"{backbone}-{framing}"
    for k, parts in got.items():
        f = out / f"{tag}-{k}.npy"
        if k in ("gap", "gem") and f.is_file():  # bench.levers's own: kept, compared
            same = np.allclose(np.load(f), np.concatenate(parts)[inv], atol=1e-4)
            print(f"{f.name}: cached, this pass {'agrees' if same else 'DIFFERS'}",
                  file=sys.stderr)
            continue
        np.save(f, np.concatenate(parts)[inv].astype(np.float32))
    info = {"images": len(files), "seconds_per_image": (time.perf_counter() - t0) / len(files),
            "stage_ends": ends}
    (out / f"{tag}-pool-time.json").write_text(json.dumps(info))
    if not (out / f"{tag}-time.json").is_file():
        (out / f"{tag}-time.json").write_text(json.dumps(info))
    return info


def timing(corpus: Path, n: int = 32, rounds: int = 3, batch: int = 16,
           backbone: str = "efficientnet-lite0") -> dict:
    """Indexing seconds per image, in one interleaved run: the old default (crop, average),
    the letterbox with the average alone and with every pool, and the own aspect ratio.

    ``n`` images are decoded, prepared and histogrammed once (the shared part, timed);
    then the variants take turns for ``rounds`` rounds, each framing and embedding all of
    them; the median round counts.
    """
    import torch

    torch.set_num_threads(2)
    every = (levers.CACHE / corpus.name / "paths.txt").read_text().split()
    files = every[:: max(1, len(every) // n)][:n]
    t = time.perf_counter()
    works = []
    for rel in files:
        work = images.prepare(images.load_image(corpus / rel)[0])
        histogram(work)
        works.append(work)
    decode = (time.perf_counter() - t) / len(works)
    net, size = levers.network(backbone)
    ends = stage_ends(net)

    def run(framing: str, every_pool: bool) -> None:
        groups: dict[tuple, list] = defaultdict(list)
        for w in works:
            x = _input(w, size, framing) if framing != "crop" else levers.frame(w, size, "crop")
            groups[x.shape].append(x)
        for xs in groups.values():
            for s in range(0, len(xs), batch):
                crops = np.stack(xs[s:s + batch])
                pools(net, ends, crops) if every_pool else levers.pooled(net, crops)

    variants = {"crop": ("crop", False), "lbw": ("lbw", False), "lbw-pools": ("lbw", True),
                "asp-pools": ("asp", True)}
    got: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (framing, every_pool) in variants.items():
            t = time.perf_counter()
            run(framing, every_pool)
            got[name].append((time.perf_counter() - t) / len(works))
    cnn = {k: float(np.median(v)) for k, v in got.items()}
    base = cnn["crop"] + decode
    return {"images": len(works), "rounds": rounds, "backbone": backbone,
            "decode_seconds_per_image": round(decode, 4),
            "index_seconds_per_image": {k: round(v + decode, 4) for k, v in cnn.items()},
            "vs_crop": {k: round((v + decode) / base, 2) for k, v in cnn.items()},
            "all_rounds": {k: [round(x, 4) for x in v] for k, v in got.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.levers_pool", description=__doc__)
    p.add_argument("corpus", type=Path)
    p.add_argument("--backbone", choices=sorted(levers.SIZES), default="efficientnet-lite0")
    p.add_argument("--framing", choices=("lbw", "asp"), default="lbw")
    p.add_argument("--time", type=int, metavar="N",
                   help="instead: time N images under each framing and pooling (JSON)")
    a = p.parse_args(argv)
    if a.time:
        out = timing(a.corpus, a.time, backbone=a.backbone)
        (levers.CACHE / a.corpus.name / "timing-pools.json").write_text(json.dumps(out))
        print(json.dumps(out))
        return 0
    print(json.dumps(extract(a.corpus, a.backbone, a.framing)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
