# Two entry points on a fresh machine: `make bench` and `make test`.
# Both create or refresh the virtual environment in .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test bench lint clean chromium

# Every dependency is installed at the version in constraints.txt, the versions the suite was
# tested with (pyproject.toml keeps only lower bounds). torch is installed first: its CPU wheel
# is on disk, while an unpinned torch pulled in by another package would fetch a multi-GB CUDA build.
CONSTRAINTS := constraints.txt

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(CONSTRAINTS) --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[dev,metaworld]"
	touch $(STAMP)

# The page's browser test drives Debian's Chromium through Playwright (whose own browser download is
# not used). Installed when missing and apt-get can run; elsewhere that test skips, saying why.
chromium:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "chromium not installed (no root or apt-get): the browser test of the page will skip"

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check metarl_bench envs baselines tests

test: $(STAMP) chromium
	$(VENV)/bin/ruff check metarl_bench envs baselines tests
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 2 tests

bench: $(STAMP)
	$(VENV)/bin/metarl-bench bench --tier quick --results results
	# the slower learning checks (marked slow, kept out of `make test`)
	$(PY) -m pytest -q -n 2 -m slow tests

clean:
	rm -rf $(VENV) build *.egg-info
