"""Hostile files by the hundred: random bytes, truncations and mutations of valid specs,
checkpoints and ONNX models, through the CLI. Every case ends with exit 0 or 2, each line of
stderr a message (never a traceback), and no file changed but the named output."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CAPSYS_OK, examples
from hostile_strategies import data_mutations, hostile_versions
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from strategies import valid_specs

import resnet_compiler as rc
from resnet_compiler.cli import main

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
# a user block with vars, a `when` and expressions, for mutations to land in
USER = {**SMALL, "blocks": {"mine": {
    "params": {"k": 3, "wide": True}, "vars": {"hidden": "make_divisible(channels * 1.5, 4)",
                                                "depth_log": "int(log2(channels))"},
    "branch": [{"op": "conv", "name": "conv1", "channels": "hidden", "kernel": "k",
                "stride": "stride"},
               {"op": "bn", "when": "wide and depth_log > 1"},
               {"op": "conv", "channels": "max(channels, 2)", "kernel": 1}]}},
    "stages": [{"block": "mine", "depth": 2, "channels": 8}]}
VALID_TEXTS = [yaml.safe_dump(SMALL, sort_keys=False), yaml.safe_dump(USER, sort_keys=False)]


def _snapshot(folder: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
            if p != skip}


def _run(argv: list[str | Path]) -> tuple[int, list[str]]:
    """In-process CLI run: exit code and stderr lines (stdout is dropped)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue().strip().splitlines()


def _assert_clean(code: int, lines: list[str], out: Path, before: dict, folder: Path,
                  starts: tuple[str, ...]) -> None:
    assert code in (0, 2), lines
    assert not any("Traceback" in line for line in lines), lines
    if code == 2:
        assert lines and all(line.startswith(starts) for line in lines), lines
        assert not out.exists()
    assert _snapshot(folder, out) == before


def _spec_case(folder: Path, data: bytes, suffix: str) -> None:
    spec = folder / f"spec{suffix}"
    spec.write_bytes(data)
    out = folder / "model.py"
    out.unlink(missing_ok=True)
    before = _snapshot(folder, out)
    code, lines = _run([spec, "--emit", "torch", "-o", out])
    _assert_clean(code, lines, out, before, folder, (str(spec), "error: "))


@settings(max_examples=examples(150), suppress_health_check=CAPSYS_OK)
@given(st.integers(0, len(VALID_TEXTS) - 1).flatmap(
    lambda i: hostile_versions(VALID_TEXTS[i].encode(), text=True)))
def test_hostile_spec_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _spec_case(tmp_path_factory.mktemp("spec"), data, ".yaml")


@settings(max_examples=examples(150), suppress_health_check=CAPSYS_OK)
@given(st.sampled_from([SMALL, USER]).flatmap(data_mutations), st.booleans())
def test_mutated_spec_data(tmp_path_factory: pytest.TempPathFactory, data: object,
                           as_json: bool) -> None:
    try:
        text = json.dumps(data) if as_json else yaml.safe_dump(data)
    except ValueError:
        text = yaml.safe_dump(data)
    _spec_case(tmp_path_factory.mktemp("spec"), text.encode(), ".json" if as_json else ".yaml")


@settings(max_examples=examples(40), suppress_health_check=CAPSYS_OK)
@given(valid_specs(max_side=64, max_stages=2).flatmap(
    lambda spec: data_mutations(spec).map(lambda mutated: (spec, mutated))))
def test_mutations_of_drawn_specs(tmp_path_factory: pytest.TempPathFactory,
                                  pair: tuple[dict, object]) -> None:
    _, mutated = pair
    _spec_case(tmp_path_factory.mktemp("spec"), yaml.safe_dump(mutated).encode(), ".yaml")


# ---- checkpoints -----------------------------------------------------------------------------

def _checkpoint_bytes(kind: str) -> bytes:
    state = rc.compile(SMALL).build_torch().state_dict()
    buf = io.BytesIO()
    if kind == ".pt":
        torch.save(state, buf)
        return buf.getvalue()
    from safetensors.torch import save
    return save({k: v.contiguous() for k, v in state.items()})


CHECKPOINTS = {kind: _checkpoint_bytes(kind) for kind in (".pt", ".safetensors")}


@settings(max_examples=examples(120), suppress_health_check=CAPSYS_OK)
@given(st.sampled_from(sorted(CHECKPOINTS)).flatmap(
    lambda kind: hostile_versions(CHECKPOINTS[kind], text=False).map(lambda b: (kind, b))))
def test_hostile_checkpoints(tmp_path_factory: pytest.TempPathFactory,
                             case: tuple[str, bytes]) -> None:
    kind, data = case
    folder = tmp_path_factory.mktemp("ckpt")
    spec = folder / "s.yaml"
    spec.write_text(VALID_TEXTS[0])
    ckpt = folder / f"weights{kind}"
    ckpt.write_bytes(data)
    out = folder / "model.onnx"
    before = _snapshot(folder, out)
    code, lines = _run([spec, "--emit", "onnx", "--weights", ckpt, "-o", out])
    _assert_clean(code, lines, out, before, folder, ("error: ",))


# ---- ONNX models -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    path = folder / "tiny.onnx"
    rc.compile(SMALL).to_onnx(path, class_names=["a", "b", "c", "d"])
    image = folder / "img.png"
    Image.fromarray(np.arange(20 * 24 * 3, dtype=np.uint8).reshape(20, 24, 3)).save(image)
    return path.read_bytes(), image


def _infer_case(folder: Path, model: bytes, image: Path) -> None:
    path = folder / "m.onnx"
    path.write_bytes(model)
    before = _snapshot(folder, folder / "nothing")
    code, lines = _run(["infer", path, image])
    _assert_clean(code, lines, folder / "nothing", before, folder, ("error: ",))


@settings(max_examples=examples(120), suppress_health_check=CAPSYS_OK)
@given(st.data())
def test_hostile_onnx_files(tmp_path_factory: pytest.TempPathFactory,
                            model_files: tuple[bytes, Path], data: st.DataObject) -> None:
    valid, image = model_files
    model = data.draw(hostile_versions(valid, text=False))
    _infer_case(tmp_path_factory.mktemp("onnx"), model, image)


@settings(max_examples=examples(120), suppress_health_check=CAPSYS_OK)
@given(st.data())
def test_mutated_onnx_metadata(tmp_path_factory: pytest.TempPathFactory,
                               model_files: tuple[bytes, Path], data: st.DataObject) -> None:
    import onnx
    valid, image = model_files
    model = onnx.load_from_string(valid)
    props = {p.key: p.value for p in model.metadata_props}
    key = data.draw(st.sampled_from(["preprocessing", "class_names", "spec_text"]))
    value = data.draw(data_mutations(json.loads(props[key])))
    try:
        props[key] = json.dumps(value)
    except ValueError:
        props[key] = str(value)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    _infer_case(tmp_path_factory.mktemp("onnx"), model.SerializeToString(), image)


def test_strategies_reach_both_outcomes(tmp_path: Path) -> None:
    """The control: an unmutated spec, checkpoint and model pass (exit 0), so the properties
    above see successes as well as refusals."""
    spec = tmp_path / "s.yaml"
    spec.write_text(VALID_TEXTS[1])
    assert _run([spec, "--emit", "torch", "-o", tmp_path / "m.py"])[0] == 0
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(CHECKPOINTS[".pt"])
    spec.write_text(VALID_TEXTS[0])
    assert _run([spec, "--emit", "onnx", "--weights", ckpt, "-o", tmp_path / "m.onnx"])[0] == 0
    assert os.path.getsize(tmp_path / "m.onnx") > 0
