#!/usr/bin/env python3
"""The small checks scripts/gpu_check.sh makes with Python, each printing one line and exiting
non-zero when the check fails:

  storages FILE...              every tensor storage in these .ot files is tagged cpu (a file
                                written on a GPU opens on a machine without one)
  same-weights A B              two safetensors exports hold bit-identical tensors
  request URL PICTURE           one POST of a picture to `serve`'s /v1/predict; prints the digit
  table RESULTS                 the summary table of the PASS/FAIL lines (tab-separated file)

Needs only the standard library, and safetensors with torch for same-weights.
"""
import json
import sys
import urllib.request
import zipfile


def storages(paths):
    """Reads data.pkl of each archive: tch writes each storage's location as a string there."""
    tagged = []
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            pickle = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            data = archive.read(pickle)
        if b"cuda" in data:
            tagged.append(path)
    if tagged:
        sys.exit(f"storages tagged cuda in {', '.join(tagged)}")
    print(f"only cpu storages in {len(paths)} file(s)")


def same_weights(a, b):
    import torch
    from safetensors.torch import load_file

    first, second = load_file(a), load_file(b)
    if first.keys() != second.keys():
        sys.exit(f"different tensors: {sorted(first.keys() ^ second.keys())}")
    differing = [k for k in first if not torch.equal(first[k], second[k])]
    if differing:
        largest = max((first[k] - second[k]).abs().max().item() for k in differing)
        sys.exit(f"{len(differing)} of {len(first)} tensors differ (at most by {largest:.3g})")
    print(f"{len(first)} tensors bit-identical")


def request(url, picture):
    with open(picture, "rb") as f:
        body = f.read()
    ask = urllib.request.Request(f"{url}/v1/predict", data=body, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(ask, timeout=60) as answer:
        reply = json.load(answer)
    print(f"digit {reply['digit']} ({100 * reply['probability']:.1f}%)")


def table(results):
    rows = [line.rstrip("\n").split("\t") for line in open(results) if line.strip()]
    width = max(len(r[0]) for r in rows)
    print(f"| {'check'.ljust(width)} | result | detail |")
    print(f"| {'-' * width} | ------ | ------ |")
    for name, result, detail in rows:
        print(f"| {name.ljust(width)} | {result.ljust(6)} | {detail} |")
    failed = [r[0] for r in rows if r[1] != "PASS"]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "storages":
        storages(args)
    elif command == "same-weights":
        same_weights(*args)
    elif command == "request":
        request(*args)
    elif command == "table":
        table(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
