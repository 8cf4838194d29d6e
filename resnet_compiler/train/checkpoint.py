"""The files a run leaves in its output folder, and reading them back to resume.

After every epoch rank 0 rewrites, each atomically: checkpoint.pt (the full training state), model.pth
(the bare state_dict), model.safetensors (the same tensors), metrics.csv and curves.png. Nothing needs
unpickling: torch.load(weights_only=True) reads both .pt files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..language.load import loads_json
from ..outputs import write_atomic
from .curves import plot_curves

CHECKPOINT = "checkpoint.pt"
# every file a run writes into --out (save_outputs), checked before training starts
OUTPUT_FILES = (CHECKPOINT, "model.pth", "model.safetensors", "metrics.csv", "curves.png")
METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "test_acc", "images_per_s", "lr", "seconds")
CHECKPOINT_FORMAT = "resnet-compiler-training-checkpoint"


@dataclass
class RunRecord:
    """What every checkpoint of one run repeats: the spec, the options and the schedule's shape."""

    spec_json: str
    spec_sha256: str
    options: dict[str, Any]
    schedule: str
    base_lr: float
    total_steps: int
    steps_per_epoch: int
    title: str  # of the curves plot
    metadata: dict[str, Any] = field(default_factory=dict)  # plain values: see run_metadata
    warmup_steps: int = 0


def save_torch(path: Path, obj: Any) -> None:
    """torch.save `obj` to `path` atomically."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def write_metrics(out: Path, metrics: list[dict[str, float]]) -> None:
    """metrics.csv: one row per epoch, METRICS_COLUMNS in order."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    w.writeheader()
    for m in metrics:
        w.writerow({k: (int(m[k]) if k == "epoch" else f"{m[k]:.6g}") for k in METRICS_COLUMNS})
    write_atomic(out / "metrics.csv", buf.getvalue())


def weights_hash(state_dict: dict[str, Any]) -> str:
    """sha256 over names, shapes, dtypes and bytes of every tensor, in key order."""
    import torch
    h = hashlib.sha256()
    for k, v in state_dict.items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_dict(state: dict[str, Any], optimizer: Any, scaler: Any, metrics: list[dict[str, float]],
                    epoch: int, step: int, record: RunRecord) -> dict[str, Any]:
    """The full training state after `epoch` epochs (`step` optimizer steps), as checkpoint.pt holds it."""
    import torch
    return {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state,
        "spec": record.spec_json,
        "spec_sha256": record.spec_sha256,
        "epoch": epoch,
        "metrics": [dict(m) for m in metrics],
        "optimizer": optimizer.state_dict(),
        "scheduler": {"name": record.schedule, "base_lr": record.base_lr, "step": step,
                      "total_steps": record.total_steps, "steps_per_epoch": record.steps_per_epoch,
                      "warmup_steps": record.warmup_steps},
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": {"torch": torch.get_rng_state()},
        "args": record.options,
        "metadata": record.metadata,
    }


def save_outputs(out: Path, model: Any, optimizer: Any, scaler: Any, metrics: list[dict[str, float]],
                 epoch: int, step: int, record: RunRecord) -> None:
    """Rewrite every output file of the run in `out` after `epoch` epochs."""
    from safetensors.torch import save as st_save
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_torch(out / CHECKPOINT, checkpoint_dict(state, optimizer, scaler, metrics, epoch, step, record))
    save_torch(out / "model.pth", state)
    meta = {"spec_sha256": record.spec_sha256, "epoch": str(epoch), **safetensors_metadata(record.metadata)}
    write_atomic(out / "model.safetensors", st_save(state, metadata=meta))
    write_metrics(out, metrics)
    plot_curves(out, metrics, record.title)


def run_metadata(preprocessing_json: str, class_names: tuple[str, ...], init_weights: str | None,
                 init_notes: list[str], freeze: list[str], norm_eval: bool) -> dict[str, Any]:
    """What a model needs beside its weights (preprocessing, class names) and how it was fine-tuned,
    as plain values: checkpoint.pt keeps them under "metadata", model.safetensors as JSON strings."""
    return {"preprocessing": preprocessing_json, "class_names": list(class_names),
            "init_weights": init_weights, "init_weights_changes": list(init_notes),
            "freeze": list(freeze), "norm_eval": norm_eval}


JSON_METADATA = ("class_names", "freeze", "norm_eval", "init_weights_changes", "epoch")


def safetensors_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata holds strings: text as is (`preprocessing` stays Preprocessing.to_json
    text), lists and flags as JSON, None left out."""
    return {k: v if k not in JSON_METADATA else json.dumps(v) for k, v in metadata.items() if v is not None}


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a run's checkpoint.pt or model.safetensors, without unpickling anything:
    `preprocessing` (Preprocessing.to_json text), `class_names` (list), `freeze`, `norm_eval`,
    `init_weights`, `init_weights_changes`, `spec_sha256`, `epoch`. UsageError for other files."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors import safe_open
        try:
            with safe_open(str(p), framework="numpy") as f:
                raw = dict(f.metadata() or {})
        except Exception as e:  # noqa: BLE001 - any read failure is a bad input file
            raise UsageError(f"{p}: not a readable safetensors file ({type(e).__name__})") from None
        meta: dict[str, Any] = {"init_weights": None}
        for k, v in raw.items():
            try:
                meta[k] = loads_json(v, f"metadata {k}") if k in JSON_METADATA else v
            except ValueError as e:
                raise UsageError(f"{p}: {e}") from None
        return meta
    ck = load_checkpoint(p)
    meta = dict(ck.get("metadata") or {})
    meta.update(spec_sha256=ck.get("spec_sha256"), epoch=int(ck["epoch"]))
    return meta


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A training checkpoint, read with torch.load(weights_only=True): nothing is unpickled."""
    import torch
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no checkpoint to resume from")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad input file
        raise UsageError(f"{p}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "epoch" not in ck:
        raise UsageError(f"{p}: not a resnet-compile training checkpoint")
    return ck


RESUME_SAME = {"optimizer": "sgd", "freeze": None, "norm_eval": False}  # settings and their old default


def restore(ck_path: Path, spec: str, spec_sha256: str, model: Any, optimizer: Any,
            scaler: Any, settings: dict[str, Any] | None = None) -> tuple[int, list[dict[str, float]]]:
    """Load weights, optimizer, scaler and RNG state from `ck_path`; returns (epochs done, metrics).
    `settings` (RESUME_SAME's keys) must equal the run's recorded ones: they shape the optimizer."""
    import torch
    ck = load_checkpoint(ck_path)
    if ck.get("spec_sha256") not in (None, spec_sha256):
        raise UsageError(f"{ck_path}: was trained from a different spec than {spec}")
    recorded = ck.get("args") if isinstance(ck.get("args"), dict) else {}
    for key, now in (settings or {}).items():
        was = recorded.get(key, RESUME_SAME.get(key))
        if was != now:
            raise UsageError(f"{ck_path}: was trained with {key} {was!r}, not {now!r}; resume with the "
                             f"same setting")
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise UsageError(f"{ck_path}: weights do not fit {spec}: {str(e).splitlines()[0]}") from None
    try:
        optimizer.load_state_dict(ck["optimizer"])
    except (ValueError, KeyError) as e:
        raise UsageError(f"{ck_path}: its optimizer state does not fit this run ({e})") from None
    if ck.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(ck["scaler"])
    if isinstance(ck.get("rng"), dict) and isinstance(ck["rng"].get("torch"), torch.Tensor):
        torch.set_rng_state(ck["rng"]["torch"])
    return int(ck["epoch"]), list(ck.get("metrics", []))
