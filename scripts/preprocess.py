#!/usr/bin/env python3
"""The tool's picture preprocessing in Python (numpy and Pillow), for users of the exported model.

`mnist-cnn predict` and `serve` turn any photo or scan of a digit into an MNIST-style 28x28 field
before the network sees it (src/data/images/preprocess.rs); an exported model (ONNX, TorchScript,
safetensors) expects that field too. This is a reference implementation of the same steps:

  1. decode; larger than 1024 px a side: scale down to fit (the tool's working size);
  2. grey = 0.299 R + 0.587 G + 0.114 B, transparent parts on a contrasting background;
  3. the paper's level and noise from a band around the border (median, 1.4826 x MAD); dark ink
     on light paper is inverted; the paper is subtracted and the ink stretched to 0..1;
  4. specks (8-connected ink regions with under 1% of the ink) removed;
  5. cropped to the ink, the longer side scaled to 20 px (triangle filter, as the image crate's);
  6. placed in 28x28 with the centre of mass at (14, 14).

On PNG pictures it gives the tool's input within 1/255 (tests/it/preprocess.rs checks it); JPEG
decoders differ from one library to the next by a level or two, so JPEGs agree a little less.

As a module:

    from preprocess import preprocess
    field = preprocess("digit.png")   # float32, shape (1, 1, 28, 28), values 0..1

From the command line, the fields of pictures as JSON (one list of 784 numbers each), or as a
.npy array of shape (N, 1, 28, 28) with --npy OUT:

    python3 scripts/preprocess.py digit.png other.jpg
"""

import argparse
import json
import sys
from collections import deque

import numpy as np
from PIL import Image

FIELD = 28
DIGIT_BOX = 20
WORKING_SIDE = 1024
MIN_CONTRAST = np.float32(0.08)
INK_THRESHOLD = np.float32(0.05)
SPECK_SHARE = 0.01


def decode(path):
    """The picture's first frame as float32 RGBA in 0..1, at most WORKING_SIDE a side."""
    with Image.open(path) as picture:
        picture.seek(0)
        rgba = picture.convert("RGBA")
        if max(rgba.size) > WORKING_SIDE:
            rgba = fit_within(rgba, WORKING_SIDE)
        return np.asarray(rgba, dtype=np.float32) / np.float32(255)


def fit_within(picture, side):
    """Scaled down to fit side x side, keeping the aspect ratio (the image crate's rounding)."""
    width, height = picture.size
    ratio = min(side / width, side / height)
    size = (max(round_half_away(width * ratio), 1), max(round_half_away(height * ratio), 1))
    channels = np.asarray(picture, dtype=np.float32) / np.float32(255)
    scaled = resize(channels, size[1], size[0])
    return Image.fromarray(np.clip(np.floor(scaled * 255 + 0.5), 0, 255).astype(np.uint8), "RGBA")


def round_half_away(x):
    """Rust's round(): halves away from zero (Python's round() goes to even)."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def to_grey(rgba):
    """Luma, with transparent pixels on a background that contrasts with the opaque ones."""
    r, g, b, alpha = (rgba[..., i] for i in range(4))
    luma = np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b
    opaque = alpha > 0.5
    bright = opaque.any() and luma[opaque].astype(np.float64).mean() > 0.5
    background = np.float32(0.0 if bright else 1.0)
    return alpha * luma + (np.float32(1) - alpha) * background


def median(values):
    """The element at index len/2 once sorted (the upper middle for an even count), as the tool."""
    if values.size == 0:
        return np.float32(0)
    return np.partition(values, values.size // 2)[values.size // 2]


def border_band(grey):
    height, width = grey.shape
    band = max(round_half_away(np.float32(min(width, height)) * np.float32(0.05)), 1)
    mask = np.zeros(grey.shape, dtype=bool)
    mask[:band, :] = mask[-band:, :] = True
    mask[:, :band] = mask[:, -band:] = True
    return grey[mask]


def remove_specks(ink):
    """Blackens 8-connected ink regions holding less than SPECK_SHARE of all the ink."""
    height, width = ink.shape
    is_ink = ink > INK_THRESHOLD
    region = np.full(ink.shape, -1, dtype=np.int64)
    masses = []
    for y0, x0 in zip(*np.nonzero(is_ink)):
        if region[y0, x0] >= 0:
            continue
        label = len(masses)
        region[y0, x0] = label
        mass = 0.0
        queue = deque([(y0, x0)])
        while queue:
            y, x = queue.pop()
            mass += float(ink[y, x])
            for ny in range(max(y - 1, 0), min(y + 2, height)):
                for nx in range(max(x - 1, 0), min(x + 2, width)):
                    if region[ny, nx] < 0 and is_ink[ny, nx]:
                        region[ny, nx] = label
                        queue.append((ny, nx))
        masses.append(mass)
    total = sum(masses)
    for label, mass in enumerate(masses):
        if mass < SPECK_SHARE * total:
            ink[region == label] = 0


def weights(old, new):
    """The image crate's triangle-filter resampling of `old` samples into `new`, as a matrix."""
    ratio = np.float32(old) / np.float32(new)
    sratio = max(ratio, np.float32(1))
    support = np.float32(1) * sratio
    matrix = np.zeros((new, old), dtype=np.float32)
    for out in range(new):
        centre = (np.float32(out) + np.float32(0.5)) * ratio
        left = min(max(int(np.floor(centre - support)), 0), old - 1)
        right = min(max(int(np.ceil(centre + support)), left + 1), old)
        centre = centre - np.float32(0.5)
        taps = np.arange(left, right, dtype=np.float32)
        w = np.maximum(np.float32(1) - np.abs((taps - centre) / sratio), np.float32(0))
        matrix[out, left:right] = w / w.sum(dtype=np.float32)
    return matrix


def resize(pixels, new_height, new_width):
    """imageops::resize with FilterType::Triangle: vertical pass, then horizontal, clamped."""
    height, width = pixels.shape[:2]
    if (new_height, new_width) == (height, width):
        return pixels.copy()
    vertical = np.tensordot(weights(height, new_height), pixels, axes=(1, 0))
    horizontal = np.tensordot(weights(width, new_width), vertical, axes=(1, 1))
    horizontal = np.moveaxis(horizontal, 0, 1)
    return np.clip(horizontal, 0, 1).astype(np.float32)


def scale_to_box(ink):
    height, width = ink.shape
    longer = np.float32(max(width, height))
    box = np.float32(DIGIT_BOX)
    new_w = min(max(round_half_away(np.float32(width) * box / longer), 1), DIGIT_BOX)
    new_h = min(max(round_half_away(np.float32(height) * box / longer), 1), DIGIT_BOX)
    return np.clip(resize(ink, new_h, new_w), 0, 1)


def place_by_centre_of_mass(digit):
    height, width = digit.shape
    values = digit.astype(np.float64)
    mass = values.sum()
    if mass > 0:
        ys, xs = np.mgrid[0:height, 0:width]
        cx, cy = (values * xs).sum() / mass, (values * ys).sum() / mass
    else:
        cx, cy = width / 2, height / 2
    centre = FIELD / 2
    dx, dy = round_half_away(centre - cx), round_half_away(centre - cy)
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    for y in range(height):
        for x in range(width):
            fx, fy = x + dx, y + dy
            if 0 <= fx < FIELD and 0 <= fy < FIELD:
                field[fy, fx] = digit[y, x]
    return field


def preprocess_grey(grey):
    """The 28x28 field of a grey picture (float32, 0..1, ink of either polarity)."""
    pixels = grey.astype(np.float32).copy()
    border = border_band(pixels)
    paper = median(border)
    noise = np.float32(1.4826) * median(np.abs(border - paper))
    if paper > 0.5:
        pixels = np.float32(1) - pixels
        paper = np.float32(1) - paper
    floor = paper + max(np.float32(3) * noise, np.float32(0.02))
    peak = pixels.max()
    if not (peak - paper >= MIN_CONTRAST and peak > floor):
        raise ValueError("no ink: the picture is blank or has no contrast")
    ink = np.clip((pixels - floor) / (peak - floor), 0, 1).astype(np.float32)
    remove_specks(ink)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if rows.size == 0:
        raise ValueError("no ink left once the paper is removed")
    cropped = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return place_by_centre_of_mass(scale_to_box(cropped))


def preprocess(path):
    """The network's input for a picture file: float32, shape (1, 1, 28, 28), values 0..1."""
    return preprocess_grey(to_grey(decode(path))).reshape(1, 1, FIELD, FIELD)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pictures", nargs="+")
    parser.add_argument("--npy", help="write the fields as one (N, 1, 28, 28) .npy array")
    args = parser.parse_args()
    fields = []
    for path in args.pictures:
        try:
            fields.append(preprocess(path))
        except (OSError, ValueError) as err:
            sys.exit(f"{path}: {err}")
    if args.npy:
        np.save(args.npy, np.concatenate(fields))
    else:
        json.dump([f.reshape(-1).round(6).tolist() for f in fields], sys.stdout)
        print()


if __name__ == "__main__":
    main()
