# The README's commands. `make demo` and `make test` each create .venv first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-learning benchmark

$(BIN)/rllib-maml: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned first: this machine's CPU build, never a multi-GB CUDA download.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/rllib-maml
	$(BIN)/python -m rllib_maml.tools.quickstart

test: $(BIN)/rllib-maml
	$(BIN)/python -m pytest -q

# Long learning runs (pytest marker "learning"; deselected by `make test`).
test-learning: $(BIN)/rllib-maml
	$(BIN)/python -m pytest -q -m learning

benchmark: $(BIN)/rllib-maml
	$(BIN)/python benchmarks/throughput.py
