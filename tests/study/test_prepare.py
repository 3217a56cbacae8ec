"""Bad input is caught before Ray starts and before anything is written to MLflow."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from autopeft.config import default_study_name, resolve
from autopeft.errors import ConfigError, DataError, ModelError, SpaceError, TrackingUnreachable, UserInputError
from autopeft.study import prepare
from tests.conftest import new_mlflow_store, write_config


def test_valid_config_prepares_without_touching_mlflow(tmp_path, minilm_path):
    prepared = prepare(resolve(write_config(tmp_path)))
    assert prepared.structure.num_layers == 6
    assert prepared.raw.label_names == ["0", "1"]
    # nothing is created before compute: no store, no Optuna database, no output folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "search.yaml"]


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
    ({"space": {"adapters": ["adalora-typo"]}}, SpaceError, r"unknown adapter family 'adalora-typo'; did you mean 'adalora'\?"),
])
def test_bad_input_fails_before_any_compute(tmp_path, minilm_path, changes, error, pattern):
    with pytest.raises(error, match=pattern):
        prepare(resolve(write_config(tmp_path, **changes)))
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("below", [True, False])
def test_unwritable_output_dir(tmp_path, minilm_path, below):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub" if below else blocker  # a folder under a file, or the file itself
    with pytest.raises(ConfigError, match=rf"output_dir: cannot write to '{out}': Not a directory"):
        prepare(resolve(write_config(tmp_path, output_dir=str(out))))


def test_a_tracking_path_that_is_a_folder_is_named(tmp_path, minilm_path):
    (tmp_path / "runs.db").mkdir()
    with pytest.raises(TrackingUnreachable, match=r"tracking\.uri: cannot write to '.*runs\.db' .*: Is a directory"):
        prepare(resolve(write_config(tmp_path, tracking__uri=f"sqlite:///{tmp_path / 'runs.db'}")))


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


def _untouched(tmp_path: Path, *also: str) -> None:
    """Only the config, its data and the files the test made itself are in the folder."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["reviews.csv", "search.yaml", *also])


def bare_model(folder: Path, minilm_path: str) -> str:
    """MiniLM's config and weights without its tokenizer files."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(minilm_path) / name, folder)
    return str(folder)


def model_with_another_tokenizer(folder: Path, minilm_path: str) -> str:
    """A tiny BERT of 100 embedding rows with MiniLM's tokenizer (30522 tokens)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return str(folder)


def test_a_model_folder_without_a_tokenizer_fails_in_prepare(tmp_path, minilm_path):
    bare = bare_model(tmp_path / "bare", minilm_path)
    with pytest.raises(ModelError, match=r"model\.name_or_path: '.*bare' has no tokenizer \(no tokenizer\.json or vocab\.txt\)"):
        prepare(resolve(write_config(tmp_path, model={"name_or_path": bare, "max_length": 32})))
    _untouched(tmp_path, "bare")


def test_a_tokenizer_larger_than_the_embeddings_fails_in_prepare(tmp_path, minilm_path):
    model = model_with_another_tokenizer(tmp_path / "mixed", minilm_path)
    with pytest.raises(ModelError, match=r"model\.name_or_path: the tokenizer in '.*mixed' has 30522 tokens, but the "
                                         r"model's embeddings have 100 rows"):
        prepare(resolve(write_config(tmp_path, model={"name_or_path": model, "max_length": 32})))
    _untouched(tmp_path, "mixed")


def test_a_chat_template_that_refuses_a_conversation_fails_in_prepare(tmp_path):
    """The template renders each prompt when the data is encoded, after the study started; a model
    whose template allows no system turn is told in prepare, in one line."""
    from transformers import AutoTokenizer

    from tests.tiny_tasks import chat_frame, save_causal_lm, write_jsonl

    model = save_causal_lm(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                               "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}")
    tokenizer.save_pretrained(model)
    train = write_jsonl(chat_frame(20), tmp_path / "chat.jsonl")
    config = write_config(tmp_path, model={"name_or_path": model, "max_length": 32}, task={"kind": "causal_lm"},
                          data={"train": str(train), "messages_column": "messages"}, space="llm-sft")
    with pytest.raises(DataError, match=r"^data\.messages_column: the model's chat template refuses a conversation "
                                        r"\(roles system, user\): System role not supported$"):
        prepare(resolve(config))
    _untouched(tmp_path, "model", "chat.jsonl")


def test_the_llm_space_on_gpt2_drops_the_placements_it_cannot_take(tmp_path):
    """The llm-sft space (zero-config's for causal LMs) on GPT-2's fused qkv failed in prepare on
    [query, value]. The choice is dropped from the space, and so is every warm-start config that
    places an adapter so: the sampler and the portfolio only try what the model can take."""
    from tests.tiny_tasks import save_causal_lm, sft_frame, write_jsonl

    model = save_causal_lm(tmp_path / "model")
    train = write_jsonl(sft_frame(20), tmp_path / "sft.jsonl")
    earlier = {"adapter": "lora", "lora.r": 8, "placement.layers": "all", "learning_rate": 1e-4}
    (tmp_path / "earlier.json").write_text(json.dumps([{**earlier, "placement.roles": "query,value"},
                                                       {**earlier, "placement.roles": "attention"}]))
    config = write_config(tmp_path, model={"name_or_path": model, "max_length": 32}, task={"kind": "causal_lm"},
                          data={"train": str(train)}, space="llm-sft",
                          warm_start={"sources": [str(tmp_path / "earlier.json")], "prior": False})
    prepared = prepare(resolve(config))
    placement = prepared.resolved.space.placement
    assert ["query", "value"] not in placement.roles.choices and "attention" in placement.roles.choices
    assert placement.layers.choices == ["all", "every-2"]  # last-4 of a 2-layer model
    assert [point.params["placement.roles"] for point in prepared.warm_start] == ["attention"]


def test_max_length_beyond_the_learned_positions_fails_in_prepare(tmp_path, minilm_path):
    with pytest.raises(ModelError, match=r"model\.max_length: 1024 is beyond the 512 positions the model has"):
        prepare(resolve(write_config(tmp_path, model={"name_or_path": "minilm", "max_length": 1024})))


@pytest.mark.parametrize(("changes", "pattern"), [
    # /proc exists, but takes no new file (even from root, whom os.access would let through)
    ({"tracking__uri": "sqlite:////proc/mlflow.db"},
     r"tracking\.uri: cannot write to '/proc/mlflow\.db' \('sqlite:////proc/mlflow\.db'\): "),
    ({"tracking__uri": "sqlite:////proc/no-such-folder/mlflow.db"},
     r"tracking\.uri: the folder of 'sqlite:////proc/no-such-folder/mlflow\.db' does not exist"),
    # the user set the Optuna storage: the error names it
    ({"tracking__optuna_storage": "sqlite:////proc/optuna.db"},
     r"tracking\.optuna_storage: cannot write the Optuna storage '/proc/optuna\.db': "),
    ({"tracking__registered_model": "team/model"},
     r"tracking\.registered_model: 'team/model' cannot name a registered model \(it holds '/'\)"),
    ({"tracking__registered_model": "it's"},
     r"tracking\.registered_model: \"it's\" cannot name a registered model \(it holds \"'\"\)"),
    ({"tracking__registered_model": "models/../x"}, r"tracking\.registered_model: "),
    ({"backend": {"storage_path": "/proc/ray"}}, r"backend\.storage_path: cannot write to '/proc/ray': "),
])
def test_a_store_or_name_that_would_fail_after_compute_fails_in_prepare(tmp_path, minilm_path, changes, pattern):
    with pytest.raises(UserInputError, match=pattern):
        prepare(resolve(write_config(tmp_path, **changes)))
    _untouched(tmp_path)


def test_a_tracking_file_that_is_not_a_database_is_named_and_left_as_it_was(tmp_path, minilm_path):
    garbage = tmp_path / "notes.db"
    garbage.write_text("not a database\n" * 100)
    with pytest.raises(TrackingUnreachable, match=r"tracking\.uri: '.*notes\.db' \('sqlite:///.*'\) is not an SQLite "
                                                  r"database: file is not a database"):
        prepare(resolve(write_config(tmp_path, tracking__uri=f"sqlite:///{garbage}")))
    assert garbage.read_text() == "not a database\n" * 100
    _untouched(tmp_path, "notes.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_tracking_folder_is_named(tmp_path, minilm_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(TrackingUnreachable, match=r"tracking\.uri: cannot write to '.*ro/mlflow\.db' .*: Permission denied"):
            prepare(resolve(write_config(tmp_path, tracking__uri=f"sqlite:///{folder / 'mlflow.db'}")))
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_a_deleted_experiment_fails_in_prepare_and_the_store_is_unchanged(tmp_path, minilm_path, mlflow_db_template):
    from mlflow import MlflowClient

    uri = new_mlflow_store(mlflow_db_template, tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("gone")
    client.delete_experiment(experiment_id)
    before = (tmp_path / "mlflow.db").read_bytes()
    with pytest.raises(ConfigError, match=rf"tracking\.experiment: the experiment 'gone' is deleted in {uri}; restore "
                                          rf"it with 'mlflow experiments restore --experiment-id {experiment_id}'"):
        prepare(resolve(write_config(tmp_path, tracking__experiment="gone")))
    assert (tmp_path / "mlflow.db").read_bytes() == before
    _untouched(tmp_path, "mlflow.db")


def test_an_experiment_whose_artifact_folder_cannot_be_written_fails_in_prepare(tmp_path, minilm_path,
                                                                                mlflow_db_template):
    from mlflow import MlflowClient

    uri = new_mlflow_store(mlflow_db_template, tmp_path / "mlflow.db")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the artifacts' folder would be")
    MlflowClient(uri).create_experiment("elsewhere", artifact_location=(blocker / "artifacts").as_uri())
    with pytest.raises(ConfigError, match=r"tracking\.experiment: cannot write the artifacts of 'elsewhere' to "
                                          r"'.*blocker/artifacts': Not a directory"):
        prepare(resolve(write_config(tmp_path, tracking__experiment="elsewhere")))


def test_a_warm_start_study_missing_from_a_new_storage_leaves_no_database(tmp_path, minilm_path):
    with pytest.raises(ConfigError, match=r"warm_start\.sources\.0: 'earlier' is neither a file nor a study in "):
        prepare(resolve(write_config(tmp_path, warm_start={"sources": ["earlier"]})))
    _untouched(tmp_path)


def test_an_existing_store_prepares_and_is_left_as_it_was(tmp_path, minilm_path, mlflow_db_template):
    new_mlflow_store(mlflow_db_template, tmp_path / "mlflow.db")
    before = (tmp_path / "mlflow.db").read_bytes()
    prepare(resolve(write_config(tmp_path)))
    assert (tmp_path / "mlflow.db").read_bytes() == before
    _untouched(tmp_path, "mlflow.db")


@pytest.mark.parametrize(("experiment", "prefix"), [
    ("autopeft", "autopeft-"), ("my team's exp/v2", "my-team-s-exp-v2-"), ("---", "study-"), ("x" * 300, "x" * 112 + "-")])
def test_the_default_study_name_is_one_study_name_allows(experiment, prefix):
    from autopeft.config import MAX_STUDY_NAME

    name = default_study_name(experiment)
    assert name.startswith(prefix) and len(name) <= MAX_STUDY_NAME
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name)  # what study_name allows (config.py)


def test_a_study_name_already_recorded_in_mlflow_fails_in_prepare(tmp_path, minilm_path, mlflow_db_template):
    """Its Optuna study is elsewhere (here: no optuna.db at all), its record is in this store."""
    from mlflow import MlflowClient

    from autopeft.schema import StudyRunTags, VersionTags

    uri = new_mlflow_store(mlflow_db_template, tmp_path / "mlflow.db")
    client = MlflowClient(uri, registry_uri=uri)
    experiment_id = client.create_experiment("autopeft")
    run = client.create_run(experiment_id, tags=StudyRunTags.created(study="taken", version="0", data_fingerprint="f",
                                                                       base_model="m", optuna_storage="s").to_tags())
    with pytest.raises(ConfigError, match=rf"study_name: a study named 'taken' is already recorded in {uri} \(run "
                                          rf"{run.info.run_id} in experiment 'autopeft'\); choose another name"):
        prepare(resolve(write_config(tmp_path, study_name="taken")))
    # a version registered for the study (its run in another experiment): the new study would take it for its own
    client.create_registered_model("autopeft-model")
    version = client.create_model_version("autopeft-model", source=str(tmp_path / "nowhere"),
                                          tags=VersionTags(study="registered").to_tags())
    with pytest.raises(ConfigError, match=rf"study_name: a study named 'registered' is already recorded in {uri} "
                                          rf"\(version {version.version} of 'autopeft-model'\)"):
        prepare(resolve(write_config(tmp_path, study_name="registered")))
    _untouched(tmp_path, "mlflow.db")
