#!/usr/bin/env bash
# The GPU acceptance run: the whole chain a user runs, on one device, with a prebuilt binary.
#
#   scripts/gpu_check.sh [BINARY] [MNIST_DIR] [OUT_DIR]
#
# train (the tutorial recipe) → eval on the device and on the CPU → predict a few pictures →
# export to safetensors, ONNX and TorchScript (PyTorch and onnxruntime must agree with eval) →
# finetune from the model just trained → Ctrl-C at a step and --resume (bit-identical with
# --deterministic) → the same seed twice with --deterministic → serve on the device with one
# request → a CPU-written model on the device and the GPU-written fixtures on the CPU → the bench
# table against PyTorch plain, tuned and autocast on the device. One PASS or FAIL line per item,
# then a summary table; the exit status is 1 when anything failed.
#
# BINARY defaults to target/release/mnist-cnn (built on any machine: tch 0.24.0 binds exactly
# libtorch 2.11.0), MNIST_DIR to data/mnist (the four idx files, raw or .gz), OUT_DIR to a new
# temporary folder. It needs only the binary, MNIST and a python3 with torch (onnx and
# onnxruntime for the ONNX item): no Rust toolchain and no network. The binary runs on that
# PyTorch's libtorch (LD_LIBRARY_PATH to its torch/lib).
#
# Settings (environment):
#   DEVICE=cuda            the device of the chain (cpu runs the same chain without a GPU)
#   PYTHON=python3         the interpreter that has torch
#   TRAIN_ARGS=""          extra flags of the first training run (default: the tutorial recipe)
#   SHORT_ARGS="--recipe fast"   the flags of the deterministic, interrupted and resumed runs
#   SIGNAL_STEP=200        the step after which the interrupted run gets SIGINT
#   TUNE_ARGS="--epochs 1" extra flags of the fine-tune
#   BENCH_BATCHES="32 128" BENCH_STEPS=300   the bench table
#
# On the CPU with small limits (what tests/it/gpu_check.rs runs, so that the script cannot rot):
#   DEVICE=cpu TRAIN_ARGS="--limit 2000 --epochs 1" SHORT_ARGS="--limit 640 --epochs 1 --batch-size 64" \
#     SIGNAL_STEP=4 TUNE_ARGS="--epochs 1 --limit 500" BENCH_BATCHES=64 BENCH_STEPS=5 scripts/gpu_check.sh
set -uo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$(realpath "${1:-target/release/mnist-cnn}")
DATA_IN=${2:-data/mnist}
OUT=${3:-$(mktemp -d)}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
TRAIN_ARGS=${TRAIN_ARGS:-}
SHORT_ARGS=${SHORT_ARGS:---recipe fast}
SIGNAL_STEP=${SIGNAL_STEP:-200}
TUNE_ARGS=${TUNE_ARGS:---epochs 1}
BENCH_BATCHES=${BENCH_BATCHES:-32 128}
BENCH_STEPS=${BENCH_STEPS:-300}
CHECK="$PYTHON $REPO_ROOT/scripts/chain_check.py"
RESULTS=$OUT/results.tsv
mkdir -p "$OUT"
: >"$RESULTS"
export RUST_LOG=${RUST_LOG:-warn}

# --- helpers ---------------------------------------------------------------------------------
pass() { printf 'PASS  %-22s %s\n' "$1" "$2"; printf '%s\tPASS\t%s\n' "$1" "$2" >>"$RESULTS"; }
fail() { printf 'FAIL  %-22s %s\n' "$1" "$2"; printf '%s\tFAIL\t%s\n' "$1" "$2" >>"$RESULTS"; }
# A field of a JSON file (a dotted path), printed as is.
field() { "$PYTHON" -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$1" "$2" 2>/dev/null; }
# Whether two accuracies (fractions) differ by at most POINTS percentage points.
close() { "$PYTHON" -c 'import sys; a,b,p=map(float,sys.argv[1:]); sys.exit(abs(a-b)*100>p+1e-9)' "$1" "$2" "$3"; }
percent() { "$PYTHON" -c 'import sys; print(f"{100*float(sys.argv[1]):.2f}%")' "$1"; }
# Runs the tool with a log of its stderr under $OUT; NAME names the log.
tool() { local name=$1; shift; "$BIN" "$@" 2>"$OUT/$name.log"; }
log_tail() { tail -c 300 "$OUT/$1.log" | tr '\n' ' '; }

# --- set-up ----------------------------------------------------------------------------------
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
  echo "FAIL  $PYTHON has no torch: set PYTHON to an interpreter with PyTorch 2.11" >&2
  exit 1
}
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "binary $BIN, libtorch from $TORCH_LIB, device $DEVICE, output in $OUT" >&2

if tool info info --json >"$OUT/info.json"; then
  if [ "$DEVICE" != cpu ] && [ "$(field "$OUT/info.json" cuda_available)" != True ]; then
    fail libtorch "CUDA is not available to mnist-cnn: check the driver and that libtorch_cuda is linked"
  else
    pass libtorch "libtorch $(field "$OUT/info.json" libtorch_version), CUDA devices $(field "$OUT/info.json" cuda_device_count), cuDNN $(field "$OUT/info.json" cudnn_version)"
  fi
else
  fail libtorch "info failed: $(log_tail info)"
fi
DATA=$OUT/mnist
if ! tool data data --dir "$DATA" --from "$DATA_IN"; then
  fail data "cannot import MNIST from $DATA_IN: $(log_tail data)"
  $CHECK table "$RESULTS"
  exit 1
fi

# --- train, eval, predict --------------------------------------------------------------------
RUN=$OUT/train
# shellcheck disable=SC2086 # the extra flags are a word list
if tool train train --device "$DEVICE" --data "$DATA" --seed 1 --out "$RUN" --no-report \
  --json $TRAIN_ARGS >"$OUT/train.json"; then
  TRAINED=$(field "$OUT/train.json" test_accuracy)
  pass train "$(percent "$TRAINED") test accuracy after $("$PYTHON" -c 'import sys; print(f"{float(sys.argv[1]):.1f}")' "$(field "$OUT/train.json" train_seconds)") s of training"
  if out=$($CHECK storages "$RUN/model.ot" "$RUN/resume.ot" 2>&1); then
    pass cpu-storages "$out"
  else
    fail cpu-storages "$out"
  fi
else
  fail train "$(log_tail train)"
fi

eval_on() { # NAME MODEL DEVICE: the accuracy, or nothing
  tool "$1" eval --model "$2" --data "$DATA" --device "$3" --json >"$OUT/$1.json" &&
    field "$OUT/$1.json" accuracy
}
if DEVICE_ACCURACY=$(eval_on eval-device "$RUN/model.ot" "$DEVICE") &&
  close "$DEVICE_ACCURACY" "${TRAINED:-0}" 0.001; then
  pass eval "$(percent "$DEVICE_ACCURACY") on $DEVICE, as the run reported"
else
  fail eval "accuracy ${DEVICE_ACCURACY:-none} against the run's ${TRAINED:-none}: $(log_tail eval-device)"
fi
if CPU_ACCURACY=$(eval_on eval-cpu "$RUN/model.ot" cpu) &&
  close "$CPU_ACCURACY" "${DEVICE_ACCURACY:-0}" 0.05; then
  pass eval-cpu "$(percent "$CPU_ACCURACY") on the CPU (within 0.05 points of $DEVICE)"
else
  fail eval-cpu "accuracy ${CPU_ACCURACY:-none} against ${DEVICE_ACCURACY:-none} on $DEVICE: $(log_tail eval-cpu)"
fi

PICTURES=$OUT/pictures
if "$PYTHON" "$REPO_ROOT/scripts/render_digits.py" --data "$DATA" --count 10 --out "$PICTURES" >/dev/null 2>&1 &&
  mapfile -t pictures < <(find "$PICTURES" -name '*.png' | sort) &&
  tool predict predict --model "$RUN/model.ot" --device "$DEVICE" --json "${pictures[@]}" >"$OUT/predict.json"; then
  right=$("$PYTHON" -c 'import json,os,sys
answers=json.load(open(sys.argv[1]))
print(sum(str(a.get("digit"))==os.path.basename(os.path.dirname(a["path"])) for a in answers), "of", len(answers))' "$OUT/predict.json" 2>&1)
  pass predict "$right rendered pictures read right"
else
  fail predict "$(log_tail predict)"
fi

# --- export: PyTorch and onnxruntime against the tool's CPU eval ------------------------------
export_check() { # FORMAT FILE COMMAND...: the accuracy the consumer computes
  local format=$1 file=$2; shift 2
  if ! tool "export-$format" export --model "$RUN/model.ot" --format "$format" --out "$file" >/dev/null; then
    fail "export-$format" "$(log_tail "export-$format")"
    return
  fi
  local accuracy
  if accuracy=$("$@" 2>"$OUT/consumer-$format.log" | tail -1 | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["accuracy"])') &&
    close "$accuracy" "${CPU_ACCURACY:-0}" 0.02; then
    pass "export-$format" "$(percent "$accuracy") in $(basename "$1") $3 (eval: $(percent "${CPU_ACCURACY:-0}"))"
  else
    fail "export-$format" "the consumer gave ${accuracy:-nothing} against eval's ${CPU_ACCURACY:-none}: $(tail -c 300 "$OUT/consumer-$format.log")"
  fi
}
export_check safetensors "$OUT/model.safetensors" \
  "$PYTHON" "$REPO_ROOT/scripts/pytorch_interop.py" eval-safetensors "$OUT/model.safetensors" --data "$DATA"
export_check torchscript "$OUT/model.pt" \
  "$PYTHON" "$REPO_ROOT/scripts/pytorch_interop.py" eval-torchscript "$OUT/model.pt" --data "$DATA"
export_check onnx "$OUT/model.onnx" \
  "$PYTHON" "$REPO_ROOT/scripts/onnx_check.py" eval-onnx "$OUT/model.onnx" --data "$DATA" --json

# --- finetune ---------------------------------------------------------------------------------
# shellcheck disable=SC2086
if tool finetune finetune --from "$RUN/model.ot" --device "$DEVICE" --data "$DATA" --seed 2 \
  --out "$OUT/finetune" --no-report --json $TUNE_ARGS >"$OUT/finetune.json"; then
  pass finetune "from $(percent "$(field "$OUT/finetune.json" before.test_accuracy 2>/dev/null || echo 0)") to $(percent "$(field "$OUT/finetune.json" test_accuracy)")"
else
  fail finetune "$(log_tail finetune)"
fi

# --- determinism: the same seed twice, and Ctrl-C then --resume --------------------------------
short_run() { # NAME EXTRA...: a deterministic short run into $OUT/NAME
  local name=$1; shift
  # shellcheck disable=SC2086
  tool "$name" train --device "$DEVICE" --data "$DATA" --seed 3 --deterministic --out "$OUT/$name" \
    --no-report --no-tensorboard $SHORT_ARGS "$@" >/dev/null
}
weights_of() { # NAME: the run's model exported to safetensors, for a tensor-by-tensor comparison
  tool "weights-$1" export --model "$OUT/$1/model.ot" --format safetensors --out "$OUT/$1.safetensors" >/dev/null
}
if short_run seed-a && short_run seed-b && weights_of seed-a && weights_of seed-b &&
  out=$($CHECK same-weights "$OUT/seed-a.safetensors" "$OUT/seed-b.safetensors" 2>&1); then
  pass same-seed "--deterministic twice: $out"
else
  fail same-seed "${out:-$(log_tail seed-b)}"
fi
MNIST_CNN_SIGNAL_AT_STEP=$SIGNAL_STEP short_run stopped
stopped=$?
if [ "$stopped" -eq 130 ] &&
  tool resumed train --resume "$OUT/stopped" --device "$DEVICE" --no-report --no-tensorboard >/dev/null &&
  weights_of stopped &&
  out=$($CHECK same-weights "$OUT/seed-a.safetensors" "$OUT/stopped.safetensors" 2>&1); then
  pass ctrl-c-resume "stopped after step $SIGNAL_STEP, resumed: $out"
else
  fail ctrl-c-resume "exit $stopped after the signal; ${out:-$(log_tail resumed)}"
fi

# --- serve ------------------------------------------------------------------------------------
"$BIN" serve --model "$RUN/model.ot" --device "$DEVICE" --addr 127.0.0.1:0 >"$OUT/serve.address" 2>"$OUT/serve.log" &
server=$!
for _ in $(seq 300); do [ -s "$OUT/serve.address" ] && break; sleep 0.1; done
url=$(head -1 "$OUT/serve.address")
picture=$(find "$PICTURES" -name '*.png' 2>/dev/null | sort | head -1)
if [ -n "$url" ] && [ -n "$picture" ] && out=$($CHECK request "$url" "$picture" 2>&1); then
  pass serve "one picture answered on $DEVICE: $out"
else
  fail serve "${out:-no address}: $(log_tail serve)"
fi
kill -INT "$server" 2>/dev/null
wait "$server" 2>/dev/null

# --- across devices ---------------------------------------------------------------------------
if tool cpu-written train --device cpu --data "$DATA" --seed 4 --limit 2000 --epochs 1 \
  --out "$OUT/cpu-written" --no-report --no-tensorboard >/dev/null &&
  a=$(eval_on cpu-written-cpu "$OUT/cpu-written/model.ot" cpu) &&
  b=$(eval_on cpu-written-device "$OUT/cpu-written/model.ot" "$DEVICE") && close "$a" "$b" 0.05; then
  pass cpu-model-on-$DEVICE "$(percent "$b") on $DEVICE, $(percent "$a") on the CPU"
else
  fail cpu-model-on-$DEVICE "${a:-} ${b:-}: $(log_tail cpu-written-device)"
fi
FIXTURES=$REPO_ROOT/tests/data/cuda-written
for fixture in tutorial-cuda vgg4-cuda; do
  [ -f "$FIXTURES/$fixture/model.ot" ] || continue
  recorded=$(field "$FIXTURES/$fixture/config.json" final_metrics.test_accuracy)
  if accuracy=$(eval_on "fixture-$fixture" "$FIXTURES/$fixture/model.ot" cpu) &&
    close "$accuracy" "$recorded" 0.3; then
    pass "gpu-model-on-cpu" "$fixture (written on an H200): $(percent "$accuracy"), recorded $(percent "$recorded")"
  else
    fail "gpu-model-on-cpu" "$fixture: ${accuracy:-} against $recorded: $(log_tail "fixture-$fixture")"
  fi
done

# --- bench: the tool against PyTorch on the device ---------------------------------------------
BENCH=$OUT/bench.tsv
: >"$BENCH"
for batch in $BENCH_BATCHES; do
  for run in tool pytorch-plain pytorch-tuned pytorch-autocast; do
    json=$OUT/bench-$run-$batch.json
    case $run in
      tool) tool "bench-$batch" bench --device "$DEVICE" --data "$DATA" --batch-size "$batch" \
        --steps "$BENCH_STEPS" --no-latency --json >"$json" ;;
      *) "$PYTHON" "$REPO_ROOT/scripts/bench_pytorch.py" --device "$DEVICE" --data "$DATA" \
        --batch-size "$batch" --steps "$BENCH_STEPS" --warmup 5 --mode "${run#pytorch-}" --no-latency \
        >"$json" 2>"$OUT/bench-$run-$batch.log" ;;
    esac
    images=$(field "$json" train_images_per_second) || images=
    printf '%s\t%s\t%s\n' "$batch" "$run" "${images:-failed}" >>"$BENCH"
  done
done
if grep -q failed "$BENCH"; then
  fail bench "$(grep failed "$BENCH" | cut -f1,2 | tr '\t\n' ' ')did not run"
else
  pass bench "training images/s on $DEVICE, below"
fi

echo
$CHECK table "$RESULTS"
echo
echo "Training images/s on $DEVICE ($BENCH_STEPS steps; bench.tsv):"
"$PYTHON" - "$BENCH" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
runs = list(dict.fromkeys(r[1] for r in rows))
print("| batch | " + " | ".join(runs) + " |")
print("| --- |" + " --- |" * len(runs))
for batch in dict.fromkeys(r[0] for r in rows):
    cells = {r[1]: r[2] for r in rows if r[0] == batch}
    fmt = lambda v: f"{float(v):,.0f}" if v.replace(".", "", 1).isdigit() else v
    print(f"| {batch} | " + " | ".join(fmt(cells.get(run, "")) for run in runs) + " |")
PY
! grep -q "	FAIL	" "$RESULTS"
