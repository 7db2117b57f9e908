#!/usr/bin/env bash
# Fuzzes the idx validator, picture decoding/preprocessing and the checkpoint readers (.ot and
# safetensors) with cargo-fuzz (libFuzzer), each for SECONDS (default 300), starting from small
# seed corpora generated here (not committed).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (targets: idx picture checkpoint; default all)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz`). Crashes, if any, are written to fuzz/artifacts/.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ensure_libtorch
SECONDS_EACH=${1:-300}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(idx picture checkpoint)
cd "$REPO_ROOT"

log "fuzz: generating seed corpora in fuzz/corpus"
python3 - <<'PY'
import os, struct, zlib
root = "fuzz/corpus"
for target in ("idx", "picture", "checkpoint"):
    os.makedirs(os.path.join(root, target), exist_ok=True)

def idx_images(count, rows=28, cols=28):
    return struct.pack(">IIII", 0x803, count, rows, cols) + bytes((i * 37) % 256 for i in range(count * rows * cols))

def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)

seeds = {
    "images-2": idx_images(2), "images-0": idx_images(0), "images-27x28": idx_images(1, 27, 28),
    "labels-3": idx_labels([0, 9, 5]), "labels-bad": idx_labels([10, 255]),
    "huge-count": struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28),
}
for name, data in seeds.items():
    open(os.path.join(root, "idx", name), "wb").write(data)

def png(width, height, pixel, colour_type=0, depth=8):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    rows = b"".join(b"\0" + bytes(v for x in range(width) for v in pixel(x, y)[:channels]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")

bar = lambda x, y: (20, 20, 20, 255) if 8 <= x < 12 and 4 <= y < 28 else (230, 230, 230, 0)
pictures = {
    "grey.png": png(20, 32, bar), "rgb.png": png(20, 32, bar, 2), "alpha.png": png(20, 32, bar, 6),
    "blank.png": png(8, 8, lambda x, y: (200, 200, 200, 255)),
    "bomb.png": png(1, 1, bar)[:16] + struct.pack(">II", 100000, 100000) + png(1, 1, bar)[24:],
}
for name, data in pictures.items():
    open(os.path.join(root, "picture", name), "wb").write(data)

# Checkpoints: the ones an earlier release wrote, and a small safetensors file.
import shutil, torch
from safetensors.torch import save_file
for name in ("model.ot", "resume.ot"):
    shutil.copy(os.path.join("tests/data/release-0.1.0", name), os.path.join(root, "checkpoint", name))
save_file({"conv1.weight": torch.zeros(4, 1, 3, 3), "fc.bias": torch.zeros(10)},
          os.path.join(root, "checkpoint", "small.safetensors"), metadata={"architecture": "tutorial"})
# GPU-written ones (storages tagged cuda:0).
for run in ("tutorial-cuda", "vgg4-cuda"):
    shutil.copy(os.path.join("tests/data/cuda-written", run, "model.ot"),
                os.path.join(root, "checkpoint", f"{run}.ot"))

# The shapes of the second hostile review (issue 27), small: deep nesting, a dict the memo
# shares grown many times, a long dict and a zip64 end record declaring millions of entries.
import io, zipfile
def archive(pickle, storages=()):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        for key, data in storages:
            z.writestr(f"archive/data/{key}", data)
    return out.getvalue()
zip64_tail = (b"PK\x06\x06" + struct.pack("<QHHII", 44, 45, 45, 0, 0)
              + struct.pack("<QQQQ", 200_000_000, 200_000_000, 9_200_000_000, 0)
              + b"PK\x06\x07" + struct.pack("<IQI", 0, 4, 1)
              + b"PK\x05\x06" + b"\0" * 4 + b"\xff" * 12 + b"\0\0")
hostile = {
    "deep.ot": archive(b"\x80\x02)" + b"\x85" * 5000 + b"."),
    "memo.ot": archive(b"\x80\x02}q\x00" + b"h\x00K\x01K\x02sq\x00" * 500 + b"."),
    "long-dict.ot": archive(b"\x80\x02}" + b"K\x01K\x02s" * 2000 + b"."),
    "zip64.ot": b"PK\x03\x04" + zip64_tail,
}
for name, data in hostile.items():
    open(os.path.join(root, "checkpoint", name), "wb").write(data)
PY

# The fuzz binaries link libtorch (through the library crate) without the main binary's rpath.
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

for target in "${TARGETS[@]}"; do
  log "fuzz: $target for $SECONDS_EACH s"
  (cd fuzz && cargo +nightly fuzz run "$target" --fuzz-dir . -s none "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -max_len=1048576)
done
