#!/usr/bin/env bash
# `mnist-cnn serve` under hostile load (examples/load_test.rs): the flood (four clients posting
# 1,024-item lists in a loop, a fifth asking for one digit every 100 ms, /healthz timed
# meanwhile) for SECONDS (default 20), then four 16 MiB bodies of tiny lists at once with the
# server's memory sampled until 10 s after. Each on a fresh server; one JSON line each.
# Benchmark on a quiet machine: server and clients share its cores.
#
#   scripts/hostile_load.sh [MODEL] [SECONDS] [BINARY]   BINARY: another build to compare
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data
cd "$REPO_ROOT"
prepare_load_test "${1:-}"
SECONDS_EACH=${2:-20}
SERVER_BIN=${3:-$MNIST_CNN_BIN}

trap '[ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true' EXIT
for mode in flood bodies; do
  ADDRESS_FILE=$(mktemp)
  "$SERVER_BIN" serve --model "$MODEL" --addr 127.0.0.1:0 >"$ADDRESS_FILE" 2>/dev/null &
  SERVER=$!
  for _ in $(seq 100); do [ -s "$ADDRESS_FILE" ] && break; sleep 0.1; done
  URL=$(head -1 "$ADDRESS_FILE")
  log "$mode against $URL ($SERVER_BIN)"
  "$LOAD" --url "$URL" --mode "$mode" --seconds "$SECONDS_EACH" --pid "$SERVER"
  kill -INT "$SERVER"
  wait "$SERVER" || true
  SERVER=
  rm -f "$ADDRESS_FILE"
done
