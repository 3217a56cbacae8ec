"""The search: prepare (check before compute), searcher (what to try), scheduler (when to stop),
the driver (the steps of a study), final training and registration."""

from __future__ import annotations

from autopeft.study.driver import init_ray, run_search
from autopeft.study.prepare import Prepared, check_ray_address, prepare, prepare_resume
from autopeft.study.results import SEARCH_PHASES, SearchResult, TrialSummary

__all__ = ["SEARCH_PHASES", "Prepared", "SearchResult", "TrialSummary", "check_ray_address", "init_ray", "prepare",
           "prepare_resume", "run_search"]
