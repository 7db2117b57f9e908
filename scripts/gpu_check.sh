#!/usr/bin/env bash
# One short check on a machine with an NVIDIA GPU and PyTorch 2.11 installed: runs the prebuilt
# binary against that PyTorch's libtorch, checks that CUDA is seen, benchmarks and trains one
# epoch in fp32, bf16 and fp16 (with its loss scale), runs the fast recipe in fp32 and bf16, and
# prints throughput and accuracy (as JSON lines, then a summary). `info` says what
# `--precision auto` picks for the device (bf16 from compute capability 8.0).
#
#   scripts/gpu_check.sh [BINARY] [MNIST_DIR] [OUT_DIR]
#
# BINARY defaults to target/release/mnist-cnn (built on any machine: tch 0.24.0 binds exactly
# libtorch 2.11.0), MNIST_DIR to data/mnist (the four idx files), OUT_DIR to a temporary folder.
# PYTHON names the interpreter that has torch (default python3).
set -euo pipefail

BIN=${1:-target/release/mnist-cnn}
DATA=${2:-data/mnist}
OUT=${3:-$(mktemp -d)}
PYTHON=${PYTHON:-python3}

TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "libtorch from $TORCH_LIB" >&2

"$BIN" info --json | tee "$OUT/info.json"
"$PYTHON" - "$OUT/info.json" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
if not info["cuda_available"]:
    sys.exit("CUDA is not available to mnist-cnn: check the driver and that libtorch_cuda is linked")
print(f"CUDA devices: {info['cuda_device_count']}, cuDNN {info['cudnn_version']}", file=sys.stderr)
PY

for precision in fp32 bf16 fp16; do
  for batch in 128 1024; do
    "$BIN" bench --device cuda --precision "$precision" --data "$DATA" --batch-size "$batch" \
      --steps 300 --no-latency --json | tee "$OUT/bench-$precision-$batch.json"
  done
  "$BIN" train --device cuda --precision "$precision" --data "$DATA" --epochs 1 --batch-size 128 \
    --seed 1 --no-report --out "$OUT/one-epoch-$precision" --overwrite --json \
    | tee "$OUT/one-epoch-$precision.json"
done
for precision in fp32 bf16; do
  "$BIN" train --device cuda --precision "$precision" --data "$DATA" --recipe fast --seed 1 \
    --no-report --out "$OUT/fast-$precision" --overwrite --json | tee "$OUT/fast-$precision.json"
done

"$PYTHON" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
for precision in ("fp32", "bf16", "fp16"):
    for batch in (128, 1024):
        b = json.load(open(os.path.join(out, f"bench-{precision}-{batch}.json")))
        print(f"{precision}, batch {batch}: training {b['train_images_per_second']:,.0f} images/s, "
              f"inference {b['inference_images_per_second']:,.0f} images/s, "
              f"{100 * b['fraction_of_ceiling']:.0f}% of the matmul ceiling")
names = [f"one-epoch-{p}" for p in ("fp32", "bf16", "fp16")] + [f"fast-{p}" for p in ("fp32", "bf16")]
for name in names:
    r = json.load(open(os.path.join(out, f"{name}.json")))
    print(f"{name}: test accuracy {100 * r['test_accuracy']:.2f}% after {r['train_seconds']:.1f} s of training")
PY
