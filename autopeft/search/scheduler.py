"""ASHA whose rungs wait for company before they stop anyone.

Ray's ASHA compares a trial reaching a rung with the trials recorded there so far, and with a
single one recorded the cutoff is that trial's value. With trials run one or two at a time, the
first trial therefore becomes a bar every later trial must clear at every rung: on SST-2
(bench/NOTES.md) each later trial was stopped at its second rung, and the search was one full
trial plus a row of half trials. Optuna's successive halving has ``bootstrap_count`` for this;
here a rung decides only once ``bootstrap_count`` other trials have reported at it, and until
then it records the trial and lets it go on. ``bootstrap_count=1`` is Ray's ASHA.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from autopeft import _compat


class _WaitingBracket(_compat.asha_bracket_class()):  # type: ignore[misc]
    bootstrap_count: int = 1

    def cutoff(self, recorded: dict[str, float]) -> Any:
        if len(recorded) < self.bootstrap_count:
            return None  # too few trials at this rung to judge against: continue
        return super().cutoff(recorded)


class BootstrappedASHA(ASHAScheduler):
    def __init__(self, *, bootstrap_count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Ray builds its brackets in __init__ with no hook to pick their class
        for bracket in _compat.asha_brackets(self):
            bracket.__class__ = _WaitingBracket
            assert isinstance(bracket, _WaitingBracket)
            bracket.bootstrap_count = bootstrap_count


def make_scheduler(cfg: Any) -> TrialScheduler:
    """ASHA with bootstrapped rungs over the study's reports, or FIFO when pruning is off."""
    if not cfg.pruning.enabled:
        return FIFOScheduler()
    metric, mode = cfg.pruning.rung_target(cfg.objective)
    return BootstrappedASHA(
        bootstrap_count=cfg.pruning.bootstrap_count,
        time_attr="training_iteration",
        metric=metric,
        mode=mode,
        max_t=cfg.budget.num_reports,
        grace_period=min(cfg.pruning.grace_period, cfg.budget.num_reports),
        reduction_factor=cfg.pruning.reduction_factor,
    )
