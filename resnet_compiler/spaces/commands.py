"""`resnet-compile sample`, `sweep` and `analyze`: the command lines of the design-space tools.

Only the names of flags live here; the modules they call raise neutral messages. `sample` never
imports torch (nor Ray); `sweep` imports Ray, and torch inside its trials; `analyze` matplotlib.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..args import Parser, nonnegative_float, nonnegative_int, positive_int


def run_sample(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile sample", description=(
        "Draw distinct designs from a design space (a spec with a space: section): each as a "
        "resolved spec file in DIR, and DIR/designs.csv with the sampled values, params, MACs, "
        "pycls flops and acts, stage widths and depths. Needs no torch."))
    p.add_argument("space", help="the space file (.yaml or .json)")
    p.add_argument("-n", type=positive_int, required=True, help="how many distinct designs")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="a new (or empty) folder for the designs")
    p.add_argument("--seed", type=nonnegative_int, help="the seed (default: the space's space.seed)")
    p.add_argument("--max-draws", type=positive_int,
                   help="give up after this many draws (default: the space's space.max_draws, "
                        "else 1,000,000 as pycls)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    from .files import check_new_folder, write_designs
    from .sample import NoDesigns, no_designs_error, sample
    from .space import load_space
    out = Path(args.output)
    check_new_folder(out)
    start = time.perf_counter()
    space = load_space(args.space)
    if args.max_draws:
        space.max_draws = args.max_draws
    seed = space.seed if args.seed is None else args.seed
    try:
        designs, tally = sample(space, args.n, seed, progress=not args.no_progress)
    except NoDesigns as e:
        raise no_designs_error(space, args.n, e) from None
    write_designs(space, designs, out, seed)
    rejected = ", ".join(f"{k} {v:,}" for k, v in tally.rejected.most_common()) or "none"
    print(f"sampled {len(designs)} designs from {tally.draws:,} draws ({tally.compiled:,} "
          f"compiled; rejected: {rejected}) in {time.perf_counter() - start:.1f} s; wrote {out}",
          file=sys.stderr)
    return 0


def run_sweep(argv: Sequence[str]) -> int:
    from ..cli import DATASETS
    p = Parser(prog="resnet-compile sweep", description=(
        "Train every design of a sampled folder (resnet-compile sample) as Ray Tune trials, with "
        "the train command's loop; finished designs are skipped, a failing design is recorded "
        "and the others go on. Writes DIR/runs/DESIGN/ (spec.yaml, metrics.csv, checkpoint.pt, "
        "result.json) and DIR/results.csv."))
    p.add_argument("folder", metavar="DIR", help="a folder written by `resnet-compile sample`")
    p.add_argument("--dataset", choices=DATASETS, required=True, help="as for `train`")
    p.add_argument("--data-dir", help="folder of the dataset (fashion-mnist, folder)")
    p.add_argument("--epochs", type=positive_int, required=True, help="epochs per design")
    p.add_argument("--batch-size", type=positive_int, default=128, help="as for `train` (128)")
    p.add_argument("--lr", type=nonnegative_float, help="as for `train` (default 0.05)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="training seed of every design (0)")
    p.add_argument("--address", help="join this Ray cluster (host:port, or auto) instead of "
                                     "starting a local Ray for the sweep")
    p.add_argument("--gpus-per-trial", type=nonnegative_float,
                   help="GPUs per trial, a fraction to share one (0.25); default: 1 where the "
                        "cluster has GPUs, else 0 (CPU trials)")
    p.add_argument("--cpus-per-trial", type=nonnegative_float, default=1.0,
                   help="CPUs per trial, also its torch threads (default 1)")
    p.add_argument("--max-concurrent", type=positive_int,
                   help="at most this many trials at once (default: as the resources allow)")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG on to every design's `train` (repeatable), e.g. "
                        "--train-arg=--momentum=0.9")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    from .sweep import SweepOptions, sweep_folder
    opts = SweepOptions(dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        address=args.address, gpus_per_trial=args.gpus_per_trial,
                        cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
                        train_args=tuple(args.train_arg))
    summary = sweep_folder(Path(args.folder), opts, progress=True)
    print(summary.format(), file=sys.stderr)
    return 0


def run_analyze(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile analyze", description=(
        "Compare swept design spaces by their error EDFs (plain and flops-normalised, as in "
        "Radosavovic et al. 2019), with the Kolmogorov-Smirnov statistic between sweeps, error "
        "against each sampled value and flops, and the best designs: one self-contained HTML "
        "file, with edf.png and edf.csv (sweep, error, edf) beside it."))
    p.add_argument("folders", nargs="+", metavar="DIR", help="swept folders (resnet-compile sweep)")
    p.add_argument("-o", "--output", required=True, help="the report, e.g. report.html")
    p.add_argument("--best", type=positive_int, default=5, help="best designs shown per sweep (5)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    from ..outputs import check_output_path
    from .report import write_report
    out = check_output_path(args.output)
    written = write_report([Path(f) for f in args.folders], out, best=args.best)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
