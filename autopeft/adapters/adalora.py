"""AdaLoRA: LoRA in SVD form whose rank budget is re-allocated across modules while training
(Zhang et al., 2023). peft needs ``update_and_allocate(step)`` after every optimizer step; the
family's ``on_step`` hook does that from the training loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peft import AdaLoraConfig
from torch import nn

from autopeft.adapters.base import AdapterFamily, AdapterTarget, ParamRule, register
from autopeft.model.placement import names_regex
from autopeft.space import ChoiceSpec, RangeSpec


def build(params: Mapping[str, Any], target: AdapterTarget) -> AdaLoraConfig:
    total = int(target.max_steps or 100)
    init_r = int(params["init_r"])
    # Warm up on the full budget for the first share of steps, prune ranks in the middle, keep
    # the final allocation for the last share; AdaLoRA needs tinit < total - tfinal.
    tinit = int(total * float(params["warmup_share"]))
    tfinal = int(total * float(params["final_share"]))
    if tinit >= total - tfinal:
        tinit, tfinal = 0, 0
    return AdaLoraConfig(
        task_type=target.peft_task_type,
        init_r=init_r,
        target_r=min(int(params["target_r"]), init_r),  # the budget only shrinks
        lora_alpha=float(params["alpha"]),  # type: ignore[arg-type]  # peft annotates int; used as alpha / r
        lora_dropout=float(params["dropout"]),
        tinit=tinit, tfinal=tfinal, deltaT=1, total_step=total,
        target_modules=names_regex(target.module_names),
    )


def on_step(model: nn.Module, step: int) -> None:
    peft_model: Any = model.base_model
    allocator = peft_model.rankallocator
    budget, _ = allocator.budget_schedule(step)
    if budget >= allocator.init_bgt:
        # Nothing to prune at this step (target_r == init_r keeps every rank). peft would still
        # rank the scores with kthvalue(k=0), which raises; keep its importance estimates going.
        config = peft_model.peft_config[peft_model.trainable_adapter_name]
        if step < config.total_step - config.tfinal:
            allocator.update_ipt(peft_model.model)
        return
    peft_model.update_and_allocate(step)


def after_load(raw: Mapping[str, Any], model: nn.Module) -> None:
    # peft's AdaLoraModel adds its orthogonality penalty to any loss using the *trainable*
    # adapter's settings, which an adapter loaded for inference lacks: evaluating with labels
    # would raise AttributeError. Point it at the loaded adapter (the penalty is then part of
    # the loss exactly as during training's evaluation).
    if raw.get("peft_type") == "ADALORA" and not hasattr(model.base_model, "trainable_adapter_name"):
        model.base_model.trainable_adapter_name = model.active_adapter  # type: ignore[union-attr,attr-defined]


register(AdapterFamily(
    name="adalora",
    description="SVD-form LoRA whose rank budget moves to the modules that matter while training (Zhang et al., 2023).",
    defaults={
        "init_r": ChoiceSpec(choices=[8, 12]),
        "target_r": ChoiceSpec(choices=[2, 4, 8]),
        "alpha": ChoiceSpec(choices=[8, 16, 32]),
        "dropout": RangeSpec(low=0.0, high=0.1),
        "warmup_share": 0.1,
        "final_share": 0.2,
    },
    rules={
        "init_r": ParamRule(minimum=1, integer=True),
        "target_r": ParamRule(minimum=1, integer=True),
        "alpha": ParamRule(minimum=1e-6),
        "dropout": ParamRule(minimum=0.0, maximum=0.99),
        "warmup_share": ParamRule(minimum=0.0, maximum=0.9),
        "final_share": ParamRule(minimum=0.0, maximum=0.9),
    },
    build=build, on_step=on_step, after_load=after_load,
))
