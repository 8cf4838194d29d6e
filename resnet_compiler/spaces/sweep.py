"""`resnet-compile sweep DIR`: train every sampled design with the `train` command's loop, each as
a Ray Tune trial.

Ray runs locally unless `--address` names a cluster (then trials spread over its machines; DIR
must be on storage they all see). A trial takes `--cpus-per-trial` CPUs (its torch threads) and,
where the cluster has GPUs, one GPU or the `--gpus-per-trial` fraction of one.

The sweep is resumable by its files alone: a design whose `runs/<design>/result.json` says it
finished with the same dataset, epochs and spec is skipped; one with a checkpoint but no result
(a sweep killed while it trained) continues from that checkpoint. A design that fails (its spec
does not compile, training diverges) is recorded as failed with the reason, and the others go on.
`results.csv` is written from the result files at the end of every sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, UsageError
from ..messages import first_line
from ..outputs import write_atomic
from .files import RESULT_COLUMNS, RESULTS_CSV, RUNS, csv_text, read_csv, read_designs

RESULT = "result.json"
WORKER_NICENESS = "RAY_worker_niceness"
SPEC = "spec.yaml"
LOG = "train.log"


@dataclass(frozen=True)
class SweepOptions:
    """What every design is trained with, and where the trials run."""

    dataset: str
    epochs: int
    data_dir: str | None = None
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    address: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0
    max_concurrent: int | None = None
    train_args: tuple[str, ...] = ()


@dataclass
class Summary:
    """How a sweep went: designs trained now, skipped as finished, failed."""

    total: int
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    results: Path | None = None

    def format(self) -> str:
        return (f"sweep: {self.total} designs: {len(self.trained)} trained, {len(self.skipped)} "
                f"already finished, {len(self.failed)} failed, in {self.seconds:.1f} s; wrote "
                f"{self.results}")


def spec_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def read_result(run: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(run: Path, spec: Path, opts: SweepOptions) -> bool:
    """Whether the design's result is one this sweep would produce (nothing to retrain)."""
    r = read_result(run)
    return bool(r) and r.get("status") == "ok" and r.get("epochs") == opts.epochs and \
        r.get("dataset") == opts.dataset and r.get("spec_sha256") == spec_digest(spec) and \
        r.get("seed") == opts.seed and (run / "checkpoint.pt").is_file()


# -- one trial ---------------------------------------------------------------------------------

def train_design(design: str, spec: Path, run: Path, opts: SweepOptions, device: str) -> dict[str, Any]:
    """Train one design into `run` (continuing a checkpoint left there); its result.json."""
    from ..train import main as train_main
    start = time.perf_counter()
    result: dict[str, Any] = {"design": design, "dataset": opts.dataset, "seed": opts.seed,
                              "spec_sha256": spec_digest(spec)}
    run.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        try:
            text = spec.read_text()
        except OSError as e:
            raise UsageError(f"{spec}: cannot read the design's spec: {e.strerror or e}") from None
        write_atomic(run / SPEC, text)
        argv = [str(spec), "--dataset", opts.dataset, "--epochs", str(opts.epochs),
                "--batch-size", str(opts.batch_size), "--seed", str(opts.seed), "--out", str(run),
                "--device", device, *(["--lr", str(opts.lr)] if opts.lr is not None else []),
                *(["--data-dir", opts.data_dir] if opts.data_dir else []), *opts.train_args]
        resume = ["--resume"] if (run / "checkpoint.pt").is_file() else ["--overwrite"]
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                train_main([*argv, *resume])
            except UsageError:
                if resume != ["--resume"]:
                    raise
                train_main([*argv, "--overwrite"])  # the checkpoint is another run's: start over
        metrics = read_csv(run / "metrics.csv")
        last = metrics[-1]
        error = 100.0 * (1.0 - float(last["test_acc"]))
        if not math.isfinite(error):
            raise ValueError(f"final test accuracy {last['test_acc']!r} is not a number")
        result.update(status="ok", error=round(error, 4), epochs=int(float(last["epoch"])))
    except SpecError as e:
        result.update(status="failed", reason=e.format_lines()[0], epochs=0)
    except Exception as e:  # noqa: BLE001 - a failing design is recorded; the sweep goes on
        result.update(status="failed", reason=f"{type(e).__name__}: {first_line(e)}", epochs=0)
    result["seconds"] = round(time.perf_counter() - start, 3)
    write_atomic(run / LOG, log.getvalue())
    write_atomic(run / RESULT, json.dumps(result, indent=1) + "\n")
    return result


def _trial(config: dict[str, Any]) -> None:
    """A Ray Tune trial: one design, on the GPU Ray gave it or on CPUs."""
    import ray
    from ray import tune
    config = config["trial"]
    opts = SweepOptions(**{**config["options"], "train_args": tuple(config["options"]["train_args"])})
    import torch
    torch.set_num_threads(max(1, int(opts.cpus_per_trial)))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    r = train_design(config["design"], Path(config["spec"]), Path(config["run"]), opts, device)
    tune.report({k: r.get(k) for k in ("status", "error", "epochs", "seconds")} | {"done": True})


# -- the sweep ---------------------------------------------------------------------------------

@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: float | None = None) -> Iterator[None]:
    """Ray for the sweep: the caller's when it has one, else a local Ray (or the cluster at
    `address`) that is shut down, with its processes, when the sweep ends."""
    import logging
    try:
        import ray
    except ImportError:
        raise UsageError("sweep runs its trials on Ray Tune, which is not installed: pip install "
                         "'ray[tune]' (or resnet-compiler[sweep])") from None
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                  logging_level=logging.ERROR, configure_logging=True)
    if address:
        kwargs["address"] = address
    else:
        # Ray starts its workers at niceness 15; here they do the sweep's work, and at that
        # priority any other load on the machine slows training several-fold (measured: 10x)
        os.environ.setdefault(WORKER_NICENESS, "0")
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"cannot {'join the Ray cluster at ' + address if address else 'start Ray'}"
                         f": {first_line(e)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def sweep_folder(folder: Path, opts: SweepOptions, progress: bool = False) -> Summary:
    """Train the designs of `folder` not finished yet, then write folder/results.csv."""
    start = time.perf_counter()
    rows = read_designs(folder)
    if opts.dataset in ("fashion-mnist", "folder") and not opts.data_dir:
        raise UsageError(f"--dataset {opts.dataset} needs --data-dir DIR")
    designs = [(row["design"], Path(row["design"]).stem) for row in rows]
    runs = folder / RUNS
    summary = Summary(len(designs))
    todo = []
    for file, name in designs:
        if is_finished(runs / name, folder / file, opts):
            summary.skipped.append(name)
        else:
            todo.append((file, name))
    if todo:
        _run_trials(folder, todo, opts, progress)
    for _, name in todo:
        r = read_result(runs / name)
        (summary.trained if r and r.get("status") == "ok" else summary.failed).append(name)
    summary.results = write_results(folder, designs)
    summary.seconds = time.perf_counter() - start
    return summary


def _run_trials(folder: Path, todo: list[tuple[str, str]], opts: SweepOptions,
                progress: bool) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's tables on stdout: one line a trial here
    with ray_session(opts.address):
        import ray
        from ray import tune
        gpus = opts.gpus_per_trial
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        trainable = tune.with_resources(_trial, {"cpu": opts.cpus_per_trial, "gpu": gpus})
        runs = (folder / RUNS).resolve()
        configs = [{"design": name, "spec": str((folder / file).resolve()),
                    "run": str(runs / name), "options": asdict(opts)} for file, name in todo]
        storage = Path(tempfile.mkdtemp(prefix="resnet-compile-sweep-"))
        try:
            tuner = tune.Tuner(
                trainable, param_space={"trial": tune.grid_search(configs)},
                tune_config=tune.TuneConfig(max_concurrent_trials=opts.max_concurrent,
                                            reuse_actors=True),
                run_config=tune.RunConfig(name="sweep", storage_path=str(storage), verbose=0,
                                          callbacks=[_progress(len(todo))] if progress else None,
                                          failure_config=tune.FailureConfig(max_failures=0)))
            grid = tuner.fit()
            for result in grid:
                name = (result.config or {}).get("trial", {}).get("design")
                if name and read_result(runs / name) is None:  # the trial died before writing
                    why = first_line(result.error) if result.error else "the trial ended early"
                    _record_failure(runs / name, name, opts, f"the trial failed: {why}")
        finally:
            shutil.rmtree(storage, ignore_errors=True)


def _record_failure(run: Path, name: str, opts: SweepOptions, reason: str) -> None:
    run.mkdir(parents=True, exist_ok=True)
    write_atomic(run / RESULT, json.dumps({"design": name, "dataset": opts.dataset, "seed": opts.seed,
                                           "status": "failed", "reason": reason, "epochs": 0,
                                           "seconds": 0.0}, indent=1) + "\n")


def write_results(folder: Path, designs: list[tuple[str, str]]) -> Path:
    """results.csv: design, status (ok, or failed: why), error (top-1, %), epochs, seconds."""
    rows = []
    for file, name in designs:
        r = read_result(folder / RUNS / name)
        if r is None:
            rows.append((file, "not run", None, 0, None))
        elif r.get("status") == "ok":
            rows.append((file, "ok", r.get("error"), r.get("epochs"), r.get("seconds")))
        else:
            rows.append((file, f"failed: {r.get('reason', 'unknown')}", None, r.get("epochs", 0),
                         r.get("seconds")))
    path = folder / RESULTS_CSV
    write_atomic(path, csv_text(RESULT_COLUMNS, rows))
    return path


def _progress(total: int) -> Any:
    """A Tune callback printing one line per finished trial on stderr (Tune's reporter is off)."""
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self) -> None:
            self.done = 0

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            self.done += 1
            name = trial.config.get("trial", {}).get("design")
            what = (f"error {result.get('error'):.2f}%" if result.get("status") == "ok"
                    else "failed (see its result.json)")
            print(f"[{self.done}/{total}] {name}: {what} in {result.get('seconds') or 0:.1f} s",
                  file=sys.stderr, flush=True)

    return Progress()
