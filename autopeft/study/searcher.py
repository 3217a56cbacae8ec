"""The searcher: what to try. Optuna (through Ray's ``OptunaSearch``) samples the space's
define-by-run function; Ray Tune asks it for each trial's config and tells it each result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from autopeft import _compat
from autopeft.objectives import ATTR_RAY_TRIAL, make_sampler, measurement_attrs, record_measurements
from autopeft.registry.tracking import outcome
from autopeft.schema import Metric, Outcome, TrialAttr
from autopeft.space import config_names
from autopeft.study.define_by_run import compile_space
from autopeft.study.warmstart import enqueue

if TYPE_CHECKING:
    from autopeft.study.prepare import Prepared


class PruningAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells Optuna the truth about trials the scheduler stopped.

    Ray's ``OptunaSearch`` records a trial that ASHA stops early as COMPLETE with its truncated
    score, so the sampler learns from half-trained values, and it records a trial that raised
    after reporting as COMPLETE too. Here a trial is COMPLETE only when it reported its final
    step; one stopped before is PRUNED (its last report kept as an intermediate value, which is
    what Optuna's samplers expect of pruned trials) and one that raised is FAIL.

    With several objectives (``metric``/``mode`` lists) the same holds; Optuna keeps no
    intermediate values there, so a pruned trial is PRUNED without a curve in Optuna (MLflow has
    it). Before telling Optuna, the trial's cost measurements are stored as user attributes,
    which the sampler's constraints and the study report read.

    A trial still at the trivial predictor's level (``tasks.trivial``) at its end learnt nothing
    within its steps: it is PRUNED too, with the reason as a user attribute, not a COMPLETE value
    that ties with every other such trial. Its intermediate values, like every trial's where the
    study judges trials against the trivial level, are the rung score the scheduler compares
    (oriented to the study's direction): trials that left the trivial level rank above those
    that did not, and those by validation loss, so TPE, which ranks pruned trials by their last
    intermediate value, learns which of them came closest.

    With a step budget (``budget.search_steps``) a trial starts only while it and each trial
    still running fit the steps left at full length: a study never trains more than its budget,
    and each trial ASHA stops early leaves room for another. While trials run, a trial that does
    not fit waits for them (Tune asks again); with none running, the search is finished.
    """

    def __init__(self, *args: Any, step_budget: int | None = None, trial_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``budget.search_steps`` less the probes' steps (None: the trial count alone ends the
        #: search). Plain attributes: Ray checkpoints the searcher's ``__dict__``, so a resumed
        #: study goes on counting where it stopped.
        self.step_budget, self.trial_steps = step_budget, trial_steps
        self.steps_taken = 0
        self._running_steps: dict[str, int] = {}  # running trial -> the last step it reported

    def _budget_spent(self) -> bool:
        """Whether another full trial, beside a full one for each running, would pass the step budget."""
        if self.step_budget is None:
            return False
        return self.steps_taken + self.trial_steps * (len(self._running_steps) + 1) > self.step_budget

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (Ray's ``OptunaSearch`` creates it once it has a space)."""
        return _compat.optuna_search_study(self)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._budget_spent():
            # a running trial that ASHA stops early gives back the steps reserved for it
            return None if self._running_steps else Searcher.FINISHED  # type: ignore[return-value]
        config = super().suggest(trial_id)
        if config not in (None, Searcher.FINISHED):
            self._running_steps[trial_id] = 0
            config = config_names(config)  # a family's own rate, sampled under its name, as training reads it
        ot_trials = _compat.optuna_search_trials(self)
        if trial_id in ot_trials:  # joins Optuna trials to Ray trials (and their MLflow runs)
            ot_trials[trial_id].set_user_attr(ATTR_RAY_TRIAL, trial_id)
        return config

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial | None:
        """The trial as Optuna's storage holds it. A finished one is a trial whose end Optuna was
        already told: Tune snapshots its state once a second, and a driver that died within that
        second after a trial ended is restored with the trial still running, and Tune replays
        it. The study keeps the end it recorded (:func:`_closed_by_a_driver` is the exception)."""
        ot_trial = _compat.optuna_search_trials(self).get(trial_id)
        return None if ot_trial is None else ot_trial.storage.get_trial(_compat.optuna_trial_id(ot_trial))

    @property
    def _continued_curves(self) -> dict[str, dict[int, float]]:
        """Reports of interrupted trials since the resume, by Ray trial (created on first use: a
        searcher restored from an older snapshot lacks it)."""
        curves: dict[str, dict[int, float]] = self.__dict__.setdefault("continued_curves", {})
        return curves

    def _progress(self, result: dict[str, Any]) -> float | None:
        """The intermediate value Optuna is told for ``result`` (single objective only)."""
        if not isinstance(self.metric, str):
            return None
        if isinstance(result.get(Metric.RUNG_SCORE), (int, float)):
            score = float(result[Metric.RUNG_SCORE])
            return score if self.mode == "max" else -score
        value = result.get(self.metric)
        return float(value) if isinstance(value, (int, float)) else None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._running_steps and isinstance(result.get("step"), (int, float)):
            self._running_steps[trial_id] = int(result["step"])
        stored = self._stored(trial_id)
        if stored is not None and stored.state.is_finished():
            value = self._progress(result)
            if value is not None and _closed_by_a_driver(stored):
                self._continued_curves.setdefault(trial_id, {})[int(result[TRAINING_ITERATION])] = value
            return
        ot_trial = _compat.optuna_search_trials(self).get(trial_id)
        value = self._progress(result)
        if ot_trial is None or value is None or trial_id in _compat.optuna_search_completed(self):
            super().on_trial_result(trial_id, result)
            return
        ot_trial.report(value, int(result[TRAINING_ITERATION]))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._running_steps:
            step = self._running_steps.pop(trial_id)
            if result and isinstance(result.get("step"), (int, float)):
                step = max(step, int(result["step"]))
            self.steps_taken += step
        completed, ot_trials = _compat.optuna_search_completed(self), _compat.optuna_search_trials(self)
        if trial_id in completed or trial_id not in ot_trials:
            return
        stored = self._stored(trial_id)
        if stored is not None and stored.state.is_finished():
            if _closed_by_a_driver(stored) and not error:
                self._record_continued(trial_id, stored, result)
            completed.add(trial_id)
            return
        state = outcome(result, error)
        ot_trial = ot_trials[trial_id]
        record_measurements(ot_trial, trial_id, result)
        progress = self._progress(result) if result else None
        if progress is not None and state != Outcome.FAIL:
            # Tune does not pass the result that made the scheduler stop the trial to
            # on_trial_result; record it here so the pruned trial's curve is whole.
            step = int(result.get(TRAINING_ITERATION, 0)) if result else 0
            if step not in ot_trial.storage.get_trial(_compat.optuna_trial_id(ot_trial)).intermediate_values:
                ot_trial.report(progress, step)
        reason = _trivial_reason(result, state)
        if reason:
            ot_trial.set_user_attr(TrialAttr.PRUNED_REASON, reason)
        if state == Outcome.COMPLETE and not reason:
            super().on_trial_complete(trial_id, result=result, error=False)
            return
        self.study.tell(ot_trial, state=optuna.trial.TrialState.FAIL if state == Outcome.FAIL
                        else optuna.trial.TrialState.PRUNED)
        completed.add(trial_id)

    def _record_continued(self, trial_id: str, interrupted: optuna.trial.FrozenTrial,
                          result: dict[str, Any] | None) -> None:
        """A trial that a driver closed as FAIL when it ended (``TrialAttr.ORPHANED``) and the
        resumed study ran to its end: Optuna cannot reopen it, so its outcome goes into the study
        as a new trial with the same parameters and distributions, its curve (before and after
        the resume) and ``TrialAttr.CONTINUES``, so the sampler learns from it and the study's
        trials agree with its MLflow runs. Once per interrupted trial, even if Tune replays the end."""
        number = interrupted.number
        if any(t.user_attrs.get(TrialAttr.CONTINUES) == number for t in self.study.get_trials(deepcopy=False)):
            return
        state = outcome(result, False)
        curve = {**interrupted.intermediate_values, **self._continued_curves.pop(trial_id, {})}
        progress = self._progress(result) if result else None
        if progress is not None:
            curve[int((result or {}).get(TRAINING_ITERATION, 0))] = progress
        attrs = {k: v for k, v in interrupted.user_attrs.items() if k != TrialAttr.ORPHANED}
        values: list[float] | None = None
        reason = _trivial_reason(result, state)
        if result and state == Outcome.COMPLETE and not reason:
            metrics = [self.metric] if isinstance(self.metric, str) else list(self.metric)
            found = [result.get(m) for m in metrics]
            if all(isinstance(v, (int, float)) for v in found):
                values = [float(v) for v in found]  # type: ignore[arg-type]
        if reason:
            attrs[TrialAttr.PRUNED_REASON] = reason
        # a finished trial's attributes cannot be set afterwards: all of them go in with it
        self.study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.PRUNED,
            values=values, params=interrupted.params, distributions=interrupted.distributions,
            user_attrs={**attrs, **measurement_attrs(trial_id, result), TrialAttr.CONTINUES: number},
            intermediate_values=curve if isinstance(self.metric, str) else None))


def _closed_by_a_driver(stored: optuna.trial.FrozenTrial) -> bool:
    """Whether a driver that ended before the trial did closed it as FAIL (``TrialAttr.ORPHANED``):
    a resumed study that runs it on has a result Optuna was never told."""
    return stored.state == optuna.trial.TrialState.FAIL and TrialAttr.ORPHANED in stored.user_attrs


def _trivial_reason(result: dict[str, Any] | None, state: str) -> str | None:
    """Why a trial that ended in ``state`` is told as PRUNED though it may have run to its end:
    its last result was still at the trivial level. None for one that left it, or that failed."""
    if not result or not result.get(Metric.AT_TRIVIAL) or state == Outcome.FAIL:
        return None
    step = int(result.get("step", result.get(TRAINING_ITERATION, 0)))
    ended = "ran all its" if state == Outcome.COMPLETE else "was stopped at a rung after"
    return f"still at the trivial predictor's level: {ended} {step} steps without leaving it"


def make_searcher(prepared: Prepared) -> PruningAwareOptunaSearch:
    cfg = prepared.config
    objectives = cfg.objective_list
    sampler = make_sampler(cfg.sampler, cfg.constraints.limits(), seed=cfg.seed, trials=cfg.budget.trials,
                           concurrent=cfg.budget.concurrent_trials, warm_started=len(prepared.warm_start))
    multi = len(objectives) > 1  # Ray's OptunaSearch takes metric/mode lists for several objectives
    searcher = PruningAwareOptunaSearch(
        space=compile_space(prepared.resolved.space),
        metric=[m for m, _ in objectives] if multi else cfg.objective.metric,
        mode=[m for _, m in objectives] if multi else cfg.objective.mode,
        sampler=sampler,
        study_name=prepared.study_name,
        storage=optuna.storages.RDBStorage(prepared.optuna_storage),
        # the probes before the search trained out of the same budget
        step_budget=(None if cfg.budget.search_steps is None
                     else cfg.budget.search_steps - prepared.calibration_steps),
        trial_steps=cfg.budget.max_steps,
    )
    # enqueued directly (not points_to_evaluate) so each carries its source as a user attribute
    enqueue(searcher.study, prepared.warm_start, prepared.resolved.space)
    return searcher
