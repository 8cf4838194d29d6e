"""Image files for `infer`: every mode Pillow decodes gives the input tensor of its 8-bit RGB
rendering (to rounding), a huge image that is small on disk is refused from its header, and a
large one is resized from its 8-bit pixels without a full-resolution float copy."""

from __future__ import annotations

import contextlib
import io
import re
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import resnet_compiler as rc
from resnet_compiler.cli import main
from resnet_compiler.language.preprocessing import Preprocessing
from resnet_compiler.runtime import limits
from resnet_compiler.runtime.images import (
    decode_image,
    load_images,
    read_image,
    resize,
    resize_pixels,
)

ROUNDING = 0.5 / 255 + 1e-6


def _picture(h: int = 29, w: int = 37) -> Image.Image:
    """A colourful, non-smooth RGB picture (gradients and noise)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), rng.integers(0, 256, (h, w))], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _alpha(h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(4).integers(0, 256, (h, w)).astype(np.uint8))


def _mode_files(folder: Path) -> dict[str, tuple[Path, Path]]:
    """For each mode: the file in that mode, and its 8-bit RGB rendering (a PNG)."""
    rgb = _picture()
    gray = rgb.convert("L")
    g = np.asarray(gray)
    a = _alpha(*g.shape)
    made: dict[str, tuple[Image.Image, Image.Image, str]] = {
        "1": (rgb.convert("1"), rgb.convert("1").convert("RGB"), "png"),
        "L": (gray, gray.convert("RGB"), "png"),
        "I;16": (Image.fromarray(g.astype(np.uint16) * 257), gray.convert("RGB"), "png"),
        "I;16B": (Image.frombytes("I;16B", gray.size, (g.astype(">u2") * 257).tobytes()),
                  gray.convert("RGB"), "tif"),
        "I": (Image.fromarray(g.astype(np.int32) * 257, "I"), gray.convert("RGB"), "tif"),
        "F": (Image.fromarray(g.astype(np.float32) / 255, "F"), gray.convert("RGB"), "tif"),
        "P": (rgb.convert("P"), rgb.convert("P").convert("RGB"), "png"),
        "LA": (Image.merge("LA", (gray, a)), gray.convert("RGB"), "png"),
        "RGBA": (Image.merge("RGBA", (*rgb.split(), a)), rgb, "png"),
        "CMYK": (rgb.convert("CMYK"), rgb.convert("CMYK").convert("RGB"), "tif"),
    }
    out = {}
    for mode, (image, rendering, ext) in made.items():
        path, ref = folder / f"{mode.replace(';', '_')}.{ext}", folder / f"{mode.replace(';', '_')}_ref.png"
        image.save(path)
        rendering.save(ref)
        with Image.open(path) as back:
            assert back.mode == mode, (mode, back.mode)  # the file really decodes in that mode
        out[mode] = (path, ref)
    return out


@pytest.fixture(scope="module")
def mode_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return _mode_files(tmp_path_factory.mktemp("modes"))


MODES = ["1", "L", "I;16", "I;16B", "I", "F", "P", "LA", "RGBA", "CMYK"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels, size, resize_mode", [
    (3, (29, 37), "bilinear"), (3, (16, 16), "bilinear"), (1, (16, 20), "bicubic"),
    (1, (29, 37), "nearest")])
def test_every_mode_reads_as_its_8bit_rendering(mode_files: dict[str, tuple[Path, Path]],
                                                mode: str, channels: int,
                                                size: tuple[int, int], resize_mode: str) -> None:
    path, ref = mode_files[mode]
    pre = Preprocessing(channels, *size, resize=resize_mode, mean=(0.5,) * channels,
                        std=(0.25,) * channels)
    got, want = load_images([path], pre), load_images([ref], pre)
    # to rounding of the 8-bit value, which the mean/std scale by 1 / 0.25
    assert np.abs(got - want).max() <= ROUNDING / 0.25, mode


def test_sixteen_bit_gray_classifies_as_its_8bit_version(
        mode_files: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """Through the CLI: the same probabilities for a 16-bit PNG and the 8-bit PNG of it."""
    net = rc.compile({"name": "gray", "input": {"channels": 3, "height": 16, "width": 16,
                                                "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]},
                      "num_classes": 5,
                      "stages": [{"block": "basic", "depth": 1, "channels": 8}]})
    model = tmp_path / "m.onnx"
    net.to_onnx(model)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["infer", str(model), str(mode_files["I;16"][0]), str(mode_files["L"][0]),
                     "--top-k", "5"]) == 0
    rows = [dict((label, float(p)) for label, p in re.findall(r"(\d+) ([\d.]+)", line))
            for line in out.getvalue().splitlines()]
    assert rows[0].keys() == rows[1].keys()
    assert all(abs(rows[0][k] - rows[1][k]) <= 2e-4 for k in rows[0]), rows


def test_resizing_from_pixels_equals_the_float_path(tmp_path: Path) -> None:
    """resize_pixels (gathering only the rows and columns the taps read) gives the bits of
    resize(read_image(...)), for up- and downsampling in every mode."""
    path = tmp_path / "p.png"
    _picture(301, 203).save(path)
    for channels in (1, 3):
        full = read_image(path, channels)[None]
        raw, scale = decode_image(path, channels)
        for size in ((224, 224), (17, 500), (301, 203), (602, 9)):
            for mode in ("bilinear", "bicubic", "nearest"):
                want = resize(full, size, mode)[0]
                got = resize_pixels(raw, scale, channels, size, mode)
                assert np.array_equal(got, want), (channels, size, mode)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A valid-looking gray PNG of `width` x `height` whose pixel data is a few bytes (what a
    decompression bomb's header says is all the loader must read)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _zero_png(path: Path, side: int) -> None:
    """A real side x side black PNG, written row by row (small on disk, no big array)."""
    z = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(z.compress(row) for _ in range(side)) + z.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    rc.compile({"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16},
                "num_classes": 4, "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
               ).to_onnx(path)
    return path


def _infer(*argv: object) -> tuple[int, list[str], str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["infer", *map(str, argv)])
    return code, err.getvalue().strip().splitlines(), out.getvalue()


def test_huge_image_small_on_disk_is_refused_from_its_header(tiny_model: Path,
                                                             tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    _zero_png(bomb, 13_000)
    assert bomb.stat().st_size < 300_000
    lying = tmp_path / "lying.png"
    _png_header_only(lying, 100_000, 100_000)
    for path, side in ((bomb, 13_000), (lying, 100_000)):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            code, lines, _ = _infer(tiny_model, path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert code == 2 and lines == [
            f"error: {path}: the image is {side}x{side} = {side * side:,} pixels; the limit is "
            f"{limits.MAX_IMAGE_PIXELS:,} (RESNET_COMPILER_MAX_IMAGE_PIXELS raises it)"], lines
        assert peak < 16 << 20 and time.perf_counter() - start < 10


def test_large_image_is_resized_without_a_float_copy(tiny_model: Path, tmp_path: Path) -> None:
    """A 6000x6000 gray PNG: the numpy memory stays near its 8-bit pixels (36 MB, copied
    once), far below the 432 MB a float32 RGB copy would take."""
    big = tmp_path / "big.png"
    _zero_png(big, 6000)
    tracemalloc.start()
    try:
        code, lines, out = _infer(tiny_model, big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, lines
    assert out.startswith(f"{big}: ")
    assert peak < 1.5 * 6000 * 6000, f"{peak / 2**20:.0f} MiB"


def test_unreadable_images_fail_with_one_line(tiny_model: Path, tmp_path: Path) -> None:
    import os
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.png"
    _picture().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for path, words in ((fifo, "not a regular file"), (tmp_path, "not a regular file"),
                        (empty, "cannot read the image"), (truncated, "cannot read the image")):
        code, lines, _ = _infer(tiny_model, path)
        assert code == 2 and len(lines) == 1 and words in lines[0], (path, lines)


def test_float_gray_with_nan_and_out_of_range_values(tmp_path: Path) -> None:
    """A float image holding NaN, negative and above-1 values saturates as an 8-bit rendering
    would: NaN and below 0 black, above 1 white; the input stays finite."""
    values = np.array([[np.nan, -3.0, 0.5, 7.0]], np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(values, "F").save(path)
    assert np.array_equal(read_image(path, 1)[0], np.array([[0, 0, 0.5, 1]], np.float32))
