# Every target uses the project's own virtual environment (.venv), created by `make install`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU-only machines get the CPU build of torch (no multi-GB CUDA download); GPU machines keep pip's choice.
TORCH_CPU ?= torch==2.13.0
TRACKING_URI ?= sqlite:///mlflow.db

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-slow test-unit test-integration lint ui bench bench-sst2 bench-zero-config bench-full bench-smoke bench-family-lr bench-portfolio clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "$(TORCH_CPU)"; fi
	$(PY) -m pip install -q -e ".[dev,demo]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/autopeft search --config examples/demo.yaml

# tests/ mirrors the package (tests/integration: the real stack); bench/tests: the benchmark harness
TEST_PATHS := tests bench/tests

# two test processes (pytest-xdist): on 2 cores one process left the CPUs half idle (Ray start-ups,
# imports, polling); tests/conftest.py groups what must share a process and orders the groups longest
# first (--no-loadscope-reorder keeps that order). TEST_PROCESSES=0: one.
TEST_PROCESSES ?= 2
XDIST = $(if $(filter 0,$(TEST_PROCESSES)),-p no:xdist,-n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder)

test: install
	$(PY) -m pytest -q --durations=15 -m "not slow" $(XDIST) $(TEST_PATHS)

# the few tests of minutes whose path another test already covers (the bench's zero-config run)
test-slow: install
	$(PY) -m pytest -q -m slow $(TEST_PATHS)

test-unit: install
	$(PY) -m pytest -q $(XDIST) $(TEST_PATHS) -m "not integration"

test-integration: install
	$(PY) -m pytest -q $(XDIST) $(TEST_PATHS) -m "integration and not slow"

# ruff, mypy (the package and the bench harness; tests are checked by running them), and the layer
# contracts (pyproject.toml [tool.importlinter]): an upward import or a cycle fails
lint: install
	$(PY) -m ruff check autopeft tests bench
	$(PY) -m mypy autopeft bench --exclude bench/tests
	$(VENV)/bin/lint-imports

ui: install
	$(VENV)/bin/autopeft ui --tracking-uri $(TRACKING_URI)

# The benchmark (bench/, not part of the package): bench/results/<date>-glue-cpu.{json,md,png}, about
# 1.5 h on 2 CPU cores; bench-full is the 8 x 200-step version for a GPU or a long quiet night.
# TASK runs other tasks instead of the config's: a task file (TASK=path/to/task.yaml: your own data,
# bench/data.py says what it holds) or a shipped one's name (bench/tasks/<name>.yaml: sst2, rte,
# qnli); comma-separated for several. BENCH_ARGS overrides settings, e.g. BENCH_ARGS="--seeds 1".
TASK ?=
BENCH_ARGS ?=
TASK_ARG = $(if $(TASK),--task $(TASK))
bench: install
	$(PY) -m bench.run --config bench/configs/cpu.yaml $(TASK_ARG) $(BENCH_ARGS)

# The README's latest results table: SST-2 at 800 steps with the final training (about 4.5 h).
bench-sst2: install
	$(PY) -m bench.run --config bench/configs/sst2-final.yaml $(BENCH_ARGS)

# Zero-config (autopeft.search given only --model/--train/--test/--time) vs autopeft-lora, the
# README table's best hand-written config, at the same wall time per seed: 3 seeds, about 75 min.
bench-zero-config: install
	$(PY) -m bench.run --config bench/configs/zero-config.yaml $(BENCH_ARGS)

bench-full: install
	$(PY) -m bench.run --config bench/configs/full.yaml $(TASK_ARG) $(BENCH_ARGS)

# One 100-step trial per adapter family of all-adapters at 1e-3, 5e-3 and 2e-2 (about 70 min on
# 2 CPU cores): the measurements behind that space's per-family learning-rate ranges.
bench-family-lr: install
	$(PY) -m bench.family_lr $(BENCH_ARGS)

# The warm-start portfolio (autopeft/study/portfolio.yaml), rebuilt from data: each candidate of the
# pool (the former hand-set prior + seeded draws of ready spaces) trained on each task for the same
# small budget, then a greedy cover of the tasks (bench/portfolio.py says how). Results are cached in
# bench/results/portfolio/ (a rerun trains only what changed). About 40 min on one CPU core with the
# defaults below; PORTFOLIO_TASKS/_STEPS/_DRAWS change them, BENCH_ARGS adds any other flag.
PORTFOLIO_TASKS ?= sst2,rte,qnli
PORTFOLIO_STEPS ?= 48
PORTFOLIO_DRAWS ?= all-adapters=3,lora-family=1
bench-portfolio: install
	$(PY) -m bench.portfolio --tasks $(PORTFOLIO_TASKS) --steps $(PORTFOLIO_STEPS) --draws $(PORTFOLIO_DRAWS) $(BENCH_ARGS)

# Seconds-long smoke version (one seed, autopeft vs the default LoRA, a tiny budget, the task file
# bench/tasks/sst2.yaml unless TASK says another); results in bench/results/tmp/.
bench-smoke: install
	$(PY) -m bench.run --config bench/configs/smoke.yaml --out bench/results/tmp/smoke $(TASK_ARG) $(BENCH_ARGS)

clean:
	rm -rf autopeft-runs mlflow.db optuna.db mlartifacts .pytest_cache
