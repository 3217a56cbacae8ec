"""Bad input is caught before Ray starts and before anything is written to MLflow."""

from __future__ import annotations

import pytest

from autopeft.config import resolve
from autopeft.errors import ConfigError, DataError, ModelError, SpaceError
from autopeft.search import prepare
from tests.conftest import write_config


def test_valid_config_prepares_without_touching_mlflow(tmp_path, minilm_path):
    prepared = prepare(resolve(write_config(tmp_path)))
    assert prepared.structure.num_layers == 6
    assert prepared.raw.label_names == ["0", "1"]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("changes,error,pattern", [
    ({"model__name_or_path": "/no/such/model"}, ModelError, r"model\.name_or_path: no model directory at '/no/such/model'"),
    ({"data__train": "/no/such.csv"}, DataError, r"data\.train: no such file '/no/such.csv'"),
    ({"data__text_columns": ["review"]}, DataError, r"data\.text_columns: column 'review' is not in the train data"),
    ({"data__label_column": "stars"}, DataError, r"data\.label_column: column 'stars' is not in the train data"),
    ({"space": {"adapters": ["lora"], "placement": {"roles": ["mlp_gate"]}}}, SpaceError,
     r"space\.placement\.roles: mlp_gate matches no module of this model \(roles it has: query"),
    ({"space": {"adapters": ["lora"], "placement": {"layers": "last-9"}}}, SpaceError,
     r"space\.placement\.layers: 'last-9' asks for 9 layers, the model has 6"),
    ({"space": {"adapters": {"lora": {"r": 0}}}}, SpaceError, r"space\.adapters\.lora\.r: expected a value >= 1, found 0"),
    ({"space": {"adapters": ["adalora-typo"]}}, SpaceError, r"unknown adapter family 'adalora-typo' \(registered:"),
])
def test_bad_input_fails_before_any_compute(tmp_path, minilm_path, changes, error, pattern):
    with pytest.raises(error, match=pattern):
        prepare(resolve(write_config(tmp_path, **changes)))
    assert not (tmp_path / "mlflow.db").exists()


def test_unwritable_output_dir(tmp_path, minilm_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"output_dir: cannot write to"):
        prepare(resolve(write_config(tmp_path, output_dir=str(blocker / "sub"))))


@pytest.mark.parametrize(("sampler", "warned"), [("gp", True), ("nsga2", True), ("tpe", False)])
def test_a_per_family_learning_rate_is_flagged_to_samplers_that_cannot_model_it(tmp_path, minilm_path, caplog,
                                                                                  sampler, warned):
    space = {"adapters": {"lora": {}, "ia3": {"learning_rate": {"low": 3e-3, "high": 5e-2, "log": True}}}}
    with caplog.at_level("WARNING", logger="autopeft"):
        prepare(resolve(write_config(tmp_path, space=space, sampler={"name": sampler})))
    flagged = [r.getMessage() for r in caplog.records if "differs between adapter families" in r.getMessage()]
    assert bool(flagged) == warned
    if warned:
        assert flagged[0].startswith(f"space: learning_rate differs between adapter families, so the {sampler} sampler")
