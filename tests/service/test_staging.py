"""autopeft.service.staging: what travels with a submitted study, and what the cluster is told.

Real files in the test's folder; the staged folder is read back as the cluster would read it.
Nothing here starts Ray or MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from autopeft.auto.infer import Request, names_for
from autopeft.config import parse_override, resolve
from autopeft.errors import ClusterError, ConfigError
from autopeft.service import staging
from autopeft.service.staging import CONFIG_NAME, by_reference, check_tracking_uri, stage_config, stage_request
from tests.conftest import make_config, tiny_train_csv, write_yaml
from tests.tiny_tasks import write_images

SERVER = "http://mlflow.example:5000"
OUT = "~/autopeft-runs"
SPACE = {"adapters": {"lora": {"r": {"choices": [4, 8]}}}, "batch_size": 16}
WARM = [{"adapter": "lora", "lora.r": 8, "learning_rate": 0.001}]


def _files(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``, with the content of each file (None for folders)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder that is not the config's: relative paths must be found beside the config."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def project(tmp_path: Path, elsewhere: Path) -> Path:
    """A config beside its data (a folder down), a space file, a warm-start file and a model
    folder, all named by relative paths; tracking to a server; a Ray Client address; a time
    budget with no trial count (so the cluster plans it)."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    tiny_train_csv(root / "data")  # data/reviews.csv
    (root / "data" / "held-out.csv").write_text("sentence,label\ngood,1\nbad,0\n")
    (root / "my-model").mkdir()
    (root / "my-model" / "config.json").write_text('{"model_type": "bert"}\n')
    (root / "my-model" / "weights.bin").write_bytes(b"\0" * 1000)
    write_yaml(root / "space.yaml", SPACE)
    write_yaml(root / "warm.yaml", {"configs": WARM})
    config = make_config(root, train="data/reviews.csv", test="data/held-out.csv", model__name_or_path="my-model",
                         space="space.yaml", warm_start={"sources": ["warm.yaml", "an-earlier-study"]},
                         tracking={"uri": SERVER, "experiment": "reviews"},
                         backend={"address": "ray://head:10001", "storage_path": "s3://bucket/ray"},
                         budget={"time": "30m", "cpus_per_trial": 2}, output_dir="runs", seed=7)
    write_yaml(root / "search.yaml", config)
    return root / "search.yaml"


def test_a_config_travels_with_its_local_files_named_by_relative_paths(project: Path, tmp_path: Path):
    root = project.parent
    written = yaml.safe_load(project.read_text())
    target = tmp_path / "staged" / "job"
    staged = stage_config(project, [(["budget", "max_steps"], 200)], target, output_dir=OUT)

    assert staged.directory == target and staged.args == ["search", "--config", CONFIG_NAME]
    copies = {
        "data/train-reviews.csv": root / "data" / "reviews.csv",
        "data/test-held-out.csv": root / "data" / "held-out.csv",
        "model/config.json": root / "my-model" / "config.json",
        "model/weights.bin": root / "my-model" / "weights.bin",
        "space.yaml": root / "space.yaml",
        "warm/0-warm.yaml": root / "warm.yaml",
    }
    for name, source in copies.items():
        assert (target / name).read_bytes() == source.read_bytes(), name
    assert {p for p, content in _files(target).items() if content is not None} == {*copies, CONFIG_NAME}

    config = yaml.safe_load((target / CONFIG_NAME).read_text())
    assert config["data"]["train"] == "data/train-reviews.csv" and config["data"]["test"] == "data/test-held-out.csv"
    assert config["model"]["name_or_path"] == "model" and config["space"] == "space.yaml"
    assert config["warm_start"]["sources"] == ["warm/0-warm.yaml", "an-earlier-study"]  # a study name stays
    assert config["study_name"] == staged.study_name and staged.study_name.startswith("reviews-")
    assert config["output_dir"] == OUT
    assert config["backend"] == {"storage_path": "s3://bucket/ray"}  # the address is the cluster's own
    assert config["budget"] == {"time": "30m", "cpus_per_trial": 2, "max_steps": 200}  # the override, and no trials
    changed = {"data", "model", "space", "warm_start", "study_name", "output_dir", "backend", "budget"}
    assert {k: v for k, v in config.items() if k not in changed} == {k: v for k, v in written.items() if k not in changed}
    assert {k: v for k, v in config["data"].items() if k not in ("train", "test")} == \
        {k: v for k, v in written["data"].items() if k not in ("train", "test")}
    assert config["model"]["max_length"] == written["model"]["max_length"]

    # what the submit prints and stores: the fields that travelled, their sizes, the study's figures
    assert {(f.field, f.source, f.target, f.size) for f in staged.files} == {
        ("data.train", root / "data" / "reviews.csv", "data/train-reviews.csv", (root / "data" / "reviews.csv").stat().st_size),
        ("data.test", root / "data" / "held-out.csv", "data/test-held-out.csv", (root / "data" / "held-out.csv").stat().st_size),
        ("model.name_or_path", root / "my-model", "model", 1000 + len('{"model_type": "bert"}\n')),
        ("space", root / "space.yaml", "space.yaml", (root / "space.yaml").stat().st_size),
        ("warm_start.sources", root / "warm.yaml", "warm/0-warm.yaml", (root / "warm.yaml").stat().st_size),
    }
    assert staged.size == sum(f.size for f in staged.files)
    assert (staged.tracking_uri, staged.experiment, staged.trials) == (SERVER, "reviews", None)
    assert staged.registered_model == "autopeft-model"
    # the user's files are as they were
    assert yaml.safe_load(project.read_text()) == written


def test_the_staged_config_is_valid_where_it_lands(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """On the cluster the job runs ``autopeft search --config search.yaml`` in the staged folder."""
    target = tmp_path / "job"
    stage_config(project, [], target, output_dir=OUT)
    monkeypatch.chdir(target)
    resolved = resolve(Path(CONFIG_NAME))
    assert resolved.config.data.train == "data/train-reviews.csv" and Path(resolved.config.data.train).is_file()
    assert set(resolved.space.adapters) == {"lora"}  # the copied space file, not a ready space
    assert resolved.config.backend.address is None


def test_a_given_trial_count_and_study_name_are_kept(tmp_path: Path, elsewhere: Path):
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, tracking={"uri": SERVER}, study_name="mine"))
    staged = stage_config(config, [], tmp_path / "job", output_dir="/srv/runs")
    assert (staged.study_name, staged.trials, staged.experiment) == ("mine", 2, "autopeft")
    written = yaml.safe_load((tmp_path / "job" / CONFIG_NAME).read_text())
    assert (written["study_name"], written["output_dir"], written["budget"]["trials"]) == ("mine", "/srv/runs", 2)


def test_a_ready_space_and_a_packaged_model_stay_names(tmp_path: Path, elsewhere: Path):
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, space="lora-family", tracking={"uri": SERVER}))
    staged = stage_config(config, [], tmp_path / "job", output_dir=OUT)
    written = yaml.safe_load((tmp_path / "job" / CONFIG_NAME).read_text())
    assert (written["space"], written["model"]["name_or_path"]) == ("lora-family", "minilm")
    assert [f.field for f in staged.files] == ["data.train"]


@pytest.mark.parametrize("data", [
    {"train": "s3://bucket/reviews/train.csv", "test": "https://example.com/test.csv"},
    {"train": "hub:stanfordnlp/sst2"},
    {"hub": {"name": "stanfordnlp/sst2", "test_split": "validation"}},
], ids=["url", "hub-flag", "data.hub"])
def test_data_by_reference_is_not_copied(tmp_path: Path, elsewhere: Path, data: dict):
    raw = make_config(tmp_path, tracking={"uri": SERVER})
    raw["data"] = {**{k: v for k, v in raw["data"].items() if k != "train"}, **data}
    config = write_yaml(tmp_path / "search.yaml", raw)
    target = tmp_path / "job"
    staged = stage_config(config, [], target, output_dir=OUT)
    assert staged.files == [] and set(_files(target)) == {CONFIG_NAME}
    written = yaml.safe_load((target / CONFIG_NAME).read_text())
    assert {k: written["data"].get(k) for k in data} == data


@pytest.mark.parametrize("value,expected", [
    ("s3://bucket/x.csv", True), ("gs://b/x.parquet", True), ("https://h/x.csv", True), ("hub:glue:sst2", True),
    ("data/train.csv", False), ("/abs/train.csv", False), ("~/train.csv", False),
])
def test_by_reference(value: str, expected: bool):
    assert by_reference(value) is expected


def test_images_travel_with_their_whole_folder(tmp_path: Path, elsewhere: Path):
    images = tmp_path / "photos"
    frame = write_images(images, 4)
    frame.to_csv(images / "labels.csv", index=False)
    (images / "notes.txt").write_text("taken at noon\n")
    raw = make_config(tmp_path, train="photos/labels.csv", task={"kind": "image_classification"},
                      tracking={"uri": SERVER})
    raw["data"] = {"train": "photos/labels.csv", "image_column": "image", "label_column": "label"}
    config = write_yaml(tmp_path / "search.yaml", raw)
    target = tmp_path / "job"
    staged = stage_config(config, [], target, output_dir=OUT)
    written = yaml.safe_load((target / CONFIG_NAME).read_text())
    assert written["data"]["train"] == "data/train/labels.csv"
    copied = {p: c for p, c in _files(target / "data" / "train").items() if c is not None}
    assert copied == {p: c for p, c in _files(images).items() if c is not None}
    assert {f"img/{i}.png" for i in range(4)} <= set(copied)  # the rows name these, relative to the csv
    assert [(f.field, f.source, f.target) for f in staged.files] == [("data.train", images.resolve(), "data/train")]
    assert staged.files[0].size == sum(len(c) for c in copied.values())


def test_over_the_upload_limit_nothing_is_written(tmp_path: Path, elsewhere: Path):
    big = tmp_path / "big.csv"
    with big.open("wb") as handle:  # a sparse file: 101 MiB by its size, no disk taken
        handle.truncate(101 * 1024**2)
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, test=big, tracking={"uri": SERVER}))
    target = tmp_path / "job"
    with pytest.raises(ClusterError) as caught:
        stage_config(config, [], target, output_dir=OUT)
    message = str(caught.value)
    assert message.startswith("data.test: ") and "\n" not in message
    assert "101.0 MiB" in message and "over the 100 MiB a Ray job may upload" in message
    assert "S3 or the Hub" in message
    assert not target.exists()


def test_the_limit_is_on_the_total_and_checked_before_copying(tmp_path: Path, elsewhere: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(staging, "UPLOAD_LIMIT_BYTES", 50)
    (tmp_path / "a.csv").write_text("sentence,label\n" + "x,1\n" * 8)  # 47 bytes: each under the limit
    (tmp_path / "b.csv").write_text("sentence,label\n" + "y,0\n" * 7)  # 43 bytes
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, train="a.csv", test="b.csv",
                                                              tracking={"uri": SERVER}))
    target = tmp_path / "job"
    target.mkdir()  # exists and is empty: stays empty
    with pytest.raises(ClusterError, match=r"^data\.train: the study's local files total .* Ray job may upload"):
        stage_config(config, [], target, output_dir=OUT)
    assert _files(target) == {}


def test_a_missing_data_file_names_the_field(tmp_path: Path, elsewhere: Path):
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, train="data/nope.csv",
                                                              tracking={"uri": SERVER}))
    target = tmp_path / "job"
    with pytest.raises(ConfigError, match=r"^data\.train: no such file 'data/nope\.csv'"):
        stage_config(config, [], target, output_dir=OUT)
    assert not target.exists()


def test_a_tracking_store_on_this_machine_is_refused_before_anything_is_written(tmp_path: Path, elsewhere: Path):
    config = write_yaml(tmp_path / "search.yaml", make_config(tmp_path, tracking={"uri": "sqlite:///mlflow.db"}))
    target = tmp_path / "job"
    with pytest.raises(ClusterError, match=r"^tracking\.uri: .*found 'sqlite:///mlflow\.db'"):
        stage_config(config, [], target, output_dir=OUT)
    assert not target.exists()
    # an override to a server fixes it
    stage_config(config, [(["tracking", "uri"], SERVER)], target, output_dir=OUT)
    assert yaml.safe_load((target / CONFIG_NAME).read_text())["tracking"]["uri"] == SERVER


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:///runs/mlflow.db", "mlflow.db", "./mlruns",
                                 "mlruns", "file:mlruns", "file:./mlruns"])
def test_check_tracking_uri_refuses_a_file_on_this_machine(uri: str):
    with pytest.raises(ClusterError) as caught:
        check_tracking_uri(uri)
    message = str(caught.value)
    assert message.startswith("tracking.uri: ") and f"found {uri!r}" in message and "--tracking-uri" in message
    with pytest.raises(ClusterError, match=r"^--tracking-uri: "):
        check_tracking_uri(uri, "--tracking-uri")


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "https://mlflow.example.com", "postgresql://u:p@db/mlflow",
                                 "mysql+pymysql://u@db/mlflow", "sqlite:////abs/path.db", "file:///shared/mlruns", "file:/shared/mlruns",
                                 "databricks", "databricks://profile"])
def test_check_tracking_uri_accepts_what_the_cluster_reaches(uri: str):
    check_tracking_uri(uri)


# --------------------------------------------------------------------------- zero-config


@pytest.fixture
def reviews(tmp_path: Path) -> Path:
    """``reviews/train.csv``: a file whose stem says only 'train', so its folder names the study."""
    folder = tmp_path / "reviews"
    folder.mkdir()
    return tiny_train_csv(folder).rename(folder / "train.csv")


def _settings(args: list[str]) -> dict[str, object]:
    """The ``--set`` values as the cluster's ``autopeft search`` parses them."""
    parsed = [parse_override(args[i + 1]) for i, arg in enumerate(args) if arg == "--set"]
    return {".".join(path): value for path, value in parsed}


def test_a_request_travels_with_its_files_and_the_names_of_the_original(reviews: Path, tmp_path: Path):
    request = Request(model="minilm", train=str(reviews), test=str(reviews), time="10m", label="label",
                      text=("sentence",))
    target = tmp_path / "job"
    staged = stage_request(request, [(["tracking", "uri"], SERVER), (["budget", "trials"], 3)], target,
                           output_dir=OUT, study_name=None)
    experiment, registered = names_for(str(reviews))
    assert (experiment, registered) == ("autopeft-reviews", "reviews-adapter")
    flags = staged.args[:staged.args.index("--set")]
    assert flags == ["search", "--train", "data/train-train.csv", "--test", "data/test-train.csv", "--model", "minilm",
                     "--time", "10m", "--label", "label", "--text", "sentence"]
    settings = _settings(staged.args)
    assert settings == {"tracking.experiment": experiment, "tracking.registered_model": registered,
                        "tracking.uri": SERVER, "budget.trials": 3, "study_name": staged.study_name,
                        "output_dir": OUT}
    assert staged.args.count("--set") == len(settings)
    assert staged.study_name.startswith("autopeft-reviews-")
    assert (staged.experiment, staged.registered_model, staged.tracking_uri, staged.trials) == (
        experiment, registered, SERVER, 3)
    assert (target / "data" / "train-train.csv").read_bytes() == reviews.read_bytes()
    assert [(f.field, f.target) for f in staged.files] == [("--train", "data/train-train.csv"),
                                                          ("--test", "data/test-train.csv")]


def test_a_saved_dataset_folder_travels_whole(tmp_path: Path):
    """A folder datasets' save_to_disk wrote is the data: it was refused as 'expected a data file'."""
    from autopeft.data import saved_dataset
    from tests.data.test_read_files import save_dataset_dict

    folder = save_dataset_dict(tmp_path / "reviews", {"train": 8, "test": 4})
    target = tmp_path / "job"
    staged = stage_request(Request(model="minilm", train=str(folder)), [(["tracking", "uri"], SERVER)], target,
                           output_dir=OUT, study_name=None)
    assert staged.args[:3] == ["search", "--train", "data/train-reviews"]
    assert saved_dataset(target / "data" / "train-reviews") == "splits"
    assert _files(target / "data" / "train-reviews") == _files(folder)


@pytest.mark.parametrize("value", ["my study: v2", "123", "true", "null", "a 'quoted' #not-a-comment", "[1, 2]",
                                   "line " * 30])
def test_set_values_round_trip_as_the_cluster_parses_them(reviews: Path, tmp_path: Path, value: str):
    request = Request(model="minilm", train=str(reviews))
    staged = stage_request(request, [(["tracking", "uri"], SERVER), (["note"], value)], tmp_path / "job",
                           output_dir="/srv/runs dir", study_name="named")
    settings = _settings(staged.args)
    assert settings["note"] == value and settings["output_dir"] == "/srv/runs dir" and settings["study_name"] == "named"
    assert staged.study_name == "named" and staged.trials is None


def test_a_request_with_a_model_folder_and_hub_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    staged = stage_request(Request(model="models/tiny", train="hub:stanfordnlp/sst2"),
                           [(["tracking", "uri"], SERVER), (["backend", "address"], "ray://head:10001")],
                           tmp_path / "job", output_dir=OUT, study_name=None)
    assert staged.args[:5] == ["search", "--train", "hub:stanfordnlp/sst2", "--model", "model"]
    assert (tmp_path / "job" / "model" / "config.json").is_file()
    assert [f.field for f in staged.files] == ["--model"]
    settings = _settings(staged.args)
    assert settings["tracking.experiment"] == "autopeft-sst2" and "backend.address" not in settings


def test_a_request_needs_a_tracking_server(reviews: Path, tmp_path: Path):
    request = Request(model="minilm", train=str(reviews))
    target = tmp_path / "job"
    with pytest.raises(ClusterError, match=r"^--tracking-uri: .*\(http://HOST:5000\)"):
        stage_request(request, [], target, output_dir=OUT, study_name=None)
    with pytest.raises(ClusterError, match=r"^--tracking-uri: .*found 'sqlite:///mlflow\.db'"):
        stage_request(request, [(["tracking", "uri"], "sqlite:///mlflow.db")], target, output_dir=OUT,
                      study_name=None)
    assert not target.exists()


def test_a_request_with_a_missing_file_names_the_flag(tmp_path: Path):
    request = Request(model="minilm", train=str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match=r"^--train: no such file"):
        stage_request(request, [(["tracking", "uri"], SERVER)], tmp_path / "job", output_dir=OUT, study_name=None)
    assert not (tmp_path / "job").exists()


def test_staging_reads_no_environment_for_the_address(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The staged config never carries this machine's Ray address, whatever it is set to."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    stage_config(project, [(["backend", "address"], "auto")], tmp_path / "job", output_dir=OUT)
    text = (tmp_path / "job" / CONFIG_NAME).read_text()
    assert "address" not in text and os.environ["RAY_ADDRESS"] not in text
