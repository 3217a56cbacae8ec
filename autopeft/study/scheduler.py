"""ASHA whose rungs wait for company before they stop anyone.

Ray's ASHA compares a trial reaching a rung with the trials recorded there so far, and with a
single one recorded the cutoff is that trial's value. With trials run one or two at a time, the
first trial therefore becomes a bar every later trial must clear at every rung: on SST-2
(bench/NOTES.md) each later trial was stopped at its second rung, and the search was one full
trial plus a row of half trials. Optuna's successive halving has ``bootstrap_count`` for this;
here a rung decides only once ``bootstrap_count`` other trials have reported at it, and until
then it records the trial and lets it go on. ``bootstrap_count=1`` is Ray's ASHA.

Where trials are judged against the trivial level, a rung also waits for the task to show when
learning starts. On sentence-pair tasks nearly every trial is still at the majority class at the
first rung (25 steps), and the validation loss that breaks that tie does not tell a late learner
from a config that never learns: QNLI's seed 0 (bench/NOTES.md) stopped there a LoRA next to the
one that reached 0.66 by 100 steps. So a trial still at the trivial level goes on past a rung
before the study's *onset*, the earliest report at which any trial has left that level, and is
judged at the onset's rung and later ones. Until some trial has left the level, trivial trials
go on, unless a trial has run to its end still there: then the task does not leave it within a
trial, the metric ties, and the rungs decide on validation loss as before.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from autopeft import _compat
from autopeft.registry.tracking import RUNG_STOP_ATTR, RungStop
from autopeft.schema import Metric


class _WaitingBracket(_compat.asha_bracket_class()):  # type: ignore[misc]
    bootstrap_count: int = 1
    #: The cutoff the last decision was taken against, and how many trials it was computed over.
    last_cutoff: tuple[float, int] | None = None

    def cutoff(self, recorded: dict[str, float]) -> Any:
        if len(recorded) < self.bootstrap_count:
            return None  # too few trials at this rung to judge against: continue
        value = super().cutoff(recorded)
        self.last_cutoff = (float(value), len(recorded))
        return value

    def on_result(self, trial: Any, cur_iter: int, cur_rew: float | None) -> str:
        self.last_cutoff = None
        return super().on_result(trial, cur_iter, cur_rew)


class BootstrappedASHA(ASHAScheduler):
    """ASHA with rungs that wait for company, and that say why they stopped a trial: the
    :class:`~autopeft.registry.tracking.RungStop` is left on Tune's trial for the recorder."""

    #: The earliest report at which a trial has left the trivial level, once one has.
    learning_onset: int | None = None
    #: Whether a trial has reported its last result still at the trivial level.
    ended_trivial: bool = False

    def __init__(self, *, bootstrap_count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stop_metric, self._stop_mode = kwargs.get("metric"), kwargs.get("mode")
        self._max_reports = kwargs.get("max_t")
        # Ray builds its brackets in __init__ with no hook to pick their class
        for bracket in _compat.asha_brackets(self):
            bracket.__class__ = _WaitingBracket
            assert isinstance(bracket, _WaitingBracket)
            bracket.bootstrap_count = bootstrap_count

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        bracket = _compat.asha_trial_bracket(self, trial.trial_id)
        action = super().on_trial_result(tune_controller, trial, result)
        reports = int(result.get("training_iteration", 0))
        judged = self._stop_metric == Metric.RUNG_SCORE and Metric.AT_TRIVIAL in result
        at_trivial = bool(result.get(Metric.AT_TRIVIAL))
        final = self._max_reports is not None and reports >= self._max_reports
        if judged and not at_trivial and (self.learning_onset is None or reports < self.learning_onset):
            self.learning_onset = reports
        self.ended_trivial = self.ended_trivial or (judged and at_trivial and final)
        if not isinstance(bracket, _WaitingBracket) or final:
            return action
        milestones = sorted(m for m, _ in _compat.asha_rungs(bracket))
        milestone = max((m for m in milestones if m <= reports), default=milestones[0])
        if action == TrialScheduler.STOP and judged and at_trivial and self._before_onset(milestone):
            return TrialScheduler.CONTINUE  # no trial has left the trivial level this early: not behind
        stop = dict(rung=milestones.index(milestone) + 1, report=reports, step=int(result.get("step", 0)),
                    metric=str(self._stop_metric), mode=str(self._stop_mode), at_trivial=at_trivial)
        if action == TrialScheduler.STOP and bracket.last_cutoff is not None:
            cutoff, compared = bracket.last_cutoff
            sign = -1.0 if self._stop_mode == "min" else 1.0
            setattr(trial, RUNG_STOP_ATTR, RungStop(**stop, value=float(result[str(self._stop_metric)]),  # type: ignore[arg-type]
                                                    cutoff=sign * cutoff, compared=compared))
        elif action == TrialScheduler.CONTINUE and at_trivial and self._stop_metric == Metric.RUNG_SCORE:
            # A quantile can keep a trial at the trivial level when most of the rung is there too;
            # once any trial at this rung has left it, none still there goes on past the rung.
            recorded = dict(_compat.asha_rungs(bracket)).get(milestone, {})
            left = sum(1 for trial_id, score in recorded.items() if trial_id != trial.trial_id and score > 0)
            if trial.trial_id in recorded and left:
                action = TrialScheduler.STOP
                setattr(trial, RUNG_STOP_ATTR, RungStop(**stop, value=float(result[Metric.RUNG_SCORE]),  # type: ignore[arg-type]
                                                        cutoff=0.0, compared=len(recorded) - 1, left_trivial=left))
        return action

    def _before_onset(self, milestone: float) -> bool:
        """Whether a rung at ``milestone`` reports comes before the study has shown that any trial
        leaves the trivial level that early (see the module's docstring)."""
        if self.learning_onset is None:
            return not self.ended_trivial
        return milestone < self.learning_onset


def rung_target(cfg: Any, judged: bool) -> tuple[str, str]:
    """(metric, mode) the rungs compare trials on: ``pruning.metric`` where the config names one,
    else the rung score against the trivial level where trials report it (``judged``: the study
    has a trivial level for its objective), else the objective.

    The rung score ranks every trial that left the trivial predictor above every trial still at
    it, and those by validation loss, so a rung never keeps a trial at the majority class over
    one that left it, and where every trial ties on the metric the loss decides (``tasks.trivial``)."""
    if cfg.pruning.metric is None and judged:
        return Metric.RUNG_SCORE, "max"
    return cfg.pruning.rung_target(cfg.objective)  # type: ignore[no-any-return]


def make_scheduler(cfg: Any, *, judged: bool = False) -> TrialScheduler:
    """ASHA with bootstrapped rungs over the study's reports, or FIFO when pruning is off."""
    if not cfg.pruning.enabled:
        return FIFOScheduler()
    metric, mode = rung_target(cfg, judged)
    return BootstrappedASHA(
        bootstrap_count=cfg.pruning.bootstrap_count,
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=cfg.budget.num_reports,
        grace_period=min(cfg.pruning.grace_period, cfg.budget.num_reports),
        reduction_factor=cfg.pruning.reduction_factor,
    )
