"""Registration on a real MLflow SQLite store: what a reviewer sees on a version (a short summary
as tags, descriptions in plain words), the full lineage in ``lineage.json`` and ``autopeft.json``,
and the one reader (``Registry.lineage``) that promotion and ``autopeft models`` use.

The adapter folder is tiny (peft's config and autopeft.json, no weights): registration only
logs it, so each registration takes about a second.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from autopeft.config import PromotionConfig
from autopeft.errors import GateRefused, RegistryError
from autopeft.registry.promotion import promote
from autopeft.registry.versions import Registry, mlflow_uris
from autopeft.schema import AdapterMetadata, Alias, Artifact, VersionSummary, VersionTags

from .tiny_adapter import ADAPTER_CONFIG, REASON, adapter_folder, lineage, register

MODEL = "sentiment"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """One store for the module, a tiny adapter folder, and version 1 of ``sentiment``."""
    from autopeft.registry.tracking import connect

    root = tmp_path_factory.mktemp("registration")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client, experiment = connect(uri, "registration")
    adapter = adapter_folder(root)
    version = register(client, uri, experiment, adapter, MODEL, lineage())
    return {"uri": uri, "client": client, "experiment": experiment, "adapter": adapter, "version": version,
            "root": root}


def autopeft_tags(version) -> dict[str, str]:
    return {k: v for k, v in (version.tags or {}).items() if k.startswith("autopeft.")}


def test_the_version_carries_a_short_summary_a_person_reads(store):
    tags = autopeft_tags(store["version"])
    assert tags == {
        "autopeft.study": "sst2-study", "autopeft.trial_id": "263c4fb2", "autopeft.family": "lora",
        "autopeft.adapter": "lora r=8 alpha=16 dropout=0.05", "autopeft.placement": "layers all, roles query,value",
        "autopeft.rank": "8", "autopeft.learning_rate": "0.0005", "autopeft.metric": "accuracy",
        "autopeft.val_metric": "0.8125", "autopeft.test_metric": "0.75", "autopeft.trainable_share": "0.00165412",
        "autopeft.base_model_name": "minilm", "autopeft.data_fingerprint": "33d3c8cd65a135cb"}
    assert len(tags) <= len(VersionSummary.keys()) == 13
    assert all(0 < len(value) < 100 for value in tags.values())
    # the whole configuration is in lineage.json, not in the tag box
    assert not {"autopeft.adapter_config", "autopeft.params", "autopeft.base_model", "autopeft.final_steps",
                "autopeft.split_sizes", "autopeft.space_hash"} & set(tags)


def test_the_descriptions_say_what_where_from_how_good_and_how_to_load(store):
    version = store["version"]
    text = " ".join(version.description.split())
    for part in ("**lora adapter** `lora r=8 alpha=16 dropout=0.05` on `minilm` @953f9c0d4634",
                 "layers all, roles query,value", "learning rate 0.0005",
                 "study `sst2-study`, trial `263c4fb2`", "trial run `f62a1db83bec41dab993c4081203eddb`",
                 f"selected by the `best` policy: {REASON}",
                 "validation accuracy 0.8125", "test accuracy 0.7500", "32 rows, fingerprint 63ed6907",
                 "higher is better", "Trainable share 0.165% (37,634 parameters)",
                 f'mlflow.pyfunc.load_model("models:/{MODEL}/1")', f"autopeft export {MODEL}/1 --out DIR",
                 Artifact.MODEL_LINEAGE):
        assert part in text, (part, text)
    model = store["client"].get_registered_model(MODEL)
    text = " ".join(model.description.split())
    for part in (f'mlflow.pyfunc.load_model("models:/{MODEL}@candidate")', f"autopeft export {MODEL}@candidate",
                 "autopeft promote", "autopeft rollback", Artifact.MODEL_LINEAGE):
        assert part in text, (part, text)


def test_the_lineage_json_round_trips_and_the_reader_returns_it_whole(store, tmp_path):
    import mlflow.artifacts

    version = store["version"]
    registry = Registry.open(store["uri"])
    read = registry.lineage(version)
    given = lineage(parent_run_id=read.parent_run_id)
    assert read.parent_run_id and {f: getattr(read, f) for f in VersionTags.SEARCH_FIELDS} == {
        f: getattr(given, f) for f in VersionTags.SEARCH_FIELDS}
    assert (read.val_metric, read.trainable_share) == (0.8124999761581421, 0.0016541239700733398)  # not rounded
    assert (read.base_model_name, read.base_model_path, read.base_model_config_sha256) == (
        "minilm", "/opt/minilm", "953f9c0d463486b1")
    assert read.adapter_config == {k: ADAPTER_CONFIG[k] for k in ("peft_type", "task_type", "r", "lora_alpha",
                                                                  "lora_dropout", "target_modules",
                                                                  "modules_to_save", "bias")}
    assert read.space_hash and len(read.space_hash) == 16 and read.registered_at and read.registered_by
    assert read.final_steps is None and read.test_fingerprint == "63ed6907247ca450" and read.mode == "max"

    with mlflow_uris(store["uri"]):  # the file as it is stored with the model
        local = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1/{Artifact.MODEL_LINEAGE}",
                                                    dst_path=str(tmp_path))
    assert VersionTags.from_json(Path(local).read_text()) == read
    assert VersionTags.from_json(read.to_json()) == read

    # and in the adapter's autopeft.json: the folder registered, and the adapter as downloaded
    assert AdapterMetadata.from_json((store["adapter"] / "autopeft.json").read_text()).version_lineage == read
    downloaded = registry.download(MODEL, "1", tmp_path / "download")
    meta = AdapterMetadata.from_json((downloaded / "autopeft.json").read_text())
    assert meta.version_lineage == read and meta.selection["reason"] == REASON  # the rest kept


def test_promotion_reads_the_gates_fields_from_the_lineage(store):
    client, uri = store["client"], store["uri"]
    for record in (lineage(study="g1"), lineage(study="g2", test_metric=0.70),
                   lineage(study="g3", test_metric=0.9, test_fingerprint="another-test-set")):
        register(client, uri, store["experiment"], store["adapter"], "gated", record)
    registry = Registry.open(uri)
    result = promote(registry, "gated", version="1", config=PromotionConfig(min_metric=0.7, max_trainable_share=0.01))
    text = " ".join(g.message for g in result.gates)
    assert "test accuracy 0.7500 meets the threshold 0.7000" in text and "trainable share 0.1654%" in text, text
    with pytest.raises(GateRefused, match=r"0\.7000 is worse than production version 1 test accuracy 0\.7500"):
        promote(registry, "gated", version="2")
    with pytest.raises(RegistryError, match="different test sets .*another-test-set vs 63ed6907247ca450"):
        promote(registry, "gated", version="3")

    # the mode comes from the lineage too: lower is better for a loss (read as "max" it would pass)
    for record in (lineage(study="m1", metric="mse", mode="min", test_metric=0.2),
                   lineage(study="m2", metric="mse", mode="min", test_metric=0.3)):
        register(client, uri, store["experiment"], store["adapter"], "minimised", record)
    promote(registry, "minimised", version="1")
    with pytest.raises(GateRefused, match=r"0\.3000 is worse than production version 1 test mse 0\.2000"):
        promote(registry, "minimised", version="2")


def test_an_unreadable_lineage_file_leaves_the_summary_or_refuses_a_promotion(store):
    client, uri = store["client"], store["uri"]
    register(client, uri, store["experiment"], store["adapter"], "lost", lineage(study="lost"))
    location = urlparse(client.get_model_version_download_uri("lost", "1")).path
    (Path(location) / Artifact.MODEL_LINEAGE).unlink()
    registry = Registry.open(uri)
    version = registry.version("lost", "1")
    read = registry.lineage(version)
    assert (read.study, read.family, read.test_metric, read.trainable_share) == ("lost", "lora", 0.75, 0.00165412)
    assert read.mode is None and read.test_fingerprint is None and read.params is None
    with pytest.raises(RegistryError, match="cannot read the lineage of 'lost' version 1"):
        registry.lineage(version, strict=True)
    with pytest.raises(RegistryError, match="cannot read the lineage"):
        promote(registry, "lost", version="1")
    assert registry.by_alias("lost", Alias.PRODUCTION) is None


def test_a_description_the_user_wrote_is_kept_and_a_mapping_of_tags_is_read(store):
    client, uri = store["client"], store["uri"]
    client.create_registered_model("owned", description="Owned by the NLP team.")
    tags = {**lineage(study="mapped").to_tags(), "team": "nlp"}  # the older form: every key, "" where unset
    assert tags["autopeft.final_steps"] == ""
    version = register(client, uri, store["experiment"], store["adapter"], "owned", VersionTags.from_tags(tags))
    assert client.get_registered_model("owned").description == "Owned by the NLP team."
    assert "study `mapped`" in version.description

    from autopeft.registry.versions import register_adapter

    run = client.create_run(store["experiment"])
    version = register_adapter(client, tracking_uri=uri, run_id=run.info.run_id, adapter_dir=store["adapter"],
                               registered_model="owned", tags=tags)
    assert version.tags["team"] == "nlp" and "autopeft.final_steps" not in version.tags
    assert all(value for value in version.tags.values())
    assert Registry.open(uri).lineage(version).params == lineage().params
