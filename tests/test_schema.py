"""autopeft.schema: every name once, records that read what they write, and the older shapes."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from autopeft import schema
from autopeft.schema import (
    RUN_STATUS,
    AdapterMetadata,
    Alias,
    AliasEvent,
    AliasField,
    Artifact,
    JobMetadata,
    Metric,
    ModelTag,
    Outcome,
    PromotionTags,
    RunKind,
    RunTag,
    StudyRunTags,
    TargetScale,
    TrialAttr,
    TrialRunTags,
    VersionSummary,
    VersionTag,
    VersionTags,
    alias_history,
    history_aliases,
)

PACKAGE = Path(schema.__file__).resolve().parent
REPO = PACKAGE.parent

#: A version's tags as autopeft 8d8b0c6 wrote them (tests/fixtures/legacy_store), text for text.
LEGACY_VERSION_TAGS = {
    "autopeft.study": "legacy-study", "autopeft.trial_id": "263c4fb2",
    "autopeft.trial_run_id": "f62a1db83bec41dab993c4081203eddb",
    "autopeft.parent_run_id": "b0a5aa021b434fa788c06ba7202f27f2", "autopeft.family": "lora",
    "autopeft.params": '{"adapter": "lora", "batch_size": 8, "learning_rate": 0.003161519861531591, "lora.alpha": 8, '
                       '"lora.r": 4, "placement.roles": "query,value"}',
    "autopeft.base_model": '{"config_sha256": "953f9c0d463486b1", "location": "/opt/minilm", "model_type": "bert", '
                           '"name_or_path": "minilm"}',
    "autopeft.data_fingerprint": "33d3c8cd65a135cb", "autopeft.split_sizes": '{"test": 32, "train": 64, "validation": 32}',
    "autopeft.test_fingerprint": "63ed6907247ca450", "autopeft.metric": "accuracy", "autopeft.mode": "max",
    "autopeft.selection_policy": "best", "autopeft.val_metric": "0.625", "autopeft.test_metric": "0.5625",
    "autopeft.trainable_params": "37634", "autopeft.trainable_share": "0.0016541239700733398",
    "autopeft.final_steps": "", "autopeft.version": "0.1.0",
    "autopeft.base_model_name": "minilm", "autopeft.base_model_path": "/opt/minilm",
    "autopeft.base_model_config_sha256": "953f9c0d463486b1",
    "autopeft.adapter_config": '{"bias": "none", "lora_alpha": 8.0, "peft_type": "LORA", "r": 4}',
    "autopeft.space_hash": "6e44beb76e4ba167", "autopeft.registered_at": "2026-12-01T05:00:17+00:00",
    "autopeft.registered_by": "root",
}


def constants(namespace: type) -> dict[str, str]:
    return {k: v for k, v in vars(namespace).items() if k.isupper() and isinstance(v, str)}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("namespace", [RunTag, VersionTag, ModelTag, TrialAttr, Metric, Artifact, Outcome, RunKind,
                                       Alias, AliasField])
def test_names_are_unique_within_their_namespace(namespace):
    values = list(constants(namespace).values())
    assert len(values) == len(set(values)), namespace.__name__


def test_shared_names_are_intended():
    """A key on two kinds of object is bound once and reused, never spelled twice."""
    run, version, attr = constants(RunTag), constants(VersionTag), constants(TrialAttr)
    shared_run_version = {k for k, v in version.items() if v in run.values()}
    assert shared_run_version == {"STUDY", "TRIAL_ID", "BASE_MODEL", "DATA_FINGERPRINT", "SELECTION_POLICY", "VERSION"}
    assert {k for k, v in attr.items() if v in run.values()} == {"WARM_START"}
    # the measurements share the prefix of every key (trial attribute ``autopeft.trainable_share``)
    assert TrialAttr.MEASUREMENT_PREFIX == schema.PREFIX


def test_every_key_is_spelled_once_in_the_schema():
    text = (PACKAGE / "schema.py").read_text()
    literals = re.findall(r'"(autopeft\.[a-z_.]+)"', text)
    assert literals and len(literals) == len(set(literals)), sorted(k for k in literals if literals.count(k) > 1)


def test_no_module_but_the_schema_spells_a_key():
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "schema.py"]
    files += list((REPO / "bench").glob("*.py"))
    pattern = re.compile(r'["\'](autopeft\.[a-z_]+[a-z_.]*)["\']')
    found = {str(p.relative_to(REPO)): pattern.findall(p.read_text()) for p in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_schema_imports_nothing_from_autopeft():
    tree = ast.parse((PACKAGE / "schema.py").read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("autopeft") and m != "autopeft.errors"]


def test_metric_patterns_and_outcomes():
    assert Metric.best_val("accuracy") == "best_val_accuracy" and Metric.test("f1") == "test_f1"
    assert Metric.phase("final_training") == "phase_final_training_s" and Metric.final("loss") == "final_loss"
    assert set(RUN_STATUS) == {Outcome.COMPLETE, Outcome.PRUNED, Outcome.FAIL, Outcome.INTERRUPTED}
    assert RUN_STATUS[Outcome.COMPLETE] == "FINISHED" and RUN_STATUS[Outcome.FAIL] == "FAILED"
    assert Artifact.report_html() == "report/report.html" and Artifact.report_figures() == "report/figures"
    assert VersionTag.for_alias("production", AliasField.FORCED) == "autopeft.production.forced"


# --------------------------------------------------------------------------- run tags


def test_study_run_tags_write_only_what_is_set():
    created = StudyRunTags.created(study="s", version="0.1.0", data_fingerprint="fp", base_model="minilm",
                                   optuna_storage="sqlite:///o.db")
    assert created.to_tags() == {"autopeft.study": "s", "autopeft.run_kind": "study", "autopeft.version": "0.1.0",
                                 "autopeft.data_fingerprint": "fp", "autopeft.base_model": "minilm",
                                 "autopeft.optuna_storage": "sqlite:///o.db"}
    assert StudyRunTags(best_trial_id="t1").to_tags() == {"autopeft.best_trial_id": "t1"}
    long = StudyRunTags(selection_reason="x" * 6000, report_error="e" * 900, final_training_error="f" * 900).to_tags()
    assert [len(v) for v in long.values()] == [5000, 500, 500]
    axes = StudyRunTags(pareto_axes=[("accuracy", "max"), ("trainable_share", "min")])
    assert axes.to_tags() == {"autopeft.pareto_axes": '[["accuracy", "max"], ["trainable_share", "min"]]'}
    assert StudyRunTags.from_tags(axes.to_tags()) == axes
    read = StudyRunTags.from_tags({**created.to_tags(), "autopeft.best_trial_id": "t1", "other": "x"})
    assert read.study == "s" and read.kind == RunKind.STUDY and read.best_trial_id == "t1" and read.report is None
    assert StudyRunTags.from_tags(None) == StudyRunTags()


def test_trial_run_tags_round_trip():
    created = TrialRunTags.created(parent_run_id="p", study="s", trial_id="t1")
    assert created.to_tags() == {"mlflow.parentRunId": "p", "autopeft.study": "s", "autopeft.run_kind": "trial",
                                 "autopeft.trial_id": "t1"}
    done = TrialRunTags(outcome=Outcome.FAIL, error="x" * 7000)
    assert len(done.to_tags()["autopeft.error"]) == schema.MAX_PARAM
    assert TrialRunTags.from_tags({**created.to_tags(), **TrialRunTags(outcome="PRUNED").to_tags()}) == \
        TrialRunTags(parent_run_id="p", study="s", kind="trial", trial_id="t1", outcome="PRUNED")
    assert "'p'" in TrialRunTags.children_filter("p") and "autopeft.trial_id" in TrialRunTags.trial_filter("t")


# --------------------------------------------------------------------------- version tags


def test_version_tags_read_and_write_the_older_format_text_for_text():
    tags = VersionTags.from_tags(LEGACY_VERSION_TAGS)
    assert tags.base_model == {"config_sha256": "953f9c0d463486b1", "location": "/opt/minilm", "model_type": "bert",
                               "name_or_path": "minilm"}  # JSON on a version
    assert (tags.test_metric, tags.trainable_params, tags.final_steps, tags.git_dirty) == (0.5625, 37634, None, None)
    assert tags.base_name == "minilm" and tags.base_pin == "953f9c0d463486b1"
    assert tags.to_tags() == LEGACY_VERSION_TAGS


def test_version_tags_write_every_search_key_and_only_set_lineage():
    written = VersionTags(study="s", val_metric=0.5, trainable_params=3).to_tags()
    assert set(written) == {VersionTags.keys()[f] for f in VersionTags.SEARCH_FIELDS}
    assert written["autopeft.val_metric"] == "0.5" and written["autopeft.test_metric"] == ""
    assert VersionTags(git_commit="abc", git_dirty=True).to_tags(only_set=True) == {
        "autopeft.git_commit": "abc", "autopeft.git_dirty": "true"}


def test_version_tags_tolerate_older_and_partial_stores():
    old = VersionTags.from_tags({"autopeft.base_model": "minilm", "autopeft.metric": "accuracy",
                                 "autopeft.test_metric": "nan", "autopeft.trainable_share": "n/a",
                                 "autopeft.params": "{not json", "autopeft.git_dirty": "false"})
    assert old.base_model == {"name_or_path": "minilm"} and old.base_name == "minilm" and old.base_pin == ""
    assert (old.test_metric, old.trainable_share, old.params, old.git_dirty) == (None, None, None, False)
    assert old.study is None and old.mode is None and old.base_model_name is None
    assert VersionTags.from_tags({}) == VersionTags() and VersionTags.from_tags(None).base_name is None


def test_the_summary_is_short_readable_and_leaves_out_what_is_unset():
    tags = VersionTags.from_tags(LEGACY_VERSION_TAGS)
    summary = tags.summary().to_tags()
    assert summary == {
        "autopeft.study": "legacy-study", "autopeft.trial_id": "263c4fb2", "autopeft.family": "lora",
        "autopeft.adapter": "lora r=4 alpha=8", "autopeft.placement": "roles query,value", "autopeft.rank": "4",
        "autopeft.learning_rate": "0.003162", "autopeft.metric": "accuracy", "autopeft.val_metric": "0.625",
        "autopeft.test_metric": "0.5625", "autopeft.trainable_share": "0.00165412",
        "autopeft.base_model_name": "minilm", "autopeft.data_fingerprint": "33d3c8cd65a135cb"}
    assert set(summary) == set(VersionSummary.keys().values())
    # read back from the summary alone: what a version without its lineage.json still says
    assert VersionTags.from_tags(summary).test_metric == 0.5625 and VersionSummary.from_tags(summary).rank == 4
    assert VersionTags().summary().to_tags() == {} and VersionSummary(study=" ").to_tags() == {}


@pytest.mark.parametrize("params,adapter,placement,rank", [
    ({"adapter": "lora", "lora.r": 8, "lora.alpha": 16.0, "lora.dropout": 0.05, "lora.rslora": True,
      "lora.init": "pissa", "lora.rank_pattern": "uniform", "placement.layers": "all",
      "placement.roles": "query,value"}, "lora r=8 alpha=16 dropout=0.05 rslora init=pissa",
     "layers all, roles query,value", 8),
    ({"adapter": "ia3", "placement.layers": "0,1,2,3,5,7,8", "placement.roles": "all-linear",
      "placement.layer_0": True}, "ia3", "layers 0-3,5,7-8, roles all-linear", None),
    ({"adapter": "adalora", "adalora.init_r": 12, "adalora.target_r": 4, "adalora.alpha": 8},
     "adalora alpha=8 init_r=12 target_r=4", None, 4),
    ({"adapter": "prompt_tuning", "prompt_tuning.num_virtual_tokens": 20}, "prompt_tuning num_virtual_tokens=20",
     None, None),
    ({"adapter": "serial_adapter", "serial_adapter.size": 64, "placement.layers": "last-4"},
     "serial_adapter size=64", "layers last-4", None),
])
def test_adapter_and_placement_summaries(params, adapter, placement, rank):
    tags = VersionTags(params={**params, "learning_rate": 0.01})
    assert (tags.adapter_summary, tags.placement_summary, tags.rank, tags.learning_rate) == (
        adapter, placement, rank, 0.01)


def test_summaries_stay_under_100_characters():
    layers = ",".join(str(i) for i in range(0, 96, 2))  # every other layer: no range to fold
    tags = VersionTags(study="s" * 150, params={"adapter": "lora", **{f"lora.p{i}": 1234.5678 for i in range(30)},
                                                "placement.layers": layers, "placement.roles": "query"})
    written = tags.summary().to_tags()
    assert all(len(v) < 100 for v in written.values())
    assert written["autopeft.adapter"].endswith("…") and written["autopeft.placement"].endswith("…")


def test_the_lineage_json_round_trips_and_reads_tolerantly():
    tags = VersionTags.from_tags(LEGACY_VERSION_TAGS)
    text = tags.to_json()
    assert json.loads(text)["params"]["lora.r"] == 4 and "final_steps" not in json.loads(text)  # unset: left out
    assert VersionTags.from_json(text) == tags
    odd = VersionTags.from_dict({"test_metric": "0.5", "trainable_params": 12.0, "params": "{\"a\": 1}",
                                 "base_model": "minilm", "git_dirty": "yes", "val_metric": "n/a",
                                 "split_sizes": 3, "study": 7, "from_the_future": 1})
    assert (odd.test_metric, odd.trainable_params, odd.params, odd.base_model) == (0.5, 12, {"a": 1},
                                                                                   {"name_or_path": "minilm"})
    assert (odd.git_dirty, odd.val_metric, odd.split_sizes, odd.study) == (None, None, None, "7")
    with pytest.raises(ValueError):
        VersionTags.from_json("[1]")


def test_filled_from_keeps_its_own_values():
    record = VersionTags(study="s", test_metric=0.8124999761581421)
    summary = VersionTags(study="other", test_metric=0.8125, family="lora")
    assert record.filled_from(summary) == VersionTags(study="s", test_metric=0.8124999761581421, family="lora")
    assert record == VersionTags(study="s", test_metric=0.8124999761581421)  # a copy


def test_derive_base_model():
    tags = VersionTags(base_model={"name_or_path": "m", "location": "/opt/m", "revision": "v1", "config_sha256": "c"})
    tags.derive_base_model()
    assert (tags.base_model_name, tags.base_model_path, tags.base_model_revision, tags.base_model_config_sha256) == (
        "m", "/opt/m", "v1", "c")
    hub = VersionTags(base_model={"name_or_path": "org/m", "location": "org/m"})
    hub.derive_base_model()
    assert hub.base_model_path is None and hub.base_model_revision is None


def test_promotion_tags():
    move = PromotionTags(alias="production", action="promote", at="t", by="u", previous="", reason="")
    assert move.to_tags() == {"autopeft.production.action": "promote", "autopeft.production.at": "t",
                              "autopeft.production.by": "u", "autopeft.production.previous": "",
                              "autopeft.production.reason": ""}
    gates = [{"gate": "not_worse", "passed": True, "candidate": 0.9, "reference": 0.8}]
    result = PromotionTags(alias="staging", gates=gates, forced=False, compared_test_metric=0.9, compared_on="fp",
                           latency_ms=12.34567, rolled_back_from="3")
    written = result.to_tags()
    assert written["autopeft.staging.gates"] == json.dumps(gates, default=str)  # key order kept
    assert written["autopeft.staging.forced"] == "false" and written["autopeft.latency_ms"] == "12.346"
    assert written["autopeft.staging.compared_test_metric"] == "0.9"
    read = PromotionTags.from_tags({**move.to_tags(), **written}, "staging")
    assert read.gates == gates and read.forced is False and read.latency_ms == pytest.approx(12.346)
    assert read.action is None  # the move above was of another alias
    assert PromotionTags.from_tags(move.to_tags(), "production").previous == ""


# --------------------------------------------------------------------------- alias history


def test_alias_events_and_history():
    event = AliasEvent(seq=3, alias="production", action="promote", version="2", previous="1", reason="why")
    assert event.tag_key == "autopeft.history.production.00003"
    assert AliasEvent.from_json(event.to_json()) == event
    big = AliasEvent(seq=1, alias="production", action="force", version="2", previous=None,
                     gates=[{"message": "x" * 6000}])
    assert len(big.to_json()) <= schema.MAX_VERSION_TAG and AliasEvent.from_json(big.to_json()).gates == []
    tags = {event.tag_key: event.to_json(), "autopeft.history.production.00004": "not json",
            ModelTag.history("canary.eu", 1): AliasEvent(seq=1, alias="canary.eu", action="promote", version="1",
                                                         previous=None).to_json(), "owner": "me"}
    assert [e.seq for e in alias_history(tags, "production")] == [3]
    assert history_aliases(tags) == ["canary.eu", "production"]
    assert ModelTag.history_alias("owner") is None


# --------------------------------------------------------------------------- adapter metadata


#: autopeft.json as the search writes it (tests/fixtures/legacy_store, trimmed).
LEGACY_METADATA = {
    "autopeft_version": "0.1.0",
    "base_model": {"config": {"max_length": 32, "name_or_path": "minilm", "revision": None, "trust_remote_code": False},
                   "reference": {"config_sha256": "953f9c0d463486b1", "location": "/opt/minilm", "model_type": "bert",
                                 "name_or_path": "minilm"}},
    "costs": {"adapter_size_mb": 0.14691162109375, "trainable_share": 0.0016541239700733398},
    "data_fingerprint": "33d3c8cd65a135cb", "family": "lora", "final_steps": None, "label_column": "label",
    "label_names": ["negative", "positive"], "max_length": 32, "objective": {"metric": "accuracy", "mode": "max"},
    "objectives": [{"metric": "accuracy", "mode": "max"}], "params": {"adapter": "lora", "lora.r": 4},
    "selection": {"policy": "best", "reason": "best accuracy (max) among 2 feasible COMPLETE trials"},
    "study": "legacy-study", "task": "sequence_classification",
    "task_config": {"kind": "sequence_classification", "max_new_tokens": 64}, "text_columns": ["sentence"],
    "trial_id": "263c4fb2", "validation": {"accuracy": 0.625, "loss": 0.66},
}


def test_adapter_metadata_reads_and_writes_the_current_file_byte_for_byte():
    text = json.dumps(LEGACY_METADATA, indent=2, sort_keys=True, default=str)
    meta = AdapterMetadata.from_json(text)
    assert meta.task == "sequence_classification" and meta.model_config["name_or_path"] == "minilm"
    assert meta.model_reference["config_sha256"] == "953f9c0d463486b1" and meta.label_names == ["negative", "positive"]
    assert meta.to_json() == text
    assert AdapterMetadata.from_dict(meta.to_dict()) == meta


def test_adapter_metadata_carries_the_registered_lineage():
    meta = AdapterMetadata.from_dict(LEGACY_METADATA)
    assert meta.lineage is None and meta.version_lineage is None and "lineage" not in meta.to_dict()
    lineage = VersionTags.from_tags(LEGACY_VERSION_TAGS)
    meta.lineage = lineage.to_dict()
    again = AdapterMetadata.from_json(meta.to_json())
    assert again.version_lineage == lineage and again.to_json() == meta.to_json()


def test_adapter_metadata_tolerates_partial_files_and_keeps_unknown_keys():
    partial = AdapterMetadata.from_dict({"base_model": {"config": {"name_or_path": "m"}}, "task": "regression",
                                         "text_columns": ["t"], "max_length": 16, "from_the_future": {"a": 1}})
    assert partial.label_names == [] and partial.family is None and partial.model_reference == {}
    assert json.loads(partial.to_json())["from_the_future"] == {"a": 1}
    with pytest.raises(KeyError, match="task"):
        AdapterMetadata.from_dict({"base_model": {"config": {}}})
    with pytest.raises(KeyError, match="base_model.config"):
        AdapterMetadata.from_dict({"task": "regression", "base_model": {"reference": {}}})
    with pytest.raises(ValueError):
        AdapterMetadata.from_json("[1, 2]")


def test_adapter_metadata_round_trips_the_target_scale():
    meta = AdapterMetadata.from_dict({**LEGACY_METADATA, "task": "regression", "label_names": []})
    assert meta.target_scale is None and "target_scale" not in meta.to_dict()  # older files: no scaling
    meta.target_scale = TargetScale(mean=1137.5, std=86.25)
    written = json.loads(meta.to_json())
    assert written["target_scale"] == {"mean": 1137.5, "std": 86.25}
    again = AdapterMetadata.from_json(meta.to_json())
    assert again.target_scale == TargetScale(mean=1137.5, std=86.25) and again == meta
    assert again.target_scale.restore(0.0) == 1137.5 and again.target_scale.standardise(1137.5 + 86.25) == 1.0


@pytest.mark.parametrize("bad", [{"mean": 1.0}, {"mean": "x", "std": 1.0}, {"mean": 0.0, "std": 0.0},
                                 {"mean": 0.0, "std": float("nan")}, [1.0, 2.0]])
def test_adapter_metadata_refuses_a_target_scale_that_is_not_one(bad):
    with pytest.raises(ValueError, match="target_scale"):
        AdapterMetadata.from_dict({**LEGACY_METADATA, "target_scale": bad})


# --------------------------------------------------------------------------- Ray jobs


def test_job_metadata_round_trips_as_strings():
    record = JobMetadata(study="s1", action="search", submitter="alice", tracking_uri="http://mlflow:5000",
                         experiment="reviews", output_dir="~/autopeft-runs", trials=8, study_slot=True)
    metadata = record.to_metadata()
    # Ray's job metadata is a mapping of str to str: anything else is refused at submit
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    assert metadata == {"autopeft.study": "s1", "autopeft.action": "search", "autopeft.submitter": "alice",
                        "autopeft.tracking_uri": "http://mlflow:5000", "autopeft.experiment": "reviews",
                        "autopeft.output_dir": "~/autopeft-runs", "autopeft.trials": "8", "autopeft.study_slot": "true"}
    assert JobMetadata.from_metadata(metadata) == record
    # what is left open (named or planned on the cluster) is not written, and reads back as open
    open_ = JobMetadata(study="s2", action="resume", study_slot=False)
    assert open_.to_metadata() == {"autopeft.study": "s2", "autopeft.action": "resume", "autopeft.study_slot": "false"}
    assert JobMetadata.from_metadata(open_.to_metadata()) == open_
    # Ray adds its own keys to a job's metadata (job_submission_id, ...): they are passed over
    assert JobMetadata.from_metadata({**metadata, "job_submission_id": "autopeft-s1-abc"}) == record


@pytest.mark.parametrize("metadata", [None, {}, {"owner": "someone", "job_submission_id": "raysubmit_1"},
                                      {"autopeft.study": "", "autopeft.submitter": "alice"}])
def test_job_metadata_of_a_job_autopeft_did_not_submit_is_none(metadata):
    assert JobMetadata.from_metadata(metadata) is None


def test_study_run_tags_of_a_submitted_study_round_trip():
    tags = StudyRunTags(submitter="alice", job_id="autopeft-s1-abc", cancelled_by="bob",
                        cancelled_at="2026-12-01T13:00:00+00:00")
    assert tags.to_tags() == {"autopeft.submitter": "alice", "autopeft.job_id": "autopeft-s1-abc",
                              "autopeft.cancelled_by": "bob", "autopeft.cancelled_at": "2026-12-01T13:00:00+00:00"}
    created = StudyRunTags.created(study="s1", version="0.1.0", data_fingerprint="fp", base_model="minilm",
                                   optuna_storage="sqlite:///o.db")
    read = StudyRunTags.from_tags({**created.to_tags(), **tags.to_tags()})
    assert (read.study, read.submitter, read.job_id, read.cancelled_by, read.cancelled_at) == (
        "s1", "alice", "autopeft-s1-abc", "bob", "2026-12-01T13:00:00+00:00")
    # the submitter is the same key on a study run and on a job
    assert JobMetadata.keys()["submitter"] == StudyRunTags.keys()["submitter"] == RunTag.SUBMITTER
    assert JobMetadata.keys()["study"] == StudyRunTags.keys()["study"] == RunTag.STUDY
    # a study run from before Ray jobs reads these as unset
    assert StudyRunTags.from_tags(created.to_tags()).job_id is None
