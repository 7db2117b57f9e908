#!/usr/bin/env bash
# The accuracy frontier (docs/results.md): trains the larger models with the `large` recipe and
# evaluates the ensembles. Each run is skipped when its run folder already holds a completed run.
#
#   scripts/frontier.sh [SEEDS]     vgg-32 seeds, default "1 2 3 4" (about 15 min each on two CPU
#                                   cores); then vgg-16 seed 1 (4.5 min) and vgg-48 seed 1 (31 min)
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data
cd "$REPO_ROOT"
SEEDS=${1:-1 2 3 4}

train() { # ARCH SEED RUN_DIR
  if grep -q '"status": *"completed"' "$3/config.json" 2>/dev/null; then
    log "$3: already trained"
  else
    log "training $1, seed $2 into $3"
    "$MNIST_CNN_BIN" train --recipe large --arch "$1" --seed "$2" --data "$MNIST_CNN_DATA" \
      --out "$3" --overwrite --json >/dev/null
  fi
  python3 - "$3" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1] + "/config.json"))["final_metrics"]
print("{}: test accuracy {:.2f}%, {:.0f} s of training".format(
    sys.argv[1], 100 * metrics["test_accuracy"], metrics["train_seconds"]))
PY
}

MODELS=()
for seed in $SEEDS; do
  train vgg-32 "$seed" "runs/large-s$seed"
  MODELS+=(--model "runs/large-s$seed/model.ot")
done
train vgg-16 1 runs/vgg16-s1
train vgg-48 1 runs/vgg48-s1

accuracy() { "$MNIST_CNN_BIN" eval --data "$MNIST_CNN_DATA" --json "$@" |
  python3 -c 'import json, sys; print("{:.2f}%".format(100 * json.load(sys.stdin)["accuracy"]))'; }
THREE=(--model runs/large-s1/model.ot --model runs/large-s2/model.ot --model runs/large-s3/model.ot)
log "vgg-32 seeds 1-3: $(accuracy "${THREE[@]}"); with --tta: $(accuracy "${THREE[@]}" --tta)"
log "vgg-32 seeds $SEEDS: $(accuracy "${MODELS[@]}"); with --tta: $(accuracy "${MODELS[@]}" --tta)"
log "seeds 1-3 + vgg-16, --tta: $(accuracy "${THREE[@]}" --model runs/vgg16-s1/model.ot --tta)"
log "seeds 1-3 + vgg-48, --tta: $(accuracy "${THREE[@]}" --model runs/vgg48-s1/model.ot --tta)"
FIVE=("${THREE[@]}" --model runs/vgg48-s1/model.ot --model runs/vgg16-s1/model.ot)
log "seeds 1-3 + vgg-48 + vgg-16: $(accuracy "${FIVE[@]}"); with --tta: $(accuracy "${FIVE[@]}" --tta)"
