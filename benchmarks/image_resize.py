"""Large photos into a network input: the 8-bit gather path of `infer` against the full float
path it replaced (decode, divide the whole image by 255, resize), in one run.

For each size the same PNG is read both ways; the script prints the wall time (median of
three) and the peak numpy/Python memory (tracemalloc) of each, and checks the two give the
same bits. Usage: python benchmarks/image_resize.py [--sizes 2000x3000,6000x4000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_compiler.language.preprocessing import Preprocessing
from resnet_compiler.runtime.images import load_images, read_image, resize


def _float_path(path: Path, pre: Preprocessing) -> np.ndarray:
    """What `infer` did before: the whole image as float32, then resized."""
    image = resize(read_image(path, pre.channels)[None], (pre.height, pre.width), pre.resize)
    return pre.normalize_numpy(np.clip(image, 0, 1))


def _measure(fn, *args) -> tuple[float, int, np.ndarray]:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return statistics.median(times), peak, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000x3000,6000x4000", help="HxW list of photo sizes")
    args = p.parse_args()
    pre = Preprocessing(3, 224, 224, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rng = np.random.default_rng(0)
    print("| photo (RGB PNG) | float path: time, peak memory | 8-bit gather: time, peak memory |"
          " ratio time / memory |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            h, w = map(int, size.split("x"))
            y, x = np.mgrid[0:h, 0:w]
            rgb = np.stack([(x * 7 + y) % 256, (y * 3) % 256,
                            rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
            path = Path(tmp) / f"{size}.png"
            Image.fromarray(rgb).save(path, compress_level=1)
            del rgb, x, y
            t_float, m_float, a = _measure(_float_path, path, pre)
            t_new, m_new, b = _measure(load_images, [path], pre)
            assert np.array_equal(a, b), "the two paths differ"
            print(f"| {w}x{h} | {t_float:.2f} s, {m_float / 2**20:,.0f} MiB | {t_new:.2f} s, "
                  f"{m_new / 2**20:,.0f} MiB | {t_new / t_float:.2f} / {m_new / m_float:.2f} |")


if __name__ == "__main__":
    main()
