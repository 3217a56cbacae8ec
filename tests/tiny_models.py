"""Tiny random-config models of each architecture autopeft knows, for fast CPU tests.

Hidden sizes of 16-32 and two layers: real module names and shapes, no download, milliseconds
per step. ``inputs_for`` gives a batch each model accepts, with labels so it returns a loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

VOCAB = 64
_COMMON: dict[str, Any] = {"vocab_size": VOCAB, "num_labels": 2, "pad_token_id": 0}


def tiny_model_config(arch: str) -> Any:
    """The transformers config of the tiny ``arch`` (no head chosen yet)."""
    import transformers as tf

    if arch == "bert":
        return tf.BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=64, **_COMMON)
    if arch == "roberta":
        return tf.RobertaConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                max_position_embeddings=70, **_COMMON)
    if arch == "deberta-v2":
        return tf.DebertaV2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=64, **_COMMON)
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=64,
                                   **_COMMON)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, **_COMMON)
    if arch in {"llama", "mistral", "qwen2"}:
        cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config}[arch]
        return cls(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, max_position_embeddings=64, **_COMMON)
    if arch == "gemma":
        return tf.GemmaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=8, max_position_embeddings=64, **_COMMON)
    if arch == "t5":
        return tf.T5Config(d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                           decoder_start_token_id=0, **_COMMON)
    if arch == "vit":
        return tf.ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            image_size=8, patch_size=4, num_channels=3, num_labels=2)
    raise ValueError(arch)


ARCHITECTURES = ("bert", "roberta", "deberta-v2", "distilbert", "gpt2", "llama", "mistral", "qwen2", "gemma",
                 "t5", "vit")


def tiny_model(arch: str, seed: int = 0) -> nn.Module:
    """A fresh classifier of ``arch`` with weights fixed by ``seed``."""
    import transformers as tf

    torch.manual_seed(seed)
    config = tiny_model_config(arch)
    if arch == "vit":
        return tf.ViTForImageClassification(config)
    model = tf.AutoModelForSequenceClassification.from_config(config)
    return model


def inputs_for(arch: str, batch: int = 4, seq: int = 8) -> dict[str, torch.Tensor]:
    """A deterministic batch with labels."""
    gen = torch.Generator().manual_seed(1)
    labels = torch.tensor([i % 2 for i in range(batch)])
    if arch == "vit":
        return {"pixel_values": torch.randn(batch, 3, 8, 8, generator=gen), "labels": labels}
    ids = torch.randint(1, VOCAB, (batch, seq), generator=gen)
    if arch == "t5":
        ids[:, -1] = 1  # T5ForSequenceClassification pools the eos token
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def train_two_steps(model: nn.Module, family: Any, batch: dict[str, torch.Tensor], lr: float) -> list[float]:
    """Two AdamW steps on ``batch`` with the family's per-step hook (AdaLoRA's rank update);
    the two losses, so a test can check that training changed something."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for step in (1, 2):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        if family.on_step is not None:
            family.on_step(model, step)
        optimizer.zero_grad()
        losses.append(float(loss))
    return losses
