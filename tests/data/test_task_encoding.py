"""Each task kind's data on tiny random models built offline: encoding and collation, prompt
masking, word-to-subword tag alignment, image batches, and the one-line errors for bad columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autopeft.config import DataConfig, ModelConfig
from autopeft.data import IGNORE, load
from autopeft.errors import DataError
from autopeft.model.loading import load_image_processor, load_tokenizer
from autopeft.tasks import collate, get_task
from tests.tiny_tasks import EOS_ID, ner_frame, sft_frame, tokenized_kind, write_images, write_jsonl

# --------------------------------------------------------------------------- causal LM


def test_sft_masks_the_prompt_and_padding(task_models, tmp_path):
    raw, data = tokenized_kind("causal_lm", task_models["causal_lm"], tmp_path)
    assert raw.text_columns == ["prompt"] and raw.label_column == "response" and raw.label_names == []
    tok = load_tokenizer(ModelConfig(name_or_path="m"), task_models["causal_lm"])
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


def test_a_prompt_of_several_columns_is_their_texts_one_below_the_other(tmp_path):
    """Alpaca's instruction and input (empty where the instruction says it all): the input was
    dropped, and the model learnt 'Add the two numbers.' -> 'The sum of 17 and 91 is 108.'."""
    from autopeft.data import encode_prompt_response
    from tests.tiny_tasks import tiny_tokenizer

    frame = pd.DataFrame({"instruction": ["say the cat", "say a dog"] * 6, "input": ["red cow", None] * 6,
                          "output": ["the cat is red", "a dog"] * 6})
    frame.to_csv(tmp_path / "alpaca.csv", index=False)  # the empty input: a missing cell
    config = DataConfig(train=str(tmp_path / "alpaca.csv"), prompt_column=["instruction", "input"],
                        response_column="output")
    raw = load(config, get_task("causal_lm"), seed=0)
    assert raw.text_columns == ["instruction", "input"]
    tok = tiny_tokenizer(causal=True)
    rows = raw.frames["train"]
    split = encode_prompt_response(rows, raw.text_columns, "output", [], tok, 64)
    for i, (instruction, given) in enumerate(zip(rows["instruction"], rows["input"], strict=True)):
        prompt = instruction + (f"\n\n{given}" if given else "")
        assert split.input_ids[i][:len(tok(prompt)["input_ids"])] == tok(prompt)["input_ids"]
    assert {tuple(ids[:3]) for ids in split.input_ids} == {tuple(tok("say the cat")["input_ids"]),
                                                           tuple(tok("say a dog")["input_ids"])}
    # the first column is the prompt itself: never empty
    frame.assign(instruction=[None, "say a dog"] * 6).to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(DataError, match=r"^data\.prompt_column: 'instruction' is empty in train row \d+ \(6 empty in all\)$"):
        load(config.model_copy(update={"train": str(tmp_path / "none.csv")}), get_task("causal_lm"), seed=0)


# --------------------------------------------------------------------------- token classification


def test_words_align_tags_to_first_subwords(task_models, tmp_path):
    raw, data = tokenized_kind("token_classification", task_models["token_classification"], tmp_path)
    assert raw.label_names == ["ANI", "COL", "O"]
    tok = load_tokenizer(ModelConfig(name_or_path="m"), task_models["token_classification"])
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


# --------------------------------------------------------------------------- images


def test_images_become_pixel_batches(task_models, tmp_path):
    raw, data = tokenized_kind("image_classification", task_models["image_classification"], tmp_path)
    assert raw.label_names == ["day", "night"]
    assert all(Path(p).is_absolute() for p in raw.frames["train"]["image"])  # relative to the csv
    split = data.splits["train"]
    assert split.pixel_values is not None and split.pixel_values.shape == (len(split), 3, 8, 8)
    assert split.pixel_values.dtype == np.float16 and split.input_ids == []
    batch = collate(split, [0, 3], data.pad_token_id)
    assert set(batch) == {"pixel_values", "labels"}
    assert batch["pixel_values"].dtype == torch.float32 and batch["labels"].tolist() == list(split.labels[[0, 3]])
    processor = load_image_processor(ModelConfig(name_or_path="m"), task_models["image_classification"])
    from PIL import Image

    expected = processor(images=[Image.open(raw.frames["train"]["image"][0]).convert("RGB")],
                         return_tensors="np")["pixel_values"][0]
    assert np.allclose(split.pixel_values[0], expected, atol=2e-3)



# --------------------------------------------------------------------------- regression


def test_regression_targets_are_standardised_with_the_train_split(task_models, tmp_path):
    """Targets on a large offset and scale (1000 + 50x): the splits keep them in the data's units,
    and the collator hands the model z = (y - mean) / std with the training split's figures."""
    raw, data = tokenized_kind("regression", task_models["regression"], tmp_path, n=40)
    train_y = raw.frames["train"]["label"].to_numpy(dtype=np.float64)
    scale = data.target_scale
    assert scale is not None
    assert scale.mean == pytest.approx(train_y.mean()) and scale.std == pytest.approx(train_y.std())
    assert scale.mean > 1000 and scale.std > 40  # the toy set really is off unit scale
    assert all(split.target_scale == scale for split in data.splits.values())  # one scale per study
    np.testing.assert_allclose(data.splits["train"].labels, train_y, rtol=1e-6)  # stored as the data has them

    train = data.splits["train"]
    z = collate(train, list(range(len(train))), data.pad_token_id)["labels"].numpy().astype(np.float64)
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1.0, abs=1e-4)
    # validation is standardised with train's figures, not its own
    val = data.splits["validation"]
    val_z = collate(val, list(range(len(val))), data.pad_token_id)["labels"].numpy()
    val_y = raw.frames["validation"]["label"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(val_z, (val_y - train_y.mean()) / train_y.std(), rtol=1e-4, atol=1e-5)


def test_target_scale_without_spread_only_centres():
    from autopeft.data import fit_target_scale
    from autopeft.schema import TargetScale

    assert fit_target_scale(np.array([3.0, 5.0])) == TargetScale(mean=4.0, std=1.0)
    assert fit_target_scale(np.array([1010.0, 1010.0, 1010.0])) == TargetScale(mean=1010.0, std=1.0)  # std 0
    assert fit_target_scale(np.array([7.5])) == TargetScale(mean=7.5, std=1.0)  # a single row
    assert fit_target_scale(np.array([1.0, np.nan, 3.0])) == TargetScale(mean=2.0, std=1.0)
    scale = fit_target_scale(np.array([990.0, 1010.0]))
    assert (scale.mean, scale.std) == (1000.0, 10.0)
    assert scale.restore(scale.standardise(np.array([1020.0]))) == pytest.approx([1020.0])


def test_the_cache_keeps_standardised_and_unscaled_splits_apart(task_models, tmp_path):
    """The data's fingerprint stays as it was (it names the data), but standardised splits are
    cached under their own key: a cache an earlier release wrote (no scale: raw targets) is not
    read as standardised, and the earlier release never reads (or overwrites) the new one."""
    import dataclasses
    import pickle

    from autopeft.data import cache_key, fingerprint, write_cache
    from autopeft.schema import TargetScale
    from autopeft.tasks import tokenize

    location = task_models["regression"]
    raw, fresh = tokenized_kind("regression", location, tmp_path, n=40)
    tok = get_task("regression").load_preprocessor(ModelConfig(name_or_path=location), location)
    cache = tmp_path / "cache"
    fp = fingerprint(raw, location, 32)
    assert fresh.fingerprint == fp and cache_key(fp, standardised=True) != fp
    # what an earlier release left: the same fingerprint, splits without a scale
    earlier = dataclasses.replace(fresh, splits={k: dataclasses.replace(v, target_scale=None)
                                                 for k, v in fresh.splits.items()})
    write_cache(cache, earlier)
    assert (cache / f"tokenized-{fp}.pkl").is_file()

    data = tokenize(raw, tok, 32, tokenizer_id=location, cache_dir=cache)
    assert data.target_scale == fresh.target_scale is not None  # not the unscaled cache
    new_file = cache / f"tokenized-{cache_key(fp, standardised=True)}.pkl"
    assert new_file.is_file()
    with (cache / f"tokenized-{fp}.pkl").open("rb") as fh:  # the earlier release's file, as it was
        assert pickle.load(fh).target_scale is None

    # the standardised cache is read back (a planted scale shows it was a hit, not a re-encode)
    with new_file.open("rb") as fh:
        cached = pickle.load(fh)
    for split in cached.splits.values():
        split.target_scale = TargetScale(mean=7.0, std=3.0)
    with new_file.open("wb") as fh:
        pickle.dump(cached, fh)
    assert tokenize(raw, tok, 32, tokenizer_id=location, cache_dir=cache).target_scale == TargetScale(7.0, 3.0)


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
