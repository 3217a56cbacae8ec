"""Gated promotion: may this version take over an alias (usually ``production``)?

The gates, in order:

1. **not worse than the current holder** on the same test set: the candidate's test metric
   must be at least as good as the holder's (``>=`` when the metric is maximised, ``<=`` when
   minimised). The numbers come from the versions' lineage (``Registry.lineage``: their
   ``lineage.json``, or the tags of versions registered by older releases) when both were tested
   on the same test set (its ``test_fingerprint``) with the same metric; otherwise both are re-evaluated on
   the test file given with ``--test-data`` (without it the promotion stops with exit 2 rather
   than compare numbers from different data).
2. optional thresholds (:class:`PromotionConfig`): minimum metric, maximum trainable share,
   maximum latency (measured on this machine when that gate is set).

The decision (:func:`decide`) is a pure function of measurements so it is unit-tested without
MLflow; :func:`promote` gathers the measurements, decides and moves the alias.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from autopeft.config import PromotionConfig
from autopeft.errors import GateRefused, RegistryError, UserInputError
from autopeft.schema import Alias, PromotionTags, VersionTag, VersionTags

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities.model_registry import ModelVersion

    from autopeft.engine.predictor import AdapterPredictor
    from autopeft.registry.versions import AliasEvent, Registry


#: Where a measurement's numbers come from when no test file re-evaluated them.
RECORDED = "recorded at registration"


@dataclass
class Measurement:
    """What the gates know about one version."""

    version: str
    metric: str
    mode: str
    value: Optional[float]
    test_fingerprint: str
    trainable_share: Optional[float] = None
    latency_ms: Optional[float] = None
    source: str = RECORDED


@dataclass
class GateResult:
    gate: str
    passed: bool
    message: str
    candidate: Optional[float] = None
    reference: Optional[float] = None


def measurement_of(version: ModelVersion, lineage: VersionTags) -> Measurement:
    """What the version's recorded lineage says (``Registry.lineage``)."""
    return Measurement(version=str(version.version), metric=lineage.metric or "", mode=lineage.mode or "max",
                       value=lineage.test_metric, test_fingerprint=lineage.test_fingerprint or "",
                       trainable_share=lineage.trainable_share)


def comparable(candidate: Measurement, holder: Measurement) -> str | None:
    """None when the recorded numbers can be compared as they are, else why not."""
    if candidate.metric != holder.metric:
        return f"they optimised different metrics ({candidate.metric!r} vs {holder.metric!r})"
    if candidate.value is None or holder.value is None:
        missing = candidate if candidate.value is None else holder
        return f"version {missing.version} has no recorded test {missing.metric}"
    if not candidate.test_fingerprint or candidate.test_fingerprint != holder.test_fingerprint:
        return (f"they were tested on different test sets (fingerprints {candidate.test_fingerprint or 'none'} "
                f"vs {holder.test_fingerprint or 'none'})")
    return None


def _better_or_equal(value: float, reference: float, mode: str) -> bool:
    return value >= reference if mode == "max" else value <= reference


def decide(candidate: Measurement, holder: Optional[Measurement], config: PromotionConfig,
           alias: str = Alias.PRODUCTION) -> list[GateResult]:
    """Every gate's result; the promotion may go ahead when all passed."""
    results: list[GateResult] = []
    metric, mode = candidate.metric, candidate.mode
    if holder is not None:
        if candidate.value is None or holder.value is None:
            results.append(GateResult("not_worse", False, f"cannot compare: no test {metric} for "
                                      f"version {holder.version if holder.value is None else candidate.version}"))
        else:
            ok = _better_or_equal(candidate.value, holder.value, mode)
            relation = "is not worse than" if ok else "is worse than"
            results.append(GateResult(
                "not_worse", ok,
                f"candidate version {candidate.version} test {metric} {candidate.value:.4f} {relation} "
                f"{alias} version {holder.version} test {metric} {holder.value:.4f} "
                f"({'higher' if mode == 'max' else 'lower'} is better; {candidate.source})",
                candidate.value, holder.value))
    if config.min_metric is not None:
        if candidate.value is None:
            results.append(GateResult("min_metric", False, f"no test {metric} for version {candidate.version}",
                                      None, config.min_metric))
        else:
            ok = _better_or_equal(candidate.value, config.min_metric, mode)
            results.append(GateResult(
                "min_metric", ok,
                f"test {metric} {candidate.value:.4f} {'meets' if ok else 'misses'} the threshold "
                f"{config.min_metric:.4f} ({'>=' if mode == 'max' else '<='})", candidate.value, config.min_metric))
    if config.max_trainable_share is not None:
        share = candidate.trainable_share
        ok = share is not None and share <= config.max_trainable_share
        shown = "unknown" if share is None else f"{share:.4%}"
        results.append(GateResult(
            "max_trainable_share", ok,
            f"trainable share {shown} {'is within' if ok else 'exceeds'} the maximum {config.max_trainable_share:.4%}",
            share, config.max_trainable_share))
    if config.max_latency_ms is not None:
        latency = candidate.latency_ms
        ok = latency is not None and latency <= config.max_latency_ms
        shown = "unknown" if latency is None else f"{latency:.1f} ms"
        results.append(GateResult(
            "max_latency_ms", ok,
            f"latency {shown} {'is within' if ok else 'exceeds'} the maximum {config.max_latency_ms:.1f} ms",
            latency, config.max_latency_ms))
    return results


# --------------------------------------------------------------------------- measuring


def read_test_data(given: str | Path, metadata: dict[str, Any], encoding: str | None = None) -> tuple[pd.DataFrame, str]:
    """The test data (a file, a saved dataset's folder, or a URL) reduced to the columns the
    adapter reads, and its fingerprint computed as the search computes the ``test_fingerprint``
    version tag (so the same file matches the tag)."""
    from autopeft.data import RawData, class_labels, read_data, shown_url, split_fingerprint
    from autopeft.tasks import get_task

    frame, _ = read_data(str(given), "--test-data", encoding=encoding)
    shown = shown_url(str(given))
    needed = [*metadata["text_columns"], metadata["label_column"]]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise UserInputError(f"--test-data: column {missing[0]!r} is missing in {shown} "
                             f"(the adapter reads: {', '.join(needed)})")
    frame = frame[needed].reset_index(drop=True)
    if frame.empty:
        raise UserInputError(f"--test-data: {shown} has no rows")
    label = metadata["label_column"]
    if get_task(metadata.get("task", "sequence_classification")).categorical:  # as the search read its labels
        frame[label] = class_labels(frame[label])
    raw = RawData(frames={"test": frame}, label_names=list(metadata.get("label_names") or []),
                  text_columns=list(metadata["text_columns"]), label_column=metadata["label_column"])
    return frame, split_fingerprint(raw, "test")


def evaluate_on(predictor: AdapterPredictor, frame: pd.DataFrame, batch_size: int = 64) -> dict[str, float]:
    """The task's metrics (and loss) of a loaded adapter on a labelled frame."""
    import numpy as np

    from autopeft.engine.training import evaluate
    from autopeft.tasks import get_task

    meta = predictor.metadata
    values = frame[meta["label_column"]]
    if get_task(meta["task"]).categorical:
        index = {name: i for i, name in enumerate(meta["label_names"])}
        unknown = sorted({str(v) for v in values} - set(index))
        if unknown:
            raise UserInputError(f"--test-data: label {unknown[0]!r} is not one the adapter knows "
                                 f"({', '.join(meta['label_names'])})")
        labels = np.array([index[str(v)] for v in values], dtype=np.int64)
    else:
        labels = values.astype(np.float32).to_numpy()
    split = predictor.encode(frame, labels)
    try:  # the data module's padding rule where it has one (image processors have no pad token)
        from autopeft.data import pad_id  # type: ignore[attr-defined]

        pad = int(pad_id(predictor.tokenizer))
    except ImportError:
        pad = int(predictor.tokenizer.pad_token_id)
    return evaluate(predictor.model, split, pad, meta["task"], batch_size=batch_size, device=predictor.device)


def measure_latency(predictor: AdapterPredictor, frame: pd.DataFrame, samples: int = 16) -> float:
    """Median milliseconds of one single-example ``predict_frame`` call (what one request to a
    served model costs), after two warm-up calls."""
    rows = [frame.iloc[[i % len(frame)]] for i in range(samples + 2)]
    timings = []
    for i, row in enumerate(rows):
        started = time.perf_counter()
        predictor.predict_frame(row)
        if i >= 2:
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _probe_frame(metadata: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    text = "a short probe sentence used to time one prediction"
    return pd.DataFrame({c: [text] for c in metadata["text_columns"]})


# --------------------------------------------------------------------------- promote


@dataclass
class PromotionResult:
    name: str
    alias: str
    version: str
    previous: Optional[str]
    gates: list[GateResult]
    forced: bool
    event: Optional[AliasEvent]

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


def promote(registry: Registry, name: str, *, version: str | None = None, from_alias: str | None = None,
            to_alias: str = Alias.PRODUCTION, config: PromotionConfig | None = None,
            test_data: str | Path | None = None, encoding: str | None = None, force: bool = False,
            reason: str = "") -> PromotionResult:
    """Check the gates and move ``to_alias`` to the candidate; GateRefused (alias unchanged) when
    a gate fails and ``force`` is off. With ``force`` the gates still run and are recorded.
    ``test_data``: a file, a saved dataset's folder, or a URL (fetched before any adapter is), its
    text in ``encoding`` where given (as ``data.encoding`` reads a study's files)."""
    config = config or PromotionConfig()
    if force and not reason.strip():
        raise UserInputError("--force needs --reason TEXT (recorded on the version and in the alias history)")
    if version is not None and from_alias is not None:
        raise UserInputError("give either --version or --from, not both")
    candidate_version = registry.resolve(name, version=version,
                                         alias=from_alias or (None if version else Alias.CANDIDATE))
    cand_v = str(candidate_version.version)
    holder_version = registry.by_alias(name, to_alias)
    if holder_version is not None and str(holder_version.version) == cand_v:
        return PromotionResult(name, to_alias, cand_v, cand_v, [], False, None)

    candidate = measurement_of(candidate_version, registry.lineage(candidate_version, strict=True))
    holder = (measurement_of(holder_version, registry.lineage(holder_version, strict=True))
              if holder_version is not None else None)
    if not candidate.metric:
        raise RegistryError(f"version: {name!r} version {cand_v} has no {VersionTag.METRIC} tag "
                            "(not registered by autopeft)")

    why_reevaluate = comparable(candidate, holder) if holder is not None else None
    if why_reevaluate is not None and test_data is None and not force:
        # refuse before downloading anything: different test sets give numbers that do not compare
        assert holder is not None
        raise RegistryError(
            f"promote: cannot compare version {cand_v} with {to_alias} version {holder.version}: "
            f"{why_reevaluate}; pass --test-data FILE to re-evaluate both on one test set")
    if test_data is not None:
        from autopeft.data import local_copy, shown_url

        local_copy(str(test_data), "--test-data")  # a URL that cannot be fetched fails before any download
    needs_adapter = test_data is not None or config.max_latency_ms is not None
    with tempfile.TemporaryDirectory(prefix="autopeft-promote-") as tmp:
        predictor = None
        frame = None
        if needs_adapter:
            from autopeft.engine.predictor import AdapterPredictor

            predictor = AdapterPredictor.load(registry.download(name, cand_v, Path(tmp) / "candidate"))
        if test_data is not None:
            assert predictor is not None
            frame, fingerprint = read_test_data(test_data, predictor.metadata, encoding)
            same_as_tags = (fingerprint == candidate.test_fingerprint
                            and (holder is None or (why_reevaluate is None and fingerprint == holder.test_fingerprint)))
            if not same_as_tags:
                # compare on the data the user named: both versions, same rows, same code
                shown = shown_url(str(test_data))
                why_reevaluate = why_reevaluate or f"--test-data {shown} differs from the recorded test sets"
                source = f"re-evaluated on {Path(shown).name} ({fingerprint})"
                candidate.value = evaluate_on(predictor, frame).get(candidate.metric)
                candidate.test_fingerprint, candidate.source = fingerprint, source
                if holder is not None:
                    holder_predictor = AdapterPredictor.load(
                        registry.download(name, holder.version, Path(tmp) / "holder"))
                    holder.value = evaluate_on(holder_predictor, frame).get(candidate.metric)
                    holder.metric, holder.test_fingerprint, holder.source = candidate.metric, fingerprint, source
                    del holder_predictor
        if config.max_latency_ms is not None:
            assert predictor is not None
            probe = frame if frame is not None else _probe_frame(predictor.metadata)
            candidate.latency_ms = measure_latency(predictor, probe, config.latency_samples)
        del predictor

    if holder is not None and why_reevaluate is not None and test_data is None:
        # forced without data to compare on: say so instead of comparing different test sets
        gates = [GateResult("not_worse", False, f"not compared: {why_reevaluate}")]
        gates += decide(candidate, None, config, to_alias)
    else:
        gates = decide(candidate, holder, config, to_alias)
    failed = [g for g in gates if not g.passed]
    if failed and not force:
        reasons = "; ".join(g.message for g in failed)
        raise GateRefused(f"promote refused: {reasons}. {to_alias!r} stays on "
                          f"{'version ' + holder.version if holder else 'no version'} "
                          f"(override with --force --reason TEXT)")

    # "forced" records what happened, not the flag: a --force whose gates all passed overrode nothing
    overridden = bool(failed) and force
    summary = [{k: v for k, v in asdict(g).items() if k != "message"} for g in gates]
    version_tags = PromotionTags(alias=to_alias, gates=summary, forced=overridden, latency_ms=candidate.latency_ms)
    if candidate.value is not None and candidate.source != RECORDED:
        version_tags.compared_test_metric = candidate.value
        version_tags.compared_on = candidate.test_fingerprint
    event = registry.move_alias(name, to_alias, cand_v, action="force" if overridden else "promote", reason=reason,
                                gates=summary, version_tags=version_tags)
    return PromotionResult(name, to_alias, cand_v, event.previous, gates, overridden, event)
