from __future__ import annotations

import pytest

from autopeft.config import ModelConfig
from autopeft.errors import ModelError
from autopeft.model.loading import resolve_location


def test_remote_code_is_off_unless_asked():
    assert ModelConfig(name_or_path="minilm").trust_remote_code is False


def test_pickled_weights_are_refused(tmp_path, tiny_bert):
    tiny_bert.config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match=r"has no \.safetensors weights"):
        resolve_location(str(tmp_path))


def test_safetensors_model_dir_resolves(tmp_path, tiny_bert):
    tiny_bert.save_pretrained(tmp_path)
    assert resolve_location(str(tmp_path)) == str(tmp_path.resolve())


def test_missing_model_dir():
    with pytest.raises(ModelError, match=r"model\.name_or_path: no model directory at '/no/such/dir'"):
        resolve_location("/no/such/dir")
