#!/usr/bin/env python3
"""The reference for `mnist-cnn bench`: the same model, batch, thread count and data path in
plain PyTorch eager, printing the same JSON fields.

    python3 scripts/bench_pytorch.py --data data/mnist --batch-size 32 --threads 2

Training: the MNIST training images as one float tensor (pixels/255), batches taken by index from
a permutation, Adam (lr 1e-3), cross-entropy; `--warmup` steps, then `--steps` timed steps (the
loss is read back once, at the end, as `mnist-cnn bench` does). Inference: the test set in batches
of 1000 under no_grad. Latency: a fresh Python process that imports torch, builds the module,
loads the weights and classifies one digit, timed from process start (median of three).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

# The same module as the interop script (same names, same forward), not a second copy.
from pytorch_interop import MnistCnn


def read_idx_images(path):
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[4:8], "big")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def read_idx_labels(path):
    with open(path, "rb") as f:
        data = f.read()
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64))


def train_throughput(model, images, labels, batch_size, warmup, steps, device):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    n = images.shape[0]
    order = torch.randperm(n, device=device)
    position = 0

    def step():
        nonlocal position, order
        if position + batch_size > n:
            order = torch.randperm(n, device=device)
            position = 0
        index = order[position : position + batch_size]
        position += batch_size
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images[index]), labels[index])
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(warmup):
        step()
    sync(device)
    started = time.perf_counter()
    total = torch.zeros((), device=device)
    for _ in range(steps):
        total += step().detach()
    total.item()
    sync(device)
    seconds = time.perf_counter() - started
    return steps * batch_size / seconds, seconds


def inference_throughput(model, images, device, rounds=3):
    model.eval()
    best = 0.0
    with torch.no_grad():
        model(images[:1000])
        for _ in range(rounds):
            sync(device)
            started = time.perf_counter()
            for start in range(0, images.shape[0], 1000):
                model(images[start : start + 1000]).argmax(1)
            sync(device)
            best = max(best, images.shape[0] / (time.perf_counter() - started))
    model.train()
    return best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


LATENCY_PROGRAM = """
import sys, numpy as np, torch
sys.path.insert(0, {scripts!r})
from pytorch_interop import MnistCnn
torch.set_num_threads({threads})
model = MnistCnn()
model.load_state_dict(torch.load({weights!r}))
model.eval()
digit = torch.from_numpy(np.load({digit!r}))
with torch.no_grad():
    print(int(model(digit.view(1, 1, 28, 28)).argmax()))
"""


def predict_latency_ms(model, digit, threads, scratch):
    weights = os.path.join(scratch, "bench_model.pt")
    digit_path = os.path.join(scratch, "bench_digit.npy")
    torch.save(model.state_dict(), weights)
    np.save(digit_path, digit.numpy())
    program = LATENCY_PROGRAM.format(
        scripts=os.path.dirname(os.path.abspath(__file__)),
        threads=threads,
        weights=weights,
        digit=digit_path,
    )
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", program], check=True, capture_output=True)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mnist")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scratch", default="/tmp")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    train_images = read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte")).to(device)
    train_labels = read_idx_labels(os.path.join(args.data, "train-labels-idx1-ubyte")).to(device)
    test_images = read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte")).to(device)
    model = MnistCnn().to(device)
    train_rate, train_seconds = train_throughput(
        model, train_images, train_labels, args.batch_size, args.warmup, args.steps, device
    )
    inference_rate = inference_throughput(model, test_images, device)
    latency = predict_latency_ms(model.cpu(), test_images[0].cpu(), args.threads, args.scratch)
    print(
        json.dumps(
            {
                "implementation": f"pytorch {torch.__version__} eager",
                "device": str(device),
                "threads": torch.get_num_threads(),
                "batch_size": args.batch_size,
                "train_steps": args.steps,
                "train_seconds": train_seconds,
                "train_images_per_second": train_rate,
                "inference_images_per_second": inference_rate,
                "predict_latency_ms": latency,
            }
        )
    )


if __name__ == "__main__":
    main()
