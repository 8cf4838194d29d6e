"""Layer choices applied to ops: which op or module replaces bn, relu, conv and fills the slots.

A part of the expander (ir/expand.py), which mixes the parts together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..language.spec import ModuleCall
from ..ops import SPEC_OPS
from .layers import LAYER_SETTINGS, freeze, layer_mapping
from .templates import Origin


class LayerChoices:
    def substitute(self, op: Any, layers: Mapping[str, Any], where: Origin) -> Any | None:
        """`op` with the layer choices applied (bn -> defaults.norm, relu -> defaults.act, conv ->
        defaults.conv, the anti_alias slot -> defaults.aa); None for an unfilled slot."""
        choice = layers.get(op.op)
        if choice is None:
            return None if op.op == "anti_alias" else op
        if choice["op"] in self.modules:  # an attention module (cbam) where se would be
            return ModuleCall.model_validate(
                {**{k: getattr(op, k) for k in ("name", "when") if k in op.model_fields_set},
                 **choice})
        model = SPEC_OPS[choice["op"]].model
        # the replaced op's own settings carry over to another kind (a conv's sizes to std_conv);
        # a choice of the same kind (se -> {op: se, ratio: 0.25}) is the whole op
        keep = ("name", "when") if choice["op"] == op.op else tuple(model.model_fields)
        data = {k: getattr(op, k) for k in op.model_fields_set
                if k != "op" and k in keep and k not in choice}
        data.update(choice)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].replace("Input should be", "must be").removeprefix("Value error, ")
            where = self.choice_origin.get((op.op, freeze(choice)), where)
            raise self.error(where, f"the {choice['op']} that replaces {op.op}: "
                             f"{loc + ': ' if loc else ''}{msg}") from None

    def layer_choices(self, stage: Any, origin: Origin) -> dict[str, Any]:
        """Which op replaces bn, relu, conv and fills the anti_alias slot in this stage."""
        out = {}
        for setting, kind in LAYER_SETTINGS.items():
            choice = getattr(stage, setting, None) if stage is not None else None
            where: Origin = (*origin, setting)
            if choice is None:
                choice, where = getattr(self.spec.defaults, setting), ("defaults", setting)
            if choice is not None:
                out[kind] = layer_mapping(setting, choice, lambda msg, w=where: self.error(w, msg),
                                           self.modules if setting == "attn" else {})
                self.choice_origin[(kind, freeze(out[kind]))] = where
        return out
