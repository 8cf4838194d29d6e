"""int8 ONNX: onnxruntime's static quantization (QDQ, per-channel weights), calibrated on real
images with the spec's preprocessing, then measured against the fp32 model it came from.

Static rather than dynamic: activation ranges are fixed from calibration, so every Conv runs as an
int8 kernel (dynamic quantization computes ranges per run and leaves convolutions slower). QDQ
format keeps the file a plain ONNX graph (QuantizeLinear/DequantizeLinear around fp32 ops) that
onnxruntime fuses into int8 kernels at load time. Activations are uint8 and weights int8 (U8S8):
x86 CPUs without VNNI (AVX2 only) have fast kernels for that pair only (measured on such a CPU,
int8 activations ran no faster than fp32). Those kernels add pairs of u8 x s8 products in 16 bits,
which saturates with full-range weights (a trained digits network lost 4 points of accuracy), so
weights use 7 bits (`reduce_range`), which onnxruntime recommends there; per-channel scales keep
that loss negligible (the same network then matched fp32). Calibration uses min/max over a seeded sample of
the training split; accuracy is reported on the test split, which calibration never sees.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..compiler import CompiledNetwork

DEFAULT_CALIBRATION_IMAGES = 256
BATCH = 16  # images per calibration / evaluation run


@dataclass
class QuantReport:
    """How the int8 model compares with fp32 on the dataset's test split."""

    name: str
    dataset: str
    calibration_images: int
    test_images: int
    agreement: float
    fp32_accuracy: float
    int8_accuracy: float
    fp32_bytes: int
    int8_bytes: int
    trained: bool = True  # False: seeded random weights, whose accuracy means nothing

    def format(self) -> str:
        return "\n".join([
            f"int8 {self.name}: static QDQ, per-channel 7-bit weights, uint8 activations,"
            f" calibrated on"
            f" {self.calibration_images} {self.dataset} training images",
            f"  top-1 agreement with fp32: {self.agreement:.2%} of {self.test_images} test images",
            f"  test accuracy: fp32 {self.fp32_accuracy:.2%}, int8 {self.int8_accuracy:.2%}"
            if self.trained else
            "  test accuracy: not meaningful for seeded random weights (pass --weights CKPT)",
            f"  size: fp32 {self.fp32_bytes / 2**20:.1f} MiB, int8 {self.int8_bytes / 2**20:.1f}"
            f" MiB",
        ]) + "\n"


def _prepared(net: CompiledNetwork, images: Any) -> np.ndarray:
    """Dataset images in [0, 1] -> the network's input: channels, size, mean/std."""
    from ..language.preprocessing import Preprocessing
    from ..train.data import fit_batch
    c, h, w = net.input_shape
    x = Preprocessing.from_spec(net.spec).normalize_torch(fit_batch(images, c, (h, w)))
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one input feed (a batch) per call, None at
    the end; `set_range` limits it to some batches, so that ranges are merged batch by batch and
    a single batch's activations are held at a time (resnet50: ~45 MB per image)."""

    def __init__(self, net: CompiledNetwork, images: Any) -> None:
        self.net, self.images = net, images
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.images) // BATCH)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.next, self.end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= self.end:
            return None
        batch = self.images[self.next * BATCH:(self.next + 1) * BATCH]
        self.next += 1
        return {"input": _prepared(self.net, batch)}


def _predictions(session: Any, net: CompiledNetwork, images: Any) -> np.ndarray:
    out = [session.run(None, {"input": _prepared(net, images[i:i + BATCH])})[0].argmax(1)
           for i in range(0, len(images), BATCH)]
    return np.concatenate(out)


def quantize_int8(net: CompiledNetwork, output: str | os.PathLike[str], weights: Any = None,
                  dataset: str = "digits", data_dir: str | None = None,
                  calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
                  opset: int | None = None, fold_bn: bool = True, seed: int = 0) -> QuantReport:
    """Write the int8 model of `net` to `output` (atomically) and compare it with fp32.

    `weights` as for `to_onnx` (None: the seeded initialisation); `dataset` one of the `train`
    datasets, loaded with `data_dir`; `calibration_images` drawn (seeded) from its training split.
    """
    import onnx
    import torch
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ..outputs import check_output_path, write_atomic
    from ..train.data import check_channels, load_dataset
    from .infer import open_session
    from .weights import as_numpy_state_dict, check_state_dict, init_weights

    check_output_path(output)
    if calibration_images < 1:
        raise UsageError(f"calibration images {calibration_images}: must be at least 1")
    sd = init_weights(net.graph) if weights is None else as_numpy_state_dict(weights)
    check_state_dict(net.graph, sd)
    c, h, w = net.input_shape
    ds = load_dataset(dataset, data_dir, c, (h, w), seed=seed)
    check_channels(ds.image_shape[0], c)
    pick = torch.from_numpy(np.random.default_rng(seed).permutation(len(ds.train_images))
                            [:calibration_images])
    calibration = ds.train_images[pick]

    with tempfile.TemporaryDirectory(prefix="resnet-int8-") as tmp:
        fp32_path, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        net.to_onnx(fp32_path, weights=sd, opset=opset, fold_bn=fold_bn)
        quantize_static(str(fp32_path), str(int8_path), _Reader(net, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        reduce_range=True,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibStridedMinMax": 1})
        fp32 = onnx.load(str(fp32_path))
        model = onnx.load(str(int8_path))
        props = {p.key: p.value for p in fp32.metadata_props}
        props["quantization"] = (f"int8 static QDQ, per-channel, calibrated on {len(calibration)}"
                                 f" {dataset} images")
        onnx.helper.set_model_props(model, props)
        model.ir_version = fp32.ir_version  # what the installed onnxruntime loads
        data = model.SerializeToString()

        fp32_session = open_session(fp32_path, "cpu")
        int8_session = open_session(data, "cpu")
        want = _predictions(fp32_session, net, ds.test_images)
        got = _predictions(int8_session, net, ds.test_images)
        labels = ds.test_labels.numpy()
        report = QuantReport(net.name, dataset, len(calibration), len(labels),
                             float((want == got).mean()), float((want == labels).mean()),
                             float((got == labels).mean()), fp32_path.stat().st_size, len(data),
                             trained=weights is not None)
    write_atomic(output, data)
    return report
