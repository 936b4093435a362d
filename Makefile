# Two commands on a fresh clone: `make run` and `make test`. Everything else is a helper.
# Real USB handpieces also need Debian's libusb-1.0-0 (docs/usb.md); the tests use a simulated pyusb backend.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit hil soak bench docs clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/laserctl console --training

lint: $(STAMP)
	$(BIN)/ruff check drivers laserctl tests hil_tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests

hil: $(STAMP)
	$(BIN)/pytest hil_tests

test: lint typecheck
	$(BIN)/pytest

soak: $(STAMP)
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest tests -k "stateful or property" -p no:timeout

docs: $(STAMP)
	$(BIN)/python -m laserctl.controller.diagram
	$(BIN)/python -m laserctl.console.screenshots
	$(BIN)/python -m tests.traceability --write

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
