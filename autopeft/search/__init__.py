"""The search: prepare (check before compute), searcher, scheduler, driver, final training, registration."""
