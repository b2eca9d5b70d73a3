# imgrec: `make run` starts the dashboard on the demo gallery; `make test` runs every test;
# `make fuzz` runs the hostile-input suites with many more random examples.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
# localhost only; ADDRESS=0.0.0.0 serves every network interface (the dashboard has no login)
ADDRESS ?= 127.0.0.1

.PHONY: run test fuzz demo lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

data/index/CURRENT: | $(VENV)/.installed
	$(BIN)/imgrec demo --index

demo: data/index/CURRENT

run: $(VENV)/.installed data/index/CURRENT
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.address $(ADDRESS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

fuzz: $(VENV)/.installed-dev
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/hostile

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench search --n 100000

clean:
	rm -rf data/index data/demo
