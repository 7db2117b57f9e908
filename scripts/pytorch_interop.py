#!/usr/bin/env python3
"""The PyTorch side of mnist-cnn's export and import.

Holds the PyTorch modules equivalent to mnist-cnn's architectures (same parameter names):
MnistCnn (`tutorial`) and VggCnn (`vgg-N`), and commands that print one JSON object on stdout:

  eval-safetensors FILE --data DIR [--logits N]   load a state dict with strict=True into the module
                                                  its metadata names (tutorial if none), evaluate on
                                                  the MNIST test set (and return the first N logits)
  eval-torchscript FILE --data DIR [--logits N]   the same through torch.jit.load, no other code
  train-state-dict OUT --data DIR [--steps S] [--arch A]
                                                  train a module briefly in PyTorch and save its state
                                                  dict as safetensors, architecture in the metadata
                                                  (for import into mnist-cnn)

Runs in the virtualenv that scripts/setup.sh creates (torch, numpy, safetensors).
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file


class MnistCnn(nn.Module):
    """Conv2d(1→32,3) → ReLU → MaxPool 2 → Conv2d(32→64,3) → ReLU → MaxPool 2 → Flatten → Linear(1600→10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc = nn.Linear(64 * 5 * 5, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class VggCnn(nn.Module):
    """mnist-cnn's vgg-N: 3×3 conv + batch norm in stages of N, 2N, 4N channels (1, 2, 2 convs),
    each ended by a 2×2 max-pool, then dropout 0.25 and Linear(4N·3·3 → 10)."""

    def __init__(self, width=32):
        super().__init__()
        a, b, c = width, 2 * width, 4 * width
        for i, (cin, cout) in enumerate([(1, a), (a, b), (b, b), (b, c), (c, c)], start=1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(c * 3 * 3, 10)

    def block(self, x, i):
        return getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))

    def forward(self, x):
        x = torch.relu(torch.max_pool2d(self.block(x, 1), 2))
        x = torch.relu(self.block(x, 2))
        x = torch.relu(torch.max_pool2d(self.block(x, 3), 2))
        x = torch.relu(self.block(x, 4))
        x = torch.relu(torch.max_pool2d(self.block(x, 5), 2))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def build(architecture):
    """The module for an mnist-cnn architecture name: tutorial, vgg (= vgg-32) or vgg-N."""
    if architecture == "tutorial":
        return MnistCnn()
    if architecture == "vgg":
        return VggCnn(32)
    if architecture.startswith("vgg-") and architecture[4:].isdigit():
        return VggCnn(int(architecture[4:]))
    raise SystemExit(f"unknown architecture {architecture!r} (known: tutorial, vgg, vgg-N)")


def architecture_of(path):
    """The architecture named in a safetensors file's metadata (mnist-cnn writes it)."""
    with safe_open(path, framework="pt") as f:
        return (f.metadata() or {}).get("architecture", "tutorial")


def load_idx(data_dir, prefix):
    """Images (N×1×28×28 float, pixels/255) and labels (N, int64) of an MNIST split."""
    with open(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte"), "rb") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16)
    with open(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte"), "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = torch.tensor(images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return x, torch.tensor(labels.astype(np.int64))


@torch.no_grad()
def evaluate(model, data_dir, logits):
    x, y = load_idx(data_dir, "t10k")
    outputs = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    return {
        "accuracy": (outputs.argmax(-1) == y).sum().item() / len(y),
        "predictions": outputs[:logits].argmax(-1).tolist(),
        "logits": outputs[:logits].tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["eval-safetensors", "eval-torchscript", "train-state-dict"])
    parser.add_argument("file")
    parser.add_argument("--data", required=True)
    parser.add_argument("--logits", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="tutorial")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    if args.command == "eval-safetensors":
        model = build(architecture_of(args.file))
        model.load_state_dict(load_file(args.file), strict=True)
        result = evaluate(model.eval(), args.data, args.logits)
    elif args.command == "eval-torchscript":
        result = evaluate(torch.jit.load(args.file), args.data, args.logits)
    else:
        torch.manual_seed(args.seed)
        model = build(args.arch)
        x, y = load_idx(args.data, "train")
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        for step in range(args.steps):
            index = torch.randint(0, len(x), (64,))
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, args.file, metadata={"architecture": args.arch, "format": "pt"})
        result = evaluate(model.eval(), args.data, args.logits)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
