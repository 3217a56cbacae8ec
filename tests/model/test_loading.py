from __future__ import annotations

import pytest

from autopeft.config import ModelConfig
from autopeft.errors import ModelError
from autopeft.model.loading import check_fits_model, load_image_processor, load_tokenizer, resolve_location


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


def test_a_folder_without_tokenizer_files_has_no_tokenizer(tmp_path, tiny_bert):
    # transformers would build a BERT tokenizer of its 5 special tokens from config.json alone
    tiny_bert.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"model\.name_or_path: '.*' has no tokenizer \(no tokenizer\.json or vocab\.txt\); "
                                         r"save the model's tokenizer into it"):
        load_tokenizer(ModelConfig(name_or_path=str(tmp_path)), str(tmp_path))


def test_an_image_model_folder_without_its_processor_has_no_image_processor(tmp_path):
    from tests.tiny_tasks import save_vit

    folder = save_vit(tmp_path / "vit")
    spec = ModelConfig(name_or_path=folder)
    assert load_image_processor(spec, folder) is not None
    (tmp_path / "vit" / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match=r"'.*vit' has no image processor \(no preprocessor_config\.json\)"):
        load_image_processor(spec, folder)


def test_the_tokenizer_must_fit_the_embeddings(tmp_path, tiny_bert):
    from tests.tiny_tasks import tiny_tokenizer

    tiny_bert.save_pretrained(tmp_path)  # 100 embedding rows
    tokenizer = tiny_tokenizer(causal=False)  # 28 tokens: fits
    spec = ModelConfig(name_or_path=str(tmp_path))
    check_fits_model(spec, str(tmp_path), tokenizer, 32)
    tokenizer.add_tokens([f"extra{i}" for i in range(80)])
    with pytest.raises(ModelError, match=r"model\.name_or_path: the tokenizer in '.*' has 108 tokens, but the model's "
                                         r"embeddings have 100 rows \(config\.json vocab_size\)"):
        check_fits_model(spec, str(tmp_path), tokenizer, 32)


def test_max_length_is_held_to_learned_positions_only(tmp_path, tiny_bert):
    from tests.tiny_tasks import save_causal_lm, tiny_tokenizer

    tiny_bert.save_pretrained(tmp_path / "bert")  # 64 learned positions
    bert = str(tmp_path / "bert")
    with pytest.raises(ModelError, match=r"model\.max_length: 65 is beyond the 64 positions the model has"):
        check_fits_model(ModelConfig(name_or_path=bert), bert, tiny_tokenizer(causal=False), 65)
    # rotary positions (Llama) run past the configured 64 without failing: not refused
    llama = save_causal_lm(tmp_path / "llama", "llama")
    check_fits_model(ModelConfig(name_or_path=llama), llama, tiny_tokenizer(causal=True), 256,
                     auto_class="AutoModelForCausalLM")


def test_a_hub_id_comes_from_the_cache_at_once_where_the_hub_does_not_answer(hub_at, tmp_path, tiny_bert):
    from tests.cli.test_bad_input import closed_port
    from tests.conftest import cache_model

    hub_at(f"http://127.0.0.1:{closed_port()}", tmp_path / "cache")
    tiny_bert.save_pretrained(tmp_path / "model")
    snapshot = cache_model(tmp_path / "cache", "org/tiny-bert", tmp_path / "model")
    assert resolve_location("org/tiny-bert") == str(snapshot.resolve())
    # what the cache holds is held to the rules of a model folder
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no .safetensors weights"):
        resolve_location("org/tiny-bert")


def test_a_hub_id_the_cache_lacks_is_one_line_where_the_hub_does_not_answer(hub_at, tmp_path):
    from tests.cli.test_bad_input import closed_port

    port = closed_port()
    hub_at(f"http://127.0.0.1:{port}", tmp_path / "cache")
    with pytest.raises(ModelError) as caught:
        resolve_location("org/tiny-bert", "v2")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model.name_or_path: 'org/tiny-bert' at revision 'v2' is not in the Hugging Face cache")
    assert f"the Hub does not answer at http://127.0.0.1:{port}" in message


def test_an_adapter_folder_given_as_the_model_names_its_base_model(tmp_path):
    """A study's best_adapter (or any peft adapter) given as --model: 'has no config.json (not a
    transformers model)' did not say what it was, nor what to give instead."""
    import json

    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": "bert-base-uncased"}))
    with pytest.raises(ModelError) as caught:
        resolve_location(str(tmp_path / "adapter"))
    assert str(caught.value) == (f"model.name_or_path: {str(tmp_path / 'adapter')!r} is a peft adapter, not a model "
                                 "(adapter_config.json, base model 'bert-base-uncased'); give the base model it was "
                                 "trained on")
