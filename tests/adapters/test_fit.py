"""The space checked against a model (``fit_to_model``) on tiny random models of each
architecture: families the architecture cannot run are excluded with a reason, bad input is a
one-line SpaceError."""

from __future__ import annotations

import pytest

from autopeft.adapters.fit import fit_to_model
from autopeft.errors import SpaceError
from autopeft.model.placement import scan
from autopeft.space import load_space
from tests.tiny_models import tiny_model_config


def mixed_space(**overrides):
    raw = {"adapters": {"lora": {}, "prefix_tuning": {}, "oft": {}, "serial_adapter": {}},
           "placement": {"layers": "all", "roles": "all-linear"}}
    raw.update(overrides)
    return load_space(raw)


def test_fit_excludes_families_the_architecture_cannot_run(tiny_structures):
    fit = fit_to_model(mixed_space(), tiny_structures["gpt2"], "sequence_classification")
    assert fit.kept == ["lora", "serial_adapter"]
    assert "past key values" in fit.excluded["prefix_tuning"] and "Conv1D" in fit.excluded["oft"]
    assert fit.num_layers == 2 and fit.placements[0][2]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_prefix_tuning_is_kept_on_decoders_fine_tuned_as_causal_lms(arch):
    import transformers as tf

    decoder = tf.AutoModelForCausalLM.from_config(tiny_model_config(arch))
    fit = fit_to_model(mixed_space(), scan(decoder), "causal_lm")
    assert "prefix_tuning" in fit.kept and "prefix_tuning" not in fit.excluded


def test_fit_errors_are_one_line(tiny_structures):
    llama = tiny_structures["llama"]
    with pytest.raises(SpaceError, match=r"unknown adapter family 'lorra'; did you mean 'lora'\?$"):
        fit_to_model(load_space({"adapters": {"lorra": {}}}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"space\.adapters\.oft\.rank: oft takes no parameter 'rank' \(it takes: block_size"):
        fit_to_model(load_space({"adapters": {"oft": {"rank": 4}}}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"layer 5 is beyond the model's depth \(2 layers"):
        fit_to_model(mixed_space(placement={"layers": [0, 5]}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"no family in the space can run on this model \(prefix_tuning:"):
        fit_to_model(load_space({"adapters": {"prefix_tuning": {}}}), llama, "sequence_classification")


def test_placement_choices_the_architecture_cannot_take_are_excluded(tiny_structures):
    """The llm-sft space's [query, value] on GPT-2, whose attention is one fused qkv, and its
    last-4 on a 2-layer model: the ready space failed on every such model, zero-config included.
    Choices that fit stay; a lone choice is still the user's word, and an unknown name an error."""
    gpt2 = tiny_structures["gpt2"]
    space = load_space({"adapters": {"lora": {}}, "placement": {
        "layers": {"choices": ["all", "last-4"]}, "roles": {"choices": [["query", "value"], "attention", "all-linear"]}}})
    fit = fit_to_model(space, gpt2, "sequence_classification")
    assert fit.kept_roles == ["attention", "all-linear"] and fit.kept_layers == ["all"]
    assert fit.excluded_roles["query,value"].startswith("matches no module of this model (roles it has: qkv")
    assert fit.excluded_layers == {"last-4": "'last-4' asks for 4 layers, the model has 2"}
    assert {(layers, roles) for layers, roles, _ in fit.placements} == {("all", "attention"), ("all", "all-linear")}
    with pytest.raises(SpaceError, match=r"^space\.placement\.roles: query,value matches no module of this model"):
        fit_to_model(mixed_space(placement={"roles": ["query", "value"]}), gpt2, "sequence_classification")
    with pytest.raises(SpaceError, match=r"^space\.placement\.roles: no choice fits this model "
                                         r"\(query: matches no module"):
        fit_to_model(mixed_space(placement={"roles": {"choices": ["query", "value"]}}), gpt2, "sequence_classification")
    with pytest.raises(SpaceError, match=r"unknown role 'qury'"):
        fit_to_model(mixed_space(placement={"roles": {"choices": ["qury", "attention"]}}), gpt2, "sequence_classification")
