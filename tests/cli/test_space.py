"""``autopeft adapters`` and ``autopeft space``: what a user reads before a search."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from autopeft.adapters import families
from autopeft.cli.app import app
from tests.tiny_tasks import save_vit

runner = CliRunner()


def _run(*args: str):
    # wide enough that rich does not fold the names the assertions look for
    return runner.invoke(app, list(args), env={"COLUMNS": "400"})


def test_adapters_lists_every_family_with_its_parameters():
    result = _run("adapters")
    assert result.exit_code == 0, result.output
    for name, family in families().items():
        assert name in result.output
        for param in family.defaults:
            assert f"{param} =" in result.output
    assert "pissa" in result.output and "olora" in result.output  # lora's init choices


def test_space_on_minilm_shows_kept_and_excluded_families_and_placements(minilm_path):
    result = _run("space", "all-adapters", "--model", "minilm")
    assert result.exit_code == 0, result.output
    assert "6 layers" in result.output
    assert "prefix_tuning" in result.output and "excluded" in result.output and "past key values" in result.output
    assert "serial_adapter" in result.output and "kept" in result.output
    # the q+v placement resolves to 12 modules: query and value in each of the 6 layers
    assert "12: bert.encoder.layer.0.attention.self.query" in result.output
    assert "training of ia3: learning_rate = 0.003..0.05 (log)" in result.output  # its own range


def test_space_on_vit_uses_the_image_classification_model(tmp_path):
    location = save_vit(tmp_path / "vit")
    space = tmp_path / "space.yaml"
    space.write_text("adapters: {lora: {}, ia3: {}}\nplacement: {layers: all, roles: [query, value]}\n")
    result = _run("space", str(space), "--model", location, "--task", "image_classification")
    assert result.exit_code == 0, result.output
    assert "2 layers" in result.output and "4: vit.layers.0.attention.q_proj" in result.output
    assert "ia3" in result.output and "excluded" not in result.output


@pytest.mark.parametrize("args,message", [
    (("space", "nonsense", "--model", "minilm"), "no file 'nonsense' and no ready space"),
    (("space", "lora-family", "--model", "minilm", "--task", "translation"), "translation"),
])
def test_space_bad_input_is_one_line_and_exit_2(args, message, minilm_path):
    result = _run(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_space_names_the_placement_choices_the_model_cannot_take(task_models):
    result = _run("space", "llm-sft", "--model", task_models["causal_lm"], "--task", "causal_lm")
    assert result.exit_code == 0, result.output
    assert "placement.roles query,value: excluded: matches no module of this model (roles it has: qkv" in result.output
    assert "placement.layers last-4: excluded: 'last-4' asks for 4 layers, the model has 2" in result.output
