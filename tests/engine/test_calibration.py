"""The learning-rate range test on toy modules: two tasks whose best learning rates differ by 10x
get ranges about 10x apart; a diverging or NaN loss stops the probe and caps the range; a loss
that never falls keeps the space's range (None); and the thin wrapper drives a real adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autopeft.engine.calibration import LrCurve, lr_schedule, probe_adapter, range_test, suggest_range
from autopeft.engine.training import batch_indices

#: 10 steps per decade from 1e-6 to 10: a 10x shift of the best rate is 10 steps of the sweep.
LR_MIN, LR_MAX, STEPS = 1e-6, 10.0, 71


def regression_task(scale: float, *, n: int = 512, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = X w + noise, times ``scale``. Adam's update is invariant to the gradient's scale, so
    with the target (and the weights that fit it) ``scale`` times larger, Adam at rate ``lr`` on
    this task moves exactly as Adam at ``lr / scale`` on the task with scale 1: the best rate
    is ``scale`` times higher and the loss curve is the same, ``scale**2`` times higher.
    (Scaling the features instead would move SGD's best rate, not Adam's.)"""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    return x, scale * (x @ w + 0.1 * torch.randn(n, 1, generator=g))


def adam_step(x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64, seed: int = 0):
    """A fresh linear model and a step function ``lr -> loss`` on the study's batches (AdamW as
    ``train`` sets it up), and the model."""
    model = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR_MIN, weight_decay=0.0)
    taken = 0

    def step(lr: float) -> float:
        nonlocal taken
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.as_tensor(batch_indices(len(x), batch_size, taken, seed))
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        taken += 1
        return float(loss.detach())

    return step, model


def best_fixed_lr(x: torch.Tensor, y: torch.Tensor, steps: int = 50) -> float:
    """The rate whose short training at that one rate ends with the lowest full-data loss."""
    grid = lr_schedule(1e-3, 10.0, 21)  # 5 per decade
    finals = []
    for lr in grid:
        step, model = adam_step(x, y)
        for _ in range(steps):
            step(float(lr))
        with torch.no_grad():
            final = float(torch.nn.functional.mse_loss(model(x), y))
        finals.append(final if math.isfinite(final) else math.inf)
    return float(grid[int(np.argmin(finals))])


def test_two_tasks_whose_best_rates_differ_10x_get_ranges_10x_apart() -> None:
    suggested, best = [], []
    for scale in (1.0, 10.0):
        x, y = regression_task(scale)
        best.append(best_fixed_lr(x, y))
        step, _ = adam_step(x, y)
        found = suggest_range(range_test(step, lr_min=LR_MIN, lr_max=LR_MAX, steps=STEPS))
        assert found is not None
        # the range holds the rate that trains this task best, and the search samples it
        assert found.low <= best[-1] <= found.high, (found, best[-1])
        suggested.append(found)
    # the construction: the best rates really are 10x apart
    assert best[1] / best[0] == pytest.approx(10.0, rel=0.01)
    # and the calibration finds about that factor, at each end of the range
    for pick in ("suggested", "low", "high"):
        ratio = getattr(suggested[1], pick) / getattr(suggested[0], pick)
        assert 5.0 <= ratio <= 20.0, (pick, ratio, suggested)


def falling_then_diverging(lr: float) -> float:
    """A loss that falls from 1 around lr 1e-3 and blows up past 1e-1 (no noise)."""
    return 1.0 / (1.0 + (lr / 1e-3) ** 2) + 0.05 + (lr / 1e-1) ** 4


def test_divergence_stops_the_probe_and_the_range_stays_below_it() -> None:
    curve = range_test(falling_then_diverging, lr_min=LR_MIN, lr_max=LR_MAX, steps=STEPS)
    assert curve.stopped == "diverged"
    assert curve.steps < STEPS and curve.lrs[-1] < LR_MAX  # the rates above were never tried
    found = suggest_range(curve)
    assert found is not None
    assert found.high < 1e-1  # below where the loss rose
    assert found.low < found.suggested <= found.high
    assert 1e-4 <= found.suggested <= 1e-2  # the fall is around 1e-3


def test_a_nan_loss_stops_the_probe_and_only_the_finite_part_counts() -> None:
    def nan_above(lr: float) -> float:
        return math.nan if lr > 3e-2 else falling_then_diverging(lr)

    curve = range_test(nan_above, lr_min=LR_MIN, lr_max=LR_MAX, steps=STEPS)
    assert curve.stopped == "non-finite" and math.isnan(curve.losses[-1])
    found = suggest_range(curve)
    assert found is not None and found.high <= 3e-2


@pytest.mark.parametrize("shape", ["flat", "noise", "rising"])
def test_a_loss_that_never_falls_keeps_the_space_range(shape: str) -> None:
    rng = np.random.default_rng(0)

    def loss(lr: float) -> float:
        if shape == "flat":
            return 0.69
        if shape == "noise":
            return 0.69 + 0.02 * float(rng.standard_normal())
        return 0.69 + lr

    assert suggest_range(range_test(loss, lr_min=LR_MIN, lr_max=LR_MAX, steps=STEPS)) is None


def test_the_range_does_not_depend_on_the_scale_of_the_loss() -> None:
    curve = range_test(falling_then_diverging, lr_min=LR_MIN, lr_max=LR_MAX, steps=STEPS)
    scaled = LrCurve(lrs=curve.lrs, losses=[100 * v for v in curve.losses], stopped=curve.stopped)
    assert suggest_range(scaled) == suggest_range(curve)


def test_too_short_a_curve_suggests_nothing() -> None:
    assert suggest_range(LrCurve(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 0.2])) is None


def test_the_probe_trains_a_real_adapter_at_growing_rates(task_models, tmp_path) -> None:
    from autopeft.config import ModelConfig
    from autopeft.engine.training import StudySpec, build_adapter
    from tests.tiny_tasks import tokenized_kind

    kind = "token_classification"
    location = task_models[kind]
    _, data = tokenized_kind(kind, location, tmp_path)
    spec = StudySpec(model=ModelConfig(name_or_path=location, max_length=32), location=location, task=kind,
                     label_names=data.label_names, max_steps=10, eval_interval=5, eval_batch_size=8, seed=0,
                     metric="accuracy", mode="max")
    config = {"adapter": "lora", "learning_rate": 1.0, "batch_size": 8, "placement.layers": "all",
              "placement.roles": "all-linear", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0}
    built = build_adapter(spec, config)
    before = {k: v.detach().clone() for k, v in built.model.named_parameters() if v.requires_grad}
    curve = probe_adapter(built, spec, data, config, lr_min=1e-4, lr_max=1e-1, steps=6,
                          device=torch.device("cpu"))
    assert curve.steps == 6 and curve.stopped == "end" and curve.wall_s > 0
    assert curve.lrs == pytest.approx(list(lr_schedule(1e-4, 1e-1, 6)))  # not the config's learning rate
    assert all(math.isfinite(v) for v in curve.losses)
    after = dict(built.model.named_parameters())
    assert any(not torch.equal(before[k], after[k].detach()) for k in before)  # it trained
