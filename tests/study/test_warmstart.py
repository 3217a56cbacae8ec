"""Warm start: configs fitted to the space, sources read and checked, enqueued first with their source."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from autopeft.config import WarmStartConfig
from autopeft.errors import ConfigError
from autopeft.space import config_names, load_space
from autopeft.study.define_by_run import compile_space
from autopeft.study.warmstart import (
    ATTR_SOURCE,
    WarmPoint,
    enqueue,
    fit_to_space,
    load_portfolio,
    prior_slots,
)
from autopeft.study.warmstart import collect as _collect
from tests.conftest import REPO, write_config

#: The mechanics (order, share, cap, variants) are tested on the hand-set prior the learned
#: portfolio replaced, kept as a fixture: fixed entries, whatever the learned portfolio holds
#: (tests/study/test_portfolio.py tests that one).
HANDSET = load_portfolio(REPO / "tests" / "fixtures" / "handset-portfolio.yaml")
BUILTIN_PRIOR = HANDSET.points()


def collect(*args, **kwargs):
    return _collect(*args, portfolio=HANDSET, **kwargs)

SPACE = load_space({
    "adapters": {"lora": {"r": {"choices": [4, 8]}, "alpha": {"choices": [8, 16]}}, "ia3": {}},
    "placement": {"layers": {"choices": ["all", "last-2"]}, "roles": {"choices": [["query", "value"], "all-linear"]}},
    "learning_rate": {"low": 1e-4, "high": 5e-3, "log": True},
    "batch_size": 16,
})

#: A cap that lets every prior entry run, for tests of which entries fit a space.
NO_CAP = len(BUILTIN_PRIOR)


def test_fit_to_space_encodes_and_drops_what_the_space_does_not_sample():
    fitted = fit_to_space({"adapter": "lora", "lora.r": 8, "placement.roles": ["query", "value"], "batch_size": 32,
                           "dora.r": 4, "learning_rate": 1e-3}, SPACE)
    assert fitted == {"adapter": "lora", "lora.r": 8, "placement.roles": "query,value", "learning_rate": 1e-3}


@pytest.mark.parametrize("params", [
    {"adapter": "dora", "dora.r": 8},                    # family not in the space
    {"adapter": "lora", "lora.r": 32},                   # not a choice
    {"adapter": "lora", "learning_rate": 0.5},           # outside the range
    {"adapter": "lora", "placement.layers": "last-4"},   # not a choice
    {"adapter": "lora", "learning_rate": "fast"},        # not a number
])
def test_configs_outside_the_space_do_not_fit(params):
    assert fit_to_space(params, SPACE) is None


def test_single_family_space_needs_no_adapter_key():
    space = load_space({"adapters": {"lora": {"r": {"choices": [4, 8]}}}})
    assert fit_to_space({"lora.r": 4}, space) == {"lora.r": 4}
    assert fit_to_space({"adapter": "ia3"}, space) is None


def test_prior_keeps_only_configs_valid_here_and_can_be_switched_off():
    points = collect(WarmStartConfig(prior_max_trials=NO_CAP), SPACE, "sqlite://", trials=40)
    sources = [p.source for p in points]
    assert sources == ["portfolio:lora-all-linear", "portfolio:lora-qv", "portfolio:ia3-all-linear"]  # no DoRA in this space
    assert len({source for source, _ in BUILTIN_PRIOR}) == 5
    assert collect(WarmStartConfig(prior=False), SPACE, "sqlite://", trials=40) == []


def test_the_first_two_prior_configs_start_the_sampler_in_distinct_regions():
    (_, first), (_, second) = BUILTIN_PRIOR[:2]
    assert first["placement.layers"] != second["placement.layers"]
    assert first["placement.roles"] != second["placement.roles"]
    assert second["learning_rate"] >= 2 * first["learning_rate"]


@pytest.mark.parametrize(("layers", "roles", "expected"), [
    (["all", "last-4"], [["query", "key", "value", "attention_output"], "all-linear"], ("last-4", "query,key,value,attention_output")),
    (["all", "last-2"], ["attention", "all-linear"], ("last-2", "attention")),
    (["all", "last-2", "last-4"], [["query", "key", "value", "attention_output"], "attention", "all-linear"],
     ("last-4", "query,key,value,attention_output")),  # both variants fit: only the first is taken
])
def test_a_prior_config_takes_the_first_of_its_variants_that_fits_the_space(layers, roles, expected):
    space = load_space({"adapters": {"lora": {"r": {"choices": [8, 16]}, "alpha": {"choices": [16, 32]}}},
                        "placement": {"layers": {"choices": layers}, "roles": {"choices": roles}},
                        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})
    points = collect(WarmStartConfig(prior_share=1.0, prior_max_trials=NO_CAP), space, "sqlite://", trials=8)
    assert [p.source for p in points][:2] == ["portfolio:lora-all-linear", "portfolio:lora-top-attention"]
    assert [p.source for p in points].count("portfolio:lora-top-attention") == 1
    top = points[1].params
    assert (top["placement.layers"], top["placement.roles"], top["learning_rate"]) == (*expected, 2e-3)


@pytest.mark.parametrize(("trials", "share", "cap", "expected"), [
    (8, 0.25, 2, ["portfolio:lora-all-linear", "portfolio:lora-qv"]),  # the default: a quarter of 8 trials
    (3, 0.25, 2, ["portfolio:lora-all-linear"]),                   # at least one
    (16, 0.25, 2, ["portfolio:lora-all-linear", "portfolio:lora-qv"]),  # a quarter of 16 is 4, but the cap is 2
    (8, 1.0, NO_CAP, ["portfolio:lora-all-linear", "portfolio:lora-qv", "portfolio:ia3-all-linear"]),  # all that fit the space
])
def test_prior_takes_at_most_its_share_and_its_cap_of_the_trials_strongest_first(trials, share, cap, expected):
    points = collect(WarmStartConfig(prior_share=share, prior_max_trials=cap), SPACE, "sqlite://", trials=trials)
    assert [p.source for p in points] == expected


def test_the_default_prior_takes_two_trials_of_a_large_study():
    assert WarmStartConfig().prior_max_trials == 2
    assert prior_slots(WarmStartConfig(), 16) == 2
    assert prior_slots(WarmStartConfig(), 40) == 2
    assert prior_slots(WarmStartConfig(prior=False), 40) == 0


def test_the_prior_share_does_not_cap_the_users_own_sources(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump([{"adapter": "lora", "lora.r": 4, "learning_rate": lr} for lr in (1e-4, 2e-4, 4e-4)]))
    points = collect(WarmStartConfig(sources=[str(path)]), SPACE, "sqlite://", trials=4)
    assert [p.source for p in points] == ["file:w.yaml#0", "file:w.yaml#1", "file:w.yaml#2", "portfolio:lora-all-linear"]


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_prior_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="prior_share"):
        WarmStartConfig(prior_share=share)


@pytest.mark.parametrize("cap", [0, -1])
def test_a_prior_cap_below_one_trial_is_refused(cap):
    with pytest.raises(ValueError, match="prior_max_trials"):
        WarmStartConfig(prior_max_trials=cap)


def test_file_sources_come_first_and_repeats_are_dropped(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"adapter": "ia3", "placement.layers": "all", "placement.roles": "all-linear",
                                 "learning_rate": 3e-3}, {"params": {"adapter": "lora", "lora.r": 4}}]))
    points = collect(WarmStartConfig(sources=[str(path)]), SPACE, "sqlite://", trials=40)
    assert [p.source for p in points] == ["file:w.json#0", "file:w.json#1", "portfolio:lora-all-linear", "portfolio:lora-qv"]


@pytest.mark.parametrize(("content", "message"), [
    ("- [1, 2]\n", "expected a list of configs"),
    ("configs: {a: 1}\n", "expected a list of configs"),
    ("- {adapter: vera}\n", "none of the 1 configs"),
    ("- {adapter: lora\n", "cannot read"),
    # YAML would keep the second learning rate silently
    ("- {adapter: lora, learning_rate: 1e-3, learning_rate: 1e-1}\n", "key 'learning_rate' appears twice"),
])
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "w.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        collect(WarmStartConfig(sources=[str(path)]), SPACE, "sqlite://", trials=8)
    assert str(info.value).startswith("warm_start.sources.0:") and message in str(info.value)


def test_missing_file_or_study_names_the_field(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(ConfigError, match=r"warm_start.sources.0: no such file 'gone.yaml'"):
        collect(WarmStartConfig(sources=["gone.yaml"]), SPACE, storage, trials=8)
    with pytest.raises(ConfigError, match=r"warm_start.sources.0: 'old' is neither a file nor a study"):
        collect(WarmStartConfig(sources=["old"]), SPACE, storage, trials=8)


def test_study_source_takes_its_best_complete_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    old = optuna.create_study(study_name="old", storage=storage, direction="maximize")
    for r, lr, value in ((4, 1e-3, 0.7), (8, 2e-3, 0.9), (4, 3e-3, 0.8)):
        old.add_trial(optuna.trial.create_trial(
            params={"adapter": "lora", "lora.r": r, "learning_rate": lr}, value=value,
            distributions={"adapter": optuna.distributions.CategoricalDistribution(["lora", "ia3"]),
                           "lora.r": optuna.distributions.CategoricalDistribution([4, 8]),
                           "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}))
    points = collect(WarmStartConfig(sources=["old"], top_k=2, prior=False), SPACE, storage, trials=8)
    assert [p.source for p in points] == ["study:old#1", "study:old#2"]
    assert points[0].params == {"adapter": "lora", "lora.r": 8, "learning_rate": 2e-3}


def test_enqueued_points_are_asked_first_with_their_source():
    study = optuna.create_study(direction="maximize")
    points = [WarmPoint({"adapter": "ia3", "learning_rate": 3e-3}, "portfolio:x"),
              WarmPoint({"adapter": "lora", "lora.r": 4}, "file:y#0")]
    enqueue(study, points, SPACE)
    run = compile_space(SPACE)
    asked = []
    for _ in range(3):
        trial = study.ask()
        run(trial)
        asked.append((trial.params.get("adapter"), trial.user_attrs.get(ATTR_SOURCE)))
        study.tell(trial, 0.5)
    assert asked[:2] == [("ia3", "portfolio:x"), ("lora", "file:y#0")]
    assert asked[2][1] is None
    assert study.trials[0].params["learning_rate"] == 3e-3
    assert study.trials[1].params["lora.r"] == 4


def test_warm_start_flag_reaches_the_config(tmp_path):
    from autopeft.config import parse_override, resolve

    resolved = resolve(write_config(tmp_path), [(["warm_start", "sources"], ["a", "b.yaml"]), parse_override("warm_start.prior=false")])
    assert resolved.config.warm_start.sources == ["a", "b.yaml"] and resolved.config.warm_start.prior is False


def test_the_ia3_prior_takes_the_higher_learning_rate_where_the_space_reaches_it():
    wide = load_space({"adapters": {"ia3": {}}, "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}})
    (point,) = collect(WarmStartConfig(), wide, "sqlite://", trials=8)
    assert (point.source, point.params["learning_rate"]) == ("portfolio:ia3-all-linear", 1e-2)
    (narrow,) = collect(WarmStartConfig(prior_max_trials=NO_CAP), SPACE, "sqlite://", trials=40)[2:]  # SPACE stops at 5e-3
    assert (narrow.source, narrow.params["learning_rate"]) == ("portfolio:ia3-all-linear", 3e-3)


def test_a_config_reaches_a_family_that_samples_its_own_rate_under_that_name(tmp_path):
    # IA3 samples its own rate as ia3.learning_rate: an enqueued config's plain learning_rate must
    # be the one it trains with, not a fresh draw
    space = load_space({**SPACE.model_dump(), "adapters": {"lora": {}, "ia3": {"learning_rate": {"low": 1e-3, "high": 1e-1,
                                                                                                   "log": True}}}})
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="old", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    enqueue(study, [WarmPoint({"adapter": "ia3", "learning_rate": 4e-2}, "file:w#0")], space)
    trial = study.ask()
    fixed = compile_space(space)(trial)
    config = config_names({**trial.params, **fixed})
    assert trial.params["ia3.learning_rate"] == 4e-2 and config["learning_rate"] == 4e-2
    study.tell(trial, 0.9)
    # and an earlier study's trial comes back as a config, under the plain key
    points = collect(WarmStartConfig(sources=["old"], top_k=1, prior=False), space, storage, trials=8)
    assert points[0].params["learning_rate"] == 4e-2 and "ia3.learning_rate" not in points[0].params
