"""For each task kind, on tiny random models built offline: an adapter trains two steps (loss
changing), saves, reloads with the same outputs and predicts through ``AdapterPredictor``."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
import torch

from autopeft.config import ModelConfig
from autopeft.engine.training import METADATA_FILE, StudySpec, build_adapter, predict, save_checkpoint, train
from autopeft.tasks import get_task
from tests.tiny_tasks import tokenized_kind

CASES = [("causal_lm", "causal_lm", "lora"), ("causal_lm", "llama", "prompt_tuning"),
         # peft's causal-LM model passes the prefixes as a keyword: GPT-2 and Llama decoders take it
         ("causal_lm", "causal_lm", "prefix_tuning"), ("causal_lm", "llama", "prefix_tuning"),
         ("token_classification", "token_classification", "lora"),
         ("image_classification", "image_classification", "lora")]


@pytest.mark.parametrize("kind,model_key,family", CASES, ids=[f"{k}-{m}-{f}" for k, m, f in CASES])
def test_adapter_trains_saves_reloads_and_predicts(kind, model_key, family, task_models, tmp_path):
    from autopeft.adapters import load_adapter
    from autopeft.engine.predictor import AdapterPredictor, write_metadata

    location = task_models[model_key]
    raw, data = tokenized_kind(kind, location, tmp_path)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task=kind,
                     label_names=data.label_names, max_steps=2, eval_interval=1, eval_batch_size=8, seed=0,
                     metric=get_task(kind).default_metric, mode=get_task(kind).default_mode)
    config = {"adapter": family, "learning_rate": 5e-2, "batch_size": 8, "placement.layers": "all",
              "placement.roles": "all-linear",
              **({f"{family}.num_virtual_tokens": 4} if family in ("prompt_tuning", "prefix_tuning") else {})}
    if family == "lora":
        config.update({"lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0})
    setup_started = time.perf_counter()
    built = build_adapter(spec, config)
    build_s = time.perf_counter() - setup_started
    reports: list[dict] = []
    state = train(built, spec, data, config, on_eval=lambda m, s: reports.append(m), device=torch.device("cpu"),
                  setup_started=setup_started)
    assert state.step == 2 and len(reports) == 2
    # the time to the first step covers building the adapter and is reported with every evaluation
    assert reports[0]["setup_time_s"] == reports[1]["setup_time_s"] >= build_s
    assert reports[0]["loss"] != reports[1]["loss"]  # two steps moved the validation loss
    assert set(get_task(kind).metric_names) <= set(reports[-1])
    if kind == "causal_lm":
        assert reports[-1]["perplexity"] == pytest.approx(math.exp(reports[-1]["loss"]))

    out_dir = tmp_path / "adapter"
    save_checkpoint(built, state, out_dir)
    val = data.splits["validation"]
    before, loss_before = predict(built.model, val, data.pad_token_id, batch_size=8, device=torch.device("cpu"))
    task = get_task(kind)
    reloaded = load_adapter(task.load_model(spec.model, location, data.label_names), out_dir).eval()
    after, loss_after = predict(reloaded, val, data.pad_token_id, batch_size=8, device=torch.device("cpu"))
    assert loss_after == pytest.approx(loss_before, rel=1e-5)
    for a, b in zip(before, after, strict=True):
        assert np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=1e-5)

    # the predictor (what the pyfunc model runs) reads the same folder
    task.load_preprocessor(spec.model, location).save_pretrained(out_dir)
    write_metadata(out_dir, {"base_model": {"config": spec.model.model_dump(mode="json")}, "task": kind,
                             "task_config": {"kind": kind, "max_new_tokens": 5}, "label_names": data.label_names,
                             "text_columns": raw.text_columns, "label_column": raw.label_column, "max_length": 32})
    assert json.loads((out_dir / METADATA_FILE).read_text())["task"] == kind
    predictor = AdapterPredictor.load(out_dir, device=torch.device("cpu"))
    frame = raw.frames["validation"]
    predicted = predictor.predict_frame(frame[raw.text_columns])
    assert len(predicted) == len(frame) >= 2
    if kind == "causal_lm":
        assert list(predicted.columns) == ["text"] and all(isinstance(t, str) for t in predicted["text"])
        assert all(len(t.split()) <= 5 for t in predicted["text"])  # max_new_tokens=5 (one word per token)
    elif kind == "token_classification":
        assert [len(t) for t in predicted["tags"]] == [len(w) for w in frame["tokens"]]
        assert set(sum(predicted["tags"], [])) <= set(data.label_names)
        # a whitespace-joined string is read as words too (the pyfunc signature's string column)
        joined = predictor.predict_frame(pd.DataFrame({"tokens": [" ".join(w) for w in frame["tokens"]]}))
        assert joined["tags"].tolist() == predicted["tags"].tolist()
    else:
        assert list(predicted.columns) == ["label", "score"] and set(predicted["label"]) <= {"day", "night"}
