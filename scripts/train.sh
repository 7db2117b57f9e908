#!/usr/bin/env bash
# Set up everything (libtorch, build, data) and train the tutorial recipe.
# Extra arguments go to `mnist-cnn train`, e.g. `scripts/train.sh --seed 7 --epochs 3`.
# MNIST_DIR=/path/to/mnist uses a local copy of the four files (.gz or raw) instead of downloading.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
build_release
ensure_data
log "train: mnist-cnn train --data $MNIST_CNN_DATA $*"
"$MNIST_CNN_BIN" train --data "$MNIST_CNN_DATA" "$@"
