"""What autopeft writes, named once: MLflow tags, params and metrics, Optuna user attributes,
outcomes, artifact and file names, and the adapter's metadata file.

Every writer and reader in the package takes its names from here, and the typed records write
and read themselves (``to_tags`` / ``from_tags``, ``to_json`` / ``from_json``), so a key is
spelled in one place and a store written by an older release is read by the same code that
writes a new one. Readers tolerate missing keys (older or partial stores: a field is then
``None``) and the older shapes of a value (``autopeft.base_model`` is a plain model name on a
study run, the JSON model reference on a model version).

The bottom layer: imports nothing from autopeft.

Where each name lives:

- :class:`RunTag`: tags on MLflow runs, the study's parent run and its nested trial runs
  (:class:`StudyRunTags`, :class:`TrialRunTags`).
- :class:`VersionTag`: tags on registered model versions: a short summary a person reads
  (:class:`VersionSummary`), what a promotion records (:class:`PromotionTags`) and the keys of
  the full lineage (:class:`VersionTags`), which this release writes as ``lineage.json`` of the
  logged model and older releases wrote as tags.
- :class:`ModelTag`: tags on registered models: the history of every alias (:class:`AliasEvent`).
- :class:`TrialAttr`: user attributes of Optuna trials.
- :class:`Metric`: metrics logged on the study's parent run.
- :class:`Outcome`, :data:`RUN_STATUS`, :class:`RunKind`, :class:`Alias`.
- :class:`Artifact`: artifact and file names (run artifacts, the logged model, the adapter's
  ``autopeft.json`` (:class:`AdapterMetadata`, with a regression adapter's :class:`TargetScale`),
  the study manifest ``study.json``).
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, ClassVar, Optional, TypeVar

#: Prefix of every key autopeft writes (tags, Optuna user attributes).
PREFIX = "autopeft."
#: MLflow's limit on a model-version or registered-model tag value.
MAX_VERSION_TAG = 5000
#: MLflow's limit on a param value (trial configs, flattened search configs).
MAX_PARAM = 6000
#: Longest run description autopeft writes (MLflow allows more; a description is read, not scrolled).
MAX_NOTE = 5000


# --------------------------------------------------------------------------- names


class RunKind:
    """Value of :attr:`RunTag.KIND`: the study's parent run or one trial's nested run."""

    STUDY = "study"
    TRIAL = "trial"
    FINAL_TRAINING = "final_training"  # the selected config trained again (``budget.final_steps``)


class Outcome:
    """How a trial ended, as Optuna names it (plus INTERRUPTED: the search stopped first)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    INTERRUPTED = "INTERRUPTED"
    #: The outcomes a finished trial can have (what the searcher tells Optuna).
    FINISHED: ClassVar[tuple[str, ...]] = (COMPLETE, PRUNED, FAIL)


#: Outcome of a trial → status of its MLflow run.
RUN_STATUS: dict[str, str] = {Outcome.COMPLETE: "FINISHED", Outcome.PRUNED: "KILLED", Outcome.FAIL: "FAILED",
                              Outcome.INTERRUPTED: "KILLED"}


class ExperimentTag:
    """MLflow's own tags on the experiment that autopeft sets: the kind decides which page the
    UI opens on (the training runs, not the GenAI overview); the note is its description."""

    KIND = "mlflow.experimentKind"
    NOTE = "mlflow.note.content"
    #: The experiment kind of model training (MLflow's value).
    MODEL_DEVELOPMENT = "custom_model_development"
    DESCRIPTION = ("autopeft studies: each study is a parent run whose nested runs are its trials; the winning "
                   "trial's adapter is registered in the Model Registry (see the study run's description).")


class RunTag:
    """Tag keys on MLflow runs (S: the study's parent run, T: a trial run)."""

    #: MLflow's own: nests a trial run under its study's run in the UI (T).
    PARENT_RUN = "mlflow.parentRunId"
    STUDY = "autopeft.study"  # S, T
    KIND = "autopeft.run_kind"  # S, T: RunKind
    VERSION = "autopeft.version"  # S: the autopeft version that ran the study
    DATA_FINGERPRINT = "autopeft.data_fingerprint"  # S
    BASE_MODEL = "autopeft.base_model"  # S: model.name_or_path as configured
    OPTUNA_STORAGE = "autopeft.optuna_storage"  # S: credentials redacted
    BEST_TRIAL_ID = "autopeft.best_trial_id"  # S
    BEST_TRIAL_RUN_ID = "autopeft.best_trial_run_id"  # S
    SELECTION_POLICY = "autopeft.selection_policy"  # S
    SELECTION_REASON = "autopeft.selection_reason"  # S
    PARETO_AXES = "autopeft.pareto_axes"  # S: JSON [[metric, mode], ...]
    REPORT = "autopeft.report"  # S: the report's artifact path
    REPORT_PNG_RENDERER = "autopeft.report_png_renderer"  # S: kaleido | matplotlib
    REPORT_ERROR = "autopeft.report_error"  # S
    FINAL_TRAINING_ERROR = "autopeft.final_training_error"  # S: why the trial's adapter was registered instead
    FINAL_TRAINING_NODE = "autopeft.final_training_node"  # S: the Ray node it ran on
    FINAL_TRAINING_START = "autopeft.final_training_start"  # S: what it started from (the trial's adapter, or init)
    CALIBRATION_SKIPPED = "autopeft.calibration_skipped"  # S: why no learning-rate probe ran, calibration on
    TRIAL_ID = "autopeft.trial_id"  # T: Ray's trial id
    OUTCOME = "autopeft.outcome"  # T: Outcome
    ERROR = "autopeft.error"  # T: the last line of a failed trial's traceback; S: why the study ended early
    WARM_START = "autopeft.warm_start"  # T: where an enqueued config came from
    SELECTED = "autopeft.selected"  # T: "true" on the trial whose adapter was registered
    WORKERS = "autopeft.workers"  # T: the worker processes (pids) the trial ran in, in order
    TRIVIAL = "autopeft.trivial"  # T: "true" when its last evaluation was at the trivial predictor's level
    SUBMITTER = "autopeft.submitter"  # S: who submitted the study as a Ray job (autopeft submit)
    JOB_ID = "autopeft.job_id"  # S: the Ray job that last ran the study (its submission id)
    CANCELLED_BY = "autopeft.cancelled_by"  # S: who ran autopeft cancel
    CANCELLED_AT = "autopeft.cancelled_at"  # S: when the driver was told to stop (UTC, ISO 8601)
    NOTE = ExperimentTag.NOTE  # S, T: MLflow's run description, in plain words


class VersionTag:
    """Tag keys on registered model versions.

    A version registered by this release carries the summary (:class:`VersionSummary`: study,
    trial, family, adapter, placement, rank, learning rate, metric, val and test metric,
    trainable share, base model name, data fingerprint); its full lineage, every key below, is
    ``lineage.json`` of its logged model (:attr:`Artifact.MODEL_LINEAGE`). Versions of older
    releases hold every lineage key as a tag.
    """

    # the summary only (derived from the params at registration) ------------------------
    ADAPTER = "autopeft.adapter"  # one line: the family and its main params (lora r=8 alpha=16)
    PLACEMENT = "autopeft.placement"  # layers all, roles query,value
    RANK = "autopeft.rank"
    LEARNING_RATE = "autopeft.learning_rate"
    # recorded by the search at registration (VersionTags) ------------------------------
    STUDY = RunTag.STUDY
    TRIAL_ID = RunTag.TRIAL_ID
    TRIAL_RUN_ID = "autopeft.trial_run_id"
    PARENT_RUN_ID = "autopeft.parent_run_id"
    FAMILY = "autopeft.family"
    PARAMS = "autopeft.params"  # JSON
    BASE_MODEL = RunTag.BASE_MODEL  # JSON: the model reference (name_or_path, location, revision, config_sha256)
    DATA_FINGERPRINT = RunTag.DATA_FINGERPRINT
    SPLIT_SIZES = "autopeft.split_sizes"  # JSON {split: rows}
    TEST_FINGERPRINT = "autopeft.test_fingerprint"
    METRIC = "autopeft.metric"
    MODE = "autopeft.mode"
    SELECTION_POLICY = RunTag.SELECTION_POLICY
    VAL_METRIC = "autopeft.val_metric"
    TEST_METRIC = "autopeft.test_metric"
    TRAINABLE_PARAMS = "autopeft.trainable_params"
    TRAINABLE_SHARE = "autopeft.trainable_share"
    FINAL_STEPS = "autopeft.final_steps"
    VERSION = RunTag.VERSION
    # derived at registration (registry.versions.complete_lineage) ---------------------
    BASE_MODEL_NAME = "autopeft.base_model_name"
    BASE_MODEL_PATH = "autopeft.base_model_path"
    BASE_MODEL_REVISION = "autopeft.base_model_revision"
    BASE_MODEL_CONFIG_SHA256 = "autopeft.base_model_config_sha256"
    ADAPTER_CONFIG = "autopeft.adapter_config"  # JSON: the peft config's main fields
    SPACE_HASH = "autopeft.space_hash"
    GIT_COMMIT = "autopeft.git_commit"
    GIT_DIRTY = "autopeft.git_dirty"  # "true" | "false"
    REGISTERED_AT = "autopeft.registered_at"
    REGISTERED_BY = "autopeft.registered_by"
    # written by a promotion (PromotionTags) -----------------------------------------------
    LATENCY_MS = "autopeft.latency_ms"

    @staticmethod
    def for_alias(alias: str, name: str) -> str:
        """``autopeft.<alias>.<name>``: what the last move of ``alias`` to this version recorded
        (``name`` one of the :class:`AliasField` names)."""
        return f"{PREFIX}{alias}.{name}"


class AliasField:
    """The ``<name>`` of :meth:`VersionTag.for_alias` keys."""

    ACTION = "action"
    AT = "at"
    BY = "by"
    PREVIOUS = "previous"
    REASON = "reason"
    GATES = "gates"
    FORCED = "forced"
    COMPARED_TEST_METRIC = "compared_test_metric"
    COMPARED_ON = "compared_on"
    ROLLED_BACK_FROM = "rolled_back_from"


class ModelTag:
    """Tag keys on registered models."""

    #: ``autopeft.history.<alias>.<seq, 5 digits>``: one :class:`AliasEvent` (JSON) per move.
    HISTORY_PREFIX = "autopeft.history."

    @staticmethod
    def history(alias: str, seq: int) -> str:
        return f"{ModelTag.HISTORY_PREFIX}{alias}.{seq:05d}"

    @staticmethod
    def history_alias(key: str) -> str | None:
        """The alias of a history key, None for any other key."""
        if not key.startswith(ModelTag.HISTORY_PREFIX):
            return None
        alias, _, seq = key[len(ModelTag.HISTORY_PREFIX):].rpartition(".")
        return alias or None


class TrialAttr:
    """User attributes of Optuna trials."""

    RAY_TRIAL_ID = "autopeft.ray_trial_id"  # joins an Optuna trial to its Ray trial and MLflow run
    WARM_START = RunTag.WARM_START  # set when the config was enqueued: its source
    #: Why a trial was closed as FAIL by a driver that ended before it did (a crash, Ctrl-C, a
    #: cancel): asked for and never run, or interrupted mid-run.
    ORPHANED = "autopeft.orphaned"
    #: On the trial that holds the result of an interrupted one a resumed study ran to its end:
    #: the number of the FAIL trial it continues (Optuna cannot reopen a finished trial).
    CONTINUES = "autopeft.continues_trial"
    #: Why a trial was told to Optuna as PRUNED though Tune ran it to its end (still at the
    #: trivial level), or what level the rung stopped it at.
    PRUNED_REASON = "autopeft.pruned_reason"
    #: Prefix of the cost measurements (``autopeft.<cost metric>``) the constraints read.
    MEASUREMENT_PREFIX = PREFIX
    FAMILY = MEASUREMENT_PREFIX + "family"  # the trial's adapter family

    @staticmethod
    def measurement(name: str) -> str:
        return f"{TrialAttr.MEASUREMENT_PREFIX}{name}"


class Metric:
    """Metrics logged on the study's parent run (trial runs log what the trial reports)."""

    SEARCH_WALL_TIME = "search_wall_time_s"
    BEST_TRAINABLE_PARAMS = "best_trainable_params"
    BEST_TRAINABLE_SHARE = "best_trainable_share"
    FINAL_TRAINING_TRAIN = "final_training_train_s"  # the final training's own training steps
    FINAL_TRAINING_EVAL = "final_training_eval_s"  # and its validation evaluations
    FINAL_TRAINING_KEPT_STEP = "final_training_kept_step"  # the evaluation whose weights are registered
    PARETO_SET_SIZE = "pareto_set_size"
    FEASIBLE_TRIALS = "feasible_trials"
    #: Prefix of the final training's validation curve (one point per evaluation step).
    FINAL_PREFIX = "final_"
    #: What a trial reports with every evaluation but does not change with the step: logged once,
    #: at the trial's first evaluation, so the run's charts are the curves that move.
    TRIAL_CONSTANTS = ("trainable_params", "trainable_share", "adapter_size_mb", "latency_ms", "setup_time_s",
                       "num_target_modules")
    #: Reported by the trial for the driver, never logged as a metric (the worker is a tag).
    WORKER_PID = "worker_pid"
    #: Reported with each evaluation (``tasks.trivial``): 1 while the objective's metric is at the
    #: trivial predictor's level, else 0; and the score the rungs compare (higher is better).
    AT_TRIVIAL = "at_trivial"
    RUNG_SCORE = "rung_score"
    TRIVIAL_PREFIX = "trivial_"

    @staticmethod
    def trivial(metric: str) -> str:
        """The trivial predictor's validation ``metric``, on the study run."""
        return f"{Metric.TRIVIAL_PREFIX}{metric}"

    @staticmethod
    def best_val(metric: str) -> str:
        """The registered adapter's validation ``metric``, measured after reloading it."""
        return f"best_val_{metric}"

    @staticmethod
    def test(metric: str) -> str:
        return f"test_{metric}"

    @staticmethod
    def phase(name: str) -> str:
        """Wall seconds of one phase of the search (``SEARCH_PHASES``)."""
        return f"phase_{name}_s"

    @staticmethod
    def final(metric: str) -> str:
        """The final training's validation ``metric`` (logged at each evaluation step)."""
        return f"{Metric.FINAL_PREFIX}{metric}"


class CalibrationRun:
    """The learning-rate calibration before the search (``autopeft.study.calibration``): a run
    nested under the study's run (tagged like a trial run, with this kind) holding each probed
    family's curve and the range chosen for it; its wall time is also on the study run."""

    KIND = "calibration"  # value of RunTag.KIND
    #: Metric on the study's parent run: wall seconds of every family's probe, their Ray tasks included.
    WALL_TIME = "calibration_wall_time_s"
    #: Metric on the study's parent run: training steps every family's probe took together (a
    #: comparison at equal steps, such as the bench, counts them against the search).
    STEPS_TAKEN = "calibration_steps"
    #: Params of the calibration run: the probe's settings.
    STEPS, LR_MIN, LR_MAX = "steps", "lr_min", "lr_max"
    #: Value of :meth:`outcome` when the probe's loss never fell.
    KEPT = "kept the space's range (loss never fell)"
    CALIBRATED = "calibrated"
    #: Value of :meth:`outcome` when the space sets the family's learning rate itself (not probed).
    SET_BY_HAND = "set in the space (not probed)"

    @staticmethod
    def lr(family: str) -> str:
        """Metric: the learning rate of the family's probe at each step (the MLflow step)."""
        return f"{family}.lr"

    @staticmethod
    def loss(family: str) -> str:
        """Metric: the training loss of the family's probe at each step (finite values only)."""
        return f"{family}.loss"

    @staticmethod
    def outcome(family: str) -> str:
        """Param: CALIBRATED, KEPT, SET_BY_HAND or why the probe failed."""
        return f"{family}.outcome"

    @staticmethod
    def low(family: str) -> str:
        """Param: the lower end of the learning-rate range the family's trials sample from."""
        return f"{family}.lr_low"

    @staticmethod
    def high(family: str) -> str:
        return f"{family}.lr_high"

    @staticmethod
    def suggested(family: str) -> str:
        """Param: the rate at the steepest fall of the probe's smoothed loss."""
        return f"{family}.lr_suggested"

    @staticmethod
    def probe_range(family: str) -> str:
        """Param, only where the range searched is not the probe's own: the probe's range and what
        changed it (widened to hold the built-in portfolio's rate)."""
        return f"{family}.lr_probe_range"

    @staticmethod
    def stopped(family: str) -> str:
        """Param: why the family's probe ended: end, diverged or non-finite (``LrCurve.stopped``)."""
        return f"{family}.stopped"

    @staticmethod
    def probe_time(family: str) -> str:
        """Metric: seconds of the family's probe steps (its model's build and load not included)."""
        return f"{family}.probe_time_s"


class Alias:
    """Registry aliases autopeft moves."""

    CANDIDATE = "candidate"  # set at registration
    PRODUCTION = "production"  # moved by promote / rollback


class Artifact:
    """Artifact names on the study's parent run, of the logged model, and files autopeft writes."""

    CONFIG = "config.json"  # the resolved search config (credentials redacted)
    #: The same config as YAML, each field autopeft chose commented with its reason (what
    #: ``autopeft init`` writes, complete): ``autopeft search --config`` on it reruns the study.
    CONFIG_YAML = "config.yaml"
    SPACE = "space.json"  # the search space as searched
    #: On the study's parent run: base model reference, data sources, split sizes, label names.
    #: Beside a registered version's adapter (a pyfunc artifact): the version's full lineage
    #: (:meth:`VersionTags.to_json`), at :attr:`MODEL_LINEAGE` in the logged model.
    LINEAGE = "lineage.json"
    #: The version's lineage inside its logged model (pyfunc artifacts live under ``artifacts/``).
    MODEL_LINEAGE = "artifacts/lineage.json"
    TRIALS = "trials.json"  # one row per trial
    PARETO_CSV = "pareto_set.csv"
    PARETO_PARQUET = "pareto_set.parquet"
    REPORT_DIR = "report"  # the study report: report/report.html and report/figures/*.png
    REPORT_HTML = "report.html"
    REPORT_FIGURES = "figures"
    #: The logged model's name in the run (``log_model(name=...)``).
    MODEL = "model"
    #: The adapter folder, a pyfunc artifact of the logged model (``artifacts/adapter``), and the
    #: name of the exported adapter's folder (``<output_dir>/<study>/adapter``).
    ADAPTER = "adapter"
    #: Beside an exported adapter: how to load it and read inputs (:class:`AdapterMetadata`).
    METADATA_FILE = "autopeft.json"
    #: ``<output_dir>/<study>/study.json``: what a resume needs.
    MANIFEST_FILE = "study.json"
    #: Written by ``autopeft export`` beside the exported files: where they came from.
    EXPORT_PROVENANCE = "autopeft-export.json"

    @staticmethod
    def report_html() -> str:
        """The report's path among the parent run's artifacts."""
        return f"{Artifact.REPORT_DIR}/{Artifact.REPORT_HTML}"

    @staticmethod
    def report_figures() -> str:
        return f"{Artifact.REPORT_DIR}/{Artifact.REPORT_FIGURES}"


# --------------------------------------------------------------------------- codecs


class _Codec:
    """How one field is written to a tag value and read back (tolerantly: None if unreadable)."""

    def encode(self, value: Any) -> str:
        return str(value)

    def decode(self, text: str) -> Any:
        return text


class _Float(_Codec):
    def __init__(self, fmt: str = "") -> None:
        self.fmt = fmt

    def encode(self, value: Any) -> str:
        return format(float(value), self.fmt) if self.fmt else str(float(value))

    def decode(self, text: str) -> Optional[float]:
        try:
            number = float(text)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(number) else number


class _Int(_Codec):
    def encode(self, value: Any) -> str:
        return str(int(value))

    def decode(self, text: str) -> Optional[int]:
        try:
            return int(float(text))
        except (TypeError, ValueError, OverflowError):
            return None


class _Bool(_Codec):
    def encode(self, value: Any) -> str:
        return "true" if value else "false"

    def decode(self, text: str) -> Optional[bool]:
        return {"true": True, "false": False}.get(text.strip().lower())


class _Json(_Codec):
    def __init__(self, sort_keys: bool = True) -> None:
        self.sort_keys = sort_keys

    def encode(self, value: Any) -> str:
        return json.dumps(value, sort_keys=self.sort_keys, default=str)

    def decode(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return None


class _Axes(_Json):
    """``[[metric, mode], ...]`` ↔ a list of (metric, mode) pairs."""

    def encode(self, value: Any) -> str:
        return json.dumps([list(pair) for pair in value])

    def decode(self, text: str) -> Any:
        data = super().decode(text)
        if not isinstance(data, list):
            return None
        return [tuple(pair) for pair in data if isinstance(pair, (list, tuple)) and len(pair) == 2]


class _ModelRef(_Json):
    """The base model reference (JSON), or a plain model name as older stores and study runs hold it."""

    def decode(self, text: str) -> Any:
        data = super().decode(text)
        if isinstance(data, dict):
            return data
        return {"name_or_path": text} if text.strip() else None


_TEXT, _FLOAT, _INT, _BOOL, _JSON = _Codec(), _Float(), _Int(), _Bool(), _Json()


def _tag(key: str, codec: _Codec = _TEXT, *, limit: Optional[int] = None, always: bool = False) -> Any:
    """A field stored as the tag ``key``. ``always``: written even when unset (as ""), so the
    record has the same keys whatever it knows; ``limit``: the value is cut to this length."""
    return field(default=None, metadata={"tag": key, "codec": codec, "limit": limit, "always": always})


_R = TypeVar("_R", bound="_TagRecord")


class _TagRecord:
    """A dataclass whose fields are tags: unset fields (None) are not written (unless ``always``),
    missing or empty tags read as None."""

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Field name → tag key."""
        return {f.name: f.metadata["tag"] for f in fields(cls) if "tag" in f.metadata}  # type: ignore[arg-type]

    def to_tags(self, *, only_set: bool = False) -> dict[str, str]:
        """The record as tags. ``only_set``: leave out unset fields even where the record
        otherwise writes them as "" (to add some tags to a version that has the others)."""
        out: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if "tag" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None:
                if f.metadata["always"] and not only_set:
                    out[f.metadata["tag"]] = ""
                continue
            text = f.metadata["codec"].encode(value)
            limit = f.metadata["limit"]
            out[f.metadata["tag"]] = text[:limit] if limit else text
        return out

    @classmethod
    def from_tags(cls: type[_R], tags: Mapping[str, str] | None) -> _R:
        tags = tags or {}
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if "tag" not in f.metadata:
                continue
            text = tags.get(f.metadata["tag"])
            if text is None or text == "":
                continue
            values[f.name] = f.metadata["codec"].decode(str(text))
        return cls(**values)


# --------------------------------------------------------------------------- run tags


@dataclass
class StudyRunTags(_TagRecord):
    """Tags of a study's parent run. The search writes them in steps (at creation, after the
    selection, the final training, the report): a record with only some fields set writes only
    those, so each step is ``StudyRunTags(field=...).to_tags()``. Long texts are cut to what
    the search has always kept (``selection_reason`` 5000, errors 500 characters)."""

    study: Optional[str] = _tag(RunTag.STUDY)
    kind: Optional[str] = _tag(RunTag.KIND)
    version: Optional[str] = _tag(RunTag.VERSION)
    data_fingerprint: Optional[str] = _tag(RunTag.DATA_FINGERPRINT)
    base_model: Optional[str] = _tag(RunTag.BASE_MODEL)
    optuna_storage: Optional[str] = _tag(RunTag.OPTUNA_STORAGE)
    best_trial_id: Optional[str] = _tag(RunTag.BEST_TRIAL_ID)
    best_trial_run_id: Optional[str] = _tag(RunTag.BEST_TRIAL_RUN_ID)
    selection_policy: Optional[str] = _tag(RunTag.SELECTION_POLICY)
    selection_reason: Optional[str] = _tag(RunTag.SELECTION_REASON, limit=5000)
    pareto_axes: Optional[list[tuple[str, str]]] = _tag(RunTag.PARETO_AXES, _Axes())
    report: Optional[str] = _tag(RunTag.REPORT)
    report_png_renderer: Optional[str] = _tag(RunTag.REPORT_PNG_RENDERER)
    report_error: Optional[str] = _tag(RunTag.REPORT_ERROR, limit=500)
    final_training_error: Optional[str] = _tag(RunTag.FINAL_TRAINING_ERROR, limit=500)
    final_training_node: Optional[str] = _tag(RunTag.FINAL_TRAINING_NODE)
    final_training_start: Optional[str] = _tag(RunTag.FINAL_TRAINING_START, limit=500)
    calibration_skipped: Optional[str] = _tag(RunTag.CALIBRATION_SKIPPED, limit=500)
    #: Why a study ended before it registered an adapter (Ctrl-C, or the crash's type and message).
    error: Optional[str] = _tag(RunTag.ERROR, limit=500)
    submitter: Optional[str] = _tag(RunTag.SUBMITTER)
    job_id: Optional[str] = _tag(RunTag.JOB_ID)
    cancelled_by: Optional[str] = _tag(RunTag.CANCELLED_BY)
    cancelled_at: Optional[str] = _tag(RunTag.CANCELLED_AT)
    note: Optional[str] = _tag(RunTag.NOTE, limit=MAX_NOTE)

    @classmethod
    def created(cls, *, study: str, version: str, data_fingerprint: str, base_model: str,
                optuna_storage: str) -> StudyRunTags:
        """The tags a study's parent run is created with (``optuna_storage`` already redacted)."""
        return cls(study=study, kind=RunKind.STUDY, version=version, data_fingerprint=data_fingerprint,
                   base_model=base_model, optuna_storage=optuna_storage)

    @staticmethod
    def search_filter(study: str) -> str:
        """MLflow ``search_runs`` filter for the parent run(s) of ``study``."""
        return f"tags.`{RunTag.STUDY}` = '{study}' and tags.`{RunTag.KIND}` = '{RunKind.STUDY}'"


@dataclass
class TrialRunTags(_TagRecord):
    """Tags of a trial's nested run (written at creation, then the outcome, then the warm start)."""

    parent_run_id: Optional[str] = _tag(RunTag.PARENT_RUN)
    study: Optional[str] = _tag(RunTag.STUDY)
    kind: Optional[str] = _tag(RunTag.KIND)
    trial_id: Optional[str] = _tag(RunTag.TRIAL_ID)
    outcome: Optional[str] = _tag(RunTag.OUTCOME)
    error: Optional[str] = _tag(RunTag.ERROR, limit=MAX_PARAM)
    warm_start: Optional[str] = _tag(RunTag.WARM_START)
    selected: Optional[bool] = _tag(RunTag.SELECTED, _BOOL)
    workers: Optional[str] = _tag(RunTag.WORKERS)
    trivial: Optional[bool] = _tag(RunTag.TRIVIAL, _BOOL)
    note: Optional[str] = _tag(RunTag.NOTE, limit=MAX_NOTE)

    @classmethod
    def created(cls, *, parent_run_id: str, study: str, trial_id: str) -> TrialRunTags:
        return cls(parent_run_id=parent_run_id, study=study, kind=RunKind.TRIAL, trial_id=trial_id)

    @staticmethod
    def children_filter(parent_run_id: str) -> str:
        """MLflow ``search_runs`` filter for the trial runs of a study's parent run."""
        return f"tags.`{RunTag.PARENT_RUN}` = '{parent_run_id}'"

    @staticmethod
    def trial_filter(trial_id: str) -> str:
        return f"tags.`{RunTag.TRIAL_ID}` = '{trial_id}'"


# --------------------------------------------------------------------------- version tags


@dataclass
class VersionTags(_TagRecord):
    """A model version's full lineage: what the search records at registration (the
    ``SEARCH_FIELDS``) and what the registry derives.

    Where it is stored: a version registered by this release carries :class:`VersionSummary`
    as tags, and this whole record as ``lineage.json`` of its logged model
    (:meth:`to_json`, :attr:`Artifact.MODEL_LINEAGE`) and as ``lineage`` in its adapter's
    ``autopeft.json``; ``registry.versions.Registry.lineage`` reads either form back into this
    record. Older releases wrote every field as a tag (:meth:`to_tags` / :meth:`from_tags`:
    the search's keys always, "" where unset; numbers as Python prints them, ``params``,
    ``base_model``, ``split_sizes`` and ``adapter_config`` as JSON with sorted keys;
    ``base_model`` also as a plain model name: ``{"name_or_path": name}``).
    """

    study: Optional[str] = _tag(VersionTag.STUDY, always=True)
    trial_id: Optional[str] = _tag(VersionTag.TRIAL_ID, always=True)
    trial_run_id: Optional[str] = _tag(VersionTag.TRIAL_RUN_ID, always=True)
    parent_run_id: Optional[str] = _tag(VersionTag.PARENT_RUN_ID, always=True)
    family: Optional[str] = _tag(VersionTag.FAMILY, always=True)
    params: Optional[dict[str, Any]] = _tag(VersionTag.PARAMS, _JSON, always=True)
    base_model: Optional[dict[str, Any]] = _tag(VersionTag.BASE_MODEL, _ModelRef(), always=True)
    data_fingerprint: Optional[str] = _tag(VersionTag.DATA_FINGERPRINT, always=True)
    split_sizes: Optional[dict[str, int]] = _tag(VersionTag.SPLIT_SIZES, _JSON, always=True)
    test_fingerprint: Optional[str] = _tag(VersionTag.TEST_FINGERPRINT, always=True)
    metric: Optional[str] = _tag(VersionTag.METRIC, always=True)
    mode: Optional[str] = _tag(VersionTag.MODE, always=True)
    selection_policy: Optional[str] = _tag(VersionTag.SELECTION_POLICY, always=True)
    val_metric: Optional[float] = _tag(VersionTag.VAL_METRIC, _FLOAT, always=True)
    test_metric: Optional[float] = _tag(VersionTag.TEST_METRIC, _FLOAT, always=True)
    trainable_params: Optional[int] = _tag(VersionTag.TRAINABLE_PARAMS, _INT, always=True)
    trainable_share: Optional[float] = _tag(VersionTag.TRAINABLE_SHARE, _FLOAT, always=True)
    final_steps: Optional[int] = _tag(VersionTag.FINAL_STEPS, _INT, always=True)
    version: Optional[str] = _tag(VersionTag.VERSION, always=True)
    # derived by the registry
    base_model_name: Optional[str] = _tag(VersionTag.BASE_MODEL_NAME)
    base_model_path: Optional[str] = _tag(VersionTag.BASE_MODEL_PATH)
    base_model_revision: Optional[str] = _tag(VersionTag.BASE_MODEL_REVISION)
    base_model_config_sha256: Optional[str] = _tag(VersionTag.BASE_MODEL_CONFIG_SHA256)
    adapter_config: Optional[dict[str, Any]] = _tag(VersionTag.ADAPTER_CONFIG, _JSON)
    space_hash: Optional[str] = _tag(VersionTag.SPACE_HASH)
    git_commit: Optional[str] = _tag(VersionTag.GIT_COMMIT)
    git_dirty: Optional[bool] = _tag(VersionTag.GIT_DIRTY, _BOOL)
    registered_at: Optional[str] = _tag(VersionTag.REGISTERED_AT)
    registered_by: Optional[str] = _tag(VersionTag.REGISTERED_BY)

    #: The keys the search records (the rest the registry derives).
    SEARCH_FIELDS: ClassVar[tuple[str, ...]] = (
        "study", "trial_id", "trial_run_id", "parent_run_id", "family", "params", "base_model", "data_fingerprint",
        "split_sizes", "test_fingerprint", "metric", "mode", "selection_policy", "val_metric", "test_metric",
        "trainable_params", "trainable_share", "final_steps", "version")

    @property
    def base_name(self) -> Optional[str]:
        """The base model's name: its own tag, else from the reference (versions of older stores)."""
        if self.base_model_name:
            return self.base_model_name
        name = (self.base_model or {}).get("name_or_path")
        return str(name) if name else None

    @property
    def base_pin(self) -> str:
        """What pins the base model: its revision, else its config hash ("" when neither)."""
        ref = self.base_model or {}
        return str(self.base_model_revision or self.base_model_config_sha256 or ref.get("revision")
                   or ref.get("config_sha256") or "")

    def derive_base_model(self) -> None:
        """Fill the base model's searchable tags from the reference (``base_model``)."""
        ref = self.base_model
        if not isinstance(ref, dict) or not ref:
            return
        self.base_model_name = str(ref.get("name_or_path", ""))
        location = str(ref.get("location", ""))
        if location.startswith("/"):
            self.base_model_path = location
        if ref.get("revision"):
            self.base_model_revision = str(ref["revision"])
        if ref.get("config_sha256"):
            self.base_model_config_sha256 = str(ref["config_sha256"])

    @staticmethod
    def study_filter(study: str) -> str:
        """Where ``search_model_versions`` supports tag filters: the versions of ``study``."""
        return f"tags.`{VersionTag.STUDY}` = '{study}'"

    # the JSON form (lineage.json, autopeft.json's ``lineage``) -----------------------------

    def to_dict(self) -> dict[str, Any]:
        """The set fields by name (JSON types: numbers stay numbers, dicts stay dicts)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> VersionTags:
        """Tolerant like :meth:`from_tags`: unknown keys are ignored, a value written as tag text
        (``"0.5"``, a JSON string) is decoded, a value of the wrong kind reads as None."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = (data or {}).get(f.name)
            if value is None or value == "":
                continue
            codec = f.metadata["codec"]
            if isinstance(value, str) and type(codec) is not _Codec:
                value = codec.decode(value)
            elif isinstance(codec, _Float):
                value = codec.decode(str(value)) if isinstance(value, (int, float)) else None
            elif isinstance(codec, _Int):
                value = codec.decode(str(value)) if isinstance(value, (int, float)) else None
            elif isinstance(codec, _Bool):
                value = value if isinstance(value, bool) else None
            elif isinstance(codec, _Json):
                value = value if isinstance(value, (dict, list)) else None
            else:
                value = str(value)
            if value is not None:
                values[f.name] = value
        return cls(**values)

    def to_json(self) -> str:
        """``lineage.json``: the set fields, sorted, indented."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> VersionTags:
        """ValueError when ``text`` is not a JSON object."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{Artifact.LINEAGE}: expected a JSON object")
        return cls.from_dict(data)

    def filled_from(self, other: VersionTags) -> VersionTags:
        """This record, with the fields it lacks taken from ``other`` (its own values win)."""
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(self)
                                if getattr(self, f.name) is None and getattr(other, f.name) is not None})

    # the summary (VersionSummary) ----------------------------------------------------------

    @property
    def family_name(self) -> Optional[str]:
        """The family, else the params' ``adapter``."""
        chosen = (self.params or {}).get("adapter")
        return self.family or (str(chosen) if chosen else None)

    def _family_params(self) -> list[tuple[str, Any]]:
        family = self.family_name
        if not family or not self.params:
            return []
        prefix = f"{family}."
        found = [(k[len(prefix):], v) for k, v in self.params.items() if k.startswith(prefix)]
        first = {"r": 0, "alpha": 1}  # the low-rank families' pair leads, the rest keeps its order
        return sorted(found, key=lambda kv: first.get(kv[0], 2))

    @property
    def adapter_summary(self) -> Optional[str]:
        """One line: the family and its params that are not at their plain default
        (``lora r=8 alpha=16 dropout=0.05``, ``lora r=8 alpha=16 dropout=0.1 rslora init=pissa``)."""
        family = self.family_name
        if not family:
            return None
        words = [family]
        for name, value in self._family_params():
            if value is None or value is False or str(value).lower() in _DEFAULT_WORDS:
                continue
            words.append(name if value is True else f"{name}={_short(value)}")
        return _cut(" ".join(words))

    @property
    def placement_summary(self) -> Optional[str]:
        """Where the adapter sits: ``layers all, roles query,value`` (layer lists as ranges)."""
        params = self.params or {}
        parts = []
        if params.get("placement.layers") not in (None, ""):
            parts.append(f"layers {_ranges(params['placement.layers'])}")
        roles = params.get("placement.roles")
        if roles not in (None, ""):
            parts.append(f"roles {','.join(map(str, roles)) if isinstance(roles, (list, tuple)) else roles}")
        return _cut(", ".join(parts)) if parts else None

    @property
    def rank(self) -> Optional[int]:
        """The family's rank (``r``, AdaLoRA's ``target_r``), None for families without one."""
        values = dict(self._family_params())
        value = values.get("r", values.get("target_r"))
        return _INT.decode(str(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def learning_rate(self) -> Optional[float]:
        value = (self.params or {}).get("learning_rate")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def summary(self) -> VersionSummary:
        """The tags a version of this release carries."""
        return VersionSummary(
            study=self.study, trial_id=self.trial_id, family=self.family_name, adapter=self.adapter_summary,
            placement=self.placement_summary, rank=self.rank, learning_rate=self.learning_rate, metric=self.metric,
            val_metric=self.val_metric, test_metric=self.test_metric, trainable_share=self.trainable_share,
            base_model_name=self.base_name, data_fingerprint=self.data_fingerprint)


#: Longest value of a summary tag: every one stays under 100 characters.
MAX_SUMMARY_TAG = 99
#: Param values that say "as by default" and are left out of the adapter summary.
_DEFAULT_WORDS = frozenset({"", "default", "uniform", "none"})


def _short(value: Any) -> str:
    """A param value as a person writes it: 16.0 → 16, 0.05 → 0.05, 0.0031615 → 0.003162."""
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, (list, tuple)):
        return ",".join(map(_short, value))
    return str(value)


def _ranges(layers: Any) -> str:
    """A layer selector, lists of indices as ranges: ``0,1,2,3,5,7,8`` → ``0-3,5,7-8``."""
    items = layers if isinstance(layers, (list, tuple)) else str(layers).split(",")
    try:
        numbers = [int(str(x).strip()) for x in items]
    except ValueError:
        return ",".join(str(x).strip() for x in items)
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _cut(text: str, limit: int = MAX_SUMMARY_TAG) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


_SUMMARY_FLOAT = _Float(".6g")


def _summary(key: str, codec: _Codec = _TEXT) -> Any:
    return _tag(key, codec, limit=MAX_SUMMARY_TAG)


@dataclass
class VersionSummary(_TagRecord):
    """The tags a registered version of this release carries: what a reviewer reads in the
    MLflow UI and what ``search_model_versions`` filters on. At most 13, each value under 100
    characters, none empty (unset fields are not written); numbers to 6 significant digits
    (the lineage, :class:`VersionTags`, keeps them whole)."""

    study: Optional[str] = _summary(VersionTag.STUDY)
    trial_id: Optional[str] = _summary(VersionTag.TRIAL_ID)
    family: Optional[str] = _summary(VersionTag.FAMILY)
    adapter: Optional[str] = _summary(VersionTag.ADAPTER)
    placement: Optional[str] = _summary(VersionTag.PLACEMENT)
    rank: Optional[int] = _summary(VersionTag.RANK, _INT)
    learning_rate: Optional[float] = _summary(VersionTag.LEARNING_RATE, _Float(".4g"))
    metric: Optional[str] = _summary(VersionTag.METRIC)
    val_metric: Optional[float] = _summary(VersionTag.VAL_METRIC, _SUMMARY_FLOAT)
    test_metric: Optional[float] = _summary(VersionTag.TEST_METRIC, _SUMMARY_FLOAT)
    trainable_share: Optional[float] = _summary(VersionTag.TRAINABLE_SHARE, _SUMMARY_FLOAT)
    base_model_name: Optional[str] = _summary(VersionTag.BASE_MODEL_NAME)
    data_fingerprint: Optional[str] = _summary(VersionTag.DATA_FINGERPRINT)

    def to_tags(self, *, only_set: bool = True) -> dict[str, str]:
        return {k: v for k, v in super().to_tags(only_set=True).items() if v.strip()}


@dataclass
class PromotionTags(_TagRecord):
    """What moving ``alias`` to a version records on that version (set fields only)."""

    alias: str = Alias.PRODUCTION
    action: Optional[str] = None  # promote | force | rollback
    at: Optional[str] = None
    by: Optional[str] = None
    previous: Optional[str] = None  # "" when no version held the alias
    reason: Optional[str] = None
    gates: Optional[list[dict[str, Any]]] = None
    forced: Optional[bool] = None
    compared_test_metric: Optional[float] = None
    compared_on: Optional[str] = None
    rolled_back_from: Optional[str] = None
    latency_ms: Optional[float] = _tag(VersionTag.LATENCY_MS, _Float(".3f"))

    _CODECS: ClassVar[dict[str, _Codec]] = {
        AliasField.ACTION: _TEXT, AliasField.AT: _TEXT, AliasField.BY: _TEXT, AliasField.PREVIOUS: _TEXT,
        AliasField.REASON: _TEXT, AliasField.GATES: _Json(sort_keys=False), AliasField.FORCED: _BOOL,
        AliasField.COMPARED_TEST_METRIC: _FLOAT, AliasField.COMPARED_ON: _TEXT, AliasField.ROLLED_BACK_FROM: _TEXT,
    }

    def to_tags(self, *, only_set: bool = True) -> dict[str, str]:
        out = {}
        for name, codec in self._CODECS.items():
            value = getattr(self, name)
            if value is not None:
                out[VersionTag.for_alias(self.alias, name)] = codec.encode(value)
        out.update(super().to_tags(only_set=only_set))
        return out

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None, alias: str = Alias.PRODUCTION) -> PromotionTags:  # type: ignore[override]
        tags = tags or {}
        values: dict[str, Any] = {}
        for name, codec in cls._CODECS.items():
            text = tags.get(VersionTag.for_alias(alias, name))
            if text is not None and (text != "" or name in (AliasField.PREVIOUS, AliasField.REASON)):
                values[name] = codec.decode(str(text))
        latency = tags.get(VersionTag.LATENCY_MS)
        if latency:
            values["latency_ms"] = _FLOAT.decode(latency)
        return cls(alias=alias, **values)


# --------------------------------------------------------------------------- alias history


def now_iso() -> str:
    """Now, UTC, to the second: how every time autopeft records reads (``registered_at``, ``at``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def current_user() -> str:
    """The user name recorded as ``registered_by`` and ``by``."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in containers without a passwd entry
        return "unknown"


@dataclass
class AliasEvent:
    """One move of an alias, as recorded in the registered model's tags
    (:meth:`ModelTag.history`, JSON with sorted keys)."""

    seq: int
    alias: str
    action: str  # promote | force | rollback
    version: str
    previous: Optional[str]
    at: str = field(default_factory=now_iso)
    by: str = field(default_factory=current_user)
    reason: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tag_key(self) -> str:
        return ModelTag.history(self.alias, self.seq)

    def to_json(self) -> str:
        data = asdict(self)
        text = json.dumps(data, sort_keys=True, default=str)
        if len(text) > MAX_VERSION_TAG:  # keep the event readable; the gate details are on the version
            data["gates"] = []
            text = json.dumps(data, sort_keys=True, default=str)
        return text[:MAX_VERSION_TAG]

    @classmethod
    def from_json(cls, text: str) -> AliasEvent:
        """ValueError or TypeError when ``text`` is not an event."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("an alias event is a JSON object")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def alias_history(tags: Mapping[str, str], alias: str) -> list[AliasEvent]:
    """The alias's events in order (sequence numbers are zero-padded, so key order is time order);
    tags that are not events (edited by hand) are skipped."""
    prefix = f"{ModelTag.HISTORY_PREFIX}{alias}."
    events = []
    for key in sorted(k for k in tags if k.startswith(prefix)):
        try:
            events.append(AliasEvent.from_json(tags[key]))
        except (ValueError, TypeError):
            continue
    return events


def history_aliases(tags: Mapping[str, str]) -> list[str]:
    """The aliases a registered model's tags hold a history for, sorted."""
    return sorted({alias for alias in map(ModelTag.history_alias, tags) if alias})


# --------------------------------------------------------------------------- adapter metadata


@dataclass(frozen=True)
class TargetScale:
    """How a regression study standardised its targets: the model learns z = (y - mean) / std,
    and every output is mapped back, y = z * std + mean, so users see their own units.

    Computed once per study from its training split (``data.encode.fit_target_scale``); written in
    ``autopeft.json`` as ``"target_scale": {"mean": ..., "std": ...}``. An adapter without it
    (saved before standardisation, or of another kind) predicts its outputs as they are."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        # a zero or non-finite std would turn every target into inf or NaN
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"target_scale: expected a finite mean and a std > 0, got mean {self.mean}, std {self.std}")

    def standardise(self, values: Any) -> Any:
        """y → z (numbers or numpy arrays)."""
        return (values - self.mean) / self.std

    def restore(self, values: Any) -> Any:
        """z → y (numbers or numpy arrays)."""
        return values * self.std + self.mean

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Any) -> Optional[TargetScale]:
        """None for a missing value (no scaling); ValueError for one that is not a scale."""
        if data is None:
            return None
        if isinstance(data, TargetScale):
            return data
        if not isinstance(data, Mapping) or not {"mean", "std"} <= set(data):
            raise ValueError(f'target_scale: expected {{"mean": number, "std": number}}, got {data!r}')
        try:
            return cls(mean=float(data["mean"]), std=float(data["std"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"target_scale: {exc}") from None


@dataclass
class AdapterMetadata:
    """``autopeft.json`` beside an exported adapter: which base model to fetch (by reference),
    how to read inputs and how to read outputs (``target_scale``), plus where the adapter came from.

    Written as JSON with sorted keys (indent 2); every field is written (``lineage`` and
    ``target_scale`` only once set), unknown keys of a file (a newer release) are kept in
    ``extra`` and written back. Reading needs ``task`` and ``base_model.config``; the rest defaults when missing (older or
    hand-written files).
    """

    task: str
    #: ``{"config": <ModelConfig as JSON>, "reference": <model reference>}``
    base_model: dict[str, Any]
    label_names: list[str] = field(default_factory=list)
    text_columns: list[str] = field(default_factory=list)
    label_column: Optional[str] = None
    max_length: Optional[int] = None
    task_config: dict[str, Any] = field(default_factory=dict)
    autopeft_version: Optional[str] = None
    family: Optional[str] = None
    params: dict[str, Any] = field(default_factory=dict)
    study: Optional[str] = None
    trial_id: Optional[str] = None
    objective: dict[str, Any] = field(default_factory=dict)  # {"metric", "mode"}: the first objective
    objectives: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)  # {"policy", "reason"}
    costs: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    final_steps: Optional[int] = None
    data_fingerprint: Optional[str] = None
    #: The registered version's full lineage (:meth:`VersionTags.to_dict`), written by the
    #: registration; None in an adapter that was not registered (or by an older release).
    lineage: Optional[dict[str, Any]] = None
    #: Regression: the training split's target mean and std the model learnt in (written only
    #: when set); a file without it (older, or another kind) means no scaling.
    target_scale: Optional[TargetScale] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_config(self) -> dict[str, Any]:
        """The base model's ``ModelConfig`` (as JSON)."""
        return dict(self.base_model.get("config") or {})

    @property
    def model_reference(self) -> dict[str, Any]:
        return dict(self.base_model.get("reference") or {})

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if data["lineage"] is None:
            del data["lineage"]
        if self.target_scale is None:  # files of other kinds stay as they were, byte for byte
            del data["target_scale"]
        else:
            data["target_scale"] = self.target_scale.to_dict()
        return {**self.extra, **data}

    @property
    def version_lineage(self) -> Optional[VersionTags]:
        """``lineage`` as the record the registry reads (None when the adapter has none)."""
        return VersionTags.from_dict(self.lineage) if isinstance(self.lineage, dict) else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdapterMetadata:
        """KeyError naming the key when a required one is missing; ValueError when
        ``target_scale`` is there but is not a scale."""
        base = data.get("base_model")
        if "task" not in data:
            raise KeyError("task")
        if not isinstance(base, Mapping) or "config" not in base:
            raise KeyError("base_model.config")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["base_model"] = dict(base)
        values["target_scale"] = TargetScale.from_dict(values.get("target_scale"))
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> AdapterMetadata:
        """ValueError when ``text`` is not JSON, KeyError when a required key is missing."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{Artifact.METADATA_FILE}: expected a JSON object")
        return cls.from_dict(data)


# --------------------------------------------------------------------------- Ray jobs


class JobEnv:
    """Environment variables ``autopeft submit`` sets for the study's driver on the cluster
    (Ray's ``runtime_env``), read when the study run is opened."""

    SUBMITTER = "AUTOPEFT_SUBMITTER"
    JOB_ID = "AUTOPEFT_JOB_ID"


#: The custom Ray resource that caps how many studies run at once on a cluster
#: (``ray start --head --resources='{"autopeft_study": N}'``); each submitted study asks for one.
STUDY_RESOURCE = "autopeft_study"


@dataclass
class JobMetadata(_TagRecord):
    """What ``autopeft submit`` stores with a Ray job (its ``metadata``, string values), so that
    ``jobs``, ``cancel`` and ``submit --resume`` find the study, its MLflow and its outputs."""

    study: Optional[str] = _tag(RunTag.STUDY)
    action: Optional[str] = _tag("autopeft.action")  # search | resume
    submitter: Optional[str] = _tag(RunTag.SUBMITTER)
    tracking_uri: Optional[str] = _tag("autopeft.tracking_uri")  # credentials redacted
    experiment: Optional[str] = _tag("autopeft.experiment")  # unset: inferred on the cluster
    output_dir: Optional[str] = _tag("autopeft.output_dir")  # on the cluster
    trials: Optional[int] = _tag("autopeft.trials", _INT)  # unset: planned on the cluster
    study_slot: Optional[bool] = _tag("autopeft.study_slot", _BOOL)  # asked for one STUDY_RESOURCE

    def to_metadata(self) -> dict[str, str]:
        return self.to_tags()

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | None) -> Optional[JobMetadata]:
        """The record, or None for a job autopeft did not submit."""
        record = cls.from_tags(metadata)
        return record if record.study else None
