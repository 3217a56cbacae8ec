"""PiSSA / OLoRA initialisation: trials train on rewritten base weights, and the adapter users
get is converted so it reproduces the trained model on the *unchanged* base model."""

from __future__ import annotations

import json

import pytest
import torch

from autopeft.adapters import get_family, load_adapter
from autopeft.config import ModelConfig
from autopeft.engine.training import (
    StudySpec,
    TrainState,
    adapter_size_mb,
    build_adapter,
    export_adapter,
    save_checkpoint,
)
from tests.tiny_models import inputs_for, tiny_model, train_two_steps


def _spec(location: str) -> StudySpec:
    return StudySpec(model=ModelConfig(name_or_path=location, max_length=8), location=location,
                     task="sequence_classification", label_names=["0", "1"], max_steps=2, eval_interval=1,
                     eval_batch_size=4, seed=0, metric="accuracy", mode="max")


CASES = [("bert", "pissa", False, "uniform"), ("bert", "olora", False, "uniform"),
         ("gpt2", "pissa_fast", False, "uniform"), ("llama", "olora", False, "uniform"),
         # rsLoRA with a rank pattern: peft cannot convert it, so the builder folds rsLoRA into alpha
         ("bert", "pissa", True, "2,8")]


@pytest.mark.parametrize("arch,init,rslora,pattern", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_base_rewriting_init_exports_an_adapter_for_the_unchanged_base(arch, init, rslora, pattern, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    location = tmp_path / "base"
    tiny_model(arch).save_pretrained(location)
    spec = _spec(str(location))
    config = {"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0, "lora.rslora": rslora,
              "lora.init": init, "lora.rank_pattern": pattern, "placement.layers": "all",
              "placement.roles": "all-linear"}
    built = build_adapter(spec, config)
    batch = inputs_for(arch)
    untouched = AutoModelForSequenceClassification.from_pretrained(location)
    name = next(n for n in built.module_names)
    rewritten = built.model.get_submodule(f"base_model.model.{name}").base_layer.weight
    assert not torch.allclose(rewritten, untouched.get_submodule(name).weight)  # the init rewrote W

    losses = train_two_steps(built.model, get_family("lora"), batch, lr=5e-2)
    assert losses[0] != losses[1]
    built.model.eval()
    with torch.no_grad():
        expected = built.model(**batch).logits
    checkpoint, exported = tmp_path / "checkpoint", tmp_path / "adapter"
    save_checkpoint(built, TrainState(step=2), checkpoint)
    export_adapter(spec, config, checkpoint, exported)

    saved = json.loads((exported / "adapter_config.json").read_text())
    assert saved["init_lora_weights"] is True  # a plain LoRA adapter now
    assert saved["r"] == 2 * 4  # ΔW = BA - B0·A0 as one LoRA of rank 2r
    # the size a trial reports from its checkpoint is that of the adapter users get (same tensors,
    # the safetensors header may differ by a few bytes)
    assert adapter_size_mb(checkpoint) * 2**20 == pytest.approx(adapter_size_mb(exported) * 2**20, abs=256)
    assert not (exported / "training_state.pt").exists()
    for loaded in (PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(location), exported),
                   load_adapter(AutoModelForSequenceClassification.from_pretrained(location), exported)):
        with torch.no_grad():
            got = loaded.eval()(**batch).logits
        assert torch.allclose(got, expected, atol=1e-4), (got, expected)


def test_default_init_exports_the_checkpoint_as_it_is(tmp_path):
    location = tmp_path / "base"
    tiny_model("bert").save_pretrained(location)
    spec = _spec(str(location))
    config = {"adapter": "lora", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0, "placement.layers": "all",
              "placement.roles": "all-linear"}
    built = build_adapter(spec, config)
    checkpoint, exported = tmp_path / "checkpoint", tmp_path / "adapter"
    save_checkpoint(built, TrainState(step=0), checkpoint)
    export_adapter(spec, config, checkpoint, exported)
    assert (exported / "adapter_model.safetensors").read_bytes() == (checkpoint / "adapter_model.safetensors").read_bytes()
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        p.name for p in checkpoint.iterdir() if p.name != "training_state.pt")
