"""What machine a benchmark ran on."""

from __future__ import annotations

import contextlib
import os
import platform


def machine() -> dict:
    cpu = platform.processor() or "?"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem = 0
    with contextlib.suppress(ValueError, OSError):
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "simd": sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16",
                                                     "amx_bf16", "neon"))}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["bf16_cpu"] = bool({"avx512_bf16", "amx_bf16"} & flags)
    except ImportError:
        pass
    import numpy as np

    info["numpy"] = np.__version__
    return info
