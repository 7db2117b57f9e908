#!/usr/bin/env bash
# `mnist-cnn serve` under hostile load (examples/load_test.rs): the flood (four clients posting
# 1,024-item lists in a loop, a fifth asking for one digit every 100 ms, /healthz timed
# meanwhile) for SECONDS (default 20), then four 16 MiB bodies of tiny lists at once with the
# server's memory sampled until 10 s after. Each on a fresh server; one JSON line each.
# Benchmark on a quiet machine: server and clients share its cores.
#
#   scripts/hostile_load.sh [MODEL] [SECONDS] [BINARY]   BINARY: another build to compare
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

prepare_load_test "${1:-}"
SECONDS_EACH=${2:-20}
SERVER_BIN=${3:-$MNIST_CNN_BIN}

trap '[ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true' EXIT
for mode in flood bodies; do
  start_server 2>/dev/null
  log "$mode against $URL ($SERVER_BIN)"
  "$LOAD" --url "$URL" --mode "$mode" --seconds "$SECONDS_EACH" --pid "$SERVER"
  stop_server
done
