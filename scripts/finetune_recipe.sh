#!/usr/bin/env bash
# The documented fine-tuning recipe, for one seed:
#   1. the tutorial recipe (10 epochs, batch 32, Adam 1e-3) with 10% of the training images held
#      out, so that fine-tuning can be judged on images the model has never seen;
#   2. fine-tuning from it: augmentation, Adam 1e-3 with cosine decay, batch 128, 20 epochs, an
#      exponential moving average of the weights; the epoch with the best validation scores is
#      kept. The test set is only reported.
# Usage: scripts/finetune_recipe.sh SEED [RUNS_DIR]   (set-up as in train.sh: libtorch, build, data)
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
seed=${1:?usage: scripts/finetune_recipe.sh SEED [RUNS_DIR]}
runs=${2:-runs}

ensure_libtorch
build_release
ensure_data
parent=$runs/recipe-parent-seed$seed
if [ ! -f "$parent/config.json" ] || ! grep -q '"status": "completed"' "$parent/config.json"; then
  log "train: tutorial recipe, 10% held out, seed $seed -> $parent"
  "$MNIST_CNN_BIN" train --data "$MNIST_CNN_DATA" --val-split 0.1 --seed "$seed" --out "$parent" --overwrite
fi
log "finetune: seed $seed -> $runs/recipe-finetune-seed$seed"
"$MNIST_CNN_BIN" finetune --data "$MNIST_CNN_DATA" --from "$parent/model.ot" \
  --augment --schedule cosine --lr 1e-3 --epochs 20 --batch-size 128 --ema 0.999 \
  --seed "$seed" --out "$runs/recipe-finetune-seed$seed" --overwrite
