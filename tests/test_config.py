from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.config import parse_override, resolve
from autopeft.errors import ConfigError, SpaceError

from .conftest import REPO, write_yaml


def base_config(tmp_path: Path, **changes) -> dict:
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\na good film,1\na bad film,0\n")
    config = {
        "model": {"name_or_path": "minilm"},
        "data": {"train": str(train), "text_columns": ["sentence"], "label_column": "label"},
        "space": {"adapters": {"lora": {"r": {"choices": [4, 8]}}, "ia3": {}}},
        "budget": {"trials": 2, "max_steps": 10, "eval_interval": 5},
    }
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def resolve_dict(tmp_path: Path, config: dict):
    return resolve(write_yaml(tmp_path / "search.yaml", config))


def test_demo_config_resolves():
    resolved = resolve(REPO / "examples" / "demo.yaml")
    assert resolved.config.model.name_or_path == "minilm"
    assert set(resolved.space.adapters) == {"lora", "dora", "ia3"}
    assert resolved.config.budget.num_reports == 4


def test_overrides_win_over_file(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", base_config(tmp_path))
    resolved = resolve(path, [parse_override("budget.trials=7"), parse_override("tracking.uri=sqlite:///x.db")])
    assert resolved.config.budget.trials == 7
    assert resolved.config.tracking.uri == "sqlite:///x.db"


def test_unknown_key_suggests_closest(tmp_path):
    config = base_config(tmp_path)
    config["budget"]["trails"] = 3
    with pytest.raises(ConfigError, match=r"budget\.trails: unknown key; did you mean 'trials'\?"):
        resolve_dict(tmp_path, config)


def test_unknown_top_level_key(tmp_path):
    config = base_config(tmp_path)
    config["modle"] = {}
    with pytest.raises(ConfigError, match=r"modle: unknown key; did you mean 'model'"):
        resolve_dict(tmp_path, config)


def test_wrong_type_names_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.trials: .*integer.*found 'many'"):
        resolve_dict(tmp_path, base_config(tmp_path, budget__trials="many"))


def test_non_positive_trials(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.trials: .*greater than 0"):
        resolve_dict(tmp_path, base_config(tmp_path, budget__trials=0))


def test_final_steps_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.final_steps: .*greater than 0.*found 0"):
        resolve_dict(tmp_path, base_config(tmp_path, budget__final_steps=0))
    assert resolve_dict(tmp_path, base_config(tmp_path)).config.budget.final_steps is None  # off unless asked


def test_the_final_training_evaluates_about_eight_times_unless_told(tmp_path):
    def budget(**fields):
        return resolve_dict(tmp_path, base_config(tmp_path, **{f"budget__{k}": v for k, v in fields.items()})).config.budget

    assert budget(final_steps=400, eval_interval=5).final_interval == 50  # 8 evaluations, not 80
    assert budget(final_steps=12, eval_interval=5).final_interval == 5  # never more often than the trials'
    assert budget(final_steps=3, eval_interval=5).final_interval == 3  # at least once, at its end
    assert budget(final_steps=400, final_eval_interval=10).final_interval == 10
    with pytest.raises(ConfigError, match=r"final_eval_interval \(500\) is larger than final_steps \(400\)"):
        budget(final_steps=400, final_eval_interval=500)
    with pytest.raises(ConfigError, match=r"final_eval_interval is set but final_steps is not"):
        budget(final_eval_interval=10)


def test_eval_interval_above_max_steps(tmp_path):
    with pytest.raises(ConfigError, match=r"eval_interval \(50\) is larger than max_steps \(10\)"):
        resolve_dict(tmp_path, base_config(tmp_path, budget__eval_interval=50))


def test_objective_must_be_a_metric_of_the_task(tmp_path):
    with pytest.raises(ConfigError, match=r"objective.metric 'pearson' is not a metric of sequence_classification"):
        resolve_dict(tmp_path, base_config(tmp_path, objective__metric="pearson"))


def test_pruning_metric_must_be_a_metric_of_the_task(tmp_path):
    with pytest.raises(ConfigError, match=r"pruning.metric 'acc' is not a metric of sequence_classification "
                                          r"\(expected one of: accuracy, f1, mcc, loss\)"):
        resolve_dict(tmp_path, base_config(tmp_path, pruning__metric="acc"))


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name_or_path: minilm\ndata: [")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line"):
        resolve(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--config: no such file"):
        resolve(tmp_path / "nope.yaml")


def test_inverted_range_in_space(tmp_path):
    config = base_config(tmp_path)
    config["space"]["learning_rate"] = {"low": 0.1, "high": 0.001, "log": True}
    with pytest.raises(SpaceError, match=r"space\.learning_rate.*empty range: low 0.1 is above high 0.001"):
        resolve_dict(tmp_path, config)


def test_empty_choices_in_space(tmp_path):
    config = base_config(tmp_path)
    config["space"]["batch_size"] = {"choices": []}
    with pytest.raises(SpaceError, match=r"space\.batch_size.*choices is empty"):
        resolve_dict(tmp_path, config)


def test_empty_adapters(tmp_path):
    config = base_config(tmp_path)
    config["space"]["adapters"] = {}
    with pytest.raises(SpaceError, match=r"space\.adapters: expected at least one adapter family"):
        resolve_dict(tmp_path, config)


def test_unknown_space_key(tmp_path):
    config = base_config(tmp_path)
    config["space"]["learnig_rate"] = 0.1
    with pytest.raises(SpaceError, match=r"space\.learnig_rate: unknown key; did you mean 'learning_rate'"):
        resolve_dict(tmp_path, config)


def test_ready_space_by_name(tmp_path):
    resolved = resolve_dict(tmp_path, base_config(tmp_path, space="lora-family"))
    assert "dora" in resolved.space.adapters


def test_unknown_ready_space(tmp_path):
    with pytest.raises(SpaceError, match=r"no file 'nonsense' and no ready space .*lora-family"):
        resolve_dict(tmp_path, base_config(tmp_path, space="nonsense"))


def test_yaml_style_scientific_notation_is_a_number(tmp_path):
    config = base_config(tmp_path)
    config["space"]["learning_rate"] = {"low": "1e-4", "high": "1e-2", "log": True}
    resolved = resolve_dict(tmp_path, config)
    assert resolved.space.learning_rate.low == pytest.approx(1e-4)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("budget.trials")
