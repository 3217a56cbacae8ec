"""Build one adapter on the base model, train it, evaluate it: plain PyTorch, no Ray, no MLflow.

The Ray trainable (``trial.py``), the final evaluation of the best adapter and the benchmark's
bare loop all use these functions, so what a trial measures is what a user gets.
"""

from __future__ import annotations

import copy
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autopeft.adapters import AdapterTarget, get_family
from autopeft.config import ModelConfig
from autopeft.data import TokenizedData, TokenizedSplit
from autopeft.engine.faults import FaultPlan
from autopeft.errors import AutoPeftError
from autopeft.model.placement import parse_layers, resolve, scan
from autopeft.schema import Artifact, Metric
from autopeft.space import family_params
from autopeft.tasks import TrivialLevel, collate, get_task

#: Name of the file beside the adapter that tells autopeft how to use it.
METADATA_FILE = Artifact.METADATA_FILE  # kept importable here
TRAINING_STATE_FILE = "training_state.pt"


class TrialDiverged(AutoPeftError):
    """The training loss became NaN or infinite; the trial stops at once."""


@dataclass(frozen=True)
class StudySpec:
    """Everything a trial needs besides its sampled config; the same for all trials of a study."""

    model: ModelConfig
    location: str
    task: str
    label_names: list[str]
    max_steps: int
    eval_interval: int
    eval_batch_size: int
    seed: int
    metric: str
    mode: str
    #: Cost limits (``objectives.ConstraintsConfig.limits``): a trial over one stops at that
    #: evaluation, so it ends PRUNED instead of training an adapter nobody can use.
    limits: Mapping[str, float] = field(default_factory=dict)
    #: Fault injection for reliability tests (``engine.faults``), read once when the study was prepared.
    faults: FaultPlan | None = None
    #: The trivial predictor's validation metric (``tasks.trivial``): each evaluation reports
    #: whether the trial is still at it, and the rung score judged against it.
    trivial: TrivialLevel | None = None

    def model_kwargs(self) -> dict[str, Any]:
        return get_task(self.task).model_kwargs(self.label_names)


@dataclass
class BuiltAdapter:
    model: Any  # a peft PeftModel (save_pretrained, peft_config); typed loosely as peft's stubs are
    family: str
    module_names: list[str]
    trainable_params: int
    total_params: int

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / max(1, self.total_params)


def pick_device() -> tuple[torch.device, torch.dtype | None]:
    """CUDA with bf16 autocast where the GPU supports it, else CPU in fp32."""
    if torch.cuda.is_available():
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return torch.device("cuda"), amp
    return torch.device("cpu"), None


def build_adapter(spec: StudySpec, config: Mapping[str, Any]) -> BuiltAdapter:
    """The base model with the sampled adapter attached (only adapter and head trainable)."""
    # deferred: peft imports torch and transformers; imported where an adapter is built
    from peft import get_peft_model

    torch.manual_seed(spec.seed)  # same head initialisation for every trial of the study
    task = get_task(spec.task)
    base = task.load_model(spec.model, spec.location, spec.label_names)
    name, params = family_params(config)
    family = get_family(name)
    structure = scan(base)
    layers_value = config.get("placement.layers", "all")
    module_names: list[str] = []
    layers: list[int] | None = None
    if family.uses_placement:
        # families that choose their own roles (bottleneck positions) still take the layers
        roles = config.get("placement.roles", "all-linear") if family.uses_roles else "all-linear"
        module_names = resolve(structure, layers_value, roles)
        layers = parse_layers(layers_value, structure.num_layers)
    target = AdapterTarget(module_names=module_names, structure=structure,
                           peft_task_type=task.peft_task_type, layers=layers,  # type: ignore[arg-type]
                           max_steps=spec.max_steps)
    peft_config = task.prepare_peft_config(family.build(family.resolve_params(params), target))
    model = get_peft_model(base, peft_config)
    trainable, total = model.get_nb_trainable_parameters()
    return BuiltAdapter(model=model, family=name, module_names=module_names,
                        trainable_params=int(trainable), total_params=int(total))


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The examples of training step ``step``: a fresh permutation each epoch, reproducible
    from (seed, step) alone so a trial restored from a checkpoint sees the same batches."""
    start = step * batch_size
    out: list[int] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset : offset + take].tolist())
    return np.asarray(out)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model: nn.Module, split: TokenizedSplit, pad_token_id: int, *, batch_size: int,
            device: torch.device, amp_dtype: torch.dtype | None = None) -> tuple[np.ndarray, float]:
    """Outputs for every example in order (logits or values; per-token or per-example rows for
    other task kinds, as the kind's ``batch_outputs`` gives), and the mean loss.

    Where the split has a ``target_scale`` (regression) the outputs are mapped back to the data's
    units; the loss is the model's own, on standardised targets (MSE in units of the training
    split's variance: 1.0 is as good as always predicting the training mean)."""
    batch_outputs = get_task(split.task).batch_outputs
    was_training = model.training
    model.eval()
    order = np.argsort(split.lengths(), kind="stable")  # similar lengths together: less padding
    outputs: list[np.ndarray] = []
    loss_sum = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = _to(collate(split, idx, pad_token_id), device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(**batch)
        loss_sum += float(out.loss) * len(idx)
        outputs.append(batch_outputs(out, batch))
    model.train(was_training)
    stacked = np.concatenate(outputs)
    result = np.empty_like(stacked)
    result[order] = stacked
    if split.target_scale is not None:  # the model learnt z; metrics and users read y
        result = np.asarray(split.target_scale.restore(result), dtype=result.dtype)
    return result, loss_sum / len(order)


def evaluate(model: nn.Module, split: TokenizedSplit, pad_token_id: int, task: str, *, batch_size: int,
             device: torch.device, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """The task's metrics plus ``loss`` on one split: the metrics in the data's units, the loss as
    :func:`predict` gives it (on standardised targets for regression)."""
    outputs, loss = predict(model, split, pad_token_id, batch_size=batch_size, device=device, amp_dtype=amp_dtype)
    metrics = get_task(task).compute_metrics(outputs, split.labels)
    metrics.setdefault("loss", loss)  # a kind may measure loss itself (causal LM: per token)
    return metrics


class PeakMemory:
    """Peak memory of this trial's training, in MiB: ``torch.cuda.max_memory_allocated`` on GPU,
    the process's peak resident set size on CPU.

    On Linux the RSS high-water mark is reset at the start (``/proc/self/clear_refs``), so a
    trial in a reused Ray actor does not inherit the peak of the one before; where that is not
    possible the process-lifetime peak (``getrusage``) is reported instead.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
        except OSError:
            pass

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere


@torch.no_grad()
def measure_latency(model: nn.Module, split: TokenizedSplit, pad_token_id: int, *, device: torch.device,
                    amp_dtype: torch.dtype | None = None, examples: int = 16, warmup: int = 2) -> float:
    """Inference latency per example in ms: the median over up to ``examples`` validation
    examples, one at a time (a served request), after ``warmup`` untimed calls."""
    was_training = model.training
    model.eval()
    n = min(len(split), examples)
    times: list[float] = []
    for i in range(-min(warmup, n), n):
        batch = _to(collate(split, np.asarray([max(i, 0)]), pad_token_id), device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 0:
            times.append(time.perf_counter() - started)
    model.train(was_training)
    return float(np.median(times)) * 1000.0 if times else float("nan")


@dataclass
class TrainState:
    """What a checkpoint restores besides the adapter weights."""

    step: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


#: Called after each evaluation with (metrics, state); it may save a checkpoint.
OnEval = Callable[[dict[str, Any], TrainState], None]


def train(built: BuiltAdapter, spec: StudySpec, data: TokenizedData, config: Mapping[str, Any], *,
          on_eval: OnEval, state: TrainState | None = None, device: torch.device | None = None,
          amp_dtype: torch.dtype | None = None, setup_started: float | None = None,
          data_offset: int = 0) -> TrainState:
    """AdamW with linear warm-up and decay; evaluate every ``eval_interval`` steps and at the end.

    ``data_offset``: training steps whose batches this training follows. A training that
    continues a trial's adapter takes the batches after the trial's, not the trial's again.

    ``setup_started`` (a ``time.perf_counter()`` reading) is when this run of the trial began
    building; the time from it to the first step is reported as ``setup_time_s``."""
    # deferred: transformers takes seconds to import; imported where a model is loaded
    from transformers import get_linear_schedule_with_warmup

    if device is None:
        device, amp_dtype = pick_device()
    model = built.model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(config["learning_rate"]),
                                  weight_decay=float(config.get("weight_decay", 0.0)))
    warmup = int(round(float(config.get("warmup_ratio", 0.0)) * spec.max_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, spec.max_steps)
    state = state or TrainState()
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    train_split = data.splits["train"]
    batch_size = int(config["batch_size"])
    on_step = get_family(built.family).on_step
    loss_window: list[float] = []
    memory = PeakMemory(device)  # cost measurements for multi-objective search (objectives.py)
    latency_ms: float | None = None
    setup_time_s = None if setup_started is None else time.perf_counter() - setup_started
    while state.step < spec.max_steps:
        started = time.perf_counter()
        idx = batch_indices(len(train_split), batch_size, data_offset + state.step, spec.seed)
        batch = _to(collate(train_split, idx, data.pad_token_id), device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(**batch).loss
        # The one host sync per step, taken before the update so a NaN/inf loss stops the
        # trial at once instead of writing NaN into the adapter.
        loss_value = float(loss.detach())
        if spec.faults is not None:
            loss_value = spec.faults.corrupt_loss(config, state.step + 1, loss_value)
        if not math.isfinite(loss_value):
            raise TrialDiverged(f"training loss became {loss_value} at step {state.step + 1}")
        loss.backward()
        optimizer.step()
        scheduler.step()
        if on_step is not None:  # e.g. AdaLoRA's rank allocation: after the step, before zero_grad
            on_step(model, state.step + 1)
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        loss_window.append(loss_value)
        state.train_time_s += time.perf_counter() - started
        if state.step % spec.eval_interval == 0 or state.step == spec.max_steps:
            started = time.perf_counter()
            metrics = evaluate(model, data.splits["validation"], data.pad_token_id, spec.task,
                               batch_size=spec.eval_batch_size, device=device, amp_dtype=amp_dtype)
            state.eval_time_s += time.perf_counter() - started
            if latency_ms is None:  # the adapter's structure, hence its latency, does not change
                latency_ms = measure_latency(model, data.splits["validation"], data.pad_token_id, device=device,
                                             amp_dtype=amp_dtype)
            report: dict[str, Any] = {
                **metrics,
                "train_loss": float(np.mean(loss_window)),
                "step": state.step,
                "final": state.step >= spec.max_steps,
                "trainable_params": built.trainable_params,
                "trainable_share": built.trainable_share,
                "train_time_s": state.train_time_s,
                "eval_time_s": state.eval_time_s,
                "setup_time_s": setup_time_s,
                "latency_ms": latency_ms,
                "peak_memory_mb": memory.peak_mb(),
            }
            judged = spec.trivial.judge(metrics) if spec.trivial is not None else None
            if judged is not None:
                report[Metric.AT_TRIVIAL] = 1.0 if judged.at_trivial else 0.0
                report[Metric.RUNG_SCORE] = judged.score
            over = [k for k, limit in spec.limits.items()
                    if isinstance(report.get(k), (int, float)) and float(report[k]) > limit]
            if over:
                report["infeasible"] = 1.0  # numeric, so MLflow records why the trial stopped
            loss_window.clear()
            state.history.append({k: float(v) for k, v in report.items() if isinstance(v, (int, float))})
            state.optimizer = optimizer.state_dict()
            state.scheduler = scheduler.state_dict()
            on_eval(report, state)
            if over:
                break
    return state


class BestWeights:
    """The trained weights at the best evaluation so far, kept in host memory, so a training can
    end on them rather than on its last step (``transformers``' ``load_best_model_at_end``).

    Only what training changes is copied: the parameters that require a gradient (an adapter's
    and its head's, a small share of the model), and the peft config, which some methods rewrite
    while training (AdaLoRA's ``rank_pattern``, which its saved weights are cut to)."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric, self.mode = metric, mode
        self.value: float | None = None
        self.step: int | None = None
        self._weights: dict[str, torch.Tensor] = {}
        self._peft_config: Any = None

    def improves(self, value: Any) -> bool:
        """Whether ``value`` is finite and better than the kept one (the first finite one is)."""
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value > self.value if self.mode == "max" else value < self.value

    def offer(self, model: nn.Module, metrics: Mapping[str, Any], step: int) -> bool:
        """Keep ``model``'s weights if ``metrics`` improve on the kept evaluation; True if kept."""
        value = metrics.get(self.metric)
        if value is None or not self.improves(value):
            return False
        self.value, self.step = float(value), step
        self._weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                         if p.requires_grad}
        self._peft_config = copy.deepcopy(getattr(model, "peft_config", None))
        return True

    def restore(self, model: nn.Module) -> None:
        """Put the kept weights back into ``model`` (a no-op before the first kept evaluation)."""
        if self.step is None:
            return
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self._weights:
                    p.copy_(self._weights[name].to(p.device))
        if self._peft_config is not None:
            model.peft_config = copy.deepcopy(self._peft_config)


def save_checkpoint(built: BuiltAdapter, state: TrainState, directory: Path) -> None:
    """Adapter (peft format) plus optimizer/scheduler state and the metric history."""
    built.model.save_pretrained(str(directory))
    torch.save({"step": state.step, "train_time_s": state.train_time_s, "eval_time_s": state.eval_time_s,
                "optimizer": state.optimizer, "scheduler": state.scheduler, "history": state.history},
               directory / TRAINING_STATE_FILE)


def adapter_size_mb(directory: Path) -> float:
    """Size in MiB of the adapter weights a user ships for the adapter saved in ``directory``.

    A PiSSA/OLoRA checkpoint is exported as a LoRA of twice its rank (``export_adapter``), so
    its lora_A/lora_B tensors count twice: what a trial reports is what would be registered."""
    size = sum(f.stat().st_size for f in directory.glob("adapter_model.*"))
    weights = directory / "adapter_model.safetensors"
    if weights.is_file() and (directory / "adapter_config.json").is_file() and rewrites_base(directory):
        # deferred: imported with the checkpoint code that reads adapter weights
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():
                if ".lora_A." in key or ".lora_B." in key:
                    tensor = f.get_slice(key)
                    size += math.prod(tensor.get_shape()) * _DTYPE_BYTES[tensor.get_dtype()]
    return size / 2**20


#: bytes per element of the safetensors dtypes adapters are saved in
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def restore_weights(built: BuiltAdapter, directory: Path) -> None:
    """Load the adapter weights saved by :func:`save_checkpoint` (not its training state)."""
    # deferred: peft imports torch and transformers; imported where an adapter is built; imported with the checkpoint code that reads adapter weights
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(built.model, load_file(str(directory / "adapter_model.safetensors")))


def checkpoint_step(directory: Path) -> int:
    """The training steps behind the checkpoint :func:`save_checkpoint` wrote to ``directory``."""
    return int(torch.load(directory / TRAINING_STATE_FILE, weights_only=False)["step"])


def restore_checkpoint(built: BuiltAdapter, directory: Path) -> TrainState:
    """Load adapter weights and training state saved by :func:`save_checkpoint`."""
    restore_weights(built, directory)
    saved = torch.load(directory / TRAINING_STATE_FILE, weights_only=False)
    return TrainState(step=saved["step"], train_time_s=saved["train_time_s"], eval_time_s=saved["eval_time_s"],
                      optimizer=saved["optimizer"], scheduler=saved["scheduler"], history=saved["history"])


#: peft initialisations that rewrite the base weights they adapt (W_res = W - B0·A0).
BASE_REWRITING_INITS = ("pissa", "olora")


def rewrites_base(adapter_dir: Path) -> bool:
    """Whether the saved adapter only reproduces its model on a base rewritten the same way."""

    saved = json.loads((adapter_dir / "adapter_config.json").read_text())
    return str(saved.get("init_lora_weights", "")).lower().startswith(BASE_REWRITING_INITS)


def export_adapter(spec: StudySpec, config: Mapping[str, Any], checkpoint_dir: Path, out_dir: Path) -> None:
    """The adapter a user gets from a trial's checkpoint: peft's files without the training state.

    A PiSSA/OLoRA trial trained on rewritten base weights, so its checkpoint is converted with
    peft's ``path_initial_model_for_weight_conversion`` into a plain LoRA adapter (rank 2r:
    ``ΔW = BA - B0·A0``) for the *unchanged* base model, loadable like any other adapter. The
    initial ``B0, A0`` come from rebuilding the trial's adapter: same seed, same decomposition.
    """

    shutil.copytree(checkpoint_dir, out_dir, ignore=shutil.ignore_patterns(TRAINING_STATE_FILE))
    if not rewrites_base(checkpoint_dir):
        return
    built = build_adapter(spec, config)
    # deferred: peft imports torch and transformers; imported where an adapter is built; imported with the checkpoint code that reads adapter weights
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    trained = load_file(str(checkpoint_dir / "adapter_model.safetensors"))
    with tempfile.TemporaryDirectory(prefix="autopeft-init-") as tmp:
        initial = Path(tmp) / "initial"
        built.model.save_pretrained(str(initial))  # B0, A0 as initialised
        set_peft_model_state_dict(built.model, trained)  # B, A as trained
        for stale in out_dir.glob("adapter_*"):
            stale.unlink()
        built.model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(initial))
    # peft 0.21's conversion keeps only the lora_A/lora_B tensors: put back the rest of the
    # trained adapter (the task head peft saves as modules_to_save), unchanged by the conversion
    weights_file = str(out_dir / "adapter_model.safetensors")
    converted = load_file(weights_file)
    kept = {k: v for k, v in trained.items() if k not in converted and ".lora_A." not in k and ".lora_B." not in k}
    if kept:
        save_file({**converted, **kept}, weights_file, metadata={"format": "pt"})
