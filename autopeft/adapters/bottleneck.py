"""Bottleneck adapters: serial (Houlsby et al., 2019; Pfeiffer et al., 2021) and parallel
(He et al., 2022), and the AutoPEFT combination of both (Zhou et al., 2024).

peft ships no bottleneck adapter, so this one plugs into peft's documented custom-layer hook
(``LoraConfig._register_custom_module``): each chosen Linear/Conv1D is wrapped by
:class:`BottleneckLayer`, which adds

* a **serial** adapter on the module's output: ``h = W x; h + up(act(down(h)))``
  (Houlsby: after the attention output and the FFN output projections; Pfeiffer: after the
  FFN output projection only), and/or
* a **parallel** adapter beside the module: ``W x + s * up(act(down(x)))``, placed beside the
  FFN's output projection (He et al. place it beside the whole FFN; a wrapper can only see one
  module, so its input here is the FFN's inner activation).

``up`` starts at zero so every adapter starts as the identity. The weights are named
``lora_*`` so peft trains, saves and loads them like LoRA's. peft cannot store the custom-layer
mapping in ``adapter_config.json``, so the saved config carries its own fields and the type
``AUTOPEFT_BOTTLENECK``: a plain ``PeftModel.from_pretrained(base, dir)`` fails on that type
instead of silently loading a LoRA of the wrong shape, and either of these loads it::

    autopeft.adapters.load_adapter(base, dir)
    PeftModel.from_pretrained(base, dir, config=BottleneckConfig.from_pretrained(dir))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from peft.tuners.lora.layer import LoraLayer
from peft.utils import CONFIG_NAME
from torch import nn

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import ModelStructure, names_regex, resolve
from autopeft.space import ChoiceSpec

#: The type saved in adapter_config.json: not one peft knows, so plain loading fails loudly.
SAVED_PEFT_TYPE = "AUTOPEFT_BOTTLENECK"

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}

#: Which module roles each serial position wraps.
POSITIONS: dict[str, list[str]] = {"houlsby": ["attention_output", "mlp_down"], "pfeiffer": ["mlp_down"]}


@dataclass
class BottleneckConfig(LoraConfig):
    """``LoraConfig`` plus the bottleneck sizes; its fields are saved in adapter_config.json."""

    serial_size: int = field(default=0, metadata={"help": "Serial adapter bottleneck size (0: none)."})
    parallel_size: int = field(default=0, metadata={"help": "Parallel adapter bottleneck size (0: none)."})
    parallel_scaling: float = field(default=4.0, metadata={"help": "Scale of the parallel adapter's output."})
    activation: str = field(default="relu", metadata={"help": "Non-linearity inside the bottleneck."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._register_custom_module({nn.Linear: BottleneckLayer, _conv1d(): BottleneckLayer})

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, **kwargs)
        path = Path(save_directory) / CONFIG_NAME
        saved = json.loads(path.read_text())
        saved["peft_type"] = SAVED_PEFT_TYPE
        path.write_text(json.dumps(saved, indent=2, sort_keys=True))

    @classmethod
    def from_peft_type(cls, **kwargs: Any) -> BottleneckConfig:
        """What ``from_pretrained`` builds from a saved config: this class, whatever the saved type."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in kwargs.items() if k in names and k != "peft_type"})


def _zero(layer: nn.Linear) -> nn.Linear:
    """The up-projection starts at zero, so the adapter starts as the identity."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _dtype(layer: nn.Module) -> torch.dtype:
    return next(layer.parameters()).dtype


def _conv1d() -> type[nn.Module]:
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers.pytorch_utils import Conv1D

    return Conv1D


class BottleneckLayer(nn.Module, LoraLayer):
    """A Linear/Conv1D with a serial and/or a parallel bottleneck adapter."""

    adapter_layer_names = ("lora_serial_down", "lora_serial_up", "lora_parallel_down", "lora_parallel_up")
    other_param_names = ("bottleneck",)

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: BottleneckConfig, **kwargs: Any) -> None:
        nn.Module.__init__(self)
        LoraLayer.__init__(self, base_layer)
        self.lora_serial_down = nn.ModuleDict({})
        self.lora_serial_up = nn.ModuleDict({})
        self.lora_parallel_down = nn.ModuleDict({})
        self.lora_parallel_up = nn.ModuleDict({})
        self.bottleneck: dict[str, dict[str, Any]] = {}
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    # peft calls update_layer(adapter_name, r, lora_alpha, config) for LoRA; a bottleneck has no
    # rank or alpha of its own, so this layer takes the config alone
    def update_layer(self, adapter_name: str, config: BottleneckConfig,  # type: ignore[override]
                     *args: Any, **kwargs: Any) -> None:
        if config.serial_size <= 0 and config.parallel_size <= 0:
            raise ValueError("a bottleneck adapter needs a serial or a parallel size above 0")
        width_in, width_out = int(self.in_features), int(self.out_features)  # type: ignore[arg-type]
        if config.serial_size > 0:
            down, up = nn.Linear(width_out, config.serial_size), _zero(nn.Linear(config.serial_size, width_out))
            self.lora_serial_down[adapter_name], self.lora_serial_up[adapter_name] = down, up
        if config.parallel_size > 0:
            down, up = nn.Linear(width_in, config.parallel_size), _zero(nn.Linear(config.parallel_size, width_out))
            self.lora_parallel_down[adapter_name], self.lora_parallel_up[adapter_name] = down, up
        self.bottleneck[adapter_name] = {"activation": _ACTIVATIONS[config.activation](),
                                         "scaling": float(config.parallel_scaling)}
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.bottleneck:
                continue
            act, scaling = self.bottleneck[name]["activation"], self.bottleneck[name]["scaling"]
            if name in self.lora_parallel_down:
                down, up = self.lora_parallel_down[name], self.lora_parallel_up[name]
                result = result + scaling * up(act(down(x.to(_dtype(down))))).to(result.dtype)
            if name in self.lora_serial_down:
                down, up = self.lora_serial_down[name], self.lora_serial_up[name]
                result = result + up(act(down(result.to(_dtype(down))))).to(result.dtype)
        return result

    def merge(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("bottleneck adapters are non-linear and cannot be merged into the weights")

    def unmerge(self) -> None:
        pass

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


def load_config(raw: Mapping[str, Any]) -> BottleneckConfig | None:
    """The saved config with the custom layer registered again (None: not a bottleneck adapter)."""
    if "serial_size" not in raw or "parallel_size" not in raw:
        return None
    return BottleneckConfig.from_peft_type(**raw)


def _config(target: AdapterTarget, names: list[str], serial: int, parallel: int, params: Mapping[str, Any]) -> BottleneckConfig:
    return BottleneckConfig(
        task_type=target.peft_task_type, r=max(serial, parallel, 1), lora_alpha=1,
        target_modules=names_regex(names), serial_size=serial, parallel_size=parallel,
        parallel_scaling=float(params.get("scaling", 4.0)), activation=str(params["activation"]),
    )


def _modules(target: AdapterTarget, roles: list[str]) -> list[str]:
    layers = target.layers if target.layers is not None else "all"
    return resolve(target.structure, layers, roles)


def build_serial(params: Mapping[str, Any], target: AdapterTarget) -> BottleneckConfig:
    names = _modules(target, POSITIONS[str(params["position"])])
    return _config(target, names, int(params["size"]), 0, params)


def build_parallel(params: Mapping[str, Any], target: AdapterTarget) -> BottleneckConfig:
    return _config(target, _modules(target, ["mlp_down"]), 0, int(params["size"]), params)


def build_combined(params: Mapping[str, Any], target: AdapterTarget) -> BottleneckConfig:
    serial, parallel = int(params["serial_size"]), int(params["parallel_size"])
    if serial == 0 and parallel == 0:
        # the paper's space can switch both off; a trial still needs some trainable adapter,
        # so the smallest parallel one stands in for "off"
        parallel = 1
    return _config(target, _modules(target, ["mlp_down"]), serial, parallel, params)


def needs_mlp_down(structure: ModelStructure) -> str | None:
    if "mlp_down" not in structure.roles:
        return f"{structure.architecture} has no recognised FFN output projection (mlp_down) to attach to"
    return None



_SIZES = ChoiceSpec(choices=[8, 16, 32, 64])
_ACT_RULE = ParamRule(choices=tuple(_ACTIVATIONS))
_COMMON = dict(uses_roles=False, load_config=load_config, applies_to=needs_mlp_down,
               architectures="transformers with an FFN output projection")

register(AdapterFamily(
    name="serial_adapter",
    description="Serial bottleneck adapter after the sublayer outputs: Houlsby (attention + FFN) or Pfeiffer (FFN only).",
    defaults={"size": _SIZES, "position": ChoiceSpec(choices=["houlsby", "pfeiffer"]), "activation": "relu"},
    rules={"size": ParamRule(minimum=1, integer=True), "position": ParamRule(choices=tuple(POSITIONS)),
           "activation": _ACT_RULE},
    build=build_serial, **_COMMON,  # type: ignore[arg-type]
))
register(AdapterFamily(
    name="parallel_adapter",
    description="Parallel bottleneck adapter beside the FFN output projection, output scaled by s (He et al., 2022).",
    defaults={"size": _SIZES, "scaling": 4.0, "activation": "relu"},
    rules={"size": ParamRule(minimum=1, integer=True), "scaling": ParamRule(minimum=0.0), "activation": _ACT_RULE},
    build=build_parallel, **_COMMON,  # type: ignore[arg-type]
))
register(AdapterFamily(
    name="autopeft_adapter",
    description="AutoPEFT's combination: serial and parallel bottleneck sizes, each 2^k or 0 (off), per layer.",
    defaults={"serial_size": ChoiceSpec(choices=[0, 8, 16, 32, 64]),
              "parallel_size": ChoiceSpec(choices=[0, 8, 16, 32, 64]), "scaling": 4.0, "activation": "relu"},
    rules={"serial_size": ParamRule(minimum=0, integer=True), "parallel_size": ParamRule(minimum=0, integer=True),
           "scaling": ParamRule(minimum=0.0), "activation": _ACT_RULE},
    build=build_combined, **_COMMON,  # type: ignore[arg-type]
))


