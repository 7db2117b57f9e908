# shellcheck shell=bash
# Shared set-up for train.sh and test.sh, sourced, never run directly.
#
#   ensure_libtorch  libtorch 2.11.0: $LIBTORCH if the user set it, else a cached virtualenv with
#                    torch==2.11.0 from PyPI (created once, reused by every clone and CI run)
#   build_release    cargo build --release of the mnist-cnn binary
#   ensure_chromium  headless Chromium for the browser test of `serve`'s page: $MNIST_CNN_CHROMIUM,
#                    else chromium on PATH, else the system package (apt-get install chromium)
#   ensure_data      MNIST in $MNIST_CNN_DATA (default data/mnist): imported from $MNIST_DIR when set,
#                    downloaded otherwise; verified either way, and a no-op when already valid
set -euo pipefail

TORCH_VERSION=2.11.0
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MNIST_CNN_CACHE=${MNIST_CNN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnist-cnn}
TORCH_VENV=$MNIST_CNN_CACHE/venv-torch-$TORCH_VERSION
# What the venv holds: libtorch for the build, numpy (torch warns without it), pillow for
# scripts/preprocess.py, safetensors for scripts/pytorch_interop.py, onnx and onnxruntime for
# scripts/onnx_check.py, tensorboard for scripts/tensorboard_check.py and scripts/tensorboard.sh.
TENSORBOARD_REQUIREMENT=tensorboard==2.21.0
VENV_REQUIREMENTS="torch==$TORCH_VERSION numpy pillow safetensors onnx==1.23.2 onnxruntime==1.32.0 $TENSORBOARD_REQUIREMENT"
MNIST_CNN_DATA=${MNIST_CNN_DATA:-$REPO_ROOT/data/mnist}
MNIST_CNN_BIN=$REPO_ROOT/target/release/mnist-cnn
export MNIST_CNN_DATA

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_libtorch() {
  if [ -n "${LIBTORCH:-}" ]; then
    log "libtorch: using LIBTORCH=$LIBTORCH"
    unset LIBTORCH_USE_PYTORCH
    record_libtorch_source "LIBTORCH=$LIBTORCH"
    return
  fi
  # The marker holds the requirements installed; it is written only after pip succeeded, so an
  # interrupted install is redone, and a requirement added later is installed into the same venv.
  if [ "$(cat "$TORCH_VENV/.complete" 2>/dev/null)" != "$VENV_REQUIREMENTS" ]; then
    if [ ! -x "$TORCH_VENV/bin/python3" ]; then
      log "libtorch: creating $TORCH_VENV (once; about 4.7 GB)"
      mkdir -p "$MNIST_CNN_CACHE"
      python3 -m venv "$TORCH_VENV"
    fi
    log "libtorch: pip install $VENV_REQUIREMENTS"
    # shellcheck disable=SC2086 # the requirements are a word list
    "$TORCH_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check $VENV_REQUIREMENTS
    printf '%s' "$VENV_REQUIREMENTS" >"$TORCH_VENV/.complete"
  else
    log "libtorch: reusing $TORCH_VENV"
  fi
  export LIBTORCH_USE_PYTORCH=1
  export PATH="$TORCH_VENV/bin:$PATH"
  record_libtorch_source "venv=$TORCH_VENV"
}

# torch-sys does not rebuild when only PATH or LIBTORCH changes; remember which libtorch the
# build directory was made with and clean torch-sys when that changes.
record_libtorch_source() {
  local stamp=$REPO_ROOT/target/.libtorch-source
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$1" ]; then
    log "libtorch source changed ($(cat "$stamp") -> $1): cleaning torch-sys"
    (cd "$REPO_ROOT" && cargo clean --release -p torch-sys && cargo clean -p torch-sys)
  fi
  mkdir -p "$REPO_ROOT/target"
  printf '%s' "$1" >"$stamp"
}

build_release() {
  log "build: cargo build --release"
  (cd "$REPO_ROOT" && cargo build --release --locked --bin mnist-cnn)
}

ensure_chromium() {
  if [ -n "${MNIST_CNN_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    log "chromium: $(command -v chromium || command -v chromium-browser || echo "$MNIST_CNN_CHROMIUM")"
    return
  fi
  if ! command -v apt-get >/dev/null; then
    log "chromium: not found and no apt-get; install Chromium or set MNIST_CNN_CHROMIUM"
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "chromium: apt-get install chromium (once, for the browser test)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q chromium >/dev/null ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
}

# What load_test.sh and hostile_load.sh need: libtorch, this build, the data, the load
# generator and a model to serve (MODEL if given, else one trained once with --recipe fast into
# runs/load-test-model); sets LOAD and MODEL and moves to $REPO_ROOT.
prepare_load_test() {
  ensure_libtorch
  build_release
  ensure_data
  cd "$REPO_ROOT"
  cargo build --release --locked --example load_test
  LOAD=$REPO_ROOT/target/release/examples/load_test
  MODEL=${1:-}
  if [ -z "$MODEL" ]; then
    MODEL=runs/load-test-model/model.ot
    if [ ! -f "$MODEL" ]; then
      log "training a model for the load test (--recipe fast)"
      "$MNIST_CNN_BIN" train --recipe fast --data "$MNIST_CNN_DATA" --out runs/load-test-model \
        --overwrite --no-report >/dev/null
    fi
  fi
}

# Starts `$SERVER_BIN serve --model $MODEL` on a free loopback port with the extra arguments;
# sets SERVER (its pid) and URL.
start_server() {
  local address_file
  address_file=$(mktemp)
  "$SERVER_BIN" serve --model "$MODEL" --addr 127.0.0.1:0 "$@" >"$address_file" &
  SERVER=$!
  for _ in $(seq 100); do [ -s "$address_file" ] && break; sleep 0.1; done
  URL=$(head -1 "$address_file")
  rm -f "$address_file"
  [ -n "$URL" ] || { log "the server did not print its address"; return 1; }
}

# Stops the server start_server started (Ctrl-C: it drains its requests first).
stop_server() {
  kill -INT "$SERVER"
  wait "$SERVER" || true
  SERVER=
}

ensure_data() {
  if [ -n "${MNIST_DIR:-}" ]; then
    log "data: importing MNIST from MNIST_DIR=$MNIST_DIR into $MNIST_CNN_DATA"
    "$MNIST_CNN_BIN" data --dir "$MNIST_CNN_DATA" --from "$MNIST_DIR"
  else
    log "data: downloading MNIST into $MNIST_CNN_DATA"
    "$MNIST_CNN_BIN" data --dir "$MNIST_CNN_DATA"
  fi
}
