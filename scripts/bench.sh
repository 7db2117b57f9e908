#!/usr/bin/env bash
# Training and inference throughput of mnist-cnn against PyTorch eager on this machine, in one
# go. Each round runs, in turn: the tool in fp32, the tool in bf16, PyTorch plain (the model as
# written), PyTorch tuned (channels-last that holds, pool before ReLU, MALLOC_MMAP_MAX_=0: the
# tool's own tricks) and PyTorch tuned with bf16 autocast; alternating so that a change in the
# machine's load hits all of them. Medians and ratios are printed at the end, with the CPU.
#
#   scripts/bench.sh                      # batches 32 and 128, three rounds, one thread per core
#   BATCHES="128" ROUNDS=5 THREADS=2 scripts/bench.sh
#   RUNS="tool-fp32 pytorch-plain" scripts/bench.sh     # a subset
#   STEPS=100 scripts/bench.sh            # fewer timed steps (default 300; bf16 without AMX is slow)
#
# Run it on a quiet machine: with two cores, anything else running halves the figures.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data

BATCHES=${BATCHES:-32 128}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-$(nproc)}
STEPS=${STEPS:-300}
RUNS=${RUNS:-tool-fp32 tool-bf16 pytorch-plain pytorch-tuned pytorch-autocast}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

run_one() {
  local run=$1 batch=$2 out=$3
  local common=(--data "$MNIST_CNN_DATA" --batch-size "$batch" --threads "$THREADS" --steps "$STEPS")
  case $run in
    tool-fp32) "$MNIST_CNN_BIN" bench "${common[@]}" --device cpu --json >"$out" ;;
    tool-bf16) "$MNIST_CNN_BIN" bench "${common[@]}" --device cpu --precision bf16 --no-latency --json >"$out" ;;
    pytorch-plain) python3 "$REPO_ROOT/scripts/bench_pytorch.py" "${common[@]}" --scratch "$results" >"$out" ;;
    pytorch-tuned | pytorch-autocast)
      MALLOC_MMAP_MAX_=0 python3 "$REPO_ROOT/scripts/bench_pytorch.py" "${common[@]}" \
        --mode "${run#pytorch-}" --no-latency >"$out" ;;
    *) log "bench: unknown run $run"; exit 2 ;;
  esac
}

for batch in $BATCHES; do
  for round in $(seq "$ROUNDS"); do
    for run in $RUNS; do
      log "bench: batch $batch, round $round of $ROUNDS: $run"
      run_one "$run" "$batch" "$results/$run-$batch-$round.json"
    done
  done
done

CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
python3 - "$results" "$CPU" "$RUNS" <<'PY'
import glob, json, os, statistics, sys

folder, cpu, runs = sys.argv[1], sys.argv[2], sys.argv[3].split()
def median(run, batch, key):
    values = [json.load(open(f)).get(key) for f in glob.glob(os.path.join(folder, f"{run}-{batch}-*.json"))]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

batches = sorted({int(os.path.basename(f).rsplit("-", 2)[1]) for f in glob.glob(os.path.join(folder, "*.json"))})
rounds = len(glob.glob(os.path.join(folder, f"{runs[0]}-{batches[0]}-*.json")))
first = json.load(open(glob.glob(os.path.join(folder, f"{runs[0]}-{batches[0]}-*.json"))[0]))
print(f"{cpu}; {first['threads']} threads; {rounds} rounds each, alternating, medians")
ratios = [("tool-fp32", "pytorch-plain"), ("tool-fp32", "pytorch-tuned"), ("tool-bf16", "pytorch-autocast"), ("tool-bf16", "tool-fp32")]
ratios = [(a, b) for a, b in ratios if a in runs and b in runs]
header = " | ".join(runs + [f"{a} / {b}" for a, b in ratios])
print(f"| batch | measure | {header} |")
print("| --- | --- |" + " --- |" * (len(runs) + len(ratios)))
rows = []
for batch in batches:
    for key, label in [("train_images_per_second", "training images/s"),
                       ("inference_images_per_second", "inference images/s (batch 1000)")]:
        values = {run: median(run, batch, key) for run in runs}
        cells = [f"{values[r]:,.0f}" if values[r] else "-" for r in runs]
        cells += [f"{values[a] / values[b]:.2f}×" if values[a] and values[b] else "-" for a, b in ratios]
        print(f"| {batch} | {label} | " + " | ".join(cells) + " |")
        rows.append({"batch_size": batch, "measure": key, **values})
    fraction = median("tool-fp32", batch, "fraction_of_ceiling")
    if fraction:
        print(f"(batch {batch}: the tool's fp32 training uses {100 * fraction:.0f}% of the fp32 matmul ceiling, "
              f"{median('tool-fp32', batch, 'matmul_gflops_fp32'):.0f} GFLOP/s)")
print(json.dumps(rows))
PY
