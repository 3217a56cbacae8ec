"""Placement on every architecture autopeft knows, from tiny random models: roles detected from
the module names, exactly the asked-for modules adapted, and rank patterns. (The space checked
against these models: tests/adapters/test_fit.py; layer masks sampled: tests/study/test_define_by_run.py.)"""

from __future__ import annotations

import pytest
from peft import LoraConfig, get_peft_model

from autopeft.errors import SpaceError
from autopeft.model.placement import names_regex, rank_pattern, resolve, scan
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


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_roles_are_detected(arch, tiny_structures):
    structure = tiny_structures[arch]
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


def test_role_missing_on_architecture_lists_what_it_has(tiny_structures):
    with pytest.raises(SpaceError, match=r"mlp_gate matches no module .*roles it has: qkv \(attn\.c_attn\)"):
        resolve(tiny_structures["gpt2"], "all", ["mlp_gate"])


def test_rank_pattern_grows_with_depth():
    structure = scan(tiny_model("bert"))
    structure.num_layers = 2
    names = resolve(structure, "all", ["query"])
    assert rank_pattern(structure, names, 8, "uniform") == {}
    pattern = rank_pattern(structure, names, 8, "increasing")
    assert sorted(pattern.values()) == [4, 16]  # first third r/2, last third 2r (of two layers)
    with pytest.raises(SpaceError, match=r"rank_pattern: expected one of uniform"):
        rank_pattern(structure, names, 8, "sideways")
