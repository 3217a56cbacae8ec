"""A learning-rate range test: where does the training loss fall fastest, and where does it diverge?

Plain PyTorch, no Ray, no MLflow. The study runs it once per adapter family before the search
(``autopeft.study.calibration``) and searches each family's learning rate around what it finds.

Why: a fixed learning-rate range fits some families and tasks and misses others by orders of
magnitude (IA3 scales activations from 1 and wants ~100x LoRA's rate; a regression head wants
another again), and a short trial at a wrong rate never leaves the majority-class predictor,
so the search learns nothing from it. A few dozen steps with the rate growing exponentially
(Smith, *Cyclical Learning Rates*, 2017; fastai's ``lr_find``) show where the loss falls per
unit of log-rate fastest, on the task's own data, for about the cost of one short trial.

The core (:func:`range_test`, :func:`suggest_range`) knows nothing of models: it drives a step
function ``lr -> loss``, so it is tested on toy torch modules; :func:`probe_adapter` is the
thin wrapper that makes such a step from a built adapter with ``train``'s AdamW set-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autopeft.adapters import get_family
from autopeft.data import TokenizedData
from autopeft.engine.training import BuiltAdapter, StudySpec, batch_indices, pick_device
from autopeft.tasks import collate

#: One optimizer step at the given learning rate; returns the training loss measured on it.
StepFn = Callable[[float], float]

#: EMA factor of the smoothed loss. fastai's 0.98 averages over ~50 steps, as long as a whole
#: probe here; 0.7 averages over ~3 steps (a third of a decade at the default 50 steps over 6
#: decades): enough to damp batch noise, short enough that the lag stays small.
SMOOTHING = 0.7
#: The probe stops once the smoothed loss exceeds this multiple of its minimum (fastai's 4).
DIVERGE_FACTOR = 4.0
#: The loss "fell" when the smoothed minimum is at least this share below the smoothed start;
#: less is batch noise, and the space's own range is kept.
MIN_DROP = 0.05
#: The calibrated range spans one decade below the steepest point and half a decade above it
#: (capped at the minimum of the loss): the steepest point of a ramp is already fast, since the
#: loss seen at a step lags the rate that caused it, and sustained training at one rate
#: tolerates less than a ramp passing through it.
DECADES_BELOW, DECADES_ABOVE = 1.0, 0.5
#: Width in decades of the window the loss's slope is fitted over.
SLOPE_DECADES = 1.0
#: Steps at the start whose slope is not trusted: the bias-corrected EMA still rests on one or
#: two losses there.
SKIP_START = 2


@dataclass(frozen=True)
class LrRange:
    """A learning-rate range to search (log scale) and the rate the probe found best."""

    low: float
    high: float
    suggested: float

    def text(self) -> str:
        return f"{self.low:.2e}..{self.high:.2e} (steepest at {self.suggested:.2e})"


@dataclass
class LrCurve:
    """What a range test measured: the rate and loss of every step taken, and why it stopped."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    #: "end" (every step taken), "diverged" (smoothed loss past DIVERGE_FACTOR x its minimum)
    #: or "non-finite" (the loss became NaN or infinite).
    stopped: str = "end"
    #: Seconds the steps took (the model's build and load not included).
    wall_s: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses)


def lr_schedule(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """``steps`` rates growing exponentially from ``lr_min`` to ``lr_max`` (both included)."""
    return np.geomspace(lr_min, lr_max, steps)


def smooth(losses: list[float], beta: float = SMOOTHING) -> np.ndarray:
    """Exponential moving average with bias correction (the first values are not pulled to 0)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def range_test(step: StepFn, *, lr_min: float, lr_max: float, steps: int, smoothing: float = SMOOTHING,
               diverge_factor: float = DIVERGE_FACTOR) -> LrCurve:
    """Call ``step`` at exponentially growing rates; stop early once the loss diverges (no point
    training on: every rate above diverges too, and the search will not sample them)."""
    curve = LrCurve()
    started = time.perf_counter()
    best = math.inf
    avg = 0.0
    for i, lr in enumerate(lr_schedule(lr_min, lr_max, steps)):
        loss = float(step(float(lr)))
        curve.lrs.append(float(lr))
        curve.losses.append(loss)
        if not math.isfinite(loss):
            curve.stopped = "non-finite"
            break
        avg = smoothing * avg + (1 - smoothing) * loss
        smoothed = avg / (1 - smoothing ** (i + 1))
        best = min(best, smoothed)
        if i >= SKIP_START and smoothed > diverge_factor * best:
            curve.stopped = "diverged"
            break
    curve.wall_s = time.perf_counter() - started
    return curve


def suggest_range(curve: LrCurve, *, smoothing: float = SMOOTHING, diverge_factor: float = DIVERGE_FACTOR,
                  min_drop: float = MIN_DROP) -> LrRange | None:
    """The range to search around the rate where the smoothed loss falls fastest per unit of
    log-rate, capped at the rate of the smoothed minimum (above it the loss rises, and above
    the divergence point it explodes). None when the loss never fell by ``min_drop``: the
    probe learnt nothing to go by, and the space's own range is kept.

    The slope is a least-squares fit over a window of :data:`SLOPE_DECADES` around each step,
    not the difference of two neighbours: on batches of 16 the step-to-step noise of even the
    smoothed loss is as steep as the real fall. The EMA lags: its value at a step is centred
    ``smoothing / (1 - smoothing)`` steps back, so the rates are read that many steps earlier.

    Pure: the same curve gives the same range. Scale-free in the loss (a task whose loss is
    100x larger gets the same range), so one rule serves classification and regression."""
    end = next((i for i, loss in enumerate(curve.losses) if not math.isfinite(loss)), len(curve.losses))
    if end < SKIP_START + 3:
        return None
    lrs = np.asarray(curve.lrs[:end])
    smoothed = smooth(curve.losses[:end], smoothing)
    # the divergence point: the first step whose smoothed loss is past the factor of the minimum so far
    running_min = np.minimum.accumulate(smoothed)
    over = np.nonzero((smoothed > diverge_factor * running_min) & (np.arange(end) >= SKIP_START))[0]
    stop = int(over[0]) if len(over) else end
    smoothed, lrs = smoothed[:stop], lrs[:stop]
    lowest = int(np.argmin(smoothed))
    log_lr = np.log10(lrs)
    per_step = float(np.mean(np.diff(log_lr)))
    # where the loss stood before it fell: the median of the raw losses of the first half decade
    # (a median, as one bad batch early on is as high as the whole fall)
    start_level = float(np.median(curve.losses[: max(3, round(0.5 / per_step))]))
    if lowest <= SKIP_START or smoothed[lowest] > start_level * (1 - min_drop):
        return None
    # the fall: from the last step still at the start level to the minimum (earlier dips are noise)
    above = np.nonzero(smoothed[: lowest + 1] >= start_level)[0]
    first = max(SKIP_START, int(above[-1]) if len(above) else 0)
    half = max(1, round(SLOPE_DECADES / per_step / 2))
    slopes = np.full(lowest + 1, np.inf)
    for i in range(first, lowest + 1):
        lo, hi = max(first, i - half), min(lowest, i + half) + 1
        if hi - lo >= 2:
            slopes[i] = np.polyfit(log_lr[lo:hi], smoothed[lo:hi], 1)[0]
    lag = round(smoothing / (1 - smoothing))
    steepest = int(np.argmin(slopes))
    suggested = float(lrs[max(0, steepest - lag)])
    cap = float(lrs[max(0, lowest - lag)])
    high = min(suggested * 10**DECADES_ABOVE, cap)
    suggested = min(suggested, high)
    return LrRange(low=suggested / 10**DECADES_BELOW, high=high, suggested=suggested)


def probe_adapter(built: BuiltAdapter, spec: StudySpec, data: TokenizedData, config: Mapping[str, Any], *,
                  lr_min: float, lr_max: float, steps: int, device: torch.device | None = None,
                  amp_dtype: torch.dtype | None = None) -> LrCurve:
    """The range test on a freshly built adapter: ``train``'s AdamW (its weight decay, the same
    trainable parameters, the family's ``on_step``), the study's batches (``batch_indices`` with
    its seed) at ``config["batch_size"]``, no warm-up or decay (the ramp is the schedule)."""
    if device is None:
        device, amp_dtype = pick_device()
    model = built.model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr_min, weight_decay=float(config.get("weight_decay", 0.0)))
    train_split = data.splits["train"]
    batch_size = int(config["batch_size"])
    on_step = get_family(built.family).on_step
    taken = 0

    def step(lr: float) -> float:
        nonlocal taken
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = batch_indices(len(train_split), batch_size, taken, spec.seed)
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(train_split, idx, data.pad_token_id).items()}
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(**batch).loss
        value = float(loss.detach())
        if math.isfinite(value):  # a NaN step would write NaN into the adapter; the test stops anyway
            loss.backward()
            optimizer.step()
            if on_step is not None:
                on_step(model, taken + 1)
        optimizer.zero_grad(set_to_none=True)
        taken += 1
        return value

    return range_test(step, lr_min=lr_min, lr_max=lr_max, steps=steps)
