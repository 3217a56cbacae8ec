"""A search space compiled for Optuna (``compile_space``, ``DefineByRun``): each trial samples only its
family's parameters, within their ranges and choices, with per-family training settings, layer
masks bit by bit, and no roles for families that place themselves."""

from __future__ import annotations

import optuna

from autopeft.adapters.fit import fit_to_model
from autopeft.model.placement import resolve
from autopeft.space import ADAPTER_KEY, SearchSpace, config_names, load_space
from autopeft.study.define_by_run import DefineByRun, compile_space
from tests.space.test_space import SPACE

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(space: SearchSpace, n: int = 60) -> list[dict]:
    define = compile_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    points = []
    for _ in range(n):
        trial = study.ask()
        fixed = define(trial)
        points.append(config_names({**trial.params, **fixed}))
        study.tell(trial, 0.0)
    return points


def test_only_the_chosen_family_parameters_appear():
    points = sample(load_space(SPACE))
    assert {p[ADAPTER_KEY] for p in points} == {"lora", "dora", "ia3"}
    for point in points:
        family = point[ADAPTER_KEY]
        own = {k.split(".")[0] for k in point if k.split(".")[0] in {"lora", "dora", "ia3"}}
        assert own <= {family}, point


def test_ranges_and_choices_are_respected():
    points = sample(load_space(SPACE), n=80)
    for p in points:
        assert 1e-4 <= p["learning_rate"] <= 1e-2
        assert p["batch_size"] in {8, 16}
        assert p["warmup_ratio"] == 0.1
        assert p["placement.layers"] in {"all", "last-1"}
        assert p["placement.roles"] in {"query,value", "all-linear"}
        if p[ADAPTER_KEY] == "lora":
            assert p["lora.r"] in {2, 4, 8}
            assert 4 <= p["lora.alpha"] <= 32 and isinstance(p["lora.alpha"], int)
            assert p["lora.dropout"] == 0.05
        if p[ADAPTER_KEY] == "dora":
            assert 2 <= p["dora.r"] <= 16
            assert p["dora.alpha"] in {8, 16, 32, 64}  # the family's default choices


def test_family_defaults_fill_unlisted_parameters():
    points = sample(load_space({"adapters": ["lora"]}), n=10)
    assert all(p[ADAPTER_KEY] == "lora" for p in points)
    assert all(p["lora.r"] in {4, 8, 16, 32} for p in points)


def test_a_family_can_set_its_own_learning_rate():
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"],
                                              "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}})
    points = sample(space, n=80)
    ia3 = [p["learning_rate"] for p in points if p[ADAPTER_KEY] == "ia3"]
    others = [p["learning_rate"] for p in points if p[ADAPTER_KEY] != "ia3"]
    assert ia3 and others
    assert all(3e-3 <= lr <= 5e-2 for lr in ia3) and any(lr > 1e-2 for lr in ia3)  # above the shared range
    assert all(1e-4 <= lr <= 1e-2 for lr in others)
    assert all("ia3.learning_rate" not in p for p in points)  # the config: what training reads


def test_optuna_models_a_family_own_rate_apart_from_the_shared_one():
    # TPE fits one model per parameter name: under one name, IA3's good rates (above LoRA's
    # range) would pull LoRA's next draws up, and LoRA's bad ones push IA3's down
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"],
                                              "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}})
    define = compile_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    names: dict[str, set[str]] = {}
    for _ in range(40):
        trial = study.ask()
        define(trial)
        names.setdefault(trial.params[ADAPTER_KEY], set()).update(k for k in trial.params if "learning_rate" in k)
        study.tell(trial, 0.0)
    assert names == {"ia3": {"ia3.learning_rate"}, "lora": {"learning_rate"}, "dora": {"learning_rate"}}


def test_a_fixed_per_family_value_is_passed_to_its_trials_only():
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": {"batch_size": 32}}})
    points = sample(space, n=40)
    assert {p["batch_size"] for p in points if p[ADAPTER_KEY] == "ia3"} == {32}
    assert {p["batch_size"] for p in points if p[ADAPTER_KEY] != "ia3"} <= {8, 16}


def test_a_shared_spec_no_family_uses_is_not_held_against_theirs():
    # both families set a linear learning-rate range; the shared default (a log range) is unused
    own = {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    space = load_space({"adapters": {"lora": own, "ia3": {"learning_rate": {"low": 5e-3, "high": 5e-2}}}})
    assert all(1e-3 <= p["learning_rate"] <= 5e-2 for p in sample(space, n=20))


def test_layer_mask_is_searched_bit_by_bit(tiny_structures):
    space = load_space({"adapters": {"lora": {"r": 4}}, "placement": {"layers": "mask", "roles": ["query"]}})
    fit_to_model(space, tiny_structures["llama"], "sequence_classification")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = DefineByRun(space)(trial)
        assert {"placement.layer_0", "placement.layer_1"} <= set(trial.params)
        on = [i for i in (0, 1) if trial.params[f"placement.layer_{i}"]]
        assert config["placement.layers"] == ",".join(map(str, on or [1]))
        resolve(tiny_structures["llama"], config["placement.layers"], ["query"])
        seen.add(config["placement.layers"])
        study.tell(trial, 0.0)
    assert len(seen) >= 2


def test_self_placing_families_sample_layers_but_not_roles(tiny_structures):
    space = load_space({"adapters": {"serial_adapter": {}},
                        "placement": {"layers": {"choices": ["all", "last-1"]},
                                      "roles": {"choices": ["all-linear", "attention"]}}})
    fit_to_model(space, tiny_structures["bert"], "sequence_classification")
    trial = optuna.create_study().ask()
    DefineByRun(space)(trial)
    assert "placement.layers" in trial.params and "placement.roles" not in trial.params
