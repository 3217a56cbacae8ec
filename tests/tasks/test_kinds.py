"""Task kinds on tiny random models built offline: encoding and collation, prompt masking,
metrics on hand-made inputs, and for each new kind an adapter that trains two steps (loss
changing), saves, reloads with the same outputs and predicts through ``AdapterPredictor``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autopeft.config import DataConfig, ModelConfig
from autopeft.data import IGNORE, collate, load, tokenize
from autopeft.engine.training import METADATA_FILE, StudySpec, build_adapter, predict, save_checkpoint, train
from autopeft.errors import ConfigError, DataError
from autopeft.model.loading import load_image_processor, load_tokenizer
from autopeft.tasks import get_task, task_names

from tests.tiny_tasks import (
    EOS_ID,
    ner_frame,
    save_causal_lm,
    save_token_classifier,
    save_vit,
    sft_frame,
    write_images,
    write_jsonl,
)
from tests.tiny_models import train_two_steps


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {"causal_lm": save_causal_lm(root / "gpt2"), "llama": save_causal_lm(root / "llama", "llama"),
            "token_classification": save_token_classifier(root / "bert"), "image_classification": save_vit(root / "vit")}


def _raw(kind: str, tmp_path: Path, n: int = 24):
    if kind == "causal_lm":
        cfg = DataConfig(train=str(write_jsonl(sft_frame(n), tmp_path / "sft.jsonl")))
    elif kind == "token_classification":
        cfg = DataConfig(train=str(write_jsonl(ner_frame(n), tmp_path / "ner.jsonl")))
    else:
        write_images(tmp_path, n).to_csv(tmp_path / "images.csv", index=False)
        cfg = DataConfig(train=str(tmp_path / "images.csv"))
    return load(cfg, get_task(kind), seed=0)


def _data(kind: str, location: str, tmp_path: Path, n: int = 24):
    raw = _raw(kind, tmp_path, n)
    return raw, tokenize(raw, get_task(kind).load_preprocessor(ModelConfig(name_or_path=location), location),
                         32, tokenizer_id=location)


def test_registry_knows_each_kind():
    assert set(task_names()) >= {"sequence_classification", "regression", "causal_lm", "token_classification",
                                 "image_classification"}
    assert get_task("causal_lm").peft_task_type == "CAUSAL_LM"
    assert get_task("token_classification").peft_task_type == "TOKEN_CLS"
    assert get_task("image_classification").auto_class == "AutoModelForImageClassification"
    with pytest.raises(ConfigError, match=r"task\.kind: unknown task 'ner'"):
        get_task("ner")


# --------------------------------------------------------------------------- causal LM


def test_sft_masks_the_prompt_and_padding(models, tmp_path):
    raw, data = _data("causal_lm", models["causal_lm"], tmp_path)
    assert raw.text_columns == ["prompt"] and raw.label_column == "response" and raw.label_names == []
    tok = load_tokenizer(ModelConfig(name_or_path="m"), models["causal_lm"])
    assert data.pad_token_id == tok.eos_token_id == EOS_ID  # decoder: pads with EOS
    split = data.splits["train"]
    frame = raw.frames["train"]
    for i in range(len(split)):
        prompt = tok(frame["prompt"][i])["input_ids"]
        response = tok(frame["response"][i], add_special_tokens=False)["input_ids"] + [EOS_ID]
        assert split.input_ids[i] == prompt + response
        assert split.labels[i] == [IGNORE] * len(prompt) + response  # loss on the response only
    # shortest and longest together: the short one is padded with EOS ids, labelled IGNORE
    lengths = split.lengths()
    idx = [int(lengths.argmin()), int(lengths.argmax())]
    batch = collate(split, idx, data.pad_token_id)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    short = len(split.input_ids[idx[0]])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, lengths.max())
    if short < lengths.max():
        assert (batch["input_ids"][0, short:] == EOS_ID).all()
        assert (batch["labels"][0, short:] == IGNORE).all() and (batch["attention_mask"][0, short:] == 0).all()
    # the EOS that ends a response is a target even though it equals the pad id
    assert batch["labels"][1, lengths.max() - 1] == EOS_ID


def test_sft_truncation_keeps_the_response():
    from autopeft.data import encode_prompt_response

    from tests.tiny_tasks import tiny_tokenizer

    tok = tiny_tokenizer(causal=True)
    frame = pd.DataFrame({"p": [" ".join(["say"] * 20)], "r": [" ".join(["red"] * 10)]})
    split = encode_prompt_response(frame, ["p"], "r", [], tok, 12)
    assert len(split.input_ids[0]) == 12
    labels = split.labels[0]
    assert labels[:6] == [IGNORE] * 6 and labels[6:] == [tok.convert_tokens_to_ids("red")] * 6  # half kept
    predicting = encode_prompt_response(frame, ["p"], None, [], tok, 12)
    assert len(predicting.input_ids[0]) == 12 and set(predicting.labels[0]) == {IGNORE}


def test_lm_metrics_and_outputs_match_the_model_loss(models, tmp_path):
    metrics = get_task("causal_lm").compute_metrics(np.array([[2.0, 2.0], [4.0, 2.0]]), None)
    assert metrics["loss"] == pytest.approx(1.5) and metrics["perplexity"] == pytest.approx(math.exp(1.5))

    from transformers import AutoModelForCausalLM

    _, data = _data("causal_lm", models["causal_lm"], tmp_path)
    model = AutoModelForCausalLM.from_pretrained(models["causal_lm"]).eval()
    split = data.splits["validation"]
    batch = collate(split, list(range(len(split))), data.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    rows = get_task("causal_lm").batch_outputs(out, batch)
    # transformers' loss: the mean over every labelled (response) token of the batch
    assert rows[:, 0].sum() / rows[:, 1].sum() == pytest.approx(float(out.loss), rel=1e-5)
    assert rows[:, 1].sum() == sum(sum(1 for t in lab[1:] if t != IGNORE) for lab in split.labels)


# --------------------------------------------------------------------------- token classification


def test_words_align_tags_to_first_subwords(models, tmp_path):
    raw, data = _data("token_classification", models["token_classification"], tmp_path)
    assert raw.label_names == ["ANI", "COL", "O"]
    tok = load_tokenizer(ModelConfig(name_or_path="m"), models["token_classification"])
    split = data.splits["train"]
    words = raw.frames["train"]["tokens"][0]
    tags = raw.frames["train"]["tags"][0]
    enc = tok(words, is_split_into_words=True)
    assert split.input_ids[0] == enc["input_ids"]
    expected, seen = [], set()
    for word in enc.word_ids():
        expected.append(IGNORE if word is None or word in seen else raw.label_names.index(tags[word]))
        if word is not None:
            seen.add(word)
    assert split.labels[0] == expected
    assert sum(t != IGNORE for t in split.labels[0]) == len(words)  # one label per word
    assert len(split.input_ids[0]) == len(words) + 3  # [CLS], [SEP] and 'play' '##ing'
    batch = collate(split, [0, 1, 2], data.pad_token_id)
    assert batch["labels"].shape == batch["input_ids"].shape == (3, len(split.input_ids[0]))


def test_token_metrics_count_labelled_tokens_only():
    outputs = np.empty(2, dtype=object)
    outputs[0], outputs[1] = np.array([5, 0, 1, 5]), np.array([5, 1, 1])
    labels = [[IGNORE, 0, 1, IGNORE], [IGNORE, 0, 1]]
    metrics = get_task("token_classification").compute_metrics(outputs, labels)
    assert metrics["accuracy"] == pytest.approx(0.75)
    # class 0: P=1, R=0.5 → F1 2/3; class 1: P=2/3, R=1 → F1 0.8
    assert metrics["f1"] == pytest.approx((2 / 3 + 0.8) / 2)


# --------------------------------------------------------------------------- images


def test_images_become_pixel_batches(models, tmp_path):
    raw, data = _data("image_classification", models["image_classification"], tmp_path)
    assert raw.label_names == ["day", "night"]
    assert all(Path(p).is_absolute() for p in raw.frames["train"]["image"])  # relative to the csv
    split = data.splits["train"]
    assert split.pixel_values is not None and split.pixel_values.shape == (len(split), 3, 8, 8)
    assert split.pixel_values.dtype == np.float16 and split.input_ids == []
    batch = collate(split, [0, 3], data.pad_token_id)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].dtype == torch.float32 and batch["labels"].tolist() == list(split.labels[[0, 3]])
    processor = load_image_processor(ModelConfig(name_or_path="m"), models["image_classification"])
    from PIL import Image

    expected = processor(images=[Image.open(raw.frames["train"]["image"][0]).convert("RGB")],
                         return_tensors="np")["pixel_values"][0]
    assert np.allclose(split.pixel_values[0], expected, atol=2e-3)


def test_classification_metrics_on_hand_made_logits():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    metrics = get_task("image_classification").compute_metrics(logits, np.array([0, 1, 1, 1]))
    assert metrics["accuracy"] == 0.75 and metrics["f1"] == pytest.approx(0.8)


# --------------------------------------------------------------------------- train, save, reload


CASES = [("causal_lm", "causal_lm", "lora"), ("causal_lm", "llama", "prompt_tuning"),
         # peft's causal-LM model passes the prefixes as a keyword: GPT-2 and Llama decoders take it
         ("causal_lm", "causal_lm", "prefix_tuning"), ("causal_lm", "llama", "prefix_tuning"),
         ("token_classification", "token_classification", "lora"),
         ("image_classification", "image_classification", "lora")]


@pytest.mark.parametrize("kind,model_key,family", CASES, ids=[f"{k}-{m}-{f}" for k, m, f in CASES])
def test_adapter_trains_saves_reloads_and_predicts(kind, model_key, family, models, tmp_path):
    from autopeft.adapters import load_adapter
    from autopeft.engine.predictor import AdapterPredictor, write_metadata

    location = models[model_key]
    raw, data = _data(kind, location, tmp_path)
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


@pytest.mark.parametrize("kind,model_key", [("causal_lm", "llama"), ("token_classification", "token_classification"),
                                            ("image_classification", "image_classification")])
def test_every_family_that_claims_a_kind_trains_on_it(kind, model_key, models, tmp_path):
    """``task_kinds`` is a promise: each family that lists the kind (and is not excluded for the
    architecture) builds and trains on it, with the loss changing."""
    from autopeft.adapters import families
    from autopeft.model.placement import scan
    from autopeft.space import ChoiceSpec, RangeSpec

    location = models[model_key]
    _, data = _data(kind, location, tmp_path, n=16)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task=kind,
                     label_names=data.label_names, max_steps=2, eval_interval=2, eval_batch_size=8, seed=0,
                     metric=get_task(kind).default_metric, mode=get_task(kind).default_mode)
    structure = scan(get_task(kind).load_model(spec.model, location, data.label_names))
    batch = collate(data.splits["train"], list(range(8)), data.pad_token_id)
    ran = []
    for name, family in sorted(families().items()):
        if kind not in family.task_kinds or family.exclusion_reason(structure):
            continue
        params = {f"{name}.{k}": (v.choices[0] if isinstance(v, ChoiceSpec) else v.low if isinstance(v, RangeSpec) else v)
                  for k, v in family.defaults.items()}
        if name == "autopeft_adapter":
            params.update({"autopeft_adapter.serial_size": 8, "autopeft_adapter.parallel_size": 8})
        built = build_adapter(spec, {"adapter": name, "placement.layers": "all", "placement.roles": "all-linear", **params})
        losses = train_two_steps(built.model, family, batch, lr=5e-2)
        assert math.isfinite(losses[1]) and losses[0] != losses[1], (name, losses)
        ran.append(name)
    assert "lora" in ran and len(ran) >= 10, ran


# --------------------------------------------------------------------------- bad input


def test_unused_column_field_is_named(tmp_path):
    path = write_jsonl(sft_frame(8), tmp_path / "sft.jsonl")
    with pytest.raises(DataError, match=r"^data\.prompt_column: sequence_classification does not read this column "
                                        r"\(it reads: text_columns, label_column\)$"):
        load(DataConfig(train=str(path), text_columns=["prompt"], prompt_column="prompt"),
             get_task("sequence_classification"), seed=0)
    with pytest.raises(DataError, match=r"^data\.text_columns: sequence_classification needs this column"):
        load(DataConfig(train=str(path)), get_task("sequence_classification"), seed=0)


def test_bad_columns_are_one_line_errors_naming_the_field(tmp_path):
    sft = write_jsonl(sft_frame(8), tmp_path / "sft.jsonl")
    with pytest.raises(DataError, match=r"^data\.prompt_column: column 'question' is not in the train data"):
        load(DataConfig(train=str(sft), prompt_column="question"), get_task("causal_lm"), seed=0)
    empty = write_jsonl(sft_frame(8).assign(response=[""] * 8), tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match=r"^data\.response_column: 'response' is empty in train row 0"):
        load(DataConfig(train=str(empty)), get_task("causal_lm"), seed=0)

    ner = ner_frame(8)
    flat = write_jsonl(ner.assign(tokens=[" ".join(w) for w in ner["tokens"]]), tmp_path / "flat.jsonl")
    with pytest.raises(DataError, match=r"^data\.tokens_column: expected a list of words in 'tokens' \(train row 0\), "
                                        r"found str$"):
        load(DataConfig(train=str(flat)), get_task("token_classification"), seed=0)
    short = write_jsonl(ner.assign(tags=[t[:-1] for t in ner["tags"]]), tmp_path / "short.jsonl")
    with pytest.raises(DataError, match=r"^data\.tags_column: train row 0 has 7 tags for 8 words in 'tokens'$"):
        load(DataConfig(train=str(short)), get_task("token_classification"), seed=0)
    csv = tmp_path / "ner.csv"  # lists as JSON strings in a csv are read as lists
    ner.assign(tokens=ner["tokens"].map(json.dumps), tags=ner["tags"].map(json.dumps)).to_csv(csv, index=False)
    assert load(DataConfig(train=str(csv)), get_task("token_classification"), seed=0).label_names == ["ANI", "COL", "O"]

    images = write_images(tmp_path, 6)
    images.loc[3, "image"] = "img/missing.png"
    images.to_csv(tmp_path / "images.csv", index=False)
    with pytest.raises(DataError, match=r"^data\.image_column: no image file 'img/missing\.png' \(train row 3\)$"):
        load(DataConfig(train=str(tmp_path / "images.csv")), get_task("image_classification"), seed=0)


def test_objective_defaults_to_the_task_kinds_own(tmp_path):
    from autopeft.config import SearchConfig

    base = {"model": {"name_or_path": "m"}, "data": {"train": "x.jsonl"}}
    lm = SearchConfig.model_validate({**base, "task": {"kind": "causal_lm"}})
    assert (lm.objective.metric, lm.objective.mode) == ("loss", "min") and lm.task.max_new_tokens == 64
    ner = SearchConfig.model_validate({**base, "task": {"kind": "token_classification"}})
    assert (ner.objective.metric, ner.objective.mode) == ("f1", "max")
    ppl = SearchConfig.model_validate({**base, "task": {"kind": "causal_lm"}, "objective": {"metric": "perplexity",
                                                                                            "mode": "min"}})
    assert ppl.objective.metric == "perplexity"
    with pytest.raises(Exception, match=r"objective\.metric 'accuracy' is not a metric of causal_lm"):
        SearchConfig.model_validate({**base, "task": {"kind": "causal_lm"}, "objective": {"metric": "accuracy"}})
