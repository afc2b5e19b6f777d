# phase1: every target installs the project into $(VENV) first (once, via a stamp file).
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
# Only the folders that exist yet (ruff fails on a missing path).
LINT_PATHS := $(wildcard phase1 tests benchmarks docs)
CASES ?=

.PHONY: install test demo lab notebooks bench fuzz clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py phase1/_walcheck.c phase1/_replay.c
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy phase1 benchmarks
	$(PY) -m pytest -n 2 tests
ifneq ($(NOTEBOOKS),)
	PYTHONHASHSEED=0 $(PY) -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg --nbval-cell-timeout=120 \
		-n 2 --dist loadfile notebooks/
else
	@echo "no notebooks/*.ipynb yet: skipping nbval"
endif

demo: $(VENV)/.installed
	$(PY) -m phase1.demo

lab: $(VENV)/.installed
	$(PY) -m jupyter lab notebooks/

notebooks: $(VENV)/.installed
ifneq ($(NOTEBOOKS),)
	PYTHONHASHSEED=0 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False \
		notebooks/*.ipynb
else
	@echo "no notebooks/*.ipynb yet: nothing to regenerate"
endif

bench: $(VENV)/.installed
	$(PY) -m benchmarks

fuzz: $(VENV)/.installed
	$(PY) -m phase1.fuzz $(if $(CASES),--cases $(CASES),)

clean:
	rm -rf data/run data/workspace test-data tests/artifacts benchmarks/results
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
