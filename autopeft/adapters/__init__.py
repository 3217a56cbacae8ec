"""Adapter families, one module each; importing this package registers them all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.adapters import (  # noqa: F401  (registration side effects)
    adalora,
    bitfit,
    boft,
    bottleneck,
    c3a,
    delora,
    fourierft,
    gralora,
    hra,
    ia3,
    ln_tuning,
    loha,
    lokr,
    lora,
    miss,
    oft,
    p_tuning,
    prefix_tuning,
    prompt_tuning,
    randlora,
    shira,
    vblora,
    vera,
)
from autopeft.adapters.base import (
    AdapterFamily,
    AdapterTarget,
    ParamRule,
    families,
    get_family,
    register,
)

if TYPE_CHECKING:
    from torch import nn


def load_adapter(base: nn.Module, adapter_dir: str | Path, *, is_trainable: bool = False) -> Any:
    """``PeftModel.from_pretrained`` for every family, including those whose config needs code
    to load (bottleneck adapters register their custom layer again)."""

    # deferred: peft imports torch and transformers; imported where an adapter is built
    from peft import PeftModel

    raw = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    config = None
    for family in families().values():
        if family.load_config is not None:
            config = family.load_config(raw)
            if config is not None:
                break
    if config is None:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=is_trainable)
    else:
        config.inference_mode = not is_trainable
        model = PeftModel.from_pretrained(base, str(adapter_dir), config=config, is_trainable=is_trainable)
    for family in families().values():
        if family.after_load is not None:
            family.after_load(raw, model)
    return model


__all__ = ["AdapterFamily", "AdapterTarget", "ParamRule", "families", "get_family", "load_adapter", "register"]
