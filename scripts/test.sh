#!/usr/bin/env bash
# `make test`: start the local stack if it is not already running, run ruff and the whole suite against
# the real services, then stop only what this script started.
set -uo pipefail
cd "$(dirname "$0")/.."
PULSE=.venv/bin/pulse
started=0
if ! $PULSE stack status --quiet >/dev/null 2>&1; then
  $PULSE stack up || exit 1
  started=1
fi
stop() { if [ "$started" = 1 ]; then $PULSE stack down; fi; }
trap stop EXIT
trap 'exit 130' INT TERM
.venv/bin/ruff check src tests || exit 1
# the native core: formatted, clippy-clean and its own unit tests
(cd native && cargo fmt --check && cargo clippy --release -q -- -D warnings && cargo test --release -q --lib) || exit 1
mkdir -p test-artifacts
.venv/bin/python -m pytest "$@"
