"""Every adapter family on tiny random models of each architecture: builds, trains two steps with
the loss changing, saves, reloads into a fresh base model with the same outputs, and counts its
trainable parameters as peft does. Families an architecture cannot run are excluded up front,
with the reason this table expects."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model

from autopeft.adapters import AdapterTarget, families, load_adapter
from autopeft.model.placement import parse_layers, resolve, scan
from autopeft.space import ChoiceSpec, RangeSpec
from tests.tiny_models import inputs_for, tiny_model, train_two_steps

ARCHS = ("bert", "gpt2", "llama", "t5", "vit")

#: (family, architecture) pairs that must be excluded before a search, and a word of the reason.
EXCLUDED = {
    **{(f, "gpt2"): "Conv1D" for f in ("oft", "boft", "hra", "loha", "lokr", "bitfit", "miss", "shira", "c3a", "delora")},
    **{(f, "vit"): "no token ids" for f in ("prompt_tuning", "p_tuning", "prefix_tuning")},
    **{(f, "t5"): "input embeddings" for f in ("prompt_tuning", "p_tuning")},
    # transformers 5 renamed the forward's past_key_values to cache; peft 0.21 looks for the old
    # name on sequence classifiers and raises "Model does not support past key values"
    **{("prefix_tuning", a): "past key values" for a in ("bert", "gpt2", "llama", "t5")},
}


def _first(spec):
    if isinstance(spec, ChoiceSpec):
        return spec.choices[0]
    if isinstance(spec, RangeSpec):
        return spec.low
    return spec


def _params(name: str) -> dict:
    params = {k: _first(v) for k, v in families()[name].defaults.items()}
    if name == "autopeft_adapter":
        params.update(serial_size=8, parallel_size=8)  # both adapters in one layer
    return params


def _target(model, family, max_steps: int = 2) -> AdapterTarget:
    structure = scan(model)
    names = resolve(structure, "all", "all-linear") if family.uses_placement else []
    return AdapterTarget(module_names=names, structure=structure, peft_task_type="SEQ_CLS",
                         layers=parse_layers("all", structure.num_layers), max_steps=max_steps)


CASES = [(f, a) for f in sorted(families()) for a in ARCHS]


@pytest.mark.parametrize("name,arch", CASES, ids=[f"{f}-{a}" for f, a in CASES])
def test_family_trains_saves_and_reloads(name, arch, tmp_path):
    family = families()[name]
    base = tiny_model(arch)
    reason = family.exclusion_reason(scan(base))
    if (name, arch) in EXCLUDED:
        assert reason and EXCLUDED[name, arch] in reason
        return
    assert reason is None

    model = get_peft_model(base, family.build(_params(name), _target(base, family)))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == model.get_nb_trainable_parameters()[0] > 0

    batch = inputs_for(arch)
    losses = train_two_steps(model, family, batch, lr=1e-2)
    assert losses[0] != losses[1]

    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    model.save_pretrained(str(tmp_path))
    reloaded = load_adapter(tiny_model(arch), tmp_path).eval()
    with torch.no_grad():
        got = reloaded(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_adalora_reallocates_rank_during_training():
    family = families()["adalora"]
    base = tiny_model("bert")
    params = {**_params("adalora"), "init_r": 4, "target_r": 1, "warmup_share": 0.0, "final_share": 0.5}
    model = get_peft_model(base, family.build(params, _target(base, family, max_steps=4)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = inputs_for("bert")
    for step in range(1, 5):
        model(**batch).loss.backward()
        optimizer.step()
        family.on_step(model, step)
        optimizer.zero_grad()
    # after the final allocation the config carries a per-module rank mask below init_r
    pattern = model.peft_config["default"].rank_pattern
    assert pattern and sum(sum(m) for m in pattern.values()) < 4 * len(pattern)


@pytest.mark.parametrize(("init_r", "target_r", "max_steps"), [
    (4, 4, 10),    # nothing to prune: peft ranks the scores with kthvalue(k=0), which raises
    (4, 3, 100),   # and where ranks are pruned, the final allocation still holds the target budget
])
def test_adalora_steps_where_no_rank_is_pruned_do_not_fail(init_r, target_r, max_steps):
    family = families()["adalora"]
    base = tiny_model("bert")
    params = {**_params("adalora"), "init_r": init_r, "target_r": target_r, "warmup_share": 0.1, "final_share": 0.2}
    model = get_peft_model(base, family.build(params, _target(base, family, max_steps=max_steps)))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = inputs_for("bert")
    for step in range(1, max_steps + 1):  # through warm-up, pruning and the final allocation
        model(**batch).loss.backward()
        optimizer.step()
        family.on_step(model, step)
        optimizer.zero_grad()
    pattern = model.peft_config["default"].rank_pattern
    kept = sum(sum(m) for m in pattern.values()) if pattern else None
    if init_r == target_r:
        assert kept is None  # every rank kept, as asked
    else:
        assert kept == target_r * len(pattern)  # the final budget was allocated


def test_bottleneck_positions_wrap_the_right_modules():
    base = tiny_model("bert")
    family = families()["serial_adapter"]
    model = get_peft_model(base, family.build({**_params("serial_adapter"), "position": "houlsby"}, _target(base, family)))
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
               if type(m).__name__ == "BottleneckLayer"}
    assert wrapped == {f"bert.encoder.layer.{i}.{m}" for i in (0, 1) for m in ("attention.output.dense", "output.dense")}
    base = tiny_model("bert")
    model = get_peft_model(base, family.build({**_params("serial_adapter"), "position": "pfeiffer"},
                                              _target(base, family)))
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules()
               if type(m).__name__ == "BottleneckLayer"}
    assert wrapped == {"bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"}


def test_bottleneck_adapter_starts_as_identity():
    base = tiny_model("llama")
    with torch.no_grad():
        before = base(**inputs_for("llama")).logits
    family = families()["autopeft_adapter"]
    model = get_peft_model(base, family.build({**_params("autopeft_adapter")}, _target(base, family)))
    with torch.no_grad():
        after = model(**inputs_for("llama")).logits
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("name", ["serial_adapter", "parallel_adapter", "autopeft_adapter"])
def test_bottleneck_adapter_loads_with_peft_given_its_config_and_refuses_a_plain_load(name, tmp_path):
    from peft import PeftModel

    from autopeft.adapters.bottleneck import SAVED_PEFT_TYPE, BottleneckConfig

    family = families()[name]
    base = tiny_model("gpt2")
    model = get_peft_model(base, family.build(_params(name), _target(base, family)))
    train_two_steps(model, family, inputs_for("gpt2"), lr=5e-2)
    model.eval()
    with torch.no_grad():
        expected = model(**inputs_for("gpt2")).logits
    model.save_pretrained(tmp_path)
    config = BottleneckConfig.from_pretrained(str(tmp_path))
    assert type(config) is BottleneckConfig and config.serial_size + config.parallel_size > 0
    reloaded = PeftModel.from_pretrained(tiny_model("gpt2"), str(tmp_path), config=config).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs_for("gpt2")).logits, expected)
    # without the config peft would build a LoRA of the wrong shape: the saved type stops it
    with pytest.raises(KeyError, match=SAVED_PEFT_TYPE):
        PeftModel.from_pretrained(tiny_model("gpt2"), str(tmp_path))


def test_lora_rank_pattern_reaches_peft():
    base = tiny_model("llama")
    family = families()["lora"]
    params = {**_params("lora"), "r": 4, "rank_pattern": "2,8"}
    model = get_peft_model(base, family.build(params, _target(base, family)))
    ranks = {n.removeprefix("base_model.model."): m.r["default"] for n, m in model.named_modules()
             if hasattr(m, "lora_A") and "default" in getattr(m, "r", {})}
    assert {r for n, r in ranks.items() if ".layers.0." in n} == {2}
    assert {r for n, r in ranks.items() if ".layers.1." in n} == {8}
