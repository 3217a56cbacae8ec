"""Search-space specs: loading, per-family parameters and training settings, and their one-line
errors. (How a space is sampled: tests/study/test_define_by_run.py.)"""

from __future__ import annotations

import pytest

from autopeft.errors import SpaceError
from autopeft.space import config_names, family_params, load_space

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


@pytest.mark.parametrize(("override", "message"), [
    ({"learning_rate": {"low": 1e-3, "high": 20.0, "log": True}},
     r"space\.adapters\.ia3\.learning_rate: expected a value <= 10\.0, found 20\.0"),
    ({"batch_size": {"choices": [16, 32.5]}}, r"space\.adapters\.ia3\.batch_size: expected an integer, found 32\.5"),
])
def test_a_per_family_training_parameter_is_checked_where_it_is_written(override, message):
    with pytest.raises(SpaceError, match=message):
        load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": override}})


def test_a_family_samples_its_own_training_parameter_under_its_own_name():
    # another hyperparameter, so it may be another kind of spec than the shared one
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": {"learning_rate": {"low": 1e-3, "high": 1e-1},
                                                                           "batch_size": {"choices": [16, 32]}}}})
    assert space.sampled_name("ia3", "learning_rate") == "ia3.learning_rate"
    assert space.sampled_name("ia3", "batch_size") == "ia3.batch_size"
    assert space.sampled_name("lora", "learning_rate") == "learning_rate"  # the shared one
    # one family alone: nothing to keep apart, and a config without the adapter stays readable
    alone = load_space({"adapters": {"ia3": {"learning_rate": {"low": 1e-3, "high": 1e-1, "log": True}}}})
    assert alone.sampled_name("ia3", "learning_rate") == "learning_rate"


def test_a_config_and_its_sampled_names_map_both_ways():
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"], "ia3": {"learning_rate": {"low": 1e-3, "high": 1e-1}}}})
    ia3 = {"adapter": "ia3", "learning_rate": 2e-2, "batch_size": 8, "placement.layers": "all"}
    sampled = space.sampled_names(ia3)
    assert sampled == {"adapter": "ia3", "ia3.learning_rate": 2e-2, "batch_size": 8, "placement.layers": "all"}
    assert config_names(sampled) == ia3
    lora = {"adapter": "lora", "lora.r": 4, "learning_rate": 1e-3}
    assert space.sampled_names(lora) == lora and config_names(lora) == lora
    # only the trial's own family maps back: another family's name is not a training key here
    assert config_names({"adapter": "dora", "lora.learning_rate": 1.0}) == {"adapter": "dora", "lora.learning_rate": 1.0}


def test_the_space_names_training_parameters_a_family_sets_differently():
    assert load_space(SPACE).training_keys_set_per_family() == []
    space = load_space({**SPACE, "adapters": {**SPACE["adapters"],
                                              "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}})
    assert space.training_keys_set_per_family() == ["learning_rate"]


def test_a_space_file_that_gives_a_key_twice_is_one_line(tmp_path):
    """YAML keeps the last of two equal keys: the first 'adapters' block would vanish unsaid."""
    path = tmp_path / "space.yaml"
    path.write_text("adapters:\n  lora: {}\nlearning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
                    "adapters:\n  ia3: {}\n")
    with pytest.raises(SpaceError, match=r"^space: .*space\.yaml is not valid YAML: .*key 'adapters' appears twice in "
                                         r"one mapping \(first at line 1\)"):
        load_space(str(path))


@pytest.mark.parametrize("yaml_text, message", [
    ("learning_rate: {low: 1.0e-4, high: .nan, log: true}", r"space\.learning_rate: high: expected a finite number, "
                                                            r"found nan$"),
    ("learning_rate: {low: .nan, high: 1.0e-2}", r"space\.learning_rate: low: expected a finite number, found nan$"),
    ("warmup_ratio: .nan", r"space\.warmup_ratio: expected a finite number, found nan$"),
    ("adapters: {lora: {r: {choices: [4, .nan]}}}", r"space\.adapters\.lora\.r: choices: expected finite numbers "
                                                     r"among the choices, found nan$"),
])
def test_nan_in_a_space_is_one_line(tmp_path, yaml_text, message):
    """YAML's .nan passes every bound (low <= high, >= 0), so it reached Optuna or the adapter
    after the study had started."""
    path = tmp_path / "space.yaml"
    path.write_text(("" if yaml_text.startswith("adapters") else "adapters: {lora: {}}\n") + yaml_text + "\n")
    with pytest.raises(SpaceError, match=message):
        load_space(str(path))
