"""PiSSA/OLoRA through the real stack: trials train on rewritten base weights inside Ray, and the
registered adapter (converted to plain LoRA) reproduces the best trial on the unchanged base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft.config import resolve
from autopeft.engine.training import adapter_size_mb
from autopeft.study import prepare, run_search

from ..conftest import write_config

pytestmark = pytest.mark.integration


def test_base_rewriting_init_is_searched_and_registered_for_the_unchanged_base(tmp_path: Path, sst2_slice,
                                                                                tracking_uri, minilm_path, local_ray):
    config = write_config(
        tmp_path, train=sst2_slice["train"], study_name="lora-inits", data__validation_fraction=0.2,
        space={"adapters": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "init": {"choices": ["pissa_fast", "olora"]}}},
               "placement": {"layers": "all", "roles": ["query", "value"]}, "learning_rate": 2e-3},
        budget={"trials": 2, "max_steps": 6, "eval_interval": 3, "cpus_per_trial": 2, "eval_batch_size": 96},
        pruning={"enabled": False},
        warm_start={"prior": False},
        tracking={"uri": tracking_uri, "experiment": "lora-inits", "registered_model": "lora-inits"})
    result = run_search(prepare(resolve(config)))
    assert {t.outcome for t in result.trials} == {"COMPLETE"}
    assert result.best is not None and result.best.params["lora.init"] in ("pissa_fast", "olora")

    saved = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert saved["init_lora_weights"] is True and saved["r"] == 8  # plain LoRA, rank 2r
    # the size the trial reported (and a max_adapter_size_mb constraint judged) is the registered one's
    assert result.best.metrics["adapter_size_mb"] == pytest.approx(adapter_size_mb(result.adapter_dir), abs=1e-3)
    # reloaded on the unchanged MiniLM, the registered adapter scores what the trial scored
    assert result.reloaded_val_metrics["loss"] == pytest.approx(result.best.metrics["loss"], rel=1e-4)
    assert result.reloaded_val_metrics["accuracy"] == pytest.approx(result.best.metrics["accuracy"], abs=0.011)
