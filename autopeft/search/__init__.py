"""The search: prepare (check before compute), searcher (what to try), scheduler (when to stop),
the driver (the steps of a study), final training and registration."""

from __future__ import annotations

from autopeft.search.driver import (
    SEARCH_PHASES,
    Prepared,
    SearchResult,
    TrialSummary,
    check_ray_address,
    init_ray,
    prepare,
    prepare_resume,
    run_search,
)

__all__ = ["SEARCH_PHASES", "Prepared", "SearchResult", "TrialSummary", "check_ray_address", "init_ray", "prepare",
           "prepare_resume", "run_search"]
