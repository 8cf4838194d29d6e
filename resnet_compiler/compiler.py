"""The Python API: `compile(spec)` runs load -> validate -> expand and returns a CompiledNetwork."""

from __future__ import annotations

import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .ir.expand import DEFAULT_MAX_PARAMS, build_graph
from .ir.graph import IRGraph
from .ir.templates import Layout
from .language.compose import resolve
from .language.load import Document
from .language.references import validate_spec
from .language.spec import Spec

if TYPE_CHECKING:
    import networkx as nx
    import torch

GENERATED_PACKAGE = "resnet_compiler.generated"


@dataclass
class CompiledNetwork:
    """A validated spec, its shape-checked graph and the code layout beside it, with every
    emitter one call away."""

    spec: Spec
    ir: IRGraph = field(repr=False)
    layout: Layout = field(repr=False)
    document: Document | None = field(default=None, repr=False)  # the merged spec, as written

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The networkx.DiGraph of the network (over the IR's own dicts, made on first use)."""
        return self.ir.to_networkx()

    def __repr__(self) -> str:
        c, h, w = self.input_shape
        classes = ", ".join(self.layout.classes) or "none"
        n = self.ir.graph["num_classes"]
        ends = f"{n} classes" if n is not None else "no head"
        return (f"CompiledNetwork({self.name!r}, input {c}x{h}x{w}, {ends}"
                f", blocks: {classes}, {self.total_params:,} params,"
                f" {self.total_macs / 1e9:.3f} GMACs)")

    @property
    def name(self) -> str:
        return self.ir.graph["name"]

    @property
    def total_params(self) -> int:
        return self.ir.graph["total_params"]

    @property
    def total_macs(self) -> int:
        return self.ir.graph["total_macs"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.ir.graph["input_shape"]

    def count(self, convention: str = "pycls") -> dict[str, int]:
        """The network's complexity by another tool's convention, at the spec's input size.
        `pycls`: flops (multiply-adds plus bias additions), params, and acts (the outputs of
        every conv, spatial pool and linear layer), as the RegNet papers' tables give them."""
        if convention != "pycls":
            raise ValueError(f"unknown counting convention {convention!r} (known: pycls)")
        from .ops import REGISTRY
        flops = acts = 0
        for _, data in self.ir.nodes(data=True):
            f, a = REGISTRY[data["op"]].pycls_counts(data, data["macs"])
            flops += f
            acts += a
        return {"flops": flops, "params": self.total_params, "acts": acts}

    def summary(self) -> str:
        from .emit.summary import summary
        return summary(self.ir, self.layout)

    @cached_property
    def _torch_source(self) -> str:
        from .emit.torch import emit_torch
        return emit_torch(self.ir, self.layout)  # the IR: no networkx import for the source

    def to_torch_source(self) -> str:
        return self._torch_source

    def torch_namespace(self) -> types.ModuleType:
        """The generated source as a real module, registered in sys.modules under a stable name
        (`resnet_compiler.generated.<name>_<sha12>`), so built models pickle and
        `inspect.getsource` finds their classes."""
        from .emit.torch import import_source
        sha = self.graph.graph["spec_sha256"][:12]
        safe = "".join(ch if ch.isalnum() else "_" for ch in self.name)
        return import_source(self._torch_source, f"{GENERATED_PACKAGE}.{safe}_{sha}")

    def build_torch(self, **kwargs: Any) -> torch.nn.Module:
        """An nn.Module instance from the generated source."""
        from .emit.torch import model_class_name
        module = self.torch_namespace()
        return getattr(module, model_class_name(self.graph, self.layout))(**kwargs)

    def to_onnx(self, path: str | os.PathLike[str], weights: Any = None, opset: int | None = None,
                fold_bn: bool = True, batch: int | None = None, dynamic_hw: bool = False,
                dtype: str = "fp32", keep_io_types: bool = True,
                class_names: Sequence[str] | None = None) -> None:
        """Write the ONNX model (atomically). `weights`: a state_dict, or a checkpoint path;
        None gives a seeded initialisation. `dynamic_hw`: any input height and width. `dtype`:
        fp32, fp16 or bf16 (fp32 input and output when `keep_io_types`). `class_names`: stored
        in the metadata for `infer`."""
        from .emit.onnx import write_onnx
        write_onnx(self.graph, path, weights=weights, opset=opset, fold_bn=fold_bn, batch=batch,
                   dynamic_hw=dynamic_hw, dtype=dtype, keep_io_types=keep_io_types,
                   class_names=class_names)

    def to_spec_yaml(self, origins: bool = False) -> str:
        """The spec after extends:, use: and overrides, as YAML that compiles to this network;
        `origins`: each value's file:line (or --set) as a comment."""
        from .emit.spec_yaml import emit_spec
        doc = self.document or Document(self.spec.normalised(), f"<{self.name}>")
        return emit_spec(doc, origins)

    def to_graph_json(self) -> str:
        from .emit.graph import to_json
        return to_json(self.graph)

    def to_dot(self, only: str | None = None, fold: bool = True) -> str:
        """Graphviz DOT of the network, each block a cluster; `only`: one block or stage
        (`layer1.0`); `fold`: each run of identical blocks drawn once, marked xN."""
        from .emit.graph import to_dot
        return to_dot(self.graph, self.layout, only, fold)

    def to_html(self) -> str:
        """One self-contained, offline HTML page that draws the network: stages, blocks and ops
        folded, shapes on the edges, params and MACs with their shares, spec lines and the
        generated PyTorch code on click (the `--emit html` file)."""
        from .emit.html import model_page
        return model_page(self)


def compile(spec: str | os.PathLike[str] | dict[str, Any] | Spec,  # noqa: A001 - the API name
            max_params: int = DEFAULT_MAX_PARAMS,
            overrides: Mapping[str, Any] | Sequence[str] | None = None) -> CompiledNetwork:
    """Compile a spec file path, a preset name (`"resnet50d"`; a file that exists wins), a dict,
    or a Spec; raises SpecError for an invalid spec. `extends:` and `use:` are resolved first;
    `overrides` then set values by dotted path (`{"stages.2.depth": 23}`, as `--set` does)."""
    if isinstance(spec, Spec) and not overrides:
        doc = Document(spec.model_dump(mode="json"), f"<{spec.name}>")
        validate_spec(doc)  # the checks of names and params that a Spec built in code has not had
        model = spec
    else:
        if isinstance(spec, Spec):
            spec = spec.model_dump(mode="json", exclude_defaults=True)
        doc = resolve(spec, overrides)
        model = validate_spec(doc)
    graph, layout = build_graph(model, doc, max_params)
    return CompiledNetwork(model, graph, layout, doc)


__all__ = ["GENERATED_PACKAGE", "CompiledNetwork", "compile"]
