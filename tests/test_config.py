from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.config import SearchConfig, parse_override, resolve
from autopeft.errors import ConfigError, SpaceError
from tests.conftest import REPO, make_config, resolve_config, write_yaml


def resolve_dict(tmp_path: Path, config: dict):
    return resolve(write_yaml(tmp_path / "search.yaml", config))


def test_demo_config_resolves():
    resolved = resolve(REPO / "examples" / "demo.yaml")
    assert resolved.config.model.name_or_path == "minilm"
    assert set(resolved.space.adapters) == {"lora", "dora", "ia3"}
    assert resolved.config.budget.num_reports == 4


def test_reading_a_config_imports_no_torch_peft_or_transformers(tmp_path):
    """A mistake in a config file is answered before the seconds those imports take (the CLI
    reads the config first): resolving one, in a fresh interpreter, loads none of them."""
    import subprocess
    import sys

    path = write_yaml(tmp_path / "search.yaml", make_config(tmp_path))
    code = ("import sys; from autopeft.config import resolve; resolve(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_overrides_win_over_file(tmp_path):
    path = write_yaml(tmp_path / "s.yaml", make_config(tmp_path))
    resolved = resolve(path, [parse_override("budget.trials=7"), parse_override("tracking.uri=sqlite:///x.db")])
    assert resolved.config.budget.trials == 7
    assert resolved.config.tracking.uri == "sqlite:///x.db"


def test_unknown_key_suggests_closest(tmp_path):
    config = make_config(tmp_path)
    config["budget"]["trails"] = 3
    with pytest.raises(ConfigError, match=r"budget\.trails: unknown key; did you mean 'trials'\?"):
        resolve_dict(tmp_path, config)


def test_unknown_top_level_key(tmp_path):
    config = make_config(tmp_path)
    config["modle"] = {}
    with pytest.raises(ConfigError, match=r"modle: unknown key; did you mean 'model'"):
        resolve_dict(tmp_path, config)


def test_wrong_type_names_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.trials: .*integer.*found 'many'"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__trials="many"))


def test_non_positive_trials(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.trials: .*greater than 0"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__trials=0))


def test_final_steps_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.final_steps: .*greater than 0.*found 0"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__final_steps=0))
    assert resolve_dict(tmp_path, make_config(tmp_path)).config.budget.final_steps is None  # off unless asked


def test_the_final_training_continues_the_trial_at_half_its_rate_unless_told(tmp_path):
    budget = resolve_dict(tmp_path, make_config(tmp_path, budget__final_steps=400)).config.budget
    assert (budget.final_from, budget.final_lr_scale) == ("trial", 0.5)
    with pytest.raises(ConfigError, match=r"budget\.final_from: Input should be 'trial' or 'init'.*found 'scratch'"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__final_from="scratch"))
    for scale in (0, 1.5):
        with pytest.raises(ConfigError, match=rf"budget\.final_lr_scale: .*found {scale}"):
            resolve_dict(tmp_path, make_config(tmp_path, budget__final_lr_scale=scale))


def test_the_final_training_evaluates_about_eight_times_unless_told(tmp_path):
    def budget(**fields):
        return resolve_dict(tmp_path, make_config(tmp_path, **{f"budget__{k}": v for k, v in fields.items()})).config.budget

    assert budget(final_steps=400, eval_interval=5).final_interval == 50  # 8 evaluations, not 80
    assert budget(final_steps=12, eval_interval=5).final_interval == 5  # never more often than the trials'
    assert budget(final_steps=3, eval_interval=5).final_interval == 3  # at least once, at its end
    assert budget(final_steps=400, final_eval_interval=10).final_interval == 10
    with pytest.raises(ConfigError, match=r"final_eval_interval \(500\) is larger than final_steps \(400\)"):
        budget(final_steps=400, final_eval_interval=500)
    with pytest.raises(ConfigError, match=r"final_eval_interval is set but final_steps is not"):
        budget(final_eval_interval=10)


def test_a_step_budget_must_hold_one_full_trial(tmp_path):
    config = resolve_dict(tmp_path, make_config(tmp_path, budget__search_steps=400, budget__max_steps=100)).config
    assert config.budget.search_steps == 400
    assert resolve_dict(tmp_path, make_config(tmp_path)).config.budget.search_steps is None  # off unless asked
    with pytest.raises(ConfigError, match=r"search_steps \(50\) is smaller than max_steps \(100\): not one full "
                                          r"trial fits"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__search_steps=50, budget__max_steps=100))


def test_eval_interval_above_max_steps(tmp_path):
    with pytest.raises(ConfigError, match=r"eval_interval \(50\) is larger than max_steps \(10\)"):
        resolve_dict(tmp_path, make_config(tmp_path, budget__eval_interval=50))


@pytest.mark.parametrize("max_steps, interval", [(8, 2), (3, 1), (24, 6)])
def test_short_trials_without_an_interval_report_four_times(tmp_path, max_steps, interval):
    raw = make_config(tmp_path, budget__max_steps=max_steps)
    del raw["budget"]["eval_interval"]
    budget = resolve_dict(tmp_path, raw).config.budget
    assert (budget.max_steps, budget.eval_interval) == (max_steps, interval)


def test_objective_must_be_a_metric_of_the_task(tmp_path):
    with pytest.raises(ConfigError, match=r"objective.metric 'pearson' is not a metric of sequence_classification"):
        resolve_dict(tmp_path, make_config(tmp_path, objective__metric="pearson"))


def test_pruning_metric_must_be_a_metric_of_the_task(tmp_path):
    with pytest.raises(ConfigError, match=r"pruning.metric 'acc' is not a metric of sequence_classification "
                                          r"\(expected one of: accuracy, f1, mcc, loss\)"):
        resolve_dict(tmp_path, make_config(tmp_path, pruning__metric="acc"))


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {name_or_path: minilm\ndata: [")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line"):
        resolve(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--config: no such file"):
        resolve(tmp_path / "nope.yaml")


def test_inverted_range_in_space(tmp_path):
    config = make_config(tmp_path)
    config["space"]["learning_rate"] = {"low": 0.1, "high": 0.001, "log": True}
    with pytest.raises(SpaceError, match=r"space\.learning_rate.*empty range: low 0.1 is above high 0.001"):
        resolve_dict(tmp_path, config)


def test_empty_choices_in_space(tmp_path):
    config = make_config(tmp_path)
    config["space"]["batch_size"] = {"choices": []}
    with pytest.raises(SpaceError, match=r"space\.batch_size.*choices is empty"):
        resolve_dict(tmp_path, config)


def test_empty_adapters(tmp_path):
    config = make_config(tmp_path)
    config["space"]["adapters"] = {}
    with pytest.raises(SpaceError, match=r"space\.adapters: expected at least one adapter family"):
        resolve_dict(tmp_path, config)


def test_unknown_space_key(tmp_path):
    config = make_config(tmp_path)
    config["space"]["learnig_rate"] = 0.1
    with pytest.raises(SpaceError, match=r"space\.learnig_rate: unknown key; did you mean 'learning_rate'"):
        resolve_dict(tmp_path, config)


def test_ready_space_by_name(tmp_path):
    resolved = resolve_dict(tmp_path, make_config(tmp_path, space="lora-family"))
    assert "dora" in resolved.space.adapters


def test_unknown_ready_space(tmp_path):
    with pytest.raises(SpaceError, match=r"no file 'nonsense' and no ready space .*lora-family"):
        resolve_dict(tmp_path, make_config(tmp_path, space="nonsense"))


def test_yaml_style_scientific_notation_is_a_number(tmp_path):
    config = make_config(tmp_path)
    config["space"]["learning_rate"] = {"low": "1e-4", "high": "1e-2", "log": True}
    resolved = resolve_dict(tmp_path, config)
    assert resolved.space.learning_rate.low == pytest.approx(1e-4)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("budget.trials")


# --------------------------------------------------------------------------- objectives


def test_config_accepts_objectives_and_keeps_single_objective_unchanged(tmp_path):
    single = resolve_config(tmp_path, objective={"metric": "f1", "mode": "max"}).config
    assert single.objective_list == [("f1", "max")] and single.objectives is None
    multi = resolve_config(tmp_path, objectives=[{"metric": "accuracy"}, {"metric": "latency_ms"}],
                           constraints={"max_trainable_share": "0.5%"}, sampler="nsga2").config
    assert multi.objective_list == [("accuracy", "max"), ("latency_ms", "min")]  # cost metrics default to min
    assert multi.objective.metric == "accuracy"  # ASHA and the progress view read this one
    assert multi.constraints.limits() == {"trainable_share": pytest.approx(0.005)}
    assert multi.sampler.name == "nsga2"


@pytest.mark.parametrize(("extra", "message"), [
    ({"objectives": [{"metric": "trainable_share"}]}, "objectives.0.metric: the first objective must be a task metric"),
    ({"objectives": [{"metric": "accuracy"}, {"metric": "speed"}]}, "objectives.1.metric: unknown metric 'speed'"),
    ({"objectives": [{"metric": "accuracy"}, {"metric": "accuracy"}]}, "objectives.1.metric: 'accuracy' appears twice"),
    ({"objectives": [{"metric": "accuracy"}], "objective": {"metric": "f1"}}, "objective: differs from objectives[0]"),
    ({"constraints": {"max_latency_ms": 0}}, "constraints.max_latency_ms"),
    ({"constraints": {"max_trainable_share": "half"}}, "constraints.max_trainable_share"),
    ({"constraints": {"max_latency_ms": 3}, "sampler": "random"}, "constraints: the random sampler"),
    ({"sampler": "cmaes"}, "sampler.name"),
    ({"selection": {"policy": "best-within"}}, "selection: policy best-within needs at least one limit"),
    ({"selection": {"policy": "knee", "max_latency_ms": 3}}, "selection: limits apply to policy best-within only"),
    ({"selection": {"policy": "pareto"}}, "selection.policy"),
])
def test_bad_objective_config_is_one_line_naming_the_field(tmp_path, extra, message):
    with pytest.raises(ConfigError) as info:
        resolve_config(tmp_path, **extra)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_objective_defaults_to_the_task_kinds_own(tmp_path):
    def validated(kind: str, **changes) -> SearchConfig:
        # the task kinds' own columns (prompt/response, tokens/tags): no text or label column named
        return SearchConfig.model_validate(make_config(tmp_path, data={"train": "x.jsonl"}, task={"kind": kind},
                                                       **changes))

    lm = validated("causal_lm")
    assert (lm.objective.metric, lm.objective.mode) == ("loss", "min") and lm.task.max_new_tokens == 64
    ner = validated("token_classification")
    assert (ner.objective.metric, ner.objective.mode) == ("f1", "max")
    ppl = validated("causal_lm", objective={"metric": "perplexity", "mode": "min"})
    assert ppl.objective.metric == "perplexity"
    with pytest.raises(Exception, match=r"objective\.metric 'accuracy' is not a metric of causal_lm"):
        validated("causal_lm", objective={"metric": "accuracy"})


@pytest.mark.parametrize("seed, message", [(-1, r"seed: Input should be greater than or equal to 0 \(found -1\)"),
                                           (2**32, r"seed: Input should be less than or equal to 4294967295")])
def test_a_seed_numpy_cannot_take_is_one_line(tmp_path, seed, message):
    # numpy seeds the data split and the batch order with 0 to 2**32 - 1; other seeds used to
    # pass the checks and fail at the split with a traceback
    with pytest.raises(ConfigError, match=message):
        resolve_dict(tmp_path, make_config(tmp_path, seed=seed))
    assert resolve_dict(tmp_path, make_config(tmp_path, seed=2**32 - 1)).config.seed == 2**32 - 1


@pytest.mark.parametrize("yaml_text, message", [
    ("budget: {time: .inf}", r"^budget\.time: expected a finite duration, found inf$"),
    ("budget: {time_limit_s: .inf}", r"^budget\.time_limit_s: Input should be a finite number \(found inf\)$"),
    ("budget: {cpus_per_trial: inf}", r"^budget\.cpus_per_trial: Input should be a finite number \(found 'inf'\)$"),
    ("pruning: {reduction_factor: .inf}", r"^pruning\.reduction_factor: Input should be a finite number"),
    ("promotion: {min_metric: .nan}", r"^promotion\.min_metric: Input should be a finite number \(found nan\)$"),
    ("constraints: {max_trainable_share: .inf}", r"^constraints\.max_trainable_share: Input should be a finite"),
])
def test_infinite_or_nan_numbers_are_one_line(tmp_path, yaml_text, message):
    """YAML's .inf and .nan passed `gt=0` (or any bound, for NaN in min_metric) and reached the
    plan, Ray or the promotion gate; an endless time budget planned an endless study."""
    import yaml

    config = make_config(tmp_path)
    for section, fields in yaml.safe_load(yaml_text).items():
        config.setdefault(section, {}).update(fields)
    with pytest.raises(ConfigError, match=message):
        resolve_dict(tmp_path, config)


@pytest.mark.parametrize("yaml_text, message", [
    ("budget: {trials: yes}", r"^budget\.trials: expected a number, found true$"),
    ("budget: {cpus_per_trial: on}", r"^budget\.cpus_per_trial: expected a number, found true$"),
    ("budget: {final_steps: false}", r"^budget\.final_steps: expected a number, found false$"),
    ("promotion: {min_metric: true}", r"^promotion\.min_metric: expected a number, found true$"),
    ("constraints: {max_trainable_share: true}", r"^constraints\.max_trainable_share: expected a number"),
])
def test_a_yaml_boolean_where_a_number_belongs_is_one_line(tmp_path, yaml_text, message):
    """pydantic's lax mode reads true as 1: `trials: yes` searched one trial, `cpus_per_trial: on`
    gave each trial one CPU, and nothing said so."""
    import yaml

    config = make_config(tmp_path)
    for section, fields in yaml.safe_load(yaml_text).items():
        config.setdefault(section, {}).update(fields)
    with pytest.raises(ConfigError, match=message):
        resolve_dict(tmp_path, config)


def test_an_empty_objectives_list_is_one_line(tmp_path):
    # read as "no objectives", it searched the task's default metric unsaid
    with pytest.raises(ConfigError, match=r"^objectives: expected at least one objective \(or leave objectives "
                                          r"out\), found \[\]$"):
        resolve_dict(tmp_path, make_config(tmp_path, objectives=[]))


def test_a_key_given_twice_is_one_line_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a second budget section dropped the
    first one's fields. A merge (<<) may still be overridden."""
    import yaml

    text = yaml.safe_dump(make_config(tmp_path), sort_keys=False)
    path = tmp_path / "search.yaml"
    path.write_text(text + "budget: {trials: 3}\n")
    first = 1 + text.splitlines().index("budget:")
    last = len(text.splitlines()) + 1
    with pytest.raises(ConfigError, match=rf"^--config: {path} is not valid YAML at line {last}, column 1: key "
                                          rf"'budget' appears twice in one mapping \(first at line {first}\)$"):
        resolve(path)
    config = make_config(tmp_path)
    del config["model"]
    path.write_text(yaml.safe_dump(config) + "model:\n  <<: {name_or_path: minilm, max_length: 16}\n  max_length: 32\n")
    assert resolve(path).config.model.max_length == 32


@pytest.mark.parametrize(("data", "message"), [
    ({"validation": "v.csv"}, "data.split_column splits the train data; give it or data.validation, not both"),
    ({"validation": "v.csv", "test": "t.csv"}, "give it or data.validation and data.test, not both"),
])
def test_a_split_column_beside_split_files_is_one_line(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        resolve_config(tmp_path, data__split_column="split", **{f"data__{k}": v for k, v in data.items()})
    assert message in str(info.value) and "\n" not in str(info.value)
