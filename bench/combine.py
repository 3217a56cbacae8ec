"""One table from several benchmark runs: ``python -m bench.combine --name sst2-targets
--take bench/results/A.json autopeft-lora,random-final --take bench/results/B.json
hf-optuna,default`` writes ``<out>/<date>-<name>.{json,md,png}`` with the same summary, per-seed
pairing and search diagnostics as a single run, and a section naming the file, command and date
each method's figures come from.

A comparison grows over sessions (seeds added later, a baseline whose code did not change kept
from an earlier run), so the README's tables are made of several runs; this keeps that honest.
Runs are combined only when they measured the same thing: the same data settings, step budget
and split sizes (else a one-line error and exit status 2, nothing written). A method may be
renamed as it is taken (``random-final=random-final-before``) so that runs of it at two commits
stay apart; the same method, task and seed taken twice is an error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from bench.run import REPO

#: The settings two runs must share for their figures to sit in one table: the data and the step
#: budget. ``final_steps`` is not one: it is how an autopeft search splits its budget (the
#: baselines ignore it), so the sources table shows it per run instead.
SAME_SETTINGS = ("model", "max_length", "trial_steps", "budget_steps", "eval_interval", "max_train",
                 "max_validation", "top_up_validation", "max_test")


class CombineError(ValueError):
    """The runs cannot be combined (one line: which file, what differs)."""


def parse_methods(text: str) -> dict[str, str]:
    """``"a,b=c"`` -> {"a": "a", "b": "c"}: the methods to take and the name each gets."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, renamed, alias = (piece.strip() for piece in part.partition("="))
        if not name or (renamed and not alias):
            raise CombineError(f"--take: expected 'method' or 'method=new-name', found {part!r}")
        out[name] = alias or name
    if not out:
        raise CombineError(f"--take: no method named in {text!r}")
    return out


def _meta(result: dict[str, Any]) -> dict[str, Any]:
    return result.get("meta") or {}


def _setting(result: dict[str, Any], key: str) -> Any:
    return _meta(result).get("settings", {}).get(key)


def _check_finished(path: Path, result: dict[str, Any], methods: dict[str, str]) -> None:
    """CombineError unless each of ``methods`` has a record for every task and seed the partial
    run ``result`` set out to run (a record is written once its method ends on that seed)."""
    first = int(_setting(result, "first_seed") or 0)
    seeds = range(first, first + int(_setting(result, "seeds") or 0))
    tasks = _setting(result, "tasks") or []
    if not tasks or not seeds:
        raise CombineError(f"{path}: a partial run (cut short or still running) that does not say which tasks and "
                           "seeds it set out to run; take a finished one")
    done = {(r.get("method"), r.get("task"), r.get("seed")) for r in result.get("records", [])}
    for method in methods:
        for task in tasks:
            missing = [seed for seed in seeds if (method, Path(str(task)).stem, seed) not in done]
            if missing:
                raise CombineError(f"{path}: a partial run (cut short or still running) without {method} on {task} "
                                   f"seed {missing[0]}; take a finished run, or only methods it finished")


def parse_seeds(text: str) -> set[int]:
    """``"0-3"`` or ``"0,2,4"`` (or both, ``"0-2,4"``) -> the seeds named."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            seeds.update(range(int(low), int(high) + 1) if dash else [int(low)])
        except ValueError:
            raise CombineError(f"--seeds: expected seeds like '0-3' or '0,2,4', found {part!r}") from None
    if not seeds:
        raise CombineError(f"--seeds: no seed named in {text!r}")
    return seeds


def combine(takes: list[tuple[Path, dict[str, str]]],
            seeds: set[int] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """(records, sources, split sizes) of the methods taken from each results file, checked to
    be comparable; only ``seeds``' records where given (so that every method's median is over
    the same seeds when some were run for fewer)."""
    records: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    first: tuple[Path, dict[str, Any]] | None = None
    seen: dict[tuple[str, str, int], Path] = {}
    sizes: dict[str, Any] = {}
    for path, methods in takes:
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CombineError(f"{path}: not a readable benchmark results file ({exc})") from None
        if not isinstance(result, dict) or "records" not in result:
            raise CombineError(f"{path}: not a benchmark results file (no 'records')")
        if result.get("partial"):  # cut short or still running: only methods it finished may be taken
            _check_finished(path, result, methods)
        if first is None:
            first = (path, result)
        else:
            for setting in SAME_SETTINGS:
                ours, theirs = _setting(result, setting), _setting(first[1], setting)
                if ours != theirs:
                    raise CombineError(f"{path}: {setting} is {ours!r}, but {theirs!r} in {first[0]}: "
                                       "the runs did not measure the same thing")
        for task, split in _meta(result).get("split_sizes", {}).items():
            if task in sizes and sizes[task] != split:
                raise CombineError(f"{path}: {task}'s splits are {split}, but {sizes[task]} in an earlier file")
            sizes[task] = split
        found = {r["method"] for r in result["records"]}
        missing = sorted(set(methods) - found)
        if missing:
            raise CombineError(f"{path}: no records of {', '.join(missing)} (it has {', '.join(sorted(found))})")
        taken: dict[str, list[int]] = {}
        for record in result["records"]:
            if record["method"] not in methods or (seeds is not None and int(record["seed"]) not in seeds):
                continue
            name = methods[record["method"]]
            key = (record["task"], name, int(record["seed"]))
            if key in seen:
                raise CombineError(f"{path}: {name} on {key[0]} seed {key[2]} is also taken from {seen[key]}")
            seen[key] = path
            records.append({**record, "method": name, "source": str(path)})
            taken.setdefault(name, []).append(int(record["seed"]))
        sources.append({"file": str(path), "date": _meta(result).get("date"),
                        "final_steps": _setting(result, "final_steps") or 0,
                        "command": _meta(result).get("command"),
                        "methods": {name: sorted(seeds) for name, seeds in taken.items()}})
    return records, sources, sizes


def write(name: str, records: list[dict[str, Any]], sources: list[dict[str, Any]], sizes: dict[str, Any],
          out: Path, command: str) -> dict[str, Path]:
    from bench.report import write_results

    stamp = datetime.now().strftime("%Y-%m-%d")
    seeds = sorted({int(r["seed"]) for r in records})
    tasks = sorted({r["task"] for r in records})
    result: dict[str, Any] = {
        "name": name, "partial": False,
        "meta": {"date": stamp, "command": command, "split_sizes": sizes, "sources": sources,
                 "scale": (f"combined from {len(sources)} runs (below); tasks {', '.join(tasks)}; seeds "
                           f"{', '.join(map(str, seeds))}")},
        "early_stopping": None, "overhead": {}, "failures": [],
    }
    lines = ["", "## Where each method's figures come from", "",
             "| method | seeds | file | date | final steps | command |", "| --- | --- | --- | --- | --- | --- |"]
    for source in sources:
        for method, method_seeds in source["methods"].items():
            lines.append(f"| {method} | {', '.join(map(str, method_seeds))} | `{source['file']}` | {source['date']} "
                         f"| {source['final_steps']} | `{source['command']}` |")
    return write_results(result, records, out / f"{stamp}-{name}", lines)


def _fail(message: str) -> NoReturn:
    print(f"bench.combine: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.combine", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the combined results' name (<date>-<name>.md)")
    p.add_argument("--take", nargs=2, action="append", required=True, metavar=("RESULTS_JSON", "METHODS"),
                   help="a results file and the comma-separated methods to take from it (method=new-name renames)")
    p.add_argument("--seeds", help="take only these seeds' records ('0-3', '0,2,4'), from every file")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    try:
        takes = [(Path(path), parse_methods(methods)) for path, methods in args.take]
        records, sources, sizes = combine(takes, parse_seeds(args.seeds) if args.seeds else None)
    except CombineError as exc:
        _fail(str(exc))
    command = "python -m bench.combine " + shlex.join(argv if argv is not None else sys.argv[1:])
    paths = write(args.name, records, sources, sizes, Path(args.out), command)
    print(f"[bench] wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
