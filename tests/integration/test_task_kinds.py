"""One real search per new task kind (Ray Tune + Optuna + ASHA + MLflow + peft) on tiny random
models saved to a temporary folder: the study finishes, the best adapter is registered as
``candidate``, and the pyfunc model loaded by alias predicts in the kind's own shape (for
regression, in the units of the data: its targets are learnt standardised)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from autopeft.config import resolve
from autopeft.study import prepare, run_search
from tests.tiny_tasks import (
    CHAT_TEMPLATE,
    chat_frame,
    ner_frame,
    regression_frame,
    save_causal_lm,
    save_token_classifier,
    save_vit,
    sft_frame,
    write_conll,
    write_images,
    write_jsonl,
)

from ..conftest import write_config

pytestmark = pytest.mark.integration


def _setup(kind: str, tmp_path: Path, *, chat: bool = False) -> tuple[str, dict, pd.DataFrame]:
    """(model folder, data section, frame to predict on)."""
    if kind == "causal_lm" and chat:  # chat data: conversations, rendered by the model's chat template
        from transformers import AutoTokenizer

        frame, model = chat_frame(48), save_causal_lm(tmp_path / "model")
        tokenizer = AutoTokenizer.from_pretrained(model)
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(model)
        # served through MLflow, the conversation so far is a JSON string (the signature's input is a string)
        return model, {"train": str(write_jsonl(frame, tmp_path / "train.jsonl")), "messages_column": "messages"}, \
            pd.DataFrame({"prompt": [json.dumps(turns[:-1]) for turns in frame["messages"].head(4)]})
    if kind == "causal_lm":
        frame = sft_frame(48)
        return save_causal_lm(tmp_path / "model"), {"train": str(write_jsonl(frame, tmp_path / "train.jsonl"))}, \
            frame[["prompt"]].head(4)
    if kind == "token_classification":
        frame = ner_frame(48)
        # whitespace-joined words: the pyfunc signature's input is a string column
        # as NER data is shipped: CoNLL (jsonl lists are read by the unit tests)
        return save_token_classifier(tmp_path / "model"), {"train": str(write_conll(frame, tmp_path / "train.conll"))}, \
            pd.DataFrame({"tokens": [" ".join(w) for w in frame["tokens"].head(4)]})
    if kind == "regression":  # targets 1000 + 50x, on the BERT encoder with a fresh one-output head
        import datasets

        frame = regression_frame(48)
        # as many users keep their data: the folder datasets' save_to_disk writes
        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(tmp_path / "train"))
        return save_token_classifier(tmp_path / "model"), {"train": str(tmp_path / "train"), "text_columns": ["text"]}, \
            frame[["text"]].head(4)
    frame = write_images(tmp_path, 48)
    frame.to_csv(tmp_path / "train.csv", index=False)
    return save_vit(tmp_path / "model"), {"train": str(tmp_path / "train.csv")}, \
        pd.DataFrame({"image": [str(tmp_path / p) for p in frame["image"].head(4)]})


LAYER_ADAPTERS = {"lora": {"r": {"choices": [2, 4]}, "dropout": 0.0}, "ia3": {}}
CASES = [("causal_lm", LAYER_ADAPTERS), ("token_classification", LAYER_ADAPTERS),
         ("image_classification", LAYER_ADAPTERS), ("regression", LAYER_ADAPTERS),
         # prefix tuning runs on decoders for causal-LM fine-tuning (peft passes the prefixes as a keyword);
         # this study reads chat data (a column of conversations)
         ("causal_lm", {"prefix_tuning": {"num_virtual_tokens": {"choices": [4, 8]}}})]


@pytest.mark.parametrize("kind,adapters", CASES, ids=["causal_lm", "token_classification", "image_classification",
                                                      "regression", "causal_lm-prefix_tuning"])
def test_search_registers_an_adapter_for_each_kind(kind, adapters, tmp_path, tracking_uri, local_ray):
    location, data, probe = _setup(kind, tmp_path, chat="prefix_tuning" in adapters)
    config = write_config(
        tmp_path, study_name=f"kinds-{kind}",
        model={"name_or_path": location, "max_length": 32},
        task={"kind": kind, "max_new_tokens": 4},
        data={**data, "validation_fraction": 0.25},
        space={"adapters": adapters,
               "placement": {"layers": "all", "roles": "all-linear"},
               "learning_rate": {"low": 1e-2, "high": 5e-2, "log": True}, "batch_size": 8},
        budget={"trials": 2, "max_steps": 12, "eval_interval": 6, "cpus_per_trial": 2, "eval_batch_size": 16},
        tracking={"uri": tracking_uri, "experiment": f"kinds-{kind}", "registered_model": f"kinds-{kind}"})
    prepared = prepare(resolve(config))
    result = run_search(prepared)

    client = MlflowClient(tracking_uri)
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
    assert len(result.trials) == 2 and result.best is not None
    assert {t.params.get("adapter", next(iter(adapters))) for t in result.trials} <= set(adapters)
    version = client.get_model_version_by_alias(f"kinds-{kind}", "candidate")
    assert str(version.version) == result.model_version
    metric = prepared.config.objective.metric
    assert metric == {"causal_lm": "loss", "token_classification": "f1", "image_classification": "accuracy",
                      "regression": "pearson"}[kind]
    # the reloaded adapter reproduces the trial's validation metric
    assert result.reloaded_val_metrics[metric] == pytest.approx(result.best.metrics[metric], rel=1e-4, abs=1e-6)
    if kind == "causal_lm":
        assert "perplexity" in result.reloaded_val_metrics
    if "messages_column" in data:  # the prompts the trials learnt from were the conversations' turns
        assert all(turns[-1]["role"] == "user" for turns in prepared.raw.frames["train"]["prompt"])
    if kind == "regression":  # pearson ignores the scale; mse shows the saved adapter kept it
        assert result.reloaded_val_metrics["mse"] == pytest.approx(result.best.metrics["mse"], rel=1e-4)

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/kinds-{kind}@candidate")
    out = model.predict(probe)
    assert len(out) == 4
    # the registered signature says what predict returns
    declared = model.metadata.get_output_schema().to_dict()
    assert [c["name"] for c in declared] == list(out.columns)
    assert [c["name"] for c in model.metadata.get_input_schema().to_dict()] == list(probe.columns)
    if kind == "token_classification":
        assert declared[0]["type"] == "array" and declared[0]["items"]["type"] == "string"
    if kind == "causal_lm":
        assert list(out.columns) == ["text"] and all(isinstance(t, str) for t in out["text"])
    elif kind == "token_classification":
        assert [len(t) for t in out["tags"]] == [len(s.split()) for s in probe["tokens"]]
    elif kind == "regression":  # in the data's units (about 1000-1275), not the standardised ones
        targets = regression_frame(48)["label"]
        assert list(out.columns) == ["value"]
        assert abs(out["value"].mean() - targets.mean()) < 2 * targets.std()
    else:
        assert set(out["label"]) <= {"day", "night"}
