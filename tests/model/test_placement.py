from __future__ import annotations

import pytest

from autopeft.errors import SpaceError
from autopeft.model.placement import parse_layers, resolve, scan


def test_bert_roles_are_detected(tiny_bert):
    structure = scan(tiny_bert)
    assert structure.num_layers == 2
    roles = {leaf.name: leaf.role for leaf in structure.leaves if leaf.layer == 0}
    assert roles == {
        "bert.encoder.layer.0.attention.self.query": "query",
        "bert.encoder.layer.0.attention.self.key": "key",
        "bert.encoder.layer.0.attention.self.value": "value",
        "bert.encoder.layer.0.attention.output.dense": "attention_output",
        "bert.encoder.layer.0.intermediate.dense": "mlp_up",
        "bert.encoder.layer.0.output.dense": "mlp_down",
    }


def test_attention_output_and_mlp_down_are_told_apart(tiny_bert):
    names = resolve(scan(tiny_bert), "all", ["mlp_down"])
    assert names == ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]


def test_all_linear_excludes_the_head_and_pooler(tiny_bert):
    names = resolve(scan(tiny_bert), "all", "all-linear")
    assert len(names) == 12
    assert not any("classifier" in n or "pooler" in n for n in names)


@pytest.mark.parametrize("selector,expected", [
    ("all", [0, 1, 2, 3, 4, 5]), ("first-2", [0, 1]), ("last-2", [4, 5]), ("every-2", [0, 2, 4]),
    ("1..3", [1, 2, 3]), ([5, 0], [0, 5]), ("0,3", [0, 3]), (2, [2]),
])
def test_layer_selectors(selector, expected):
    assert parse_layers(selector, 6) == expected


def test_layer_beyond_depth():
    with pytest.raises(SpaceError, match=r"layer 6 is beyond the model's depth \(6 layers: 0..5\)"):
        parse_layers([0, 6], 6)


def test_bad_selector():
    with pytest.raises(SpaceError, match=r"space\.placement\.layers: expected all, first-K"):
        parse_layers("middle", 6)


def test_role_the_model_does_not_have_lists_what_it_has(tiny_bert):
    with pytest.raises(SpaceError, match=r"mlp_gate matches no module of this model \(roles it has: query \(attention\.self\.query\)"):
        resolve(scan(tiny_bert), "all", ["mlp_gate"])


def test_unknown_role(tiny_bert):
    with pytest.raises(SpaceError, match=r"unknown role 'quary'"):
        resolve(scan(tiny_bert), "all", ["quary"])
