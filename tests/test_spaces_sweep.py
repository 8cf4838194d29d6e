"""A design space swept end to end through Ray Tune (a local Ray, CPU trials) on scikit-learn's
digits: sample, a sweep killed part-way and resumed, a design that fails, then analyze, whose EDF
is checked against the designs' own metrics files. One Ray for the whole module."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from resnet_compiler.cli import main
from resnet_compiler.spaces.sweep import WORKER_NICENESS, SweepOptions, sweep_folder

SPACE = """\
name: digits_space
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 8, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 1, channels: 8}
  - {block: basic, depth: 1, channels: 16, stride: 2}
head: {pool: avg, dropout: 0.0}
space:
  seed: 0
  sample:
    stages.0.channels: {choice: [8, 16]}
    stages.layer2.channels: {power2_uniform: [16, 32]}
    head.dropout: {uniform: [0.0, 0.2], q: 0.1}
  constraints:
    params: [1, 100000]
"""
OPTS = SweepOptions(dataset="digits", epochs=1, batch_size=32, lr=0.1)


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray of two CPUs for every sweep here (the sweeps use it, not a Ray of their own);
    its address, for a sweep in another process to join. Its folder is short: Ray's socket paths
    under it must stay within the 107 characters a Unix socket's path may have."""
    temp = tempfile.mkdtemp(prefix="rc-ray-")
    before = os.environ.get(WORKER_NICENESS)
    os.environ[WORKER_NICENESS] = "0"  # as a sweep's own Ray: trials at the normal priority
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        if before is None:
            os.environ.pop(WORKER_NICENESS, None)
        else:
            os.environ[WORKER_NICENESS] = before


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def final_error(run: Path) -> float:
    """The top-1 error (%) a design's own metrics.csv ends with."""
    return 100.0 * (1.0 - float(read_rows(run / "metrics.csv")[-1]["test_acc"]))


def test_sweep_resume_failure_and_analysis(tmp_path: Path, cluster: str) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    d = tmp_path / "designs"
    assert main(["sample", str(tmp_path / "space.yaml"), "-n", "6", "-o", str(d),
                 "--no-progress"]) == 0
    names = [Path(r["design"]).stem for r in read_rows(d / "designs.csv")]
    assert len(names) == 6
    broken = names[-1]
    (d / f"{broken}.yaml").write_text("name: [not a spec\n")

    # a sweep in another process, joined to this Ray, killed once its first design is done
    env = {**os.environ, "RAY_ADDRESS": cluster}
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_compiler", "sweep", str(d), "--dataset", "digits",
         "--epochs", "1", "--batch-size", "32", "--lr", "0.1", "--address", cluster,
         "--max-concurrent", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    deadline = time.monotonic() + 240
    done: list[str] = []
    while time.monotonic() < deadline and not done and proc.poll() is None:
        done = [n for n in names if (d / "runs" / n / "result.json").is_file()]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(300):  # Ray ends the dead sweep's trial and takes its CPU back
        if ray.available_resources().get("CPU", 0) >= 2:
            break
        time.sleep(0.1)
    assert done, f"no design finished before the kill: {proc.stderr.read().decode()[-2000:]}"
    assert len(done) < len(names)
    stamps = {n: (d / "runs" / n / "checkpoint.pt").stat().st_mtime_ns for n in done
              if (d / "runs" / n / "checkpoint.pt").is_file()}

    # resumed here: what finished is skipped, the rest trains, the broken design is recorded
    summary = sweep_folder(d, OPTS)
    assert set(summary.skipped) == set(stamps)
    assert summary.failed == [broken]
    assert {n: (d / "runs" / n / "checkpoint.pt").stat().st_mtime_ns for n in stamps} == stamps
    rows = {Path(r["design"]).stem: r for r in read_rows(d / "results.csv")}
    assert list(read_rows(d / "results.csv")[0]) == ["design", "status", "error", "epochs", "seconds"]
    assert rows[broken]["status"].startswith("failed: ") and "YAML" in rows[broken]["status"]
    for n in names[:-1]:
        run = d / "runs" / n
        assert rows[n]["status"] == "ok" and rows[n]["epochs"] == "1"
        assert {"spec.yaml", "metrics.csv", "checkpoint.pt", "result.json"} <= {p.name for p in run.iterdir()}
        assert float(rows[n]["error"]) == pytest.approx(final_error(run), abs=1e-3)
    again = sweep_folder(d, OPTS)  # nothing left but the broken design, which fails again
    assert sorted(again.skipped) == sorted(names[:-1]) and again.failed == [broken]

    # analyze: the EDF is the one of the designs' own final errors
    report = tmp_path / "report" / "report.html"
    report.parent.mkdir()
    assert main(["analyze", str(d), "-o", str(report)]) == 0
    errors = sorted(final_error(d / "runs" / n) for n in names[:-1])
    edf = [(float(r["error"]), float(r["edf"])) for r in read_rows(report.parent / "edf.csv")]
    want = [(e, sum(x <= e + 1e-9 for x in errors) / len(errors)) for e in sorted(set(errors))]
    assert [e for e, _ in edf] == pytest.approx([e for e, _ in want], abs=1e-3)
    assert [f for _, f in edf] == pytest.approx([f for _, f in want])
    page = report.read_text()
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)  # nothing off the page
    assert (report.parent / "edf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Best designs of designs" in page
