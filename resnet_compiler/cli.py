"""`resnet-compile`: check, emit, verify and train from a spec.

Exit codes: 0 success, 2 invalid spec or usage, 1 verification mismatch or runtime failure.
Errors print one line each (`file:line: spec.path: problem`), never a traceback unless --debug.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace

from .args import (
    Parser,
    add_spec_argument,
    batch_list,
    nonnegative_int,
    positive_int,
    sizes_list,
)
from .errors import SpecError, UsageError, VerificationError

EMIT_FORMATS = ("torch", "onnx", "graph", "dot", "html", "summary", "spec")
# emit/onnx.py's and data.py's, named here so that --check imports neither onnx nor numpy
DTYPES = ("fp32", "fp16", "bf16")
DATASETS = ("fashion-mnist", "digits", "folder")


def compile_parser() -> argparse.ArgumentParser:
    p = Parser(prog="resnet-compile", description=(
        "Compile a ResNet-family spec (YAML/JSON) into a shape-checked graph, PyTorch source or "
        "ONNX. Other commands: `resnet-compile schema` prints the spec's JSON Schema; "
        "`resnet-compile train SPEC ...` trains the network (see `resnet-compile train --help`); "
        "`resnet-compile bench MODEL` measures latency and throughput; "
        "`resnet-compile infer MODEL.onnx IMAGE...` classifies image files; "
        "`resnet-compile models [PATTERN]` lists the presets; `resnet-compile diff A B` compares"
        " two networks."))
    add_spec_argument(p)
    p.add_argument("--check", action="store_true",
                   help="validate and print the per-layer table and totals (needs no torch)")
    p.add_argument("--count", choices=("pycls",),
                   help="with --check: also the totals as pycls counts them (flops: multiply-adds "
                        "plus bias additions; acts: outputs of convs, spatial pools and linear "
                        "layers), as the RegNet papers report them")
    p.add_argument("--emit", choices=EMIT_FORMATS,
                   help="torch: PyTorch source; onnx: ONNX model; graph: node-link JSON; "
                        "dot: Graphviz; html: one offline page that draws the network "
                        "(stages, blocks and ops, folded; shapes, costs, spec lines, code); "
                        "summary: the --check table; spec: the spec after "
                        "extends:, use: and --set, as YAML")
    p.add_argument("--origins", action="store_true",
                   help="with --emit spec: each value's file:line (or --set) as a comment")
    p.add_argument("-o", "--output", help="output file for --emit or --check (default: stdout for "
                                         "text formats)")
    p.add_argument("--weights", help="state_dict checkpoint (.pt/.pth via torch.load("
                                     "weights_only=True), or .safetensors) for onnx / --verify")
    p.add_argument("--opset", type=positive_int, help="ONNX opset, 13 to 26 (default: 21, which "
                                                    "onnxruntime 1.20 and later run; 22 for bf16)")
    p.add_argument("--dynamic-hw", action="store_true",
                   help="ONNX input of any height and width (the graph keeps the spec's shapes)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="ONNX weights and compute in fp16 or bf16 (reductions and norms stay "
                        "fp32); for --emit onnx and --verify (default: fp32)")
    p.add_argument("--keep-io-types", action=argparse.BooleanOptionalAction, default=True,
                   help="with --dtype fp16|bf16: fp32 input and output, cast inside (default: on)")
    p.add_argument("--quantize", choices=("int8",),
                   help="int8 ONNX by onnxruntime's static QDQ quantization (per-channel), "
                        "calibrated on --calibrate DATASET; prints agreement and accuracies")
    p.add_argument("--calibrate", choices=DATASETS, metavar="DATASET",
                   help=f"calibration data for --quantize: {', '.join(DATASETS)} (the train "
                        f"command's datasets, with the spec's preprocessing)")
    p.add_argument("--data-dir", help="folder of the --calibrate dataset (fashion-mnist, folder)")
    p.add_argument("--calibration-images", type=positive_int, default=None, metavar="N",
                   help="training images to calibrate on (default: 256)")
    p.add_argument("--no-fold-bn", action="store_true",
                   help="keep BatchNormalization nodes instead of folding them into convs")
    p.add_argument("--batch", type=positive_int,
                   help="fixed batch size for ONNX (default: dynamic); batch for --verify")
    p.add_argument("--verify", action="store_true",
                   help="run the PyTorch module and the ONNX model on the same inputs and "
                        "compare (exit 1 on mismatch)")
    p.add_argument("--sizes", type=sizes_list, help="with --verify: also compare at these input"
                   " sizes through one ONNX file of any height and width, e.g. 64x64,96x128")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="torch device for --verify (default: cpu)")
    p.add_argument("--block", help="with --emit dot: draw only this block or stage (layer1.0)")
    p.add_argument("--unfold", action="store_true",
                   help="with --emit dot: draw every block, not each run of identical blocks once")
    p.add_argument("--max-params", type=positive_int, default=None,
                   help="refuse networks with more parameters (default: 4e9)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _emit_text_or_file(text: str, output: str | None) -> None:
    """Text to `output` (atomically, then `wrote PATH` on stderr), or to stdout."""
    if output:
        from .outputs import write_atomic
        write_atomic(output, text)
        _wrote(output)
    else:
        sys.stdout.write(text)


def _trained_class_names(weights: str | None) -> list[str] | None:
    """The class names a training run recorded in its checkpoint (checkpoint.pt or
    model.safetensors), so the ONNX file carries them for `infer`; None for other weights."""
    if not weights or not weights.endswith((".safetensors", "checkpoint.pt")):
        return None
    from .train.checkpoint import read_metadata
    try:
        names = read_metadata(weights).get("class_names")
    except UsageError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _wrote(path: str) -> None:
    print(f"wrote {path}", file=sys.stderr)


def _run_compile(argv: Sequence[str]) -> int:
    args = compile_parser().parse_args(argv)
    if not (args.check or args.emit or args.verify):
        raise UsageError("resnet-compile: nothing to do; give --check, --emit FORMAT or --verify")
    if args.emit == "onnx" and not args.output:
        raise UsageError("resnet-compile: --emit onnx needs -o FILE (ONNX is binary)")
    if args.output:
        from .outputs import check_output_path
        check_output_path(args.output)
    if args.count and not args.check:
        raise UsageError("resnet-compile: --count goes with --check")
    if (args.block or args.unfold) and args.emit != "dot":
        raise UsageError("resnet-compile: --block and --unfold go with --emit dot")
    if args.origins and args.emit != "spec":
        raise UsageError("resnet-compile: --origins goes with --emit spec")
    if args.sizes and not args.verify:
        raise UsageError("resnet-compile: --sizes goes with --verify")
    if args.dynamic_hw and args.emit != "onnx":
        raise UsageError("resnet-compile: --dynamic-hw is for --emit onnx")
    if args.weights and not (args.emit == "onnx" or args.verify):
        raise UsageError("resnet-compile: --weights is used by --emit onnx and --verify")
    _check_precision_flags(args)

    if args.check and args.emit and args.output:
        raise UsageError("resnet-compile: -o names one file; give it to --check or to --emit")
    from .compiler import compile as compile_spec
    from .ir.expand import DEFAULT_MAX_PARAMS, ParamLimitError
    try:
        net = compile_spec(args.spec, max_params=args.max_params or DEFAULT_MAX_PARAMS,
                           overrides=args.overrides)
    except ParamLimitError as e:
        e.problems[-1] = replace(e.problems[-1], message=e.problems[-1].message
                                 + "; raise it with --max-params if you mean it")
        raise

    if args.check:
        text = net.summary()
        if args.count:
            c = net.count(args.count)
            text += (f"{args.count} counts:       flops {c['flops']:,}, params {c['params']:,}, "
                     f"acts {c['acts']:,}\n")
        _emit_text_or_file(text, None if args.emit else args.output)
    if args.emit == "summary":
        _emit_text_or_file(net.summary(), args.output)
    elif args.emit == "torch":
        _emit_text_or_file(net.to_torch_source(), args.output)
    elif args.emit == "spec":
        _emit_text_or_file(net.to_spec_yaml(args.origins), args.output)
    elif args.emit == "graph":
        text = net.to_dot() if args.output and args.output.endswith((".dot", ".gv")) \
            else net.to_graph_json()
        _emit_text_or_file(text, args.output)
    elif args.emit == "dot":
        _emit_text_or_file(net.to_dot(args.block, fold=not args.unfold), args.output)
    elif args.emit == "html":
        _emit_text_or_file(net.to_html(), args.output)
    elif args.emit == "onnx" and args.quantize:
        from .runtime.quantize import DEFAULT_CALIBRATION_IMAGES, quantize_int8
        qreport = quantize_int8(net, args.output, weights=args.weights, dataset=args.calibrate,
                                data_dir=args.data_dir, calibration_images=args.calibration_images
                                or DEFAULT_CALIBRATION_IMAGES, opset=args.opset,
                                fold_bn=not args.no_fold_bn)
        print(qreport.format(), end="")
        _wrote(args.output)
    elif args.emit == "onnx":
        net.to_onnx(args.output, weights=args.weights, opset=args.opset,
                    fold_bn=not args.no_fold_bn, batch=args.batch, dynamic_hw=args.dynamic_hw,
                    dtype=args.dtype, keep_io_types=args.keep_io_types,
                    class_names=_trained_class_names(args.weights))
        _wrote(args.output)
    if args.verify:
        from .runtime.limits import check_forward
        check_forward(net.ir.graph, [net.input_shape[1:], *(args.sizes or [])], args.batch or 2)
        from .runtime.verify import verify
        report = verify(net, weights=args.weights, batch=args.batch or 2, device=args.device,
                        opset=args.opset, fold_bn=not args.no_fold_bn, dtype=args.dtype,
                        keep_io_types=args.keep_io_types)
        print(report.format())
        checks = []
        if args.sizes:
            from .runtime.verify import verify_sizes
            checks = verify_sizes(net, args.sizes, weights=args.weights, batch=args.batch or 2,
                                  opset=args.opset, fold_bn=not args.no_fold_bn, dtype=args.dtype,
                                  keep_io_types=args.keep_io_types)
            print("  any height and width (--dynamic-hw), torch cpu vs onnxruntime cpu:")
            print("\n".join(c.format() for c in checks))
        if not report.ok or not all(c.ok for c in checks):
            raise VerificationError("torch and onnxruntime disagree beyond the tolerance")
    return 0


def _check_precision_flags(args: argparse.Namespace) -> None:
    """--dtype, --keep-io-types and the int8 flags: where they apply and what they exclude."""
    onnx_out = args.emit == "onnx" or args.verify
    if args.dtype != "fp32" and not onnx_out:
        raise UsageError("resnet-compile: --dtype is for --emit onnx and --verify")
    if args.dtype == "fp32" and not args.keep_io_types:
        raise UsageError("resnet-compile: --no-keep-io-types goes with --dtype fp16|bf16")
    if not args.quantize:
        for flag, value in (("--calibrate", args.calibrate), ("--data-dir", args.data_dir),
                            ("--calibration-images", args.calibration_images)):
            if value is not None:
                raise UsageError(f"resnet-compile: {flag} goes with --quantize int8")
        return
    if args.emit != "onnx":
        raise UsageError("resnet-compile: --quantize is for --emit onnx")
    if not args.calibrate:
        raise UsageError("resnet-compile: --quantize int8 needs --calibrate DATASET (calibration"
                         f" images: {', '.join(DATASETS)})")
    if args.calibrate != "digits" and not args.data_dir:
        raise UsageError(f"resnet-compile: --calibrate {args.calibrate} needs --data-dir DIR")
    for flag, bad in (("--dtype", args.dtype != "fp32"), ("--dynamic-hw", args.dynamic_hw),
                      ("--batch", args.batch is not None)):
        if bad:
            raise UsageError(f"resnet-compile: --quantize int8 takes no {flag} (the int8 file "
                             f"has fp32 input and output, a dynamic batch, the spec's size)")


def _run_schema(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile schema",
                description="Print the JSON Schema of the spec language (for editors).")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import json

    from .language.spec import json_schema
    _emit_text_or_file(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", args.output)
    return 0


def _run_bench(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile bench", description=(
        "Latency percentiles and throughput per batch size: onnxruntime on an ONNX file, or for "
        "a spec its ONNX file in onnxruntime beside the emitted PyTorch module (torch eager, and "
        "torch.compile with --compile) on the same weights, in alternating rounds."))
    add_spec_argument(p, "model", "an ONNX file (.onnx), a spec (.yaml, .yml, .json) or a preset name")
    p.add_argument("--provider", choices=("cpu", "cuda"), default="cpu",
                   help="onnxruntime provider and torch device (default: cpu)")
    p.add_argument("--batch", type=batch_list, default=[1, 8, 32],
                   help="batch sizes, comma-separated (default: 1,8,32)")
    p.add_argument("--threads", type=positive_int, help="intra-op threads for onnxruntime and "
                                                        "torch (default: their own choice)")
    p.add_argument("--weights", help="state_dict checkpoint for a spec (default: seeded weights"
                                     " with realistic BatchNorm statistics)")
    p.add_argument("--compile", action="store_true", help="for a spec: also torch.compile")
    p.add_argument("--runs", type=positive_int, default=20,
                   help="timed runs per runtime and batch size (default: 20)")
    p.add_argument("--warmup", type=nonnegative_int, default=3,
                   help="untimed runs first (default: 3)")
    p.add_argument("--rounds", type=positive_int, default=4,
                   help="alternating rounds the timed runs are spread over (default: 4)")
    p.add_argument("--csv", help="also write the table as CSV to this file")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from .outputs import check_output_path
    for out in (args.csv, args.json):
        if out:
            check_output_path(out)
    if args.model.endswith(".onnx") and (args.weights or args.compile):
        raise UsageError("resnet-compile bench: --weights and --compile are for a spec; an ONNX "
                         "file has its weights and runs in onnxruntime only")
    from .runtime.bench import bench, format_table, to_csv, to_json
    rows, info = bench(args.model, args.provider, args.batch, args.threads, args.weights,
                       args.compile, args.runs, args.warmup, args.rounds, args.overrides)
    threads = f"{args.threads} threads" if args.threads else "default threads"
    print(f"bench {info.get('name', args.model)}: {args.provider}, {threads}, {args.runs} timed "
          f"runs after {args.warmup} warm-up runs, in {min(args.rounds, args.runs)} alternating "
          f"rounds")
    print(format_table(rows), end="")
    if args.csv:
        _emit_text_or_file(to_csv(rows), args.csv)
    if args.json:
        _emit_text_or_file(to_json(rows, info), args.json)
    return 0


def _run_infer(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile infer", description=(
        "Classify image files with an ONNX model from resnet-compile: each image is decoded, "
        "resized and normalised as the model's preprocessing metadata says, then the top-k "
        "classes are printed with their probabilities."))
    p.add_argument("model", help="ONNX file written by resnet-compile --emit onnx")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top-k", type=positive_int, default=5, help="classes per image (default 5)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="onnxruntime device (default: auto, CUDA when it works)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    from .runtime.infer import classify_files, open_session
    session = open_session(args.model, args.device)
    for result in classify_files(session, args.images, args.top_k):
        ranked = ", ".join(f"{label} {prob:.4f}" for label, prob in zip(result.labels,
                                                                         result.probs, strict=True))
        print(f"{result.path}: {ranked}")
    return 0


def _run_models(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile models", description=(
        "List the presets that ship with the package (usable by name wherever a spec is asked "
        "for): name, parameters, GMACs at the preset's input size, and the peer model each "
        "equals."))
    p.add_argument("pattern", nargs="?", default="*", help="shell-style glob, e.g. 'resnest*'")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from .catalog import format_table, models
    rows = models(args.pattern)
    if args.json:
        import json
        print(json.dumps(rows, indent=1))
    elif rows:
        print(format_table(rows), end="")
    else:
        print(f"no preset matches {args.pattern!r}", file=sys.stderr)
        return 1
    return 0


def _run_diff(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile diff", description=(
        "Compare two networks (spec files or preset names): totals and per-stage params and "
        "MACs with their deltas, nodes added, removed or changed (with the attributes that "
        "changed), and which of A's state_dict keys load into B. Exit 0 when the networks are "
        "equal, 1 when they differ."))
    p.add_argument("a", help="the first spec (file or preset name)")
    p.add_argument("b", help="the second spec")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--html", action="store_true",
                   help="also write the two networks side by side as an offline page to -o FILE,"
                        " every node marked same, changed, added or removed")
    p.add_argument("-o", "--output", help="the page's file, with --html")
    p.add_argument("--set-a", action="append", default=[], metavar="PATH=VALUE",
                   help="override a value of A (as --set does)")
    p.add_argument("--set-b", action="append", default=[], metavar="PATH=VALUE",
                   help="override a value of B")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from .compiler import compile as compile_spec
    if args.html != bool(args.output):
        raise UsageError("resnet-compile diff: --html and -o FILE go together")
    if args.output:
        from .outputs import check_output_path
        check_output_path(args.output)
    from .diff import diff
    result = diff(compile_spec(args.a, overrides=args.set_a),
                  compile_spec(args.b, overrides=args.set_b))
    if args.html:
        from .emit.html import diff_page
        _emit_text_or_file(diff_page(result), args.output)
    if args.json:
        import json
        print(json.dumps(result.to_json(), indent=1))
    else:
        print(result.format(), end="")
    return 0 if result.equal else 1


def _run_train(argv: Sequence[str]) -> int:
    from .train import main as train_main
    return train_main(list(argv))


def _run_space_command(name: str) -> Callable[[Sequence[str]], int]:
    """`sample`, `sweep` and `analyze` (resnet_compiler.spaces.commands), imported when run."""
    def run(argv: Sequence[str]) -> int:
        from .spaces import commands
        return getattr(commands, f"run_{name}")(argv)
    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "schema": _run_schema, "train": _run_train, "bench": _run_bench, "infer": _run_infer,
    "models": _run_models, "diff": _run_diff, "sample": _run_space_command("sample"),
    "sweep": _run_space_command("sweep"), "analyze": _run_space_command("analyze")}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = COMMANDS.get(argv[0]) if argv else None
    run = (lambda: command(argv[1:])) if command else (lambda: _run_compile(argv))
    def report(lines: list[str], code: int) -> int:
        """The problem's one-line message (after the traceback with --debug), and the code."""
        if debug:
            traceback.print_exc(file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
        return code

    try:
        return run()
    except SystemExit as e:  # --help and argparse's own exits
        return e.code if isinstance(e.code, int) else 0
    except SpecError as e:
        return report(list(e.format_lines()), 2)
    except UsageError as e:
        return report([f"error: {e}"], 2)
    except VerificationError as e:
        return report([f"verification failed: {e}"], 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a runtime failure: one line, the traceback only with --debug
        hint = "" if debug else " (rerun with --debug for the traceback)"
        return report([f"error: {type(e).__name__}: {e}{hint}"], 1)


def entry_point() -> None:
    # The command validates its own specs with pydantic; discovering third-party pydantic plugins
    # (validation hooks) for that would scan the metadata of every installed distribution, about
    # 60 ms of a --check beside torch, Ray and onnxruntime. A value the user set is kept, and
    # the Python API (`import resnet_compiler`) leaves pydantic as it finds it.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _skip_plugin_loader()
    # What the imports made lives as long as the process: the collector need not walk it again
    # (4% of a --check)
    gc.freeze()
    sys.exit(main())


def _skip_plugin_loader() -> None:
    """With plugins disabled, pydantic's plugin loader finds none, yet importing it imports
    importlib.metadata (about 15 ms of a --check); a loader that finds none takes its place."""
    if os.environ["PYDANTIC_DISABLE_PLUGINS"] in ("__all__", "1", "true"):
        import types

        loader = types.ModuleType("pydantic.plugin._loader", "No plugins: they are disabled.")
        loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
        sys.modules.setdefault(loader.__name__, loader)
