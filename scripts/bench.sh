#!/usr/bin/env bash
# Training and inference throughput of mnist-cnn against plain PyTorch eager, on this machine,
# in one go: the two alternate (Rust, Python, Rust, Python, …) so that a change in the machine's
# load hits both, and the medians and ratios are printed at the end.
#
#   scripts/bench.sh                      # batches 32 and 128, three rounds, one thread per core
#   BATCHES="128" ROUNDS=5 THREADS=2 scripts/bench.sh
#
# Run it on a quiet machine: with two cores, anything else running halves the figures.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data

BATCHES=${BATCHES:-32 128}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-$(nproc)}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

for batch in $BATCHES; do
  for round in $(seq "$ROUNDS"); do
    log "bench: batch $batch, round $round of $ROUNDS (mnist-cnn, then PyTorch)"
    "$MNIST_CNN_BIN" bench --data "$MNIST_CNN_DATA" --batch-size "$batch" --threads "$THREADS" \
      --device cpu --json >"$results/rust-$batch-$round.json"
    python3 "$REPO_ROOT/scripts/bench_pytorch.py" --data "$MNIST_CNN_DATA" --batch-size "$batch" \
      --threads "$THREADS" --scratch "$results" >"$results/pytorch-$batch-$round.json"
  done
done

python3 - "$results" <<'PY'
import glob, json, os, statistics, sys

folder = sys.argv[1]
def load(kind, batch):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(folder, f"{kind}-{batch}-*.json")))]

batches = sorted({int(os.path.basename(f).split("-")[1]) for f in glob.glob(os.path.join(folder, "rust-*.json"))})
fields = [("train_images_per_second", "training images/s"),
          ("inference_images_per_second", "inference images/s (batch 1000)"),
          ("predict_latency_ms", "one picture from process start, ms")]
rows = []
for batch in batches:
    rust, torch = load("rust", batch), load("pytorch", batch)
    for key, label in fields:
        r = statistics.median(x[key] for x in rust)
        t = statistics.median(x[key] for x in torch)
        ratio = t / r if key.endswith("_ms") else r / t
        rows.append({"batch_size": batch, "measure": label, "mnist_cnn": r, "pytorch_eager": t,
                     "speed_ratio": ratio})
print(f"{len(load('rust', batches[0]))} rounds each, medians; threads {load('rust', batches[0])[0]['threads']};"
      f" {load('rust', batches[0])[0]['implementation']} vs {load('pytorch', batches[0])[0]['implementation']}")
print(f"| batch | measure | mnist-cnn | PyTorch eager | mnist-cnn speed-up |")
print(f"| --- | --- | --- | --- | --- |")
for row in rows:
    print(f"| {row['batch_size']} | {row['measure']} | {row['mnist_cnn']:,.0f} | {row['pytorch_eager']:,.0f} | {row['speed_ratio']:.2f}× |")
print(json.dumps(rows))
PY
