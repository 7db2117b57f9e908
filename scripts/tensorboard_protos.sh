#!/usr/bin/env bash
# Regenerates src/io/tensorboard/{proto,hparams_proto}.rs: the descriptors of TensorBoard's own
# messages (event, summary and the HParams plugin's) are taken from the tensorboard package in
# the venv (its *_pb2 modules carry them), and prost-build turns them into Rust in a scratch
# crate. No protoc is needed, here or at build time; the output is committed.
#
#   scripts/tensorboard_protos.sh          (needs network for pip and cargo the first time)
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ensure_libtorch
python3 -m pip install --quiet --disable-pip-version-check tensorboard==2.21.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/tensorboard.fds" <<'PY'
import importlib, sys
from google.protobuf import descriptor_pb2
modules = ["tensorboard.compat.proto.event_pb2", "tensorboard.compat.proto.summary_pb2",
           "tensorboard.plugins.hparams.api_pb2", "tensorboard.plugins.hparams.plugin_data_pb2"]
files = {}
def add(descriptor):
    if descriptor.name in files:
        return
    for dependency in descriptor.dependencies:
        add(dependency)
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    files[descriptor.name] = proto
for module in modules:
    add(importlib.import_module(module).DESCRIPTOR)
out = descriptor_pb2.FileDescriptorSet()
out.file.extend(files.values())
open(sys.argv[1], "wb").write(out.SerializeToString())
PY
mkdir -p "$work/gen/src"
cat >"$work/gen/Cargo.toml" <<'TOML'
[package]
name = "tensorboard-protos"
version = "0.1.0"
edition = "2021"
[dependencies]
prost = "0.14"
prost-types = "0.14"
prost-build = "0.14"
TOML
cat >"$work/gen/src/main.rs" <<'RS'
use prost::Message;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).expect("descriptor set");
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice()).expect("descriptors");
    let mut config = prost_build::Config::new();
    config.out_dir(&args[2]);
    config.compile_fds(set).expect("prost-build");
}
RS
mkdir -p "$work/out"
(cd "$work/gen" && cargo run --quiet --release -- "$work/tensorboard.fds" "$work/out")
cp "$work/out/tensorboard.rs" "$REPO_ROOT/src/io/tensorboard/proto.rs"
cp "$work/out/tensorboard.hparams.rs" "$REPO_ROOT/src/io/tensorboard/hparams_proto.rs"
log "regenerated src/io/tensorboard/proto.rs and hparams_proto.rs"
