"""A tiny adapter folder registered through ``register_adapter`` (no weights, no model: the
registry only logs the folder), with the lineage record the search builds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from autopeft.schema import AdapterMetadata, VersionTags

#: What peft writes for LoRA on two attention roles: target_modules is a whole regex.
ADAPTER_CONFIG = {
    "peft_type": "LORA", "task_type": "SEQ_CLS", "r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "bias": "none",
    "target_modules": r"(?:.*encoder\.layer\.(?:0|1|2|3|4|5)\.attention\.self\.(?:query|value))",
    "modules_to_save": ["classifier", "score"],
}
REASON = "best accuracy (max) among 4 feasible COMPLETE trials"


def lineage(study: str = "sst2-study", **changes: Any) -> VersionTags:
    """The record the search passes (autopeft/study/registration.py), for a LoRA trial."""
    record = VersionTags(
        study=study, trial_id="263c4fb2", trial_run_id="f62a1db83bec41dab993c4081203eddb", parent_run_id=None,
        family="lora",
        params={"adapter": "lora", "lora.r": 8, "lora.alpha": 16, "lora.dropout": 0.05, "lora.rslora": False,
                "lora.init": "default", "lora.rank_pattern": "uniform", "placement.layers": "all",
                "placement.roles": "query,value", "learning_rate": 0.0005, "batch_size": 16},
        base_model={"name_or_path": "minilm", "location": "/opt/minilm", "config_sha256": "953f9c0d463486b1",
                    "model_type": "bert"},
        data_fingerprint="33d3c8cd65a135cb", split_sizes={"train": 64, "validation": 32, "test": 32},
        test_fingerprint="63ed6907247ca450", metric="accuracy", mode="max", selection_policy="best",
        val_metric=0.8124999761581421, test_metric=0.75, trainable_params=37634,
        trainable_share=0.0016541239700733398, final_steps=None, version="0.1.0")
    return replace(record, **changes)


def adapter_folder(directory: Path) -> Path:
    """``directory/adapter``: peft's config and autopeft.json (as the search writes them)."""
    adapter = directory / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps(ADAPTER_CONFIG))
    metadata = AdapterMetadata(task="sequence_classification",
                               base_model={"config": {"name_or_path": "minilm"}, "reference": {"name_or_path": "minilm"}},
                               label_names=["negative", "positive"], text_columns=["sentence"], label_column="label",
                               family="lora", study="sst2-study", trial_id="263c4fb2",
                               selection={"policy": "best", "reason": REASON})
    (adapter / "autopeft.json").write_text(metadata.to_json())
    return adapter


def register(client: Any, uri: str, experiment: str, adapter: Path, model: str, record: VersionTags) -> Any:
    """A study run with its space.json, the record pointing at it, registered: the ModelVersion."""
    from autopeft.registry.versions import register_adapter

    run = client.create_run(experiment)
    client.log_dict(run.info.run_id, {"adapters": {"lora": {"r": 8}}}, "space.json")
    record = replace(record, parent_run_id=run.info.run_id)
    return register_adapter(client, tracking_uri=uri, run_id=run.info.run_id, adapter_dir=adapter,
                            registered_model=model, tags=record)
