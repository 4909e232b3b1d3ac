# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check bench clean-lab help system-deps bytecode

help:
	@echo "make demo   - create .venv, install, run the demo scenario, write a report"
	@echo "make test   - create .venv, install with test extras, run the test suite"
	@echo "make bench  - benchmarks against peer tools (wrk, hey, ss), printed as ratios"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Debian packages the tests and the demo call (nginx, nft, ip, ss ...): installed
# when missing and root with apt, otherwise named (scripts/system-deps.sh).
system-deps:
	@sh scripts/system-deps.sh

# An editable install leaves the package's .pyc to be written on first import,
# which PYTHONDONTWRITEBYTECODE (set in some CI images) forbids: then every run
# compiles tcpstress anew (0.2-0.5 CPU s per process). Compiled here, up to date.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q tcpstress

demo: system-deps bytecode
	$(BIN)/tcpstress demo

# Static checks: ruff's pyflakes/pycodestyle/bugbear rules, then mypy over the
# package (strict for the run record, scenario, load and sampler; pyproject.toml).
check: $(STAMP)
	$(BIN)/ruff check tcpstress tests bench
	$(BIN)/mypy

test: system-deps check bytecode
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: bytecode
	$(BIN)/python bench/run_all.py

clean-lab: $(STAMP)
	$(BIN)/tcpstress lab cleanup
