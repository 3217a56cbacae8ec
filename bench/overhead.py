"""Overhead, concurrency and the measured effect of autopeft's performance choices.

Each function returns plain numbers (seconds unless named otherwise); bench/NOTES.md says what
each one means. All run on CPU with the default LoRA config of ``methods.DEFAULT_CONFIG``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from bench.methods import DEFAULT_CONFIG, Context, run_autopeft, search_config, tokenized

FIXED_SPACE = {
    "adapters": {"lora": {"r": 8, "alpha": 8, "dropout": 0.0}},
    "placement": {"layers": "all", "roles": ["query", "value"]},
    "learning_rate": 2e-4, "batch_size": 16, "warmup_ratio": 0.0,
}


def step_times(ctx: Context, steps: int, threads: int | None = None, bare: bool = True) -> dict[str, float]:
    """Seconds per training step of the same model, adapter and batches: a bare PyTorch loop
    (collate, forward, backward, AdamW step) vs ``training.train`` (what a trial runs)."""
    import torch

    from autopeft.engine.training import build_adapter, train

    spec, data = tokenized(ctx)
    spec = dataclasses.replace(spec, max_steps=steps, eval_interval=steps)
    torch.set_num_threads(threads or ctx.cpus)
    bare_s = float("nan")
    if bare:
        bare_s = _bare_loop(spec, data, steps, ctx.seed)
    built = build_adapter(spec, DEFAULT_CONFIG)
    state = train(built, spec, data, DEFAULT_CONFIG, on_eval=lambda m, s: None, device=torch.device("cpu"))
    return {"bare_loop_step_s": bare_s, "training_py_step_s": state.train_time_s / max(1, state.step),
            "threads": float(torch.get_num_threads())}


def _bare_loop(spec: Any, data: Any, steps: int, seed: int) -> float:
    import torch

    from autopeft.engine.training import batch_indices, build_adapter
    from autopeft.tasks import collate

    split = data.splits["train"]

    built = build_adapter(spec, DEFAULT_CONFIG)
    model = built.model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    for step in range(2):  # warm-up (first-call allocations), not timed
        batch = collate(split, batch_indices(len(split), 16, step, seed), data.pad_token_id)
        model(**batch).loss.backward()
        opt.zero_grad(set_to_none=True)
    started = time.perf_counter()
    for step in range(steps):
        batch = collate(split, batch_indices(len(split), 16, step, seed), data.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps


def concurrency(ctx: Context, trials: int) -> dict[str, Any]:
    """Trials per hour with 1 concurrent trial x ``ctx.cpus`` CPUs vs 2 x ``ctx.cpus/2`` (torch
    threads follow the trial's CPU share), same fixed config, no early stopping. Each run is a
    real autopeft search; its overhead figures come from the same runs."""
    out: dict[str, Any] = {}
    for concurrent in (1, 2):
        cpus = max(1, ctx.cpus // concurrent)
        cfg = search_config(ctx, f"conc{concurrent}", space=FIXED_SPACE, sampler="random", pruning=False,
                            trials=trials, prior=False, concurrent=concurrent, cpus_per_trial=cpus, step_budget=False)
        rec = run_autopeft(ctx, f"conc{concurrent}", cfg)
        tl = rec["timeline"]
        span = max(tl["ended"].values()) - min(tl["started"].values())
        out[f"c{concurrent}"] = {
            "concurrent_trials": concurrent, "cpus_per_trial": cpus, "trials": len(rec["trials"]),
            "fit_span_s": span, "trials_per_hour": 3600.0 * len(rec["trials"]) / span,
            "trial_step_s": float(np.median([t["train_time_s"] / max(1, t["steps"]) for t in rec["trials"]])),
            "record": rec,
        }
    return out


def tokenize_cache(ctx: Context) -> dict[str, float]:
    """Tokenizing every split vs loading the fingerprinted cache that later studies reuse."""
    import tempfile
    from pathlib import Path

    from autopeft.config import DataConfig, ModelConfig
    from autopeft.data import load
    from autopeft.model.loading import load_tokenizer, resolve_location
    from autopeft.tasks import get_task, tokenize

    location = resolve_location(ctx.model)
    cfg = DataConfig(train=str(ctx.files.train), validation=str(ctx.files.validation), test=str(ctx.files.test),
                     text_columns=ctx.files.text_columns, label_column=ctx.files.label_column)
    raw = load(cfg, get_task(ctx.files.kind), seed=0)
    tok = load_tokenizer(ModelConfig(name_or_path=ctx.model, max_length=ctx.max_length), location)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tokenize(raw, tok, ctx.max_length, tokenizer_id=location, cache_dir=Path(tmp))
        t1 = time.perf_counter()
        tokenize(raw, tok, ctx.max_length, tokenizer_id=location, cache_dir=Path(tmp))
        t2 = time.perf_counter()
    return {"tokenize_s": t1 - t0, "cache_hit_s": t2 - t1, "examples": float(sum(raw.sizes.values()))}


def eval_padding(ctx: Context, repeats: int = 1) -> dict[str, float]:
    """One pass over validation: length-sorted batches with dynamic padding (what evaluate does)
    vs dynamic padding in file order vs every batch padded to max_length."""
    import torch

    from autopeft.data import TokenizedSplit
    from autopeft.engine.training import build_adapter
    from autopeft.tasks import collate

    spec, data = tokenized(ctx)
    torch.set_num_threads(ctx.cpus)
    model = build_adapter(spec, DEFAULT_CONFIG).model.eval()
    split = data.splits["validation"]
    bs = ctx.eval_batch_size

    def run(order: np.ndarray, pad_to: int | None) -> float:
        s = split
        if pad_to is not None:  # pad every example to max_length with the pad id, mask 0 there
            s = TokenizedSplit(input_ids=[x + [data.pad_token_id] * (pad_to - len(x)) for x in split.input_ids],
                               token_type_ids=[x + [0] * (pad_to - len(x)) for x in split.token_type_ids]
                               if split.token_type_ids is not None else None, labels=split.labels,
                               task=split.task)
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(repeats):
                for start in range(0, len(order), bs):
                    batch = collate(s, order[start:start + bs], data.pad_token_id)
                    if pad_to is not None:
                        batch["attention_mask"] = (torch.arange(pad_to)[None, :] <
                                                   torch.tensor([len(split.input_ids[i]) for i in order[start:start + bs]])[:, None]).long()
                    model(**batch)
        return (time.perf_counter() - t0) / repeats

    natural = np.arange(len(split))
    sorted_ = np.argsort(split.lengths(), kind="stable")
    run(sorted_[:bs], None)  # warm-up
    return {"sorted_dynamic_s": run(sorted_, None), "file_order_dynamic_s": run(natural, None),
            "fixed_max_length_s": run(natural, ctx.max_length), "examples": float(len(split))}


def thread_scaling(ctx: Context, steps: int) -> dict[str, float]:
    """training.py's step time with torch threads 1 vs ``ctx.cpus`` (what a trial sets from its
    CPU share) on the same config and batches."""
    out = {}
    for threads in sorted({1, ctx.cpus}):
        out[f"threads_{threads}_step_s"] = step_times(ctx, steps, threads=threads, bare=False)["training_py_step_s"]
    return out
