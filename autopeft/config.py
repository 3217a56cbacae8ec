"""The search config: one YAML file plus CLI overrides, validated once before anything runs.

``resolve(path, overrides)`` reads the file, applies ``a.b.c=value`` overrides, validates the
whole with pydantic and returns a :class:`SearchConfig` whose ``space`` is already loaded. Every
problem becomes a one-line :class:`~autopeft.errors.ConfigError` that names the field.
"""

from __future__ import annotations

import codecs
import copy
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from autopeft._validation import StrictModel, load_yaml, one_line
from autopeft.errors import ConfigError, TrackingUnreachable
from autopeft.objectives import ConstraintsConfig, SamplerConfig, SelectionConfig, check_objectives, fill_modes
from autopeft.space import SearchSpace, load_space
from autopeft.tasks import MINIMISED_METRICS, all_tasks, get_task, task_names


class _Strict(StrictModel):
    model_config = ConfigDict(validate_assignment=True)


class ModelConfig(_Strict):
    name_or_path: str = Field(
        description="Hub id, local directory, or a packaged short name ('minilm')."
    )
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit).")
    max_length: int = Field(128, gt=0, description="Token limit per example; longer ones are cut.")
    trust_remote_code: bool = Field(False, description="Run model code from the Hub (off by default).")


class TaskConfig(_Strict):
    kind: str = Field("sequence_classification", description="What the model predicts: a registered task kind "
                      "(autopeft/tasks/kinds.py).")
    max_new_tokens: int = Field(
        64, gt=0, description="causal_lm: tokens the registered model generates per prompt (greedy)."
    )

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in task_names():
            raise ValueError(f"unknown task kind {value!r} (expected one of: {', '.join(task_names())})")
        return value


class HubSource(_Strict):
    name: str = Field(description="Dataset id on the Hugging Face Hub.")
    config: Optional[str] = Field(None, description="Dataset configuration name.")
    train_split: str = "train"
    validation_split: Optional[str] = None
    test_split: Optional[str] = None


class _DataFields(_Strict):
    train: Optional[str] = Field(None, description="Local csv/tsv/jsonl/parquet file for training.")
    validation: Optional[str] = Field(None, description="Local file for validation (else carved from train).")
    test: Optional[str] = Field(None, description="Local file for the held-out test evaluation.")
    hub: Optional[HubSource] = Field(None, description="Load from the Hub instead of local files.")
    split_column: Optional[str] = Field(
        None, description="A column of the train data that puts each row in a split: train, validation (or "
        "dev, val, valid) or test, as a file that holds every split says; instead of validation/test files."
    )
    messages_column: Optional[Union[str, list[str]]] = Field(
        None, description="causal_lm: a column of conversations (OpenAI/TRL messages, each turn a role and its "
        "content; or ShareGPT conversations, from and value), or two whose turns make one (TRL's conversational "
        "prompt and completion). Each conversation's last assistant turn is the response, the turns before it the "
        "prompt, rendered with the model's chat template; prompt_column and response_column then name the two "
        "columns made of it (default prompt, response)."
    )
    header: Optional[bool] = Field(
        None, description="csv/tsv: whether the first row names the columns; default: detected (a first row "
        "whose cells look like the data below it is data, not names)."
    )
    columns: Optional[list[str]] = Field(
        None, description="Names of a headerless file's columns, in order; without them its columns are named "
        "by position: '0', '1', ..."
    )
    encoding: Optional[str] = Field(
        None, description="Text encoding of the data files (csv, tsv, txt, jsonl, json, conll), e.g. cp1252 or "
        "latin-1; default: what a byte-order mark names, else UTF-16 where every other byte is zero, else UTF-8."
    )
    # Which of the column fields below a task kind reads is up to the kind (autopeft/tasks.py);
    # data.load checks them against the data and names a field the kind does not read.
    text_columns: Optional[list[str]] = Field(
        None, description="sequence_classification, regression: one text column, or two for sentence pairs."
    )
    label_column: str = Field(
        "label", description="Column holding the label or target value (classification, regression, images)."
    )
    prompt_column: Optional[Union[str, list[str]]] = Field(
        None, description="causal_lm: the prompt (not trained on); default 'prompt'. Several columns make one "
        "prompt, each below the one before it after a blank line, the first never empty, the others "
        "skipped where empty (Alpaca's instruction and input, Dolly's instruction and context).")
    response_column: Optional[str] = Field(
        None, description="causal_lm: the response the model learns to write; default 'response'."
    )
    tokens_column: Optional[str] = Field(
        None, description="token_classification: each example's words, a list (in csv: a JSON list, or Python's as pandas writes it); default 'tokens'."
    )
    tags_column: Optional[str] = Field(
        None, description="token_classification: one tag per word, a list (in csv: a JSON list, or Python's as pandas writes it); default 'tags'."
    )
    image_column: Optional[str] = Field(
        None, description="image_classification: image file paths, relative to the data file; default 'image'."
    )
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of train carved out as validation when none is given."
    )
    max_train_examples: Optional[int] = Field(None, gt=0, description="Keep at most this many training rows.")
    max_eval_examples: Optional[int] = Field(None, gt=0, description="Keep at most this many validation/test rows.")
    max_validation_examples: Optional[int] = Field(
        None, gt=0, description="Keep at most this many validation rows; test keeps all of its own. A time budget's "
        "plan sets it when evaluations would take over a quarter of a trial.")

    @field_validator("text_columns", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    # pydantic runs "before" validators last-defined first: this one, then _one_is_a_list
    @field_validator("*", mode="before")
    @classmethod
    def _positions_are_names(cls, value: Any, info: ValidationInfo) -> Any:
        """A column given by position (YAML ``label_column: 1``, ``text_columns: [0]``) is the name
        of that column in a headerless file: '1', '0'. Covers the fields a task kind adds too."""
        name = info.field_name or ""
        if name != "columns" and not name.endswith(("_column", "_columns")):
            return value

        def as_name(one: Any) -> Any:  # an int (not a bool) as its string; anything else as given
            return str(one) if isinstance(one, int) and not isinstance(one, bool) else one

        return [as_name(v) for v in value] if isinstance(value, (list, tuple)) else as_name(value)

    @field_validator("encoding")
    @classmethod
    def _a_text_encoding(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else text_encoding(value)

    @field_validator("text_columns")
    @classmethod
    def _one_or_two(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None and not 1 <= len(value) <= 2:
            raise ValueError(f"expected one or two text columns, found {len(value)}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> _DataFields:
        if self.hub is None and self.train is None:
            raise ValueError("expected data.train (a local file) or data.hub (a Hub dataset)")
        if self.hub is not None and any((self.train, self.validation, self.test)):
            raise ValueError("give either data.hub or local files (train/validation/test), not both")
        others = [f"data.{name}" for name in ("validation", "test") if getattr(self, name) is not None]
        if self.hub is not None:
            others += [f"data.hub.{name}" for name in ("validation_split", "test_split") if getattr(self.hub, name)]
        if self.split_column is not None and others:
            raise ValueError(f"data.split_column splits the train data; give it or {' and '.join(others)}, not both")
        return self


def text_encoding(name: str) -> str:
    """Python's name of the text encoding ``name`` ('cp1252' for 'Windows-1252'); ValueError for a
    name Python does not know, or a codec that is no text encoding (base64, rot13)."""
    try:
        "".encode(name)  # LookupError for both
    except LookupError:
        raise ValueError(f"expected a text encoding Python knows, such as utf-8, cp1252 or latin-1, "
                         f"found {name!r}") from None
    return codecs.lookup(name).name


def checked_encoding(name: str, field_name: str) -> str:
    """:func:`text_encoding` for a flag or field outside a config file: ConfigError naming it."""
    try:
        return text_encoding(name)
    except ValueError as exc:
        raise ConfigError(f"{field_name}: {exc}") from None


def _data_config() -> type[_DataFields]:
    """``DataConfig``: the fields above plus one for every column a registered task kind declares
    that they do not have, so a new kind's columns need no change here."""
    declared = _DataFields.model_fields
    extra: dict[str, Any] = {
        spec.field: (Optional[Union[str, list[str]]], Field(None, description=f"{kind.name}: {spec.description}"))
        for kind in all_tasks() for spec in kind.columns if spec.field not in declared
    }
    return create_model("DataConfig", __base__=_DataFields, __module__=__name__, **extra)


if TYPE_CHECKING:
    DataConfig = _DataFields
else:
    DataConfig = _data_config()


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|min|s)", re.IGNORECASE)
_SECONDS_PER = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0}


def parse_duration(value: Any) -> float:
    """'45m', '1h30m', '90s', '2.5h' or a number of seconds -> seconds (> 0); ValueError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(r"(?:\d+(?:\.\d+)?(?:h|m|min|s))+", text, re.IGNORECASE):
            seconds = sum(float(n) * _SECONDS_PER[unit.lower()] for n, unit in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"expected a duration such as 45m, 1h30m, 90s or a number of seconds, found {value!r}")
    if not seconds > 0:
        raise ValueError(f"expected a positive duration, found {value!r}")
    if not math.isfinite(seconds):  # YAML's .inf: the plan would size an endless study
        raise ValueError(f"expected a finite duration, found {value!r}")
    return seconds


class ObjectiveConfig(_Strict):
    metric: str = Field("accuracy", description="Validation metric the search optimises.")
    mode: Literal["max", "min"] = Field("max", description="Whether higher or lower is better.")


class BudgetConfig(_Strict):
    trials: int = Field(8, gt=0, description="Number of trials.")
    max_steps: int = Field(100, gt=0, description="Training steps of a trial that is not stopped early.")
    eval_interval: int = Field(25, gt=0, description="Evaluate and report every this many steps.")
    time: Optional[str] = Field(
        None, description="Wall-clock budget of the whole study, final training and registration included "
        "('45m', '1h30m', '90s', or seconds). A short probe of step time on this machine then plans trials, "
        "max_steps, eval_interval and final_steps, unless they are given."
    )
    search_steps: Optional[int] = Field(
        None, gt=0, description="Training steps the search may take in all, the learning-rate probes' included and "
        "the final training's not: a trial starts only while the steps taken plus a full trial for it and for each "
        "running one fit, so trials stopped early leave room for more (trials stays the most there can be). The "
        "probes step aside when they would leave fewer than 6 full trials.")
    time_limit_s: Optional[float] = Field(None, gt=0, description="Stop the trials after this long.")
    concurrent_trials: int = Field(1, gt=0, description="Trials run at the same time.")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved per trial (sets torch threads).")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; fractions share one GPU.")
    max_failures: int = Field(0, ge=0, description="Retries of a trial that crashes (from its checkpoint).")
    eval_batch_size: int = Field(64, gt=0, description="Batch size for evaluation.")
    final_steps: Optional[int] = Field(
        None, gt=0, description="After the search, train the selected config for this many more steps and register "
        "that adapter (none: register the selected trial's own adapter).")
    final_from: Literal["trial", "init"] = Field(
        "trial", description="Where the final training starts: 'trial' continues the selected trial's adapter with a "
        "new learning-rate schedule over final_steps, at final_lr_scale times the trial's rate; 'init' trains the "
        "config again from its initialisation at its own rate. AdaLoRA always starts from its initialisation (its "
        "rank budget follows a schedule of its own).")
    final_lr_scale: float = Field(
        0.5, gt=0, le=1, description="The continued final training's peak learning rate as a share of the selected "
        "trial's: the trial's schedule had decayed to zero, and a new one back at the trial's peak, held over many "
        "more steps, can knock the adapter back to a constant prediction (bench/NOTES.md).")
    final_eval_interval: Optional[int] = Field(
        None, gt=0, description="Evaluate the final training every this many steps and at its end (default: about "
        "8 times over final_steps, never more often than eval_interval).")

    @field_validator("time", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None:
            return None
        parse_duration(value)  # raises ValueError with what was expected
        return str(value)

    @property
    def time_s(self) -> Optional[float]:
        """``time`` in seconds (None when no time budget is given)."""
        return None if self.time is None else parse_duration(self.time)

    @model_validator(mode="before")
    @classmethod
    def _interval_follows_short_trials(cls, data: Any) -> Any:
        """Trials shorter than the default interval report 4 times, not fail validation on a field
        the user never set (``max_steps: 8`` alone was an error about ``eval_interval (25)``)."""
        if isinstance(data, dict) and "eval_interval" not in data and data.get("time") is None:
            steps = data.get("max_steps")
            default = cls.model_fields["eval_interval"].default
            if isinstance(steps, int) and not isinstance(steps, bool) and 0 < steps < default:
                return {**data, "eval_interval": max(1, steps // 4)}
        return data

    @model_validator(mode="after")
    def _interval_fits(self) -> BudgetConfig:
        if self.eval_interval > self.max_steps:
            raise ValueError(
                f"eval_interval ({self.eval_interval}) is larger than max_steps ({self.max_steps})"
            )
        # with a time budget and no max_steps given, the plan sizes the trials to the step budget
        planned = self.time is not None and "max_steps" not in self.model_fields_set
        if self.search_steps is not None and self.search_steps < self.max_steps and not planned:
            raise ValueError(f"search_steps ({self.search_steps}) is smaller than max_steps ({self.max_steps}): "
                             "not one full trial fits")
        if self.final_eval_interval is not None:
            if self.final_steps is None:
                raise ValueError("final_eval_interval is set but final_steps is not (there is no final training)")
            if self.final_eval_interval > self.final_steps:
                raise ValueError(f"final_eval_interval ({self.final_eval_interval}) is larger than final_steps "
                                 f"({self.final_steps})")
        return self

    @property
    def final_interval(self) -> int:
        """Steps between the final training's evaluations. It registers its best evaluation's
        weights, so each evaluation is a chance to keep; by default it evaluates about 8 times (at
        the trials' interval, 8 more evaluations cost 8% of a 400-step final training on SST-2,
        bench/NOTES.md)."""
        assert self.final_steps is not None
        if self.final_eval_interval is not None:
            return self.final_eval_interval
        return min(self.final_steps, max(self.eval_interval, -(-self.final_steps // 8)))

    @property
    def num_reports(self) -> int:
        """Reports a full trial makes (the last one at max_steps)."""
        return -(-self.max_steps // self.eval_interval)


class CalibrationConfig(_Strict):
    """A learning-rate range test per adapter family before the search (``autopeft.study.calibration``)."""

    enabled: bool = Field(
        True, description="Before the search, probe each adapter family on the task's own data with a learning "
        "rate growing from lr_min to lr_max, and search that family's learning rate around where the training "
        "loss fell fastest. A family that sets its own learning_rate in the space keeps it. The probes step aside "
        "where they would cost more than they can steer: with budget.search_steps, when they would leave fewer than 6 "
        "full trials; otherwise when they would train more than 25% of the trials' steps (trials x max_steps).")
    steps: int = Field(50, ge=8, le=1000, description="Training steps of each family's probe (counted in the "
                       "study's time; the probe stops early once the loss diverges).")
    # 1e-5: below it no adapter family moved in 50 steps on SST-2 or RTE (MiniLM), so a sweep from
    # 1e-6 spent a fifth of its steps where nothing happens (10 steps per decade from 1e-5 to 1)
    lr_min: float = Field(1e-5, gt=0, le=10.0, description="Learning rate of the probe's first step.")
    lr_max: float = Field(1.0, gt=0, le=10.0, description="Learning rate of the probe's last step.")

    @model_validator(mode="after")
    def _ramp_grows(self) -> CalibrationConfig:
        if self.lr_max <= self.lr_min:
            raise ValueError(f"lr_max ({self.lr_max:g}) must be above lr_min ({self.lr_min:g})")
        return self


class PruningConfig(_Strict):
    enabled: bool = Field(True, description="Stop weak trials early with ASHA.")
    grace_period: int = Field(1, gt=0, description="Reports every trial makes before it can be stopped.")
    reduction_factor: float = Field(2.0, gt=1.0, description="ASHA keeps 1/reduction_factor per rung.")
    bootstrap_count: int = Field(
        2, gt=0, description="Other trials that must have reached a rung before it stops any (1: Ray's ASHA)."
    )
    metric: Optional[str] = Field(
        None, description="Validation metric the rungs compare trials on; default: the objective's. `loss` tells "
        "apart trials that still predict one class, where accuracy ties."
    )
    mode: Optional[Literal["max", "min"]] = Field(
        None, description="Whether higher or lower pruning.metric is better; default: min for loss, perplexity and "
        "mse, else max."
    )

    def rung_target(self, objective: ObjectiveConfig) -> tuple[str, str]:
        """(metric, mode) the rungs compare trials on."""
        if self.metric is None:
            return objective.metric, objective.mode
        return self.metric, self.mode or ("min" if self.metric in MINIMISED_METRICS else "max")


#: A store in a SQLite file, MLflow's or Optuna's: ``sqlite:///relative.db``, ``sqlite:////absolute.db``.
SQLITE_PREFIX = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The file a SQLite store URI names, as written (relative to the working folder, or absolute),
    without its query; None for another kind of store, or one in memory."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_store_exists(uri: str, field_name: str) -> None:
    """A SQLite store that does not exist is a typo, not an empty one: MLflow would create the file
    silently, so a command that reads a store refuses first (TrackingUnreachable, one line)."""
    path = sqlite_file(uri)
    if path is not None and not path.is_file():
        raise TrackingUnreachable(f"{field_name}: no MLflow database at {str(path)!r}")


class TrackingConfig(_Strict):
    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI.")
    experiment: str = Field("autopeft", description="MLflow experiment name.")
    registered_model: str = Field("autopeft-model", description="Registered model that receives the best adapter.")
    optuna_storage: Optional[str] = Field(
        None, description="Optuna RDB URL; default: optuna.db beside a SQLite MLflow store, else in output_dir."
    )

    @field_validator("registered_model", "experiment")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a non-empty name")
        return value

    @field_validator("uri")
    @classmethod
    def _a_store(cls, value: str) -> str:
        # MLflow reads '' as its own default and creates ./mlflow.db while the checks look at it;
        # an in-memory SQLite store is one per process: the trials' and the registration's
        # records would vanish with them
        if not value.strip():
            raise ValueError("expected an MLflow tracking URI such as sqlite:///mlflow.db or http://host:5000")
        if value.strip() in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("expected a store the study's processes share (sqlite:///FILE or http://host:port), "
                             "not an in-memory SQLite database")
        return value


class BackendConfig(_Strict):
    address: Optional[str] = Field(None, description="Ray cluster address (auto, ray://host:port); none: local Ray.")
    storage_path: Optional[str] = Field(
        None, description="Where Ray keeps checkpoints and experiment state: a folder every node sees, or a "
        "pyarrow URI such as s3://bucket/path; default: <output_dir>/ray."
    )


class WarmStartConfig(_Strict):
    """Configs enqueued as the first trials: the built-in portfolio and earlier studies or files."""

    prior: bool = Field(True, description="Enqueue the built-in portfolio first: configs chosen on several public "
                                          "tasks (autopeft/study/portfolio.yaml, built by `make bench-portfolio`).")
    prior_share: float = Field(
        0.25, gt=0, le=1,
        description="Most of the trials the built-in portfolio may take (at least one); the rest are the sampler's.",
    )
    prior_max_trials: int = Field(
        2, ge=1,
        description="Most trials the built-in portfolio takes, whatever the share: its entries run in the "
                    "order they were chosen (the first cover the most tasks); early stopping cuts later ones.",
    )
    sources: list[str] = Field(
        default_factory=list, description="Earlier Optuna study names or YAML/JSON files of configs."
    )
    top_k: int = Field(3, gt=0, description="Best trials taken from each earlier study.")

    @field_validator("sources", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class PromotionConfig(StrictModel):
    """Optional thresholds a version must meet to be promoted (the ``promotion:`` section of a
    config file, or ``autopeft promote`` flags, which win)."""

    min_metric: Optional[float] = Field(
        default=None, description="The test metric must be at least this good (>= when maximised, <= when minimised).")
    max_trainable_share: Optional[float] = Field(
        default=None, gt=0.0, le=1.0, description="Most trainable parameters as a share of the whole model.")
    max_latency_ms: Optional[float] = Field(
        default=None, gt=0.0, description="Most milliseconds for one single-example prediction (median, this machine).")
    latency_samples: int = Field(default=16, gt=0, description="Single-example predictions timed for the latency gate.")


#: Longest study name: it names folders (output, Ray's experiment) beside Ray's own suffixes.
MAX_STUDY_NAME = 128


def default_study_name(experiment: str) -> str:
    """``<experiment>-<UTC time>``, in the characters and length ``study_name`` allows: the name
    becomes folder names and MLflow filter values (an experiment name may hold anything)."""
    stamp = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-._")
    prefix = prefix[: MAX_STUDY_NAME - len(stamp) - 1].rstrip("-._")
    return f"{prefix}-{stamp}" if prefix else f"study-{stamp}"


class SearchConfig(_Strict):
    """Everything one study needs."""

    study_name: Optional[str] = Field(None, description="Study name; default: experiment + time stamp.")
    model: ModelConfig
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig
    space: Union[str, dict[str, Any]] = Field(
        "lora-family", description="Space file (relative to the config), a ready space name, or inline."
    )
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    objectives: Optional[list[ObjectiveConfig]] = Field(
        None, description="Several objectives (multi-objective search): the task metric first, then cost "
        "metrics (trainable_share, trainable_params, adapter_size_mb, peak_memory_mb, latency_ms; mode min)."
    )
    constraints: ConstraintsConfig = Field(
        default_factory=ConstraintsConfig, description="Limits on cost metrics, passed to the sampler."
    )
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="tpe, nsga2, gp or random.")
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig, description="Which trial's adapter is registered: best, best-within, knee."
    )
    warm_start: WarmStartConfig = Field(
        default_factory=WarmStartConfig, description="Configs enqueued as the first trials."
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig,
        description="Per-family learning-rate calibration before the search (a short range test on the task's data).")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    promotion: PromotionConfig = Field(
        default_factory=PromotionConfig,
        description="Thresholds `autopeft promote --config` applies (min_metric, max_trainable_share, max_latency_ms).")
    output_dir: str = Field("autopeft-runs", description="Where checkpoints, caches and the best adapter go.")
    # numpy's seeding (the data split, the batch order) takes 0 to 2**32 - 1; outside it the
    # study would fail at its data split with a traceback
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the sampler, data split and training "
                      "(0 to 4294967295).")

    @field_validator("output_dir")
    @classmethod
    def _home(cls, value: str) -> str:
        # '~/runs' means the home folder of whoever runs the study (on a cluster: the driver's)
        return os.path.expanduser(value)

    @field_validator("objectives")
    @classmethod
    def _at_least_one(cls, value: Optional[list[ObjectiveConfig]]) -> Optional[list[ObjectiveConfig]]:
        # an empty list read as "no objectives given" would search the default metric unsaid
        if value is not None and not value:
            raise ValueError("expected at least one objective (or leave objectives out), found []")
        return value

    @field_validator("study_name")
    @classmethod
    def _safe_name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("expected letters, digits, '.', '_' or '-' (starting with a letter or digit)")
        if value is not None and len(value) > MAX_STUDY_NAME:
            # the name becomes folder names (Ray's experiment, the outputs) that file systems cap at 255
            raise ValueError(f"expected at most {MAX_STUDY_NAME} characters, found {len(value)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _objectives_lead(cls, raw: Any) -> Any:
        # ``objective`` stays the task metric everything else (ASHA, progress) reads: the first
        # of ``objectives`` when those are given.
        if isinstance(raw, dict) and raw.get("objectives") is not None:
            raw = {**raw, "objectives": fill_modes(raw["objectives"])}
            first = raw["objectives"][0] if isinstance(raw["objectives"], list) and raw["objectives"] else None
            if isinstance(first, dict) and "objective" not in raw:
                raw["objective"] = dict(first)
        return raw

    @model_validator(mode="before")
    @classmethod
    def _task_default_objective(cls, raw: Any) -> Any:
        # With no objective given, the task kind's own (causal_lm: loss/min), not accuracy.
        if isinstance(raw, dict) and raw.get("objective") is None and not raw.get("objectives"):
            task = raw.get("task")
            kind = task.get("kind") if isinstance(task, dict) else getattr(task, "kind", None)
            if kind in task_names():
                chosen = get_task(kind)
                raw = {**raw, "objective": {"metric": chosen.default_metric, "mode": chosen.default_mode}}
        return raw

    @property
    def objective_list(self) -> list[tuple[str, str]]:
        """(metric, mode) of every objective, the task metric first."""
        if self.objectives:
            return [(o.metric, o.mode) for o in self.objectives]
        return [(self.objective.metric, self.objective.mode)]

    @model_validator(mode="after")
    def _objectives_fit_task(self) -> SearchConfig:
        if self.objectives is not None:
            check_objectives(self.objective_list, get_task(self.task.kind).metric_names)
            if (self.objective.metric, self.objective.mode) != self.objective_list[0]:
                raise ValueError("objective: differs from objectives[0]; give one of them")
        if self.constraints.limits() and self.sampler.name == "random":
            raise ValueError("constraints: the random sampler ignores constraints; use tpe, nsga2 or gp")
        return self

    @model_validator(mode="after")
    def _objective_fits_task(self) -> SearchConfig:
        metrics = get_task(self.task.kind).metric_names
        for field, metric in (("objective.metric", self.objective.metric), ("pruning.metric", self.pruning.metric)):
            if metric is not None and metric not in metrics:
                raise ValueError(
                    f"{field} {metric!r} is not a metric of {self.task.kind} (expected one of: {', '.join(metrics)})"
                )
        return self


class ResolvedConfig(BaseModel):
    """A validated config together with its loaded search space and where it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    config: SearchConfig
    space: SearchSpace
    source: Optional[Path] = None
    #: Why a field has its value, by dotted field name, where autopeft chose it (zero-config
    #: inference, the time budget's plan); written as comments beside the field.
    notes: dict[str, str] = Field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data (the space inline), for logging."""
        data = self.config.model_dump(mode="json")
        data["space"] = self.space.model_dump(mode="json")
        return data

    def to_yaml(self, *, complete: bool = True) -> str:
        """The config as YAML with ``notes`` as comments. ``complete``: every field and the space
        inline (what the study ran, for its MLflow run); else only the fields set, the space as
        given (a file a user edits: ``autopeft init``). Both resolve to the same config."""
        data = self.dump() if complete else self.config.model_dump(mode="json", exclude_unset=True)
        return render_yaml(data, self.notes)


def render_yaml(data: dict[str, Any], notes: dict[str, str]) -> str:
    """YAML of ``data`` with ``notes[dotted.key]`` as a comment on that key's line."""
    lines: list[str] = []

    def emit(node: dict[str, Any], prefix: str, indent: int) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            note = notes.get(dotted)
            comment = f"  # {' '.join(note.split())}" if note else ""
            pad = "  " * indent
            if isinstance(value, dict) and value:
                lines.append(f"{pad}{key}:{comment}")
                emit(value, f"{dotted}.", indent + 1)
            else:
                text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).strip()
                text = text.removesuffix("\n...").strip()
                lines.append(f"{pad}{key}: {text}{comment}")

    emit(data, "", 0)
    return "\n".join(lines) + "\n"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` → (["a", "b"], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. budget.trials=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    for path, value in overrides:
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return raw


def resolve_mapping(raw: dict[str, Any], overrides: Optional[list[tuple[list[str], Any]]] = None, *,
                    notes: Optional[dict[str, str]] = None) -> ResolvedConfig:
    """Validate a config given as a mapping (zero-config inference's) like a file without a folder."""
    raw = apply_overrides(copy.deepcopy(raw), overrides or [])
    try:
        config = SearchConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, SearchConfig)) from None
    overridden = {".".join(path) for path, _ in overrides or []}
    kept = {k: v for k, v in (notes or {}).items() if k not in overridden}
    return ResolvedConfig(config=config, space=load_space(config.space), notes=kept)


def resolve(path: Union[str, Path, None], overrides: Optional[list[tuple[list[str], Any]]] = None) -> ResolvedConfig:
    """Read, override and validate a config; ConfigError / SpaceError with one line otherwise."""
    raw: dict[str, Any] = {}
    source: Optional[Path] = None
    if path is not None:
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"--config: no such file {str(source)!r}")
        try:
            loaded = load_yaml(source.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--config: {source} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start}); save it as UTF-8") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "malformed YAML"
            raise ConfigError(f"--config: {source} is not valid YAML{where}: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config: expected a mapping at the top of {source}, found {type(loaded).__name__}")
        raw = loaded
    raw = apply_overrides(raw, overrides or [])
    try:
        config = SearchConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, SearchConfig)) from None
    base_dir = source.parent if source is not None else None
    space = load_space(config.space, base_dir=base_dir)
    return ResolvedConfig(config=config, space=space, source=source)


def from_dump(data: dict[str, Any]) -> ResolvedConfig:
    """Rebuild a resolved config from :meth:`ResolvedConfig.dump` (e.g. a study's manifest)."""
    try:
        config = SearchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, SearchConfig)) from None
    return ResolvedConfig(config=config, space=load_space(data["space"]))
