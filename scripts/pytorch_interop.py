#!/usr/bin/env python3
"""The PyTorch side of mnist-cnn's export and import.

Holds the PyTorch module equivalent to mnist-cnn's tutorial CNN (same parameter names), and
commands that print one JSON object on stdout:

  eval-safetensors FILE --data DIR [--logits N]   load a state dict with strict=True, evaluate on the
                                                  MNIST test set (and return the first N logits)
  eval-torchscript FILE --data DIR [--logits N]   the same through torch.jit.load, no other code
  train-state-dict OUT --data DIR [--steps S]     train the module briefly in PyTorch and save its
                                                  state dict as safetensors (for import into mnist-cnn)

Runs in the virtualenv that scripts/setup.sh creates (torch, numpy, safetensors).
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
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
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    if args.command == "eval-safetensors":
        model = MnistCnn()
        model.load_state_dict(load_file(args.file), strict=True)
        result = evaluate(model.eval(), args.data, args.logits)
    elif args.command == "eval-torchscript":
        result = evaluate(torch.jit.load(args.file), args.data, args.logits)
    else:
        torch.manual_seed(args.seed)
        model = MnistCnn()
        x, y = load_idx(args.data, "train")
        optimizer = torch.optim.Adam(model.parameters(), 1e-3)
        for step in range(args.steps):
            index = torch.randint(0, len(x), (64,))
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.file)
        result = evaluate(model.eval(), args.data, args.logits)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
