"""Run the benchmark: ``python -m bench.run --task sst2 --methods autopeft-lora,default --seeds 3
--budget-steps 800 --glue-dir ../shared/data/glue`` or ``python -m bench.run --config bench/configs/full.yaml``.

A task is a YAML file (``bench/data.py`` says what it holds): ``--task sst2`` reads the shipped
``bench/tasks/sst2.yaml`` (also ``rte``, ``qnli``), ``--task path/to/task.yaml`` a user's own.
Every task is checked before anything trains (its settings with the other settings, then its
files and columns, then its rows as its splits are written); a task that cannot run is one line on
stderr and exit status 2.

Writes ``bench/results/<date>-<name>.json``, ``.md`` and ``.png`` (``--out`` to change where).
Command-line flags override the YAML. Work files (MLflow/Optuna stores, Ray logs, data slices)
go to ``<out>/tmp/<date>-<name>/`` and are kept out of git.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULTS: dict[str, Any] = {
    "name": "bench",
    "tasks": ["sst2"],
    "methods": ["autopeft-lora", "autopeft-all", "default", "hf-optuna", "random", "grid"],
    "seeds": 3,
    # the seeds run are first_seed .. first_seed + seeds - 1: more seeds later, without rerunning the first
    "first_seed": 0,
    "model": "minilm",
    "max_length": 64,
    "trial_steps": 100,
    "budget_steps": 800,
    "eval_interval": 25,
    "eval_batch_size": 64,
    # reports an ASHA search's trials make before they can be stopped (autopeft's default: 1)
    "grace_period": 1,
    # validation metric ASHA's rungs compare trials on (autopeft's pruning.metric; null: the objective)
    "prune_metric": None,
    # most of an autopeft search's trials the built-in warm-start prior takes (null: autopeft's default)
    "prior_share": None,
    # steps of each autopeft search's budget kept for training its selected config again from the
    # start (autopeft's budget.final_steps); the search itself gets the rest. 0: off
    "final_steps": 0,
    # steps of each family's learning-rate probe before an autopeft search (autopeft's
    # calibration.steps; counted in the search's budget); 0: no calibration; null: autopeft's default
    "calibration_steps": None,
    "cpus": 2,
    "glue_dir": str(REPO.parent / "shared" / "data" / "glue"),
    "max_train": 8000,
    "max_validation": 500,
    # SST-2: add whole sentences of train.tsv to validation until it holds max_validation rows
    # (dev.tsv has 676; bench/data.py)
    "top_up_validation": False,
    "max_test": None,
    "out": str(REPO / "bench" / "results"),
    "grid": None,
    # early-stopping comparison: the ASHA search and the no-early-stopping search it is held to
    "early_stopping": {"asha": "autopeft-lora", "reference": "random"},
    # overhead measures (step time vs bare loop, concurrency, performance choices); off: {}
    "overhead": {"step_time_steps": 30, "concurrency_trials": 4, "eval_padding": True, "tokenize_cache": True,
                 "thread_scaling_steps": 20},
    "keep_workdir": False,
    # autopeft-zero-config's time budget where autopeft-lora did not run before it on the same task
    # and seed in this run (otherwise it gets autopeft-lora's wall time)
    "zero_config_time": "12m",
    "note": "",
}


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML with any of the settings below (flags override it)")
    p.add_argument("--name")
    p.add_argument("--task", action="append", dest="tasks",
                   help="a task file (path/to/task.yaml) or a shipped task's name, which reads bench/tasks/<name>.yaml: "
                        + ", ".join(_shipped_tasks()) + " (repeatable, or comma-separated)")
    p.add_argument("--methods", help="comma-separated; known: " + ", ".join(_method_names()))
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1, or from --first-seed)")
    p.add_argument("--first-seed", type=int, dest="first_seed",
                   help="first seed to run (default 0): adds seeds to an earlier run's without repeating them")
    p.add_argument("--budget-steps", type=int, dest="budget_steps", help="training steps each method may use")
    p.add_argument("--trial-steps", type=int, dest="trial_steps", help="steps of one full trial")
    p.add_argument("--eval-interval", type=int, dest="eval_interval")
    p.add_argument("--grace-period", type=int, dest="grace_period",
                   help="reports before ASHA may stop a trial (autopeft's pruning.grace_period)")
    p.add_argument("--prune-metric", dest="prune_metric",
                   help="validation metric ASHA's rungs compare trials on (autopeft's pruning.metric, e.g. loss)")
    p.add_argument("--calibration-steps", type=int, dest="calibration_steps",
                   help="steps of each family's learning-rate probe before an autopeft search, counted in its "
                        "budget (autopeft's calibration.steps; 0: no calibration)")
    p.add_argument("--prior-share", type=float, dest="prior_share",
                   help="most of an autopeft search's trials the warm-start prior takes (autopeft's warm_start.prior_share)")
    p.add_argument("--final-steps", type=int, dest="final_steps",
                   help="of each autopeft search's step budget, the steps that train its selected config again "
                        "(autopeft's budget.final_steps); the search gets the rest (default 0: off)")
    p.add_argument("--max-length", type=int, dest="max_length")
    p.add_argument("--max-train", type=int, dest="max_train")
    p.add_argument("--max-validation", type=int, dest="max_validation")
    p.add_argument("--max-test", type=int, dest="max_test")
    p.add_argument("--top-up-validation", action="store_const", const=True, dest="top_up_validation",
                   help="SST-2: add whole sentences of train.tsv to validation up to --max-validation rows")
    p.add_argument("--cpus", type=int)
    p.add_argument("--zero-config-time", dest="zero_config_time",
                   help="autopeft-zero-config's time budget (e.g. 12m) where autopeft-lora did not run before it "
                        "on the same task and seed (default: autopeft-lora's wall time there, else 12m)")
    p.add_argument("--glue-dir", dest="glue_dir")
    p.add_argument("--out")
    p.add_argument("--no-overhead", action="store_true", help="skip the overhead/concurrency measures")
    p.add_argument("--note", help="free text stored with the results (e.g. 'shared machine')")
    args = p.parse_args(argv)
    settings = dict(DEFAULTS)
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        unknown = set(loaded) - set(DEFAULTS)
        if unknown:
            p.error(f"--config: unknown settings {sorted(unknown)}")
        if "tasks" in loaded:  # a task file's path in a config is relative to the config's folder
            loaded["tasks"] = _config_tasks(loaded["tasks"], Path(args.config).parent)
        settings.update(loaded)
    for key, value in vars(args).items():
        if key in ("config", "no_overhead") or value is None:
            continue
        settings[key] = value
    if args.no_overhead:
        settings["overhead"] = {}
    for key in ("tasks", "methods"):
        if isinstance(settings[key], str):
            settings[key] = [settings[key]]
        settings[key] = [x.strip() for v in settings[key] for x in str(v).split(",") if x.strip()]
    bad = [m for m in settings["methods"] if m not in _method_names()]
    if bad:
        p.error(f"--methods: unknown {bad}; known: {', '.join(_method_names())}")
    if settings["budget_steps"] < settings["trial_steps"]:
        p.error("--budget-steps must be at least --trial-steps")
    if settings["eval_interval"] > settings["trial_steps"]:
        p.error("--eval-interval must be at most --trial-steps")
    if not 0 <= settings["final_steps"] <= settings["budget_steps"] - settings["trial_steps"]:
        p.error("--final-steps must leave the search at least one full trial: between 0 and "
                f"{settings['budget_steps'] - settings['trial_steps']}, found {settings['final_steps']}")
    if "random-final" in settings["methods"] and not settings["final_steps"]:
        p.error("--methods random-final needs --final-steps: it is random search with the autopeft searches' "
                "final training")
    if "autopeft-zero-config" in settings["methods"]:
        from autopeft.config import parse_duration

        try:
            parse_duration(settings["zero_config_time"])
        except ValueError as exc:
            p.error(f"--zero-config-time: {exc}")
    if settings["first_seed"] < 0:
        p.error(f"--first-seed must be 0 or more, found {settings['first_seed']}")
    if settings["top_up_validation"] and not settings["max_validation"]:
        p.error("--top-up-validation needs --max-validation: it adds training sentences up to that many")
    tasks = _load_tasks(p, settings)
    # it must apply to a task run, unless the tasks were picked with --task from a config that
    # sets it for others of its tasks (glue-targets.yaml, run a task at a time)
    picked_from_config = args.tasks is not None and not args.top_up_validation
    if (settings["top_up_validation"] and not picked_from_config
            and not any(t.spec.splits.whole_sentence_validation for t in tasks)):
        p.error("--top-up-validation applies to tasks with splits.whole_sentence_validation (sst2) only; "
                f"found tasks {settings['tasks']}")
    if "autopeft-zero-config" in settings["methods"]:
        for task in tasks:
            if (task.spec.kind, task.spec.metric) != ("sequence_classification", "accuracy"):
                _task_error(p, f"--methods autopeft-zero-config: compares test accuracy of a sequence_classification "
                               f"task; expected that, found task {task.name} ({task.spec.kind}, {task.spec.metric})")
    return settings


def _shipped_tasks() -> list[str]:
    from bench.data import shipped_tasks

    return shipped_tasks()


def _config_tasks(tasks: Any, folder: Path) -> list[str]:
    """A config's tasks with the paths among them made relative to the config's folder (names stay)."""
    from bench.data import is_task_path

    given = [tasks] if isinstance(tasks, str) else list(tasks or [])
    names = [x.strip() for v in given for x in str(v).split(",") if x.strip()]
    return [os.path.normpath(folder / Path(t).expanduser()) if is_task_path(t) else t for t in names]


def _task_error(p: argparse.ArgumentParser, message: str) -> NoReturn:
    """A task that cannot run: one line on stderr, exit status 2 (argparse's, without the usage)."""
    p.exit(2, f"{p.prog}: error: {message}\n")


def _load_tasks(p: argparse.ArgumentParser, settings: dict[str, Any]) -> list[Any]:
    """Every task named, its file loaded and validated (its data files are checked when ``run``
    writes the splits, before any method trains); ``settings["tasks"]`` becomes their names and
    ``settings["task_files"]`` their files."""
    from bench.data import TaskError, load_task

    tasks = []
    for given in settings["tasks"]:
        try:
            tasks.append(load_task(given, settings["glue_dir"], files=False))
        except TaskError as exc:
            _task_error(p, str(exc))
    names = [t.name for t in tasks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        _task_error(p, f"--task: every task needs its own name (the results are keyed by it); found {twice[0]!r} "
                       f"in {', '.join(str(t.source) for t in tasks if t.name == twice[0])}")
    settings["tasks"] = names
    settings["task_files"] = {t.name: str(t.source) for t in tasks}
    return tasks


def seed_range(settings: dict[str, Any]) -> range:
    return range(settings["first_seed"], settings["first_seed"] + settings["seeds"])


def _method_names() -> list[str]:
    return ["autopeft-lora", "autopeft-all", "autopeft-lora-fifo", "autopeft-lora-noprior", "default", "hf-optuna",
            "random", "random-final", "grid", "autopeft-zero-config"]


def _quiet() -> None:
    import logging
    import warnings

    from autopeft.process import configure_process

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bench runs the packaged model, never the Hub
    configure_process()  # the same Ray, Tune and MLflow settings as the CLI
    warnings.filterwarnings("ignore")
    for name in ("transformers", "mlflow", "optuna", "ray", "autopeft", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(settings: dict[str, Any], command: str) -> dict[str, Path]:
    _quiet()
    from bench import overhead as ov
    from bench.data import check_splits, load_task, prepare_task
    from bench.methods import METHODS
    stamp = datetime.now().strftime("%Y-%m-%d")
    name = settings["name"]
    out = Path(settings["out"])
    out.mkdir(parents=True, exist_ok=True)
    work = out / "tmp" / f"{stamp}-{name}-{os.getpid()}"
    started = time.perf_counter()
    load_start = os.getloadavg()
    records: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    overhead: dict[str, Any] = {}
    sizes: dict[str, dict[str, int]] = {}
    try:
        # every task's files and columns checked, its splits written and checked as autopeft loads
        # them, before any method trains (a TaskError: one line and exit status 2, from main)
        prepared = {}
        for task, path in _task_files(settings).items():
            files = prepare_task(load_task(path, settings["glue_dir"]), settings["glue_dir"], work / "data",
                                 max_train=settings["max_train"], max_validation=settings["max_validation"],
                                 max_test=settings["max_test"], top_up_validation=settings["top_up_validation"])
            check_splits(files)
            prepared[task] = files
        for task, files in prepared.items():
            sizes[task] = files.sizes
            for seed in seed_range(settings):
                for method in settings["methods"]:
                    ctx = _context(settings, files, seed, work / f"{task}-s{seed}-{method}")
                    # what ran before on this task and seed (autopeft-zero-config's time budget)
                    ctx.earlier = {r["method"]: r for r in records if r["task"] == task and r["seed"] == seed}
                    t0 = time.perf_counter()
                    print(f"[bench] {task} seed {seed} {method} ...", flush=True)
                    try:
                        rec = METHODS[method](ctx)
                    except Exception as exc:  # recorded, the other methods still run
                        traceback.print_exc()
                        failures.append({"task": task, "seed": seed, "method": method,
                                         "error": " ".join(str(exc).split())[:500]})
                        continue
                    records.append(rec)
                    write(settings, command, stamp, started, load_start, sizes, records, failures, overhead, out,
                          partial=True)  # a run cut short still leaves every finished method's figures
                    print(f"[bench] {task} seed {seed} {method}: test {rec['test_metric']:.4f} "
                          f"steps {rec['total_steps']} in {time.perf_counter() - t0:.0f}s", flush=True)
            if settings["overhead"] and task == settings["tasks"][0]:
                overhead = _overhead(settings, _context(settings, files, 0, work / f"{task}-overhead"), ov)
                write(settings, command, stamp, started, load_start, sizes, records, failures, overhead, out,
                      partial=True)
        return write(settings, command, stamp, started, load_start, sizes, records, failures, overhead, out,
                     partial=False)
    finally:
        if not settings.get("keep_workdir"):
            shutil.rmtree(work, ignore_errors=True)


def _task_files(settings: dict[str, Any]) -> dict[str, str]:
    """{task name: its task file} (parse_args resolves them; settings built by hand may hold names only)."""
    return settings.get("task_files") or {task: task for task in settings["tasks"]}


def write(settings: dict[str, Any], command: str, stamp: str, started: float, load_start: tuple,
          sizes: dict[str, Any], records: list[dict[str, Any]], failures: list[dict[str, Any]],
          overhead: dict[str, Any], out: Path, *, partial: bool) -> dict[str, Path]:
    """Write the JSON, markdown and plot for the records so far (``partial`` while running)."""
    from bench.report import early_stopping, overhead_summary, search_overhead, write_results, zero_config_comparison

    searches = {f"{rec['task']}/{rec['method']}/s{rec['seed']}": o for rec in records
                if (o := search_overhead(rec)) is not None}
    overhead = dict(overhead)
    if searches:  # the summary first: the markdown lists the keys in this order
        overhead.update(all_searches=overhead_summary(searches), searches=searches)
    es = settings["early_stopping"] or {}
    result: dict[str, Any] = {
        "name": settings["name"],
        "partial": partial,
        "meta": _meta(settings, command, stamp, started, load_start, sizes=sizes),
        "early_stopping": early_stopping(records, settings["trial_steps"], es.get("asha", ""),
                                         es.get("reference", "")) if es else None,
        "overhead": overhead,
        "failures": failures,
    }
    zero_config = zero_config_comparison(records)
    if zero_config:  # only runs with autopeft-zero-config have the section
        result["zero_config"] = zero_config
    result["meta"]["total_wall_s"] = time.perf_counter() - started
    return write_results(result, records, out / f"{stamp}-{settings['name']}")


def _context(settings: dict[str, Any], files: Any, seed: int, workdir: Path) -> Any:
    from bench.methods import DEFAULT_GRID, Context

    return Context(files=files, seed=seed, workdir=workdir, model=settings["model"], max_length=settings["max_length"],
                   trial_steps=settings["trial_steps"], budget_steps=settings["budget_steps"],
                   eval_interval=settings["eval_interval"], eval_batch_size=settings["eval_batch_size"],
                   grace_period=settings["grace_period"], prune_metric=settings["prune_metric"],
                   prior_share=settings["prior_share"], calibration_steps=settings["calibration_steps"],
                   final_steps=settings["final_steps"], cpus=settings["cpus"],
                   grid=settings["grid"] or dict(DEFAULT_GRID), zero_config_time=str(settings["zero_config_time"]),
                   metric=files.metric)


def _overhead(settings: dict[str, Any], ctx: Any, ov: Any) -> dict[str, Any]:
    cfg = settings["overhead"]
    out: dict[str, Any] = {}
    steps = cfg.get("step_time_steps")
    if steps:
        print("[bench] overhead: step time, bare loop vs training.py ...", flush=True)
        out["step_time"] = ov.step_times(ctx, int(steps))
    if cfg.get("tokenize_cache"):
        out["tokenize_cache"] = ov.tokenize_cache(ctx)
    if cfg.get("eval_padding"):
        out["eval_padding"] = ov.eval_padding(ctx)
    if cfg.get("thread_scaling_steps"):
        out["thread_scaling"] = ov.thread_scaling(ctx, int(cfg["thread_scaling_steps"]))
    if cfg.get("concurrency_trials"):
        print("[bench] overhead: concurrency 1 vs 2 trials ...", flush=True)
        conc = ov.concurrency(ctx, int(cfg["concurrency_trials"]))
        out["concurrency"] = {k: {kk: vv for kk, vv in v.items() if kk != "record"} for k, v in conc.items()}
        from bench.report import search_overhead

        for k, v in conc.items():
            out["concurrency"][k]["search"] = search_overhead(v["record"])
        if "step_time" in out:  # the same config in a Ray trial (1 trial x all CPUs)
            out["step_time"]["ray_trial_step_s"] = conc["c1"]["trial_step_s"]
    return out


def _meta(settings: dict[str, Any], command: str, stamp: str, started: float, load_start: tuple,
          sizes: dict[str, Any]) -> dict[str, Any]:
    import peft
    import ray
    import torch
    import transformers

    load_end = os.getloadavg()
    per_trial, budget = settings["trial_steps"], settings["budget_steps"]
    seeds = seed_range(settings)
    seed_note = f" ({seeds.start}..{seeds.stop - 1})" if seeds.start else ""
    scale = (f"{settings['seeds']} seed(s){seed_note}; tasks {', '.join(settings['tasks'])}; budget {budget} training steps per "
             f"method ({budget // per_trial} full trials of {per_trial} steps, evaluation every "
             f"{settings['eval_interval']}"
             f"{'; autopeft searches keep ' + str(settings['final_steps']) + ' of them to train their selected config again' if settings['final_steps'] else ''}"
             f"); train ≤ {settings['max_train']} / validation ≤ "
             f"{settings['max_validation']}{' (SST-2 topped up from train)' if settings['top_up_validation'] else ''}"
             f" / test ≤ {settings['max_test'] or 'all'} examples; max_length "
             f"{settings['max_length']}; {settings['cpus']} CPU threads; {os.cpu_count()} cores on the machine, load "
             f"average {load_start[0]:.1f} at start / {load_end[0]:.1f} at end")
    if "autopeft-zero-config" in settings["methods"]:
        scale += ("; autopeft-zero-config: autopeft.search given only the model, train (train + validation rows) "
                  f"and test files and a time: autopeft-lora's wall time on the same seed (else "
                  f"{settings['zero_config_time']})")
    if settings.get("note"):
        scale += f"; {settings['note']}"
    return {
        "date": stamp, "command": command, "scale": scale, "settings": settings, "split_sizes": sizes,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "loadavg_start": load_start, "loadavg_end": load_end,
                    "gpu": bool(torch.cuda.is_available())},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "ray": ray.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    from bench.data import TaskError, load_task

    try:
        for task_file in _task_files(settings).values():  # files and columns, before anything starts
            load_task(task_file, settings["glue_dir"])
        paths = run(settings, command)
    except TaskError as exc:  # a task's files, columns or rows, found before any method trains
        print(f"python -m bench.run: error: {exc}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"[bench] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
