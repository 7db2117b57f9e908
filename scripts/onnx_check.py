#!/usr/bin/env python3
"""Runs an ONNX file exported by `mnist-cnn export --format onnx` in the real consumers: the ONNX
checker and onnxruntime (CPU). In the venv scripts/setup.sh makes (onnx, onnxruntime, numpy).

    python3 scripts/onnx_check.py check model.onnx
        onnx.checker.check_model(full_check=True), then the opset, inputs, outputs and metadata
        as JSON
    python3 scripts/onnx_check.py eval-onnx model.onnx --data data/mnist [--json]
        the accuracy on the MNIST test set (the four idx files, plain or .gz)
    python3 scripts/onnx_check.py eval-onnx model.onnx --data data/mnist --dump 64 --out f.json
        also the logits and probabilities of the first 64 test digits, for comparisons
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime


def read_idx(data, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data, name)
        if os.path.isfile(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"{data}: no {stem} (or {stem}.gz)")


def test_set(data):
    images = read_idx(data, "t10k-images-idx3-ubyte")
    labels = read_idx(data, "t10k-labels-idx1-ubyte")
    x = np.frombuffer(images, np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return x.astype(np.float32) / 255.0, np.frombuffer(labels, np.uint8, offset=8)


def check(args):
    model = onnx.load(args.file)
    onnx.checker.check_model(model, full_check=True)
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    print(json.dumps({
        "checker": "ok",
        "ir_version": model.ir_version,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": {v.name: shape(v) for v in model.graph.input},
        "outputs": {v.name: shape(v) for v in model.graph.output},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "ops": sorted({n.op_type for n in model.graph.node}),
    }))


def eval_onnx(args):
    session = onnxruntime.InferenceSession(args.file, providers=["CPUExecutionProvider"])
    images, labels = test_set(args.data)
    logits, probabilities = [], []
    for start in range(0, len(images), 1000):
        out = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {"images": images[start:start + 1000]})))
        logits.append(out["logits"])
        probabilities.append(out["probabilities"])
    logits, probabilities = np.concatenate(logits), np.concatenate(probabilities)
    correct = int((probabilities.argmax(1) == labels).sum())
    result = {"accuracy": correct / len(labels), "correct": correct, "total": len(labels)}
    if args.dump:
        with open(args.out, "w") as f:
            json.dump({"logits": logits[:args.dump].tolist(),
                       "probabilities": probabilities[:args.dump].tolist()}, f)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy {100 * result['accuracy']:.2f}% ({correct} of {len(labels)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("check", help="the ONNX checker, and what the file declares")
    c.add_argument("file")
    c.set_defaults(run=check)
    e = commands.add_parser("eval-onnx", help="accuracy on the MNIST test set with onnxruntime")
    e.add_argument("file")
    e.add_argument("--data", default="data/mnist")
    e.add_argument("--json", action="store_true")
    e.add_argument("--dump", type=int, default=0, help="write the first N outputs to --out")
    e.add_argument("--out", default="onnx_outputs.json")
    e.set_defaults(run=eval_onnx)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
