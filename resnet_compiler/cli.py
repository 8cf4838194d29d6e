"""`resnet-compile`: check, emit, verify and train from a spec.

Exit codes: 0 success, 2 invalid spec or usage, 1 verification mismatch or runtime failure.
Errors print one line each (`file:line: spec.path: problem`), never a traceback unless --debug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from .args import Parser, positive_int, sizes_list
from .errors import SpecError, UsageError, VerificationError

EMIT_FORMATS = ("torch", "onnx", "graph", "dot", "summary")


def compile_parser() -> argparse.ArgumentParser:
    p = Parser(prog="resnet-compile", description=(
        "Compile a ResNet-family spec (YAML/JSON) into a shape-checked graph, PyTorch source or "
        "ONNX. Other commands: `resnet-compile schema` prints the spec's JSON Schema; "
        "`resnet-compile train SPEC ...` trains the network (see `resnet-compile train --help`); "
        "`resnet-compile infer MODEL.onnx IMAGE...` classifies image files."))
    p.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    p.add_argument("--check", action="store_true",
                   help="validate and print the per-layer table and totals (needs no torch)")
    p.add_argument("--emit", choices=EMIT_FORMATS,
                   help="torch: PyTorch source; onnx: ONNX model; graph: node-link JSON; "
                        "dot: Graphviz; summary: the --check table")
    p.add_argument("-o", "--output", help="output file for --emit or --check (default: stdout for "
                                         "text formats)")
    p.add_argument("--weights", help="state_dict checkpoint (.pt/.pth via torch.load("
                                     "weights_only=True), or .safetensors) for onnx / --verify")
    p.add_argument("--opset", type=positive_int, help="ONNX opset, 13 to 22 (default: 21, which "
                                                    "onnxruntime 1.20 and later run)")
    p.add_argument("--dynamic-hw", action="store_true",
                   help="ONNX input of any height and width (the graph keeps the spec's shapes)")
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
    if args.sizes and not args.verify:
        raise UsageError("resnet-compile: --sizes goes with --verify")
    if args.dynamic_hw and args.emit != "onnx":
        raise UsageError("resnet-compile: --dynamic-hw is for --emit onnx")
    if args.weights and not (args.emit == "onnx" or args.verify):
        raise UsageError("resnet-compile: --weights is used by --emit onnx and --verify")

    if args.check and args.emit and args.output:
        raise UsageError("resnet-compile: -o names one file; give it to --check or to --emit")
    from .compiler import compile as compile_spec
    from .expand import DEFAULT_MAX_PARAMS, ParamLimitError
    try:
        net = compile_spec(args.spec, max_params=args.max_params or DEFAULT_MAX_PARAMS)
    except ParamLimitError as e:
        e.problems[-1] = replace(e.problems[-1], message=e.problems[-1].message
                                 + "; raise it with --max-params if you mean it")
        raise

    if args.check:
        _emit_text_or_file(net.summary(), None if args.emit else args.output)
    if args.emit == "summary":
        _emit_text_or_file(net.summary(), args.output)
    elif args.emit == "torch":
        _emit_text_or_file(net.to_torch_source(), args.output)
    elif args.emit == "graph":
        text = net.to_dot() if args.output and args.output.endswith((".dot", ".gv")) \
            else net.to_graph_json()
        _emit_text_or_file(text, args.output)
    elif args.emit == "dot":
        _emit_text_or_file(net.to_dot(), args.output)
    elif args.emit == "onnx":
        net.to_onnx(args.output, weights=args.weights, opset=args.opset,
                    fold_bn=not args.no_fold_bn, batch=args.batch, dynamic_hw=args.dynamic_hw)
        _wrote(args.output)
    if args.verify:
        from .verify import verify
        report = verify(net, weights=args.weights, batch=args.batch or 2, device=args.device,
                        opset=args.opset, fold_bn=not args.no_fold_bn)
        print(report.format())
        checks = []
        if args.sizes:
            from .verify import verify_sizes
            checks = verify_sizes(net, args.sizes, weights=args.weights, batch=args.batch or 2,
                                  opset=args.opset, fold_bn=not args.no_fold_bn)
            print("  any height and width (--dynamic-hw), torch cpu vs onnxruntime cpu:")
            print("\n".join(c.format() for c in checks))
        if not report.ok or not all(c.ok for c in checks):
            raise VerificationError("torch and onnxruntime disagree beyond the tolerance")
    return 0


def _run_schema(argv: Sequence[str]) -> int:
    p = Parser(prog="resnet-compile schema",
                description="Print the JSON Schema of the spec language (for editors).")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import json

    from .spec import json_schema
    _emit_text_or_file(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", args.output)
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
    from .infer import classify_files, open_session
    session = open_session(args.model, args.device)
    for result in classify_files(session, args.images, args.top_k):
        ranked = ", ".join(f"{label} {prob:.4f}" for label, prob in zip(result.labels,
                                                                         result.probs, strict=True))
        print(f"{result.path}: {ranked}")
    return 0


def _run_train(argv: Sequence[str]) -> int:
    from .train import main as train_main
    return train_main(list(argv))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"schema": _run_schema, "train": _run_train,
                                                       "infer": _run_infer}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = COMMANDS.get(argv[0]) if argv else None
    run = (lambda: command(argv[1:])) if command else (lambda: _run_compile(argv))
    try:
        return run()
    except SystemExit as e:  # --help and argparse's own exits
        return e.code if isinstance(e.code, int) else 0
    except SpecError as e:
        if debug:
            raise
        for line in e.format_lines():
            print(line, file=sys.stderr)
        return 2
    except UsageError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except VerificationError as e:
        if debug:
            raise
        print(f"verification failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a runtime failure: one line, the traceback only with --debug
        if debug:
            raise
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def entry_point() -> None:
    sys.exit(main())
