from __future__ import annotations

import pytest
from peft import IA3Config, LoraConfig, get_peft_model

from autopeft.adapters import AdapterTarget, families, get_family
from autopeft.errors import SpaceError
from autopeft.model.placement import resolve, scan
from autopeft.space import ChoiceSpec, RangeSpec


def target_for(model, layers="all", roles="all-linear") -> AdapterTarget:
    structure = scan(model)
    return AdapterTarget(module_names=resolve(structure, layers, roles), structure=structure, peft_task_type="SEQ_CLS")


def adapted_modules(peft_model) -> set[str]:
    prefix = "base_model.model."
    names = set()
    for name, module in peft_model.named_modules():
        if hasattr(module, "base_layer") and name.startswith(prefix):
            names.add(name[len(prefix):])
    return names


def test_registry_lists_the_issue_families():
    assert {"lora", "dora", "ia3"} <= set(families())


def test_an_unknown_family_names_the_closest_one_or_lists_them_all():
    with pytest.raises(SpaceError, match=r"^space\.adapters: unknown adapter family 'loar'; did you mean 'lora'\?$"):
        get_family("loar")
    with pytest.raises(SpaceError, match=r"unknown adapter family 'houlsby' \(registered: .*dora.*ia3.*lora"):
        get_family("houlsby")


def test_lora_builds_lora_config_on_exactly_the_placed_modules(tiny_bert):
    target = target_for(tiny_bert, layers="last-1", roles=["query", "value"])
    config = get_family("lora").build({"r": 4, "alpha": 8, "dropout": 0.1, "rslora": True}, target)
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora, config.use_dora) == (4, 8, 0.1, True, False)
    model = get_peft_model(tiny_bert, config)
    assert adapted_modules(model) == {"bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.attention.self.value"}


def test_dora_is_lora_with_weight_decomposition(tiny_bert):
    config = get_family("dora").build({"r": 2, "alpha": 4, "dropout": 0.0, "rslora": False}, target_for(tiny_bert))
    assert isinstance(config, LoraConfig) and config.use_dora


def test_ia3_marks_mlp_modules_as_feedforward(tiny_bert):
    target = target_for(tiny_bert, roles=["key", "value", "mlp_up"])
    config = get_family("ia3").build({}, target)
    assert isinstance(config, IA3Config)
    model = get_peft_model(tiny_bert, config)
    adapted = adapted_modules(model)
    assert adapted == {f"bert.encoder.layer.{i}.{m}" for i in (0, 1)
                       for m in ("attention.self.key", "attention.self.value", "intermediate.dense")}
    ff = {n for n, mod in model.named_modules() if getattr(mod, "is_feedforward", False)}
    assert {n.removeprefix("base_model.model.") for n in ff} == {"bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"}


def test_unknown_family_parameter_is_rejected():
    with pytest.raises(SpaceError, match=r"space\.adapters\.lora\.rank: lora takes no parameter 'rank' \(it takes: r, alpha"):
        get_family("lora").validate({"rank": 8})


@pytest.mark.parametrize("spec", [0, -4, ChoiceSpec(choices=[4, 0]), RangeSpec(low=0, high=8)])
def test_non_positive_rank_is_rejected(spec):
    with pytest.raises(SpaceError, match=r"space\.adapters\.lora\.r: expected a value >= 1"):
        get_family("lora").validate({"r": spec})


def test_fractional_rank_is_rejected():
    with pytest.raises(SpaceError, match=r"space\.adapters\.dora\.r: expected an integer"):
        get_family("dora").validate({"r": 2.5})
