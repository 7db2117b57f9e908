#!/usr/bin/env python3
"""Renders MNIST digits as a folder of "photos", DIR/<digit>/digit-NNNN.png.

The same rendering as tests/it/pictures.rs: each digit scaled to 64-112 px by nearest neighbour,
placed off-centre on a larger canvas, dark ink on light noisy paper (light on dark for every
fourth), every third one in colour. PNG only (the test also writes JPEGs; this script needs no
imaging library). Used by docs/results.md's measurement of how fine-tuning chooses its best epoch:

    python3 scripts/render_digits.py --data data/mnist --first 0 --count 1000 --out pictures
"""

import argparse
import gzip
import os
import struct
import zlib

import numpy as np


def read_idx(path):
    """Reads an idx file, gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read()


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise SystemExit(f"{data_dir}: no {stem} (or {stem}.gz)")


SPLITS = {"test": ("t10k", 10_000), "train": ("train", 60_000)}


def digits(data_dir, split, first, count):
    stem, size = SPLITS[split]
    images = read_idx(find(data_dir, f"{stem}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{stem}-labels-idx1-ubyte"))
    if first + count > size:
        raise SystemExit(f"--first + --count must be at most {size} for the {split} split")
    for i in range(first, first + count):
        pixels = np.frombuffer(images, np.uint8, 784, 16 + i * 784).reshape(28, 28)
        yield i, pixels, labels[8 + i]


def render(pixels, i):
    """Mirrors `render` in tests/it/pictures.rs (u32 arithmetic for the noise included)."""
    side = 64 + (i * 16) % 64
    width = side + 40 + (i % 3) * 20
    height = side + 30 + (i % 5) * 10
    off_x, off_y = (i * 7) % 40, (i * 11) % 30
    dark_on_light = i % 4 != 0
    paper = 200.0 + (i % 40) if dark_on_light else 25.0
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    noise = ((x * 7919 + y * 104_729 + i * 31) % (1 << 32) % 23).astype(np.float32) - 11.0
    dx, dy = x - off_x, y - off_y
    inside = (dx >= 0) & (dx < side) & (dy >= 0) & (dy < side)
    sx = np.clip(dx * 28 // side, 0, 27)
    sy = np.clip(dy * 28 // side, 0, 27)
    ink = np.where(inside, pixels[sy, sx].astype(np.float32) / 255.0, 0.0)
    on_ink = 15.0 if dark_on_light else 235.0
    value = paper * (1.0 - ink) + on_ink * ink
    return np.clip(value + noise, 0, 255).astype(np.uint8)


def png(pixels):
    """A minimal PNG: 8-bit grey (H×W) or RGB (H×W×3), one IDAT."""
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mnist", help="folder of the MNIST idx files")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="which MNIST split the digits come from (train: pictures that are "
                        "not the test set a fine-tune reports)")
    parser.add_argument("--first", type=int, default=0, help="first digit of the split")
    parser.add_argument("--count", type=int, default=1000, help="digits to render")
    parser.add_argument("--out", required=True, help="folder to create")
    args = parser.parse_args()
    if os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; choose a new folder")
    for i, pixels, label in digits(args.data, args.split, args.first, args.count):
        grey = render(pixels, i)
        # A blue-ish ink on cream paper for every third: colour, not just grey.
        picture = grey
        if i % 3 == 0:
            g = grey.astype(np.int16)
            picture = np.stack([g, np.clip(g - 10, 0, 255), np.clip(g + 20, 0, 255)], -1)
            picture = picture.astype(np.uint8)
        folder = os.path.join(args.out, str(label))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"digit-{i:04}.png"), "wb") as f:
            f.write(png(picture))
    print(f"{args.count} pictures in {args.out}")


if __name__ == "__main__":
    main()
