"""The built-in warm-start portfolio (autopeft/study/portfolio.yaml, built by bench/portfolio.py):
it loads, every entry is a valid config, it fits the ready spaces, and it says where it came from."""

from __future__ import annotations

import re

import pytest
import yaml

from autopeft.config import WarmStartConfig
from autopeft.errors import ConfigError
from autopeft.space import load_space, ready_spaces_dir
from autopeft.study.warmstart import (
    PORTFOLIO_FILE,
    PORTFOLIO_PREFIX,
    check_config,
    collect,
    fit_to_space,
    load_portfolio,
)

PORTFOLIO = load_portfolio()
READY = {p.stem: load_space(p) for p in sorted(ready_spaces_dir().glob("*.yaml"))}


def test_the_portfolio_file_loads_and_each_entry_is_a_valid_config():
    assert PORTFOLIO.entries
    for entry in PORTFOLIO.entries:
        check_config(entry.config)  # also checked at load; here it names the entry on failure
        assert entry.config["adapter"] and entry.config["learning_rate"] > 0, entry.name
    # entries share a name only as measured variants of one config for spaces it does not fit
    first = {}
    for entry in PORTFOLIO.entries:
        if entry.name in first:
            assert entry.origin == f"variant of {entry.name} for {entry.candidate.split('@')[-1]}", entry
        first.setdefault(entry.name, entry)


@pytest.mark.parametrize("space_name", sorted(READY))
def test_the_portfolio_validates_against_every_ready_space(space_name):
    """Each entry is either a point of the space (fitted) or left out by it; every space is fitted
    unless the procedure recorded why none of the pool could be (``provenance.unfilled``)."""
    space = READY[space_name]
    fitting = [e.name for e in PORTFOLIO.entries if fit_to_space(e.config, space) is not None]
    print(f"{space_name}: {fitting or 'none'}")  # the report (pytest -s)
    assert fitting == PORTFOLIO.provenance["fits"][space_name]
    families = {e.config["adapter"] for e in PORTFOLIO.entries}
    if fitting:
        points = collect(WarmStartConfig(prior_share=1.0, prior_max_trials=len(PORTFOLIO.entries)), space,
                         "sqlite://", trials=len(PORTFOLIO.entries))
        assert [p.source for p in points] == [PORTFOLIO_PREFIX + name for name in fitting]
    elif families & set(space.adapters):
        assert space_name in PORTFOLIO.provenance["unfilled"], f"{space_name}: its families are in the portfolio but no entry fits"


@pytest.mark.parametrize("space_name", ["lora-family", "all-adapters"])
def test_the_spaces_most_searches_start_from_get_a_start(space_name):
    assert any(fit_to_space(e.config, READY[space_name]) is not None for e in PORTFOLIO.entries)


def test_the_provenance_says_what_it_was_measured_on():
    prov = PORTFOLIO.provenance
    assert len(prov["tasks"]) >= 2  # no task decides the portfolio alone
    for task in prov["tasks"]:
        assert task["name"] and task["file"] and task["rows"]["train"] > 0 and task["rows"]["validation"] > 0
        assert re.fullmatch(r"[0-9a-f]{16}", task["fingerprint"])
    assert {"steps", "batch_size", "max_train", "max_validation", "seed"} <= set(prov["budget"])
    assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prov["date"])
    assert {"delta", "k", "min_tasks"} <= set(prov["selection"])
    assert set(prov["scores"]) == {t["name"] for t in prov["tasks"]}


def test_no_entry_was_chosen_by_one_task_alone():
    prov = PORTFOLIO.provenance
    delta, need = prov["selection"]["delta"], prov["selection"]["min_tasks"]
    informative = [name for name, row in prov["scores"].items() if row["informative"]]
    for entry in PORTFOLIO.entries:
        gaps = {t: prov["scores"][t]["candidates"][entry.candidate]["gap"] for t in informative}
        close = [t for t, gap in gaps.items() if gap is not None and gap <= delta + 1e-9]
        assert len(close) >= min(need, len(informative)), (entry.name, close)


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "bad-family", "config": {"adapter": "nope", "learning_rate": 1e-3}}, "unknown adapter family 'nope'"),
    ({"name": "bad-param", "config": {"adapter": "lora", "lora.rank": 8}}, "lora takes no parameter 'rank'"),
    ({"name": "other-family", "config": {"adapter": "lora", "dora.r": 8}}, "config.dora.r: not a parameter of a lora"),
    ({"name": "bad-value", "config": {"adapter": "lora", "lora.r": 0}}, "config.lora.r"),
    ({"name": "bad-lr", "config": {"adapter": "lora", "learning_rate": 3}}, "config.learning_rate"),
])
def test_a_bad_entry_is_a_one_line_error_naming_it(tmp_path, entry, message):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "entries": [
        {"name": "fine", "config": {"adapter": "ia3", "learning_rate": 1e-2}}, entry]}))
    with pytest.raises(ConfigError) as info:
        load_portfolio(path)
    text = str(info.value)
    assert f"entry 1 ({entry['name']!r})" in text and message in text and "\n" not in text


def test_the_portfolio_ships_as_package_data():
    from tests.conftest import REPO

    line = next(x for x in (REPO / "pyproject.toml").read_text().splitlines() if x.startswith("autopeft = ["))
    assert f'"{PORTFOLIO_FILE.relative_to(REPO / "autopeft").as_posix()}"' in line
