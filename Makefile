# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv when missing and installs the package (with its test extras) into it.
#   make test       the CI tier: everything but the `slow` tests (under 12 minutes here)
#   make test-fast  the inner loop: no end-to-end runs, no graph-heavy supernets (~2 min)
#   make test-all   every test, the `slow` tier included
#   make bench-inia19  the README's "Does the search help?" table (a few CPU-hours; resumes)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile --durations=15

.PHONY: demo test test-fast test-all install clean bench-inia19

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nasseg-demo --output_dir=demo_output

test: $(STAMP)
	$(PYTEST) -m "not slow" tests

test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not e2e" tests

test-all: $(STAMP)
	$(PYTEST) tests

bench-inia19: $(STAMP)
	$(PY) bench/inia19_table.py --record=bench/inia19_table.json

clean:
	rm -rf $(VENV) demo_output build *.egg-info
