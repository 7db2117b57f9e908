#!/usr/bin/env bash
# Set up everything (libtorch, build, data), then run every check CI runs: the module layers
# (docs/architecture.md), rustfmt, clippy with warnings as errors, and the whole test suite
# (unit, CLI, end-to-end on MNIST).
# MNIST_DIR=/path/to/mnist uses a local copy of the four files (.gz or raw) instead of downloading.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data
ensure_chromium
cd "$REPO_ROOT"
log "check: dependencies point one way (scripts/check_layers.py)"
python3 scripts/check_layers.py src
if [ -f ../shared/tools/module_cycles.py ]; then
  log "check: no import cycle (../shared/tools/module_cycles.py)"
  python3 ../shared/tools/module_cycles.py src
fi
log "check: cargo fmt --check"
cargo fmt --all --check
log "check: cargo clippy -- -D warnings"
cargo clippy --release --locked --all-targets -- -D warnings
log "test: cargo test --release (MNIST from $MNIST_CNN_DATA)"
cargo test --release --locked
