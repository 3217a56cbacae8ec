"""Registration: export the selected adapter (the best trial's, or its final training's) with its
tokenizer and metadata, evaluate it reloaded the way users load it, record it on the study run
and register it in the MLflow Model Registry."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft import __version__
from autopeft.data import TokenizedData, split_fingerprint
from autopeft.engine.predictor import AdapterPredictor, write_metadata
from autopeft.engine.training import StudySpec, evaluate, export_adapter
from autopeft.registry.tracking import config_summary, log_metrics, set_tags
from autopeft.registry.versions import register_adapter, registered_for_study, signature
from autopeft.schema import AdapterMetadata, Artifact, Metric, Outcome, RunTag, StudyRunTags, TrialRunTags, VersionTags
from autopeft.study.final_training import train_final_adapter
from autopeft.study.results import SearchResult, phase
from autopeft.tasks import get_task

if TYPE_CHECKING:
    from autopeft.study.prepare import Prepared


def finalize(prepared: Prepared, spec: StudySpec, client: Any, data: TokenizedData, result: SearchResult,
              checkpoint: Any, model_ref: dict[str, str], phases: dict[str, float]) -> None:
    """Save the best adapter with its tokenizer and metadata, evaluate it, register it; the
    final training (if any) is timed as ``final_training``, the evaluation as ``final_eval``, the
    rest as ``finalize``."""
    with phase(phases, "final_training"):
        final_dir = (train_final_adapter(prepared, spec, client, data, result, checkpoint)
                     if prepared.config.budget.final_steps else None)
    with phase(phases, "finalize"):
        if final_dir is not None:
            adapter_dir = export_best(prepared, spec, data, result, final_dir, model_ref)
            shutil.rmtree(final_dir)  # the exported adapter's copy
        else:
            with checkpoint.as_directory() as directory:
                adapter_dir = export_best(prepared, spec, data, result, Path(directory), model_ref)
    with phase(phases, "final_eval"):
        evaluate_reloaded(prepared, data, result, adapter_dir)
    with phase(phases, "finalize"):
        record_and_register(prepared, client, data, result, adapter_dir, model_ref)


def export_best(prepared: Prepared, spec: StudySpec, data: TokenizedData, result: SearchResult,
                 checkpoint_dir: Path, model_ref: dict[str, str]) -> Path:
    """The registered adapter (the best trial's, or its final training's), tokenizer and
    metadata in ``<output>/<study>/<artifact>``."""
    cfg = prepared.config
    best = result.best
    assert best is not None
    # named like the artifact key: MLflow stores the folder under artifacts/<its name>
    adapter_dir = prepared.output_dir / prepared.study_name / Artifact.ADAPTER
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    export_adapter(spec, best.params, checkpoint_dir, adapter_dir)
    get_task(cfg.task.kind).load_preprocessor(cfg.model, prepared.location).save_pretrained(str(adapter_dir))
    family = best.params.get("adapter")
    write_metadata(adapter_dir, AdapterMetadata(
        autopeft_version=__version__,
        base_model={"config": cfg.model.model_dump(mode="json"), "reference": model_ref},
        task=cfg.task.kind,
        task_config=cfg.task.model_dump(mode="json"),
        label_names=data.label_names,
        text_columns=prepared.raw.text_columns,
        label_column=prepared.raw.label_column,
        max_length=cfg.model.max_length,
        family=family,
        params=best.params,
        study=prepared.study_name,
        trial_id=best.trial_id,
        objective={"metric": cfg.objective.metric, "mode": cfg.objective.mode},
        objectives=[{"metric": m, "mode": md} for m, md in cfg.objective_list],
        selection={"policy": cfg.selection.policy, "reason": result.selection.reason if result.selection else ""},
        costs={k: best.metrics[k] for k in ("trainable_share", "adapter_size_mb", "peak_memory_mb", "latency_ms")
               if k in best.metrics},
        # the registered adapter's own: its final training's kept (best) evaluation where it had one
        validation={k: v for k, v in (result.final_kept or best.metrics).items()
                    if k in get_task(cfg.task.kind).metric_names},
        final_steps=cfg.budget.final_steps if result.final_history else None,
        data_fingerprint=data.fingerprint,
        target_scale=data.target_scale,  # regression: the predictor maps outputs back with it
    ))
    return adapter_dir


def evaluate_reloaded(prepared: Prepared, data: TokenizedData, result: SearchResult, adapter_dir: Path) -> None:
    """Validation (a check that the saved adapter reproduces its trial) and test metrics of the
    adapter as saved, reloaded the way users load it."""
    cfg = prepared.config
    predictor = AdapterPredictor.load(adapter_dir)
    pad = data.pad_token_id
    # with the target scale the saved file carries, not the study's: a scale lost on the way
    # shows as a reloaded metric that differs from the trial's
    saved_scale = predictor.info.target_scale
    validation = dataclasses.replace(data.splits["validation"], target_scale=saved_scale)
    result.reloaded_val_metrics = evaluate(predictor.model, validation, pad, cfg.task.kind,
                                           batch_size=cfg.budget.eval_batch_size, device=predictor.device)
    if "test" in data.splits:
        test = dataclasses.replace(data.splits["test"], target_scale=saved_scale)
        result.test_metrics = evaluate(predictor.model, test, pad, cfg.task.kind,
                                       batch_size=cfg.budget.eval_batch_size, device=predictor.device)
    del predictor


def record_and_register(prepared: Prepared, client: Any, data: TokenizedData, result: SearchResult,
                         adapter_dir: Path, model_ref: dict[str, str]) -> None:
    """Log the best adapter's metrics and the trial table on the parent run; register the adapter."""
    cfg = prepared.config
    best = result.best
    assert best is not None
    family = best.params.get("adapter")
    metric = cfg.objective.metric
    # the registered adapter's validation figures under the trials' own names (one column compares
    # the study with its trials), and as best_val_* for readers of earlier studies
    summary = {k: float(v) for k, v in result.reloaded_val_metrics.items()}
    summary.update({Metric.best_val(k): float(v) for k, v in result.reloaded_val_metrics.items()})
    summary.update({Metric.test(k): float(v) for k, v in result.test_metrics.items()})
    summary[Metric.BEST_TRAINABLE_PARAMS] = float(best.metrics.get("trainable_params", 0))
    summary[Metric.BEST_TRAINABLE_SHARE] = float(best.metrics.get("trainable_share", 0))
    log_metrics(client, result.parent_run_id, summary)
    set_tags(client, result.parent_run_id, StudyRunTags(best_trial_id=best.trial_id, best_trial_run_id=best.run_id or None))
    client.log_dict(result.parent_run_id, [
        {"trial_id": t.trial_id, "outcome": t.outcome, "run_id": t.run_id, metric: t.metrics.get(metric),
         "step": t.metrics.get("step"), **t.params} for t in result.trials
    ], Artifact.TRIALS)

    test_fp = split_fingerprint(prepared.raw, "test") if "test" in prepared.raw.frames else None
    tags = VersionTags(
        study=prepared.study_name,
        trial_id=best.trial_id,
        trial_run_id=best.run_id or None,
        parent_run_id=result.parent_run_id,
        family=family,
        params=best.params,
        base_model=model_ref,
        data_fingerprint=data.fingerprint,
        split_sizes=data.sizes,
        test_fingerprint=test_fp,
        metric=metric,
        mode=cfg.objective.mode,
        selection_policy=cfg.selection.policy,
        val_metric=result.reloaded_val_metrics.get(metric),
        test_metric=result.test_metrics.get(metric),
        trainable_params=best.metrics.get("trainable_params"),
        trainable_share=best.metrics.get("trainable_share"),
        final_steps=cfg.budget.final_steps if result.final_history else None,
        version=__version__,
    )
    result.adapter_dir = adapter_dir
    registered = registered_for_study(client, cfg.tracking.registered_model, prepared.study_name)
    if registered is not None:  # a resumed study that registered before its driver died
        result.model_version = str(registered)
        return
    # logged on the run that trained it (the final training's, else the winning trial's), so the
    # version's source run leads there; that run is nested under the study
    source_run = result.final_run_id or best.run_id or result.parent_run_id
    status = client.get_run(source_run).info.status
    version = register_adapter(client, tracking_uri=cfg.tracking.uri, run_id=source_run,
                               adapter_dir=adapter_dir, registered_model=cfg.tracking.registered_model, tags=tags,
                               model_signature=signature(prepared.raw.text_columns, get_task(cfg.task.kind).outputs))
    if source_run != result.parent_run_id:
        client.set_terminated(source_run, status=status)  # logging the model reopened the finished run
    result.model_version = str(version.version)
    _describe_selection(prepared, client, result, data)


def _describe_selection(prepared: Prepared, client: Any, result: SearchResult, data: TokenizedData) -> None:
    """The winner is marked and described on its trial run, and the study run says in plain words
    what was searched, which trial won, its figures, why, and where it is registered."""
    cfg = prepared.config
    best = result.best
    assert best is not None
    metric = cfg.objective.metric
    model_uri = f"models:/{cfg.tracking.registered_model}/{result.model_version}"
    why = result.selection.reason if result.selection else f"best {metric}"
    if best.run_id:
        note = client.get_run(best.run_id).data.tags.get(RunTag.NOTE, "")
        selected = (f"Selected ({cfg.selection.policy}: {why}). Its adapter is registered as {model_uri}"
                    + (f", after a final training of {cfg.budget.final_steps} steps." if result.final_history else "."))
        set_tags(client, best.run_id, TrialRunTags(selected=True, note=f"{note}\n\n{selected}".strip()))
    val, test = result.reloaded_val_metrics.get(metric), result.test_metrics.get(metric)
    counts = {o: sum(t.outcome == o for t in result.trials) for o in (Outcome.COMPLETE, Outcome.PRUNED, Outcome.FAIL)}
    lines = [
        f"Searched {', '.join(prepared.resolved.space.adapters)} on {cfg.model.name_or_path} for {cfg.task.kind}: "
        f"{len(result.trials)} trials of up to {cfg.budget.max_steps} steps ({counts[Outcome.COMPLETE]} completed, "
        f"{counts[Outcome.PRUNED]} stopped early by ASHA, {counts[Outcome.FAIL]} failed), on "
        f"{data.sizes.get('train', 0)} training / {data.sizes.get('validation', 0)} validation / "
        f"{data.sizes.get('test', 0)} test examples.",
        f"Winner: trial {best.trial_id}, {config_summary(best.params)}.",
        f"Validation {metric} {val:.4f}" if isinstance(val, float) else f"Validation {metric}: not measured",
    ]
    lines[-1] += (f", test {metric} {test:.4f}." if isinstance(test, float) else " (no test set).")
    lines.append(f"Chosen by policy {cfg.selection.policy}: {why}.")
    if result.final_history:
        lines.append(f"The registered adapter was trained for {cfg.budget.final_steps} more steps from "
                     f"{result.final_start} (the nested final-training run); the weights of its best evaluation, at step "
                     f"{result.final_kept_step}, are registered.")
    elif result.final_training_error:
        lines.append(f"A final training of {cfg.budget.final_steps} steps ran, but the selected trial's own adapter "
                     f"is registered: {result.final_training_error}.")
    lines.append(f"Registered as {model_uri} (alias candidate); load it with mlflow.pyfunc.load_model(\"{model_uri}\").")
    set_tags(client, result.parent_run_id, StudyRunTags(note="\n\n".join(lines)))
