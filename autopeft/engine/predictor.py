"""Load a saved autopeft adapter (peft format + ``autopeft.json``) and predict with it.

The adapter folder holds the peft adapter, the tokenizer and a small metadata file
(:class:`~autopeft.schema.AdapterMetadata`) that says which base model to fetch (by reference:
base weights are never copied) and how to read inputs. The MLflow pyfunc flavour, the final
evaluation and ``autopeft export`` all go through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from autopeft.config import ModelConfig
from autopeft.data import TokenizedSplit, pad_id
from autopeft.engine.training import pick_device, predict
from autopeft.errors import ModelError
from autopeft.model.loading import resolve_location
from autopeft.schema import AdapterMetadata, Artifact, TargetScale
from autopeft.tasks import get_task

#: The metadata file's name (kept importable here; ``schema.Artifact.METADATA_FILE``).
METADATA_FILE = Artifact.METADATA_FILE


@dataclass
class AdapterPredictor:
    model: torch.nn.Module
    tokenizer: Any
    #: ``autopeft.json`` as a dict (every field of :class:`AdapterMetadata`, defaults filled in).
    metadata: dict[str, Any]
    device: torch.device

    @property
    def info(self) -> AdapterMetadata:
        """The metadata, typed."""
        return AdapterMetadata.from_dict(self.metadata)

    @classmethod
    def load(cls, adapter_dir: str | Path, *, device: torch.device | None = None) -> AdapterPredictor:
        from autopeft.adapters import load_adapter

        adapter_dir = Path(adapter_dir)
        info = read_metadata(adapter_dir)
        spec = ModelConfig(**info.model_config)
        location = resolve_location(spec.name_or_path, spec.revision)
        task = get_task(info.task)
        base = task.load_model(spec, location, info.label_names)
        model = load_adapter(base, adapter_dir)  # PeftModel.from_pretrained, plus custom-layer families
        tokenizer = task.load_preprocessor(spec, str(adapter_dir))  # an image processor for images
        device = device or pick_device()[0]
        model.to(device).eval()
        return cls(model=model, tokenizer=tokenizer, metadata=info.to_dict(), device=device)

    def encode(self, frame: pd.DataFrame, labels: np.ndarray | None = None) -> TokenizedSplit:
        columns = self.metadata["text_columns"]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ModelError(f"input: column {missing[0]!r} is missing (expected: {', '.join(columns)})")
        split = get_task(self.metadata["task"]).encode(frame, columns, None, self.metadata["label_names"],
                                                       self.tokenizer, int(self.metadata["max_length"]))
        if labels is not None:
            split.labels = labels
        # the scale the adapter was trained with: outputs come back in the data's units (none in
        # an adapter saved before standardisation, which predicts as it always did)
        split.target_scale = self.info.target_scale
        return split

    def outputs(self, split: TokenizedSplit, batch_size: int = 64) -> tuple[np.ndarray, float]:
        return predict(self.model, split, pad_id(self.tokenizer), batch_size=batch_size,
                       device=self.device)

    def predict_frame(self, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
        """Labels and scores for classification (text or images), values for regression (in the
        units of the data it was trained on, mapped back from the standardised ones it learnt), the
        generated text for causal LM, a list of tags per row (one per word) for token
        classification."""
        return get_task(self.metadata["task"]).present(self, frame, batch_size)

    def predict(self, data: pd.DataFrame | Mapping[str, Any] | list[Mapping[str, Any]],
                batch_size: int = 64) -> pd.DataFrame:
        """:meth:`predict_frame` for a frame, a mapping of columns or a list of records (one per example)."""
        return self.predict_frame(data if isinstance(data, pd.DataFrame) else pd.DataFrame(data), batch_size)


def read_metadata(adapter_dir: str | Path) -> AdapterMetadata:
    """The adapter folder's ``autopeft.json``; ModelError when it is missing or unreadable."""
    meta_file = Path(adapter_dir) / Artifact.METADATA_FILE
    if not meta_file.is_file():
        raise ModelError(f"{adapter_dir}: no {Artifact.METADATA_FILE} (not an autopeft adapter)")
    try:
        return AdapterMetadata.from_json(meta_file.read_text())
    except KeyError as exc:
        raise ModelError(f"{meta_file}: no {exc.args[0]!r} (not an autopeft adapter's metadata)") from None
    except ValueError as exc:  # not JSON, or a field that is not what it says (target_scale)
        raise ModelError(f"{meta_file}: not readable ({exc})") from None


def write_metadata(adapter_dir: Path, metadata: AdapterMetadata | Mapping[str, Any]) -> None:
    """Write ``autopeft.json`` into ``adapter_dir`` (a mapping is read as :class:`AdapterMetadata`
    first, so every file has the same shape)."""
    info = metadata if isinstance(metadata, AdapterMetadata) else AdapterMetadata.from_dict(metadata)
    (Path(adapter_dir) / Artifact.METADATA_FILE).write_text(info.to_json())


def export_merged(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold the adapter into its base model (peft ``merge_and_unload``) and save a plain
    transformers model plus tokenizer that ``AutoModelForSequenceClassification`` loads alone.

    Merged on the CPU in float32: the exported weights then do not depend on the device the
    export happened to run on, and the label names travel in ``config.json`` (``id2label``). A
    regression adapter's target scale is folded into the head (:func:`fold_target_scale`), so
    the plain model outputs values in the units of its training data, as the adapter does.
    """
    out = Path(out_dir)
    predictor = AdapterPredictor.load(adapter_dir, device=torch.device("cpu"))
    family = predictor.info.family or "?"
    merge = getattr(predictor.model, "merge_and_unload", None)
    if merge is None:
        raise ModelError(f"export: the {family} adapter cannot be merged into its base model; export it without --merged")
    try:
        merged = merge()
    except (ValueError, NotImplementedError, AttributeError) as exc:  # e.g. prompt-learning families
        raise ModelError(f"export: the {family} adapter cannot be merged ({exc}); export it without --merged") from None
    if predictor.info.target_scale is not None:
        fold_target_scale(merged, predictor.info.target_scale)
    merged.save_pretrained(str(out))
    predictor.tokenizer.save_pretrained(str(out))
    return out


def _output_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The layer that writes a sequence model's outputs: the last linear layer with one output per
    label (BERT's ``classifier``, RoBERTa's ``classifier.out_proj``, a decoder's ``score``)."""
    outputs = getattr(model.config, "num_labels", None)
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == outputs]
    return heads[-1] if heads else None


def fold_target_scale(model: torch.nn.Module, scale: TargetScale) -> None:
    """Make a merged regression model output y = z * std + mean itself: its head's weight is
    scaled by std and its bias becomes bias * std + mean. Checked on one input: a head that is
    not the model's last affine step, or has no bias to carry the mean, is a ModelError (the
    adapter itself, exported without ``--merged``, predicts in the data's units)."""
    head = _output_head(model)
    arch = type(model).__name__
    if head is None:
        raise ModelError(f"export: no output layer found in {arch} to carry the regression targets' scale; "
                         "export it without --merged")
    if head.bias is None and scale.mean != 0.0:
        raise ModelError(f"export: the output layer of {arch} has no bias to carry the regression targets' mean "
                         f"({scale.mean:g}); export it without --merged")
    probe = torch.tensor([[1, 2, 3, 4]])  # any token ids: the check compares outputs before and after
    model.eval()
    with torch.no_grad():
        before = model(input_ids=probe).logits
        head.weight.mul_(scale.std)
        if head.bias is not None:
            head.bias.mul_(scale.std).add_(scale.mean)
        after = model(input_ids=probe).logits
    if not torch.allclose(after, scale.restore(before), rtol=1e-4, atol=1e-4 * scale.std):
        raise ModelError(f"export: the regression targets' scale cannot be folded into {arch} (its output is not "
                         "an affine step of that layer); export it without --merged")
