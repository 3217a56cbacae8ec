"""``autopeft promote``, ``rollback``, ``export`` and ``models`` through the typer app, on a registry
of tag-only versions: refused → exit 1 with both numbers, unknown → 2, thresholds from --config."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from autopeft.cli.app import app
from tests.cli.test_bad_input import closed_port


def test_cli_exit_codes_and_config_thresholds(registry, model_name, registry_store, tmp_path):
    def cli(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, [*args, "--tracking-uri", registry_store])
        return result.exit_code, " ".join(result.output.split())

    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({"promotion": {"min_metric": 0.85}}))
    code, output = cli("promote", model_name, "--version", "1", "--config", str(config))
    assert code == 1 and "0.8000 misses the threshold 0.8500" in output, output
    # a reason that reads as rich markup is stored, and shown by `models`, as written
    code, output = cli("promote", model_name, "--version", "1", "--config", str(config), "--min-metric", "0.5",
                       "--reason", "[/x] [bold]re-run")
    assert code == 0 and "moved from no version to version 1" in output, output  # the flag wins
    code, output = cli("promote", model_name, "--version", "2")
    assert code == 1 and "0.7000 is worse than production version 1 test accuracy 0.8000" in output, output
    config.write_text(yaml.safe_dump({"promotion": {"min_metrc": 0.85}}))
    code, output = cli("promote", model_name, "--version", "3", "--config", str(config))
    assert code == 2 and "promotion.min_metrc" in output, output
    code, output = cli("promote", model_name, "--version", "1", "--test-data", str(tmp_path / "held-out.csv"))
    assert (code, output) == (2, f"error: --test-data: no such file {str(tmp_path / 'held-out.csv')!r}"), output
    code, output = cli("promote", model_name, "--version", "1", "--test-data", str(tmp_path))
    assert code == 2 and output.startswith(f"error: --test-data: {str(tmp_path)!r} is a folder; expected one data file"), output
    # test data behind a URL (it was a typer Path, which collapsed s3:// to s3:/): fetched before
    # any adapter is downloaded, its credentials never shown
    port = closed_port()
    code, output = cli("promote", model_name, "--version", "3", "--test-data", f"http://me:secret@127.0.0.1:{port}/held.csv")
    assert code == 2 and output.startswith(f"error: --test-data: cannot fetch 'http://127.0.0.1:{port}/held.csv'"), output
    assert "secret" not in output
    code, output = cli("promote", model_name, "--version", "3", "--test-data", str(config), "--encoding", "utf9")
    assert code == 2 and output.startswith("error: --encoding: expected a text encoding Python knows"), output
    code, output = cli("rollback", "no-such-model")
    assert code == 2 and "no registered model named 'no-such-model'" in output, output
    code, output = cli("export", f"{model_name}@staging", "--out", str(tmp_path / "x"))
    assert code == 2 and "no version with alias 'staging'" in output, output
    code, output = cli("models", model_name)
    assert code == 0 and "production history: v1 (promote: [/x] [bold]re-run" in output, output
    assert str(registry.by_alias(model_name, "production").version) == "1"


def test_models_reads_whole_in_an_80_column_log(tmp_path):
    """``autopeft models`` piped at COLUMNS=80: no line is longer, no value is cut into pieces;
    a wide terminal gets the table, one row per version."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from autopeft.registry.promotion import promote
    from autopeft.registry.tracking import connect
    from autopeft.registry.versions import Registry
    from tests.registry.tiny_adapter import adapter_folder, lineage, register

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, experiment = connect(uri, "narrow")
    register(client, uri, experiment, adapter_folder(tmp_path), "sentiment", lineage())
    promote(Registry.open(uri), "sentiment", version="1", reason="the first adapter of the sentiment model, "
                                                               "reviewed by the team and signed off")
    repo = Path(__file__).resolve().parents[2]

    def models(*args: str, columns: int) -> list[str]:
        env = {**os.environ, "COLUMNS": str(columns), "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8",
               "PYTHONPATH": str(repo)}
        done = subprocess.run([sys.executable, "-m", "autopeft.cli", "models", *args, "--tracking-uri", uri],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    lines = models("sentiment", columns=80)
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    for value in ("version 1  candidate, production", "adapter     lora r=8 alpha=16 dropout=0.05",
                  "placement   layers all, roles query,value", "accuracy    val 0.8125, test 0.7500",
                  "trainable   0.165% (37,634 parameters)", "study/trial sst2-study / 263c4fb2",
                  "base model  minilm @953f9c0d4634", "production history: v1 (promote: the first adapter"):
        assert any(value in line for line in lines), (value, "\n".join(lines))

    lines = models(columns=80)
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    assert any("candidate→v1, production→v1" in line for line in lines), "\n".join(lines)

    lines = models("sentiment", columns=300)
    row = next(line for line in lines if "sst2-study" in line)
    for cell in ("candidate, production", "lora r=8 alpha=16 dropout=0.05", "layers all, roles query,value",
                 "0.8125", "0.7500", "0.165%", "minilm @953f9c0d4634", "33d3c8cd / 63ed6907"):
        assert cell in row, "\n".join(lines)
