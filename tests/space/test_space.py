from __future__ import annotations

import optuna
import pytest

from autopeft.errors import SpaceError
from autopeft.search.define_by_run import compile_space
from autopeft.space import ADAPTER_KEY, SearchSpace, family_params, load_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "adapters": {
        "lora": {"r": {"choices": [2, 4, 8]}, "alpha": {"low": 4, "high": 32}, "dropout": 0.05},
        "dora": {"r": {"low": 2, "high": 16, "log": True}},
        "ia3": {},
    },
    "placement": {"layers": {"choices": ["all", "last-1"]}, "roles": {"choices": [["query", "value"], "all-linear"]}},
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"choices": [8, 16]},
    "warmup_ratio": 0.1,
}


def sample(space: SearchSpace, n: int = 60) -> list[dict]:
    define = compile_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    points = []
    for _ in range(n):
        trial = study.ask()
        fixed = define(trial)
        points.append({**trial.params, **fixed})
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


def test_family_params_splits_a_trial_config():
    name, params = family_params({"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "learning_rate": 0.1})
    assert name == "lora" and params == {"r": 4, "alpha": 8}


def test_log_range_needs_positive_low():
    with pytest.raises(SpaceError, match="a log range needs low > 0"):
        load_space({"adapters": ["lora"], "learning_rate": {"low": 0, "high": 1, "log": True}})


def test_negative_warmup_is_rejected():
    with pytest.raises(SpaceError, match=r"space\.warmup_ratio: expected a value >= 0"):
        load_space({"adapters": ["lora"], "warmup_ratio": -0.1})


def test_fractional_batch_size_is_rejected():
    with pytest.raises(SpaceError, match=r"space\.batch_size: expected an integer"):
        load_space({"adapters": ["lora"], "batch_size": {"choices": [8, 12.5]}})


def test_a_family_can_set_its_own_learning_rate():
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"],
                                              "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}})
    points = sample(space, n=80)
    ia3 = [p["learning_rate"] for p in points if p[ADAPTER_KEY] == "ia3"]
    others = [p["learning_rate"] for p in points if p[ADAPTER_KEY] != "ia3"]
    assert ia3 and others
    assert all(3e-3 <= lr <= 5e-2 for lr in ia3) and any(lr > 1e-2 for lr in ia3)  # above the shared range
    assert all(1e-4 <= lr <= 1e-2 for lr in others)
    assert all("ia3.learning_rate" not in p for p in points)  # one parameter name: what training reads


def test_a_fixed_per_family_value_is_passed_to_its_trials_only():
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": {"batch_size": 32}}})
    points = sample(space, n=40)
    assert {p["batch_size"] for p in points if p[ADAPTER_KEY] == "ia3"} == {32}
    assert {p["batch_size"] for p in points if p[ADAPTER_KEY] != "ia3"} <= {8, 16}


@pytest.mark.parametrize(("override", "message"), [
    ({"learning_rate": {"low": 1e-3, "high": 1e-1}},  # not log, where the shared range is
     r"space\.adapters\.ia3\.learning_rate: expected a float range with log: true like space\.learning_rate "
     r"\(Optuna samples one parameter from one kind of distribution\), found a float range with log: false"),
    ({"batch_size": {"choices": [16, 32]}},
     r"space\.adapters\.ia3\.batch_size: expected choices \[8, 16\] like space\.batch_size"),
    ({"learning_rate": {"low": 1e-3, "high": 20.0, "log": True}},
     r"space\.adapters\.ia3\.learning_rate: expected a value <= 10\.0, found 20\.0"),
])
def test_a_per_family_training_parameter_is_checked_where_it_is_written(override, message):
    with pytest.raises(SpaceError, match=message):
        load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": override}})


def test_the_space_names_training_parameters_a_family_sets_differently():
    assert load_space(SPACE).training_keys_set_per_family() == []
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"],
                                              "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}})
    assert space.training_keys_set_per_family() == ["learning_rate"]


def test_a_shared_spec_no_family_uses_is_not_held_against_theirs():
    # both families set a linear learning-rate range; the shared default (a log range) is unused
    own = {"learning_rate": {"low": 1e-3, "high": 1e-2}}
    space = load_space({"adapters": {"lora": own, "ia3": {"learning_rate": {"low": 5e-3, "high": 5e-2}}}})
    assert all(1e-3 <= p["learning_rate"] <= 5e-2 for p in sample(space, n=20))
