# The two commands in the README: `make run` (the main job) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PULSE := $(VENV)/bin/pulse
STAMP := $(VENV)/.installed-stamp
# cargo builds the native aggregation core; rustup installs it under ~/.cargo/bin
export PATH := $(or $(CARGO_HOME),$(or $(HOME),/root)/.cargo)/bin:$(PATH)
NATIVE := $(wildcard native/Cargo.toml native/Cargo.lock native/build.rs native/src/*.rs native/src/*/*.rs src/pulse/events/event-v1.schema.json)

.PHONY: run test chaos install lint stack-up stack-down clean

$(STAMP): pyproject.toml $(NATIVE)
	@command -v cargo >/dev/null 2>&1 || { echo "error: cargo (Rust) is needed to build Pulse's native core: install it with rustup (https://rustup.rs)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test]"
	$(PY) -m compileall -q src  # an editable install is not byte-compiled (and PYTHONDONTWRITEBYTECODE may be set)
	touch $(STAMP)

install: $(STAMP)

## run: set everything up on this machine and run the pipeline (Ctrl-C stops what it started)
run: install
	$(PULSE) run

## test: set up, start the stack if needed, run the whole suite, stop what was started
test: install
	bash scripts/test.sh

## chaos: bounded fault runs on a private stack (its own ports), one broker then three, each ending in `pulse verify`
chaos: install
	$(PULSE) chaos
	$(PULSE) chaos --brokers 3 --seconds 6m

lint: install
	$(VENV)/bin/ruff check src tests

stack-up: install
	$(PULSE) stack up

stack-down: install
	$(PULSE) stack down

clean:
	-$(PULSE) stack down
	rm -rf $(VENV) .pulse
