#!/usr/bin/env bash
# Opens TensorBoard on the runs' logs (every `train` and `finetune` writes
# RUN_DIR/events.out.tfevents.*), on loopback only:
#
#   scripts/tensorboard.sh [LOGDIR]      LOGDIR defaults to runs; PORT defaults to 6006
#
# TensorBoard comes from the tool's virtualenv (installed there when missing); with a libtorch of
# your own (LIBTORCH set, no virtualenv) it goes into a small virtualenv of its own.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

logdir=${1:-runs}
port=${PORT:-6006}
if [ ! -d "$logdir" ]; then
  log "tensorboard: no folder $logdir (train a run first, or pass the folder holding your runs)"
  exit 1
fi

venv=$TORCH_VENV
if [ ! -x "$venv/bin/python3" ]; then
  venv=$MNIST_CNN_CACHE/venv-tensorboard
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
fi
if [ ! -x "$venv/bin/tensorboard" ]; then
  log "tensorboard: pip install $TENSORBOARD_REQUIREMENT into $venv"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "$TENSORBOARD_REQUIREMENT"
fi
log "tensorboard: http://127.0.0.1:$port (Ctrl-C stops it)"
exec "$venv/bin/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port"
