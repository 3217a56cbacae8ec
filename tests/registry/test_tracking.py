from __future__ import annotations

from autopeft.registry.tracking import REDACTED, flatten, outcome, redact


def test_outcome_rule():
    assert outcome({"final": True, "accuracy": 0.9}, error=False) == "COMPLETE"
    assert outcome({"final": False, "accuracy": 0.9}, error=False) == "PRUNED"
    assert outcome(None, error=False) == "PRUNED"
    assert outcome({"final": True}, error=True) == "FAIL"


def test_credentials_never_reach_logged_params():
    config = {
        "tracking": {"uri": "https://alice:tok-123@mlflow.example:5000", "optuna_storage": "postgresql://opt:pw-456@db:5432/optuna"},
        "model": {"name_or_path": "org/model", "hf_token": "hf_abcdef"},
        "data": {"hub": {"name": "glue"}},
        "s3": {"aws_secret_access_key": "AKIA-secret"},
    }
    params = flatten(config)
    text = " ".join(f"{k}={v}" for k, v in params.items())
    for secret in ("tok-123", "pw-456", "hf_abcdef", "AKIA-secret", "alice"):
        assert secret not in text
    assert params["tracking.uri"] == f"https://{REDACTED}@mlflow.example:5000"
    assert params["tracking.optuna_storage"] == f"postgresql://{REDACTED}@db:5432/optuna"
    assert params["model.hf_token"] == REDACTED
    assert params["model.name_or_path"] == "org/model"  # ordinary values are untouched


def test_redact_keeps_plain_urls():
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_redact_hides_secrets_and_nothing_else():
    planted = {"hf_token": "hf_abc", "password": "pw", "api_key": "k1", "apiKey": "k2", "aws_secret_access_key": "s",
               "access_key": "a", "token": "t", "db": {"credentials": "c"}, "uri": "https://user:pw@host/x"}
    look_alikes = {"max_new_tokens": 64, "tokens_column": "tokens", "num_virtual_tokens": 16, "tokenizer": "bert",
                   "secretary": "no", "keyboard": "no", "token_budget_note": None}
    out = redact({**planted, **look_alikes})
    assert all(out[k] == REDACTED for k in ("hf_token", "password", "api_key", "apiKey", "aws_secret_access_key",
                                            "access_key", "token"))
    assert out["db"] == {"credentials": REDACTED} and out["uri"] == f"https://{REDACTED}@host/x"
    assert {k: out[k] for k in look_alikes} == look_alikes
    assert flatten({"task": {"max_new_tokens": 64}}) == {"task.max_new_tokens": "64"}


def test_newest_study_is_the_last_started(tmp_path):
    from mlflow import MlflowClient

    from autopeft.registry.tracking import newest_study
    from autopeft.schema import StudyRunTags, TrialRunTags

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert newest_study(uri) is None
    client = MlflowClient(uri)
    experiment = client.create_experiment("e")
    first = client.create_run(experiment, tags=StudyRunTags.created(study="old", version="v", data_fingerprint="f",
                                                                    base_model="m", optuna_storage="s").to_tags())
    second = client.create_run(experiment, start_time=first.info.start_time + 1000,
                               tags=StudyRunTags.created(study="new", version="v", data_fingerprint="f",
                                                         base_model="m", optuna_storage="s").to_tags())
    client.create_run(experiment, start_time=first.info.start_time + 2000,  # a trial run is not a study
                      tags=TrialRunTags.created(parent_run_id=second.info.run_id, study="new", trial_id="t").to_tags())
    assert newest_study(uri) == ("new", experiment, second.info.run_id)


def test_a_study_experiment_opens_on_its_training_runs(tmp_path):
    from autopeft.registry.tracking import connect
    from autopeft.schema import ExperimentTag

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, experiment_id = connect(uri, "study")
    tags = client.get_experiment(experiment_id).tags
    assert tags[ExperimentTag.KIND] == "custom_model_development" and tags[ExperimentTag.NOTE]
    client.set_experiment_tag(experiment_id, ExperimentTag.NOTE, "the user's own words")
    assert connect(uri, "study")[1] == experiment_id  # reconnecting keeps a description the user wrote
    assert client.get_experiment(experiment_id).tags[ExperimentTag.NOTE] == "the user's own words"


def test_a_trial_description_says_its_config_and_how_it_ended():
    from autopeft.registry.tracking import RungStop, describe_trial

    config = {"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "placement.layers": "last-2",
              "placement.roles": "query,value", "learning_rate": 4.2e-3, "batch_size": 16}
    done = describe_trial(config, "COMPLETE", {"step": 100, "accuracy": 0.8367}, "accuracy")
    assert "lora r=8 alpha=16;" in done and "layers last-2, roles query,value" in done and "4.20e-03" in done
    assert "Completed after 100 steps: accuracy 0.8367." in done
    stop = RungStop(rung=2, report=2, step=50, metric="loss", mode="min", value=0.71, cutoff=0.64, compared=3)
    pruned = describe_trial(config, "PRUNED", {"step": 50, "accuracy": 0.6}, "accuracy", stop)
    assert "rung 2 (evaluation 2, step 50): loss 0.7100 was above the rung's cutoff 0.6400" in pruned
    assert "over the 3 trials" in pruned
    failed = describe_trial({"adapter": "ia3"}, "FAIL", {}, "accuracy", error="InjectedFault: boom")
    assert failed.endswith("Failed: InjectedFault: boom.") and failed.startswith("Trial config: ia3.")


def test_a_store_a_killed_writer_left_mid_transaction_is_still_a_store(tmp_path):
    # a driver killed on a lost machine can leave mlflow.db with a hot journal; a read-only open
    # cannot roll it back ("attempt to write a readonly database"), and resume's check must not
    # take that for a file that is not a database
    import signal
    import sqlite3
    import subprocess
    import sys

    from mlflow import MlflowClient

    from autopeft.registry.tracking import check_reachable

    path = tmp_path / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri).create_experiment("kept")
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, time\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA cache_size=1')\n"  # pages reach the file before the commit: a hot journal
        "db.execute('BEGIN')\n"
        "db.execute('CREATE TABLE unfinished (i INTEGER, text TEXT)')\n"
        "for i in range(2000):\n"
        "    db.execute('INSERT INTO unfinished VALUES (?, ?)', (i, 'x' * 500))\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert (tmp_path / "mlflow.db-journal").stat().st_size > 0

    check_reachable(uri, "kept")  # raised TrackingUnreachable before
    # the unfinished transaction was rolled back; what was committed is there
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "unfinished" not in tables and "experiments" in tables
    assert MlflowClient(tracking_uri=uri).get_experiment_by_name("kept") is not None
