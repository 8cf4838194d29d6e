"""`resnet-compile bench`: a table of latency percentiles and throughput per batch size, for an
ONNX file (onnxruntime) or a spec (onnxruntime beside torch eager on the same weights), with CSV
and JSON copies; bad requests exit 2 with one line. Timings themselves are benchmarks' business."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from support import ROOT, run_cli

import resnet_compiler as rc
from resnet_compiler.cli import main as cli_main
from resnet_compiler.runtime.bench import Runtime, measure

SMALL = ROOT / "spec" / "resnet20_cifar.yaml"


def test_onnx_file_table_csv_and_json(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    rc.compile(SMALL).to_onnx(model, dtype="fp16")
    out_csv, out_json = tmp_path / "b.csv", tmp_path / "b.json"
    r = run_cli("bench", model, "--batch", "1,3", "--runs", "4", "--warmup", "1", "--threads", "1",
                "--csv", out_csv, "--json", out_json)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"bench {model}: cpu, 1 threads, 4 timed runs after 1 warm-up")
    assert lines[1].split() == ["runtime", "batch", "p50", "ms", "p90", "ms", "p99", "ms", "images/s"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [(row["runtime"], row["batch"], row["runs"]) for row in rows] == \
        [("onnxruntime cpu", "1", "4"), ("onnxruntime cpu", "3", "4")]
    for row in rows:
        p50, p90, p99 = float(row["p50_ms"]), float(row["p90_ms"]), float(row["p99_ms"])
        assert 0 < p50 <= p90 <= p99
        assert float(row["images_per_s"]) == pytest.approx(int(row["batch"]) * 1000 / p50, rel=1e-3)
    data = json.loads(out_json.read_text())
    assert data["model"] == str(model) and data["threads"] == 1
    assert [res["batch"] for res in data["results"]] == [1, 3]


def test_spec_runs_onnxruntime_and_torch_side_by_side(tmp_path: Path) -> None:
    r = run_cli("bench", SMALL, "--batch", "2", "--runs", "2", "--warmup", "1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    runtimes = [line.rsplit(None, 5)[0] for line in r.stdout.splitlines()[2:]]
    assert runtimes == ["onnxruntime cpu", "torch eager cpu"]


def test_rounds_alternate_between_runtimes() -> None:
    order: list[str] = []
    runtimes = [Runtime(n, lambda batch, n=n: (lambda: order.append(n))) for n in "ab"]
    rows = measure(runtimes, [1], runs=5, warmup=1, rounds=2)
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 2 + ["b"] * 2
    assert [(row.runtime, row.runs) for row in rows] == [("a", 5), ("b", 5)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(capsys) -> None:
    assert cli_main(["bench", str(SMALL), "--provider", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA device is available" in err


@pytest.mark.parametrize("args, message", [
    (["m.onnx", "--compile"], "--weights and --compile are for a spec"),
    (["m.onnx", "--batch", "1,x"], "'x' is not a batch size"),
    (["fixed.onnx", "--batch", "2"], "batch 2: the model has a fixed batch of 1"),
    (["missing.onnx"], "missing.onnx: no such ONNX file"),
    (["m.onnx", "--csv", "nodir/b.csv"], "does not exist"),
])
def test_misuse_is_one_line_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    net = rc.compile(SMALL)
    net.to_onnx(tmp_path / "m.onnx")
    net.to_onnx(tmp_path / "fixed.onnx", batch=1)
    args = [str(tmp_path / a) if a.endswith((".onnx", ".csv")) else a for a in args]
    assert cli_main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
