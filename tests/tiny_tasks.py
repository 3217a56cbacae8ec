"""Tiny random models and data for the task-kind tests, built offline (no Hub).

Each ``save_*`` writes a transformers model folder (config, weights, tokenizer or image
processor) that autopeft loads like any local model; each ``write_*`` writes a data file of that
kind; ``load_kind`` and ``tokenized_kind`` load them as a study would. The tokenizer is a small
WordPiece vocabulary, so words really split into subwords. The models are built once per session
by the ``task_models`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

ANIMALS = ["cat", "dog", "fox", "owl", "bee", "cow"]
COLOURS = ["red", "blue", "green", "black", "white", "pink"]
WORDS = ["say", "the", "is", "a", "and", "play", "run", "it", *ANIMALS, *COLOURS]
PIECES = ["##ing", "##s", "##er"]


def tiny_tokenizer(*, causal: bool):
    """A fast WordPiece tokenizer over ``WORDS`` (+ suffix pieces): 'playing' → play ##ing."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "</s>"]
    vocab = {tok: i for i, tok in enumerate([*special, *WORDS, *PIECES])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if causal:  # decoder style: no pad token (autopeft pads with EOS), nothing added around texts
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]")


VOCAB_SIZE = len(WORDS) + len(PIECES) + 5
EOS_ID = 4


def save_causal_lm(directory: Path, arch: str = "gpt2") -> str:
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": VOCAB_SIZE, "bos_token_id": EOS_ID, "eos_token_id": EOS_ID}
    if arch == "gpt2":
        config = tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, **common)
    else:
        config = tf.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                num_key_value_heads=1, max_position_embeddings=64, **common)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tiny_tokenizer(causal=True).save_pretrained(directory)
    return str(directory)


def save_token_classifier(directory: Path) -> str:
    """A tiny BERT encoder (no head: the task kind adds one with its tags)."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=64, pad_token_id=0)
    tf.BertModel(config).save_pretrained(directory)
    tiny_tokenizer(causal=False).save_pretrained(directory)
    return str(directory)


def save_vit(directory: Path) -> str:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                          image_size=8, patch_size=4, num_channels=3)
    tf.ViTModel(config).save_pretrained(directory)
    tf.ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(directory)
    return str(directory)


def sft_frame(n: int) -> pd.DataFrame:
    """'say <animal>' → '<animal> is <its colour>': learnable, with a prompt to mask."""
    rows = [(f"say {ANIMALS[i % 6]}", f"the {ANIMALS[i % 6]} is {COLOURS[i % 6]}") for i in range(n)]
    return pd.DataFrame(rows, columns=["prompt", "response"])


def chat_frame(n: int) -> pd.DataFrame:
    """``sft_frame``'s pairs as chat data holds them: a ``messages`` column of conversations, a
    system turn, the prompt as the user's, the response as the assistant's reply."""
    return pd.DataFrame({"messages": [[{"role": "system", "content": "play"}, {"role": "user", "content": prompt},
                                       {"role": "assistant", "content": response}]
                                      for prompt, response in sft_frame(n).itertuples(index=False)]})


#: A chat template over the tiny vocabulary: each turn's role then its text, and 'say' to open
#: the assistant's reply (a model's own template works the same way, with its own markers).
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}say {% endif %}")


def ner_frame(n: int) -> pd.DataFrame:
    """Animals tagged ANI, colours COL, the rest O; 'playing' splits into two subwords."""
    tokens, tags = [], []
    for i in range(n):
        words = ["the", ANIMALS[i % 6], "is", "playing", "and", "it", "is", COLOURS[(i * 5) % 6]]
        tokens.append(words)
        tags.append(["ANI" if w in ANIMALS else "COL" if w in COLOURS else "O" for w in words])
    return pd.DataFrame({"tokens": tokens, "tags": tags})


#: Regression targets far from unit scale (1000 + 50 * x, x in 0..5.5): what standardisation is for.
TARGET_OFFSET, TARGET_SLOPE = 1000.0, 50.0


def regression_frame(n: int) -> pd.DataFrame:
    """'the <animal> is <colour>' → 1000 + 50 * (animal index + colour index / 10)."""
    rows = []
    for i in range(n):
        animal, colour = i % 6, (i * 5 + i // 6) % 6
        rows.append((f"the {ANIMALS[animal]} is {COLOURS[colour]}",
                     TARGET_OFFSET + TARGET_SLOPE * (animal + colour / 10)))
    return pd.DataFrame(rows, columns=["text", "label"])


def write_images(directory: Path, n: int) -> pd.DataFrame:
    """PNG files, dark ('night') or bright ('day'), with paths relative to ``directory``."""
    import numpy as np
    from PIL import Image

    (directory / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = "day" if i % 2 else "night"
        base = 200 if label == "day" else 40
        pixels = np.clip(base + rng.integers(-30, 30, size=(12, 12, 3)), 0, 255).astype("uint8")
        name = f"img/{i}.png"
        Image.fromarray(pixels).save(directory / name)
        rows.append((name, label))
    return pd.DataFrame(rows, columns=["image", "label"])


def write_jsonl(frame: pd.DataFrame, path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict(orient="records")))
    return path


def write_conll(frame: pd.DataFrame, path: Path) -> Path:
    """``frame``'s tokens and tags as CoNLL-2003 lays them out: a document line, one word a line
    with part-of-speech and chunk tags before its entity tag, a blank line after each sentence."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in zip(frame["tokens"], frame["tags"], strict=True):
        lines += [f"{word} NN I-NP {tag}" for word, tag in zip(words, tags, strict=True)] + [""]
    path.write_text("\n".join(lines))
    return path


def load_kind(kind: str, tmp_path: Path, n: int = 24):
    """``n`` examples of a task kind written to ``tmp_path`` and loaded (RawData)."""
    from autopeft.config import DataConfig
    from autopeft.data import load
    from autopeft.tasks import get_task

    if kind == "causal_lm":
        cfg = DataConfig(train=str(write_jsonl(sft_frame(n), tmp_path / "sft.jsonl")))
    elif kind == "token_classification":
        cfg = DataConfig(train=str(write_jsonl(ner_frame(n), tmp_path / "ner.jsonl")))
    elif kind == "regression":
        regression_frame(n).to_csv(tmp_path / "values.csv", index=False)
        cfg = DataConfig(train=str(tmp_path / "values.csv"), text_columns=["text"])
    else:
        write_images(tmp_path, n).to_csv(tmp_path / "images.csv", index=False)
        cfg = DataConfig(train=str(tmp_path / "images.csv"))
    return load(cfg, get_task(kind), seed=0)


def tokenized_kind(kind: str, location: str, tmp_path: Path, n: int = 24):
    """(RawData, TokenizedData) of ``load_kind`` with the preprocessor of the model at ``location``."""
    from autopeft.config import ModelConfig
    from autopeft.tasks import get_task, tokenize

    raw = load_kind(kind, tmp_path, n)
    return raw, tokenize(raw, get_task(kind).load_preprocessor(ModelConfig(name_or_path=location), location),
                         32, tokenizer_id=location)
