"""Inference with onnxruntime: open an emitted model on the best working device and classify.

onnxruntime-gpu lists CUDAExecutionProvider even where no GPU or CUDA library exists, and then
prints errors when a session tries it. So CUDA is tried only when the provider is listed and a
CUDA driver reports a device, with onnxruntime's logging silenced, and the session is kept only
if CUDA really is its first provider; otherwise the CPU provider is used, quietly.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..language.load import loads_json
from ..language.preprocessing import METADATA_KEY as PREPROCESSING_KEY
from ..language.preprocessing import Preprocessing
from ..messages import first_line
from .limits import check_activations, check_side

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
LOGITS = "logits"
DEVICES = ("auto", "cpu", "cuda")


@lru_cache(maxsize=1)
def cuda_device_present() -> bool:
    """Whether a CUDA driver is installed and sees at least one device (no CUDA toolkit needed)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    try:
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 \
            and count.value > 0
    except AttributeError:
        return False


def _options(threads: int | None, quiet: bool) -> Any:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 4 if quiet else 3
    if threads:
        so.intra_op_num_threads = threads
    return so


def _model_source(model: str | os.PathLike[str] | bytes) -> str | bytes:
    if isinstance(model, bytes):
        return model
    p = Path(model)
    if not p.is_file():
        raise UsageError(f"{p}: no such ONNX file")
    return str(p)


def open_session(model: str | os.PathLike[str] | bytes, device: str = "auto",
                 threads: int | None = None, exact_fp32: bool = False) -> Any:
    """An onnxruntime.InferenceSession on CUDA when asked for (or, with "auto", when it works),
    else on CPU. `model` is a path or serialized bytes; `threads` sets intra_op_num_threads;
    `exact_fp32` turns off TF32 on CUDA, for comparisons at fp32 tolerance."""
    import onnxruntime as ort
    if device not in DEVICES:
        raise UsageError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    source = _model_source(model)
    want_cuda = device in ("auto", "cuda") and CUDA in ort.get_available_providers() \
        and cuda_device_present()
    if device == "cuda" and not want_cuda:
        raise UsageError("CUDA is not available to onnxruntime on this machine")
    try:
        if want_cuda:
            ort.set_default_logger_severity(4)  # a failing CUDA load would print errors
            try:
                cuda = (CUDA, {"use_tf32": "0"}) if exact_fp32 else CUDA
                session = ort.InferenceSession(source, _options(threads, True),
                                               providers=[cuda, CPU])
            finally:
                ort.set_default_logger_severity(2)
            if session.get_providers()[0] == CUDA:
                return session
            if device == "cuda":
                raise UsageError("CUDA is not available to onnxruntime on this machine")
        return ort.InferenceSession(source, _options(threads, False), providers=[CPU])
    except UsageError:
        raise
    except Exception as e:  # onnxruntime raises its own types for unreadable models
        where = "the model" if isinstance(source, bytes) else source
        line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{where}: onnxruntime cannot load it ({line[:200]})") from None


def session_device(session: Any) -> str:
    """'cuda' or 'cpu': where the session runs."""
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"


def as_images(images: Any) -> np.ndarray:
    """NCHW float32 numpy from numpy or torch (a single CHW image gains a batch axis)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().float().numpy()
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise UsageError(f"images must be NCHW (or CHW), got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x)


def run_outputs(session: Any, images: Any) -> dict[str, np.ndarray]:
    """Every output of the model by name (the listed feature maps, then `logits` when the
    network has a head) for a batch of images."""
    x = _checked_input(session, images)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x}), strict=True))


def predict_logits(session: Any, images: Any) -> np.ndarray:
    """The model's logits (N, num_classes) for a batch of images."""
    names = [o.name for o in session.get_outputs()]
    if LOGITS not in names:
        raise UsageError(f"the model has no {LOGITS} output (it returns {', '.join(names)});"
                         " classifying needs a network with a head")
    x = _checked_input(session, images)
    return session.run([LOGITS], {session.get_inputs()[0].name: x})[0]


def _checked_input(session: Any, images: Any) -> np.ndarray:
    x = as_images(images)
    inp = session.get_inputs()[0]
    want = inp.shape[1:]
    if any(isinstance(w, int) and w != g for w, g in zip(want, x.shape[1:], strict=True)):
        raise UsageError(f"images are {tuple(x.shape[1:])}, the model takes {tuple(want)}")
    batch = inp.shape[0]
    if isinstance(batch, int) and batch != x.shape[0]:
        raise UsageError(f"the model has a fixed batch of {batch}, got {x.shape[0]} images")
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Classification:
    """Softmax probabilities of every class, and the top-k classes per image (best first)."""

    probs: np.ndarray
    top_indices: np.ndarray
    top_probs: np.ndarray

    def labels(self, names: list[str]) -> list[list[str]]:
        """The top-k class names per image, given the list of class names."""
        return [[names[i] for i in row] for row in self.top_indices]


def classify(session: Any, images: Any, top_k: int = 5) -> Classification:
    """Probabilities and the `top_k` most likely classes for each image."""
    probs = softmax(predict_logits(session, images).astype(np.float64))
    k = max(1, min(top_k, probs.shape[1]))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return Classification(probs.astype(np.float32), top,
                          np.take_along_axis(probs, top, axis=1).astype(np.float32))


def metadata(session: Any) -> dict[str, str]:
    """The model's metadata properties (spec name, preprocessing, class names, ...)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:
        raise UsageError("the model's metadata is not UTF-8 text (a damaged file?)") from None


def preprocessing_of(session: Any) -> Preprocessing:
    """How the model wants its images, from its `preprocessing` metadata."""
    text = metadata(session).get(PREPROCESSING_KEY)
    if text is None:
        raise UsageError("the model has no preprocessing metadata; export it with resnet-compile"
                         " (--emit onnx) to classify image files")
    pre = Preprocessing.from_json(text)
    check_side(pre.height, "the preprocessing metadata's height")
    check_side(pre.width, "the preprocessing metadata's width")
    want = session.get_inputs()[0].shape
    given = (pre.channels, pre.height, pre.width)
    if len(want) != 4 or any(isinstance(d, int) and d != g for d, g in zip(want[1:], given,
                                                                          strict=True)):
        shown = "x".join(str(d) if isinstance(d, int) else "?" for d in want[1:])
        raise UsageError(f"the preprocessing metadata says {'x'.join(map(str, given))}, the "
                         f"model's input is {shown}")
    return pre


def class_names_of(session: Any) -> list[str] | None:
    """The class names from the `class_names` metadata, or None where the model has none."""
    text = metadata(session).get("class_names")
    if text is None:
        return None
    try:
        names = loads_json(text, "the class_names metadata")
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError("the model's class_names metadata is not a JSON list of strings")
    return names


def graph_attrs(session: Any, input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """What limits.check_activations needs: the graph's activation count from the spec the
    model was compiled from (its spec_text metadata), or, for a model without one, the input
    (`input_shape`, CHW) alone."""
    text = metadata(session).get("spec_text")
    if text is not None:
        from ..compiler import compile as compile_spec
        from ..errors import SpecError
        try:
            data = loads_json(text, "the spec_text metadata")
            # the flat spec the file was made from; one that names other files is not ours
            if isinstance(data, dict) and not {"extends", "use"} & data.keys():
                return dict(compile_spec(data).ir.graph)
        except (SpecError, ValueError):
            pass  # an edited spec_text: the estimate falls back to the input alone
    return {"input_shape": input_shape, "total_acts": 0, "name": "the model"}


@dataclass
class FilePrediction:
    """The most likely classes of one image file, best first, with their probabilities."""

    path: str
    labels: list[str]
    probs: list[float]


def classify_files(session: Any, paths: Sequence[str | os.PathLike[str]], top_k: int = 5,
                   batch: int = 32) -> list[FilePrediction]:
    """Decode, resize and normalise each file as the model's preprocessing metadata says (the
    training loader's arithmetic), run the model in batches, return the top-k classes per file.
    Every file is read before anything runs, so a bad file fails fast (UsageError)."""
    from .images import load_images
    pre = preprocessing_of(session)
    names = class_names_of(session)
    fixed = session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) else batch
    check_activations(graph_attrs(session, (pre.channels, pre.height, pre.width)), pre.height,
                      pre.width, min(step, len(paths)), "the model")
    x = load_images(paths, pre)
    probs = []
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        pad = step - len(chunk) if isinstance(fixed, int) else 0
        if pad:  # a model exported with a fixed batch: fill the last one up
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        try:
            probs.append(classify(session, chunk, top_k).probs[:len(chunk) - pad])
        except UsageError:
            raise
        except Exception as e:  # onnxruntime's own errors: a model file damaged inside
            raise UsageError(f"onnxruntime cannot run the model ({first_line(e)})") from None
    p = np.concatenate(probs)
    k = max(1, min(top_k, p.shape[1]))
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    label = (lambda i: names[i] if i < len(names) else str(i)) if names else str
    return [FilePrediction(str(path), [label(int(i)) for i in row], [float(p[n, i]) for i in row])
            for n, (path, row) in enumerate(zip(paths, top, strict=True))]
