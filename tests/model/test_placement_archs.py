"""Placement on every architecture autopeft knows, from tiny random models: roles detected from
the module names, exactly the asked-for modules adapted, layer masks, rank patterns, and the
space checked against the model (families excluded with a reason, bad input as SpaceError)."""

from __future__ import annotations

import optuna
import pytest
from peft import LoraConfig, get_peft_model

from autopeft.adapters.fit import fit_to_model
from autopeft.errors import SpaceError
from autopeft.model.placement import names_regex, rank_pattern, resolve, scan
from autopeft.search.define_by_run import DefineByRun
from autopeft.space import load_space

from tests.tiny_models import ARCHITECTURES, tiny_model

#: Per architecture: the module path inside block 0 for each role it has.
ROLES = {
    "bert": {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attention_output": "attention.output.dense", "mlp_up": "intermediate.dense", "mlp_down": "output.dense"},
    "deberta-v2": {"query": "attention.self.query_proj", "key": "attention.self.key_proj",
                   "value": "attention.self.value_proj", "attention_output": "attention.output.dense",
                   "mlp_up": "intermediate.dense", "mlp_down": "output.dense"},
    "distilbert": {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                   "attention_output": "attention.out_lin", "mlp_up": "ffn.lin1", "mlp_down": "ffn.lin2"},
    "gpt2": {"qkv": "attn.c_attn", "attention_output": "attn.c_proj", "mlp_up": "mlp.c_fc", "mlp_down": "mlp.c_proj"},
    "llama": {"query": "self_attn.q_proj", "key": "self_attn.k_proj", "value": "self_attn.v_proj",
              "attention_output": "self_attn.o_proj", "mlp_gate": "mlp.gate_proj", "mlp_up": "mlp.up_proj",
              "mlp_down": "mlp.down_proj"},
    "t5": {"query": "layer.0.SelfAttention.q", "key": "layer.0.SelfAttention.k", "value": "layer.0.SelfAttention.v",
           "attention_output": "layer.0.SelfAttention.o", "mlp_up": "layer.1.DenseReluDense.wi",
           "mlp_down": "layer.1.DenseReluDense.wo"},
    "vit": {"query": "attention.q_proj", "key": "attention.k_proj", "value": "attention.v_proj",
            "attention_output": "attention.o_proj", "mlp_up": "mlp.fc1", "mlp_down": "mlp.fc2"},
}
ROLES["roberta"] = ROLES["bert"]
ROLES["mistral"] = ROLES["qwen2"] = ROLES["gemma"] = ROLES["llama"]


@pytest.fixture(scope="module")
def structures():
    return {arch: scan(tiny_model(arch)) for arch in ARCHITECTURES}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_roles_are_detected(arch, structures):
    structure = structures[arch]
    assert structure.num_layers == 2
    # T5's encoder block 0 (the decoder adds cross-attention, also roled)
    first = [leaf for leaf in structure.leaves if leaf.layer == 0 and leaf.stack == next(iter(structure.stacks))]
    found = {leaf.role: leaf.name.split(".0.", 1)[1] for leaf in first if leaf.role}
    assert found == ROLES[arch]
    assert all(leaf.role for leaf in structure.leaves if leaf.layer is not None), "every block Linear has a role"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_exactly_the_placed_modules_get_adapters(arch):
    model = tiny_model(arch)
    structure = scan(model)
    names = resolve(structure, "last-1", ["value", "mlp_down"] if arch != "gpt2" else ["qkv", "mlp_down"])
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=names_regex(names)))
    adapted = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules()
               if hasattr(m, "base_layer") and hasattr(m, "lora_A")}
    assert adapted == set(names)
    assert all(".1." in n for n in names)  # the last of two layers only


def test_role_missing_on_architecture_lists_what_it_has(structures):
    with pytest.raises(SpaceError, match=r"mlp_gate matches no module .*roles it has: qkv \(attn\.c_attn\)"):
        resolve(structures["gpt2"], "all", ["mlp_gate"])


def test_rank_pattern_grows_with_depth(structures):
    structure = scan(tiny_model("bert"))
    structure.num_layers = 2
    names = resolve(structure, "all", ["query"])
    assert rank_pattern(structure, names, 8, "uniform") == {}
    pattern = rank_pattern(structure, names, 8, "increasing")
    assert sorted(pattern.values()) == [4, 16]  # first third r/2, last third 2r (of two layers)
    with pytest.raises(SpaceError, match=r"rank_pattern: expected one of uniform"):
        rank_pattern(structure, names, 8, "sideways")


def _space(**overrides):
    raw = {"adapters": {"lora": {}, "prefix_tuning": {}, "oft": {}, "serial_adapter": {}},
           "placement": {"layers": "all", "roles": "all-linear"}}
    raw.update(overrides)
    return load_space(raw)


def test_fit_excludes_families_the_architecture_cannot_run(structures):
    fit = fit_to_model(_space(), structures["gpt2"], "sequence_classification")
    assert fit.kept == ["lora", "serial_adapter"]
    assert "past key values" in fit.excluded["prefix_tuning"] and "Conv1D" in fit.excluded["oft"]
    assert fit.num_layers == 2 and fit.placements[0][2]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_prefix_tuning_is_kept_on_decoders_fine_tuned_as_causal_lms(arch):
    import transformers as tf

    from tests.tiny_models import _config

    decoder = tf.AutoModelForCausalLM.from_config(_config(arch))
    fit = fit_to_model(_space(), scan(decoder), "causal_lm")
    assert "prefix_tuning" in fit.kept and "prefix_tuning" not in fit.excluded


def test_fit_errors_are_one_line(structures):
    llama = structures["llama"]
    with pytest.raises(SpaceError, match=r"unknown adapter family 'lorra' \(registered: .*bitfit"):
        fit_to_model(load_space({"adapters": {"lorra": {}}}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"space\.adapters\.oft\.rank: oft takes no parameter 'rank' \(it takes: block_size"):
        fit_to_model(load_space({"adapters": {"oft": {"rank": 4}}}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"layer 5 is beyond the model's depth \(2 layers"):
        fit_to_model(_space(placement={"layers": [0, 5]}), llama, "sequence_classification")
    with pytest.raises(SpaceError, match=r"no family in the space can run on this model \(prefix_tuning:"):
        fit_to_model(load_space({"adapters": {"prefix_tuning": {}}}), llama, "sequence_classification")


def test_layer_mask_is_searched_bit_by_bit(structures):
    space = _space(adapters={"lora": {"r": 4}}, placement={"layers": "mask", "roles": ["query"]})
    fit_to_model(space, structures["llama"], "sequence_classification")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = DefineByRun(space)(trial)
        assert {"placement.layer_0", "placement.layer_1"} <= set(trial.params)
        on = [i for i in (0, 1) if trial.params[f"placement.layer_{i}"]]
        assert config["placement.layers"] == ",".join(map(str, on or [1]))
        resolve(structures["llama"], config["placement.layers"], ["query"])
        seen.add(config["placement.layers"])
        study.tell(trial, 0.0)
    assert len(seen) >= 2


def test_self_placing_families_sample_layers_but_not_roles(structures):
    space = _space(adapters={"serial_adapter": {}}, placement={"layers": {"choices": ["all", "last-1"]},
                                                               "roles": {"choices": ["all-linear", "attention"]}})
    fit_to_model(space, structures["bert"], "sequence_classification")
    trial = optuna.create_study().ask()
    DefineByRun(space)(trial)
    assert "placement.layers" in trial.params and "placement.roles" not in trial.params
