"""``autopeft promote``, ``rollback``, ``export`` and ``models`` through the typer app, on a registry
of tag-only versions: refused → exit 1 with both numbers, unknown → 2, thresholds from --config."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from autopeft.cli.app import app


def test_cli_exit_codes_and_config_thresholds(registry, model_name, registry_store, tmp_path):
    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, "--tracking-uri", registry_store])
        return result.exit_code, " ".join(result.output.split())

    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"promotion": {"min_metric": 0.85}}))
    code, output = cli("promote", model_name, "--version", "1", "--config", str(config))
    assert code == 1 and "0.8000 misses the threshold 0.8500" in output, output
    code, output = cli("promote", model_name, "--version", "1", "--config", str(config), "--min-metric", "0.5")
    assert code == 0 and "moved from no version to version 1" in output, output  # the flag wins
    code, output = cli("promote", model_name, "--version", "2")
    assert code == 1 and "0.7000 is worse than production version 1 test accuracy 0.8000" in output, output
    config.write_text(yaml.safe_dump({"promotion": {"min_metrc": 0.85}}))
    code, output = cli("promote", model_name, "--version", "3", "--config", str(config))
    assert code == 2 and "promotion.min_metrc" in output, output
    code, output = cli("rollback", "no-such-model")
    assert code == 2 and "no registered model named 'no-such-model'" in output, output
    code, output = cli("export", f"{model_name}@staging", "--out", str(tmp_path / "x"))
    assert code == 2 and "no version with alias 'staging'" in output, output
    code, output = cli("models", model_name)
    assert code == 0 and "production history: v1 (promote" in output, output
    assert str(registry.by_alias(model_name, "production").version) == "1"
