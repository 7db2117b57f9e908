#!/usr/bin/env bash
# Load test of `mnist-cnn serve` on loopback: 1 and 32 concurrent clients (examples/load_test.rs,
# keep-alive connections sending MNIST test digits back to back), each for SECONDS (default 60),
# with batching (--max-batch 64) and without (--max-batch 1). Prints one JSON line per run and a
# Markdown table. Benchmark on a quiet machine: server and clients share its cores.
#
#   scripts/load_test.sh [MODEL] [SECONDS] [BINARY]   MODEL defaults to a model trained with
#   --recipe fast; BINARY serves instead of this build (to compare builds, alternated)
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

prepare_load_test "${1:-}"
SECONDS_EACH=${2:-60}
SERVER_BIN=${3:-$MNIST_CNN_BIN}

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"; [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true' EXIT
for max_batch in 64 1; do
  start_server --max-batch "$max_batch"
  for concurrency in 1 32; do
    log "max batch $max_batch, $concurrency client(s), ${SECONDS_EACH} s against $URL"
    "$LOAD" --url "$URL" --concurrency "$concurrency" --seconds "$SECONDS_EACH" \
      --data "$MNIST_CNN_DATA" | sed "s/^{/{\"max_batch\":$max_batch,/" | tee -a "$RESULTS"
  done
  BATCHES=$(curl -s "$URL/metrics" 2>/dev/null | grep -E '^mnist_cnn_batch_size_(sum|count)' || true)
  [ -n "$BATCHES" ] && log "batches: $(echo "$BATCHES" | tr '\n' ' ')"
  stop_server
done

echo
echo "| max batch | clients | requests/s | p50 ms | p99 ms | errors |"
echo "|---:|---:|---:|---:|---:|---:|"
python3 - "$RESULTS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['max_batch']} | {r['concurrency']} | {r['requests_per_second']:,.0f} | "
          f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
PY
