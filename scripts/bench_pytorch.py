#!/usr/bin/env python3
"""The reference for `mnist-cnn bench`: the same model, batch, thread count and data path in
PyTorch eager, printing the same JSON fields.

    python3 scripts/bench_pytorch.py --data data/mnist --batch-size 32 --threads 2 [--mode M]

Modes (`--mode`):
  plain     the model as written, NCHW, fp32 (what most PyTorch code does);
  tuned     tuned as the tool is: channels-last activations that really hold (a 1-channel
            input needs explicit strides, since PyTorch cannot tell its layout from its shape),
            the model in channels-last, pool before ReLU (the same function, a quarter of the
            ReLUs); run it with MALLOC_MMAP_MAX_=0 in the environment (scripts/bench.sh does),
            which keeps freed batches for reuse as the tool's allocator setting does;
  autocast  tuned, with the forward pass and the loss under torch.autocast("cpu", bfloat16)
            (or CUDA's, on --device cuda): one line of mixed precision.

Training: the MNIST training images as one float tensor (pixels/255), batches taken by index from
a permutation, Adam (lr 1e-3), cross-entropy; `--warmup` steps, then `--steps` timed steps (the
loss is read back once, at the end, as `mnist-cnn bench` does). Inference: the test set in batches
of 1000 under no_grad. Latency: a fresh Python process that imports torch, builds the module,
loads the weights and classifies one digit, timed from process start (median of three).
"""

import argparse
import contextlib
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


class TunedCnn(MnistCnn):
    """MnistCnn with the pool before the ReLU: max and ReLU commute, so the output is the same,
    and the ReLU runs on a quarter of the values."""

    def forward(self, x):
        x = torch.relu(torch.max_pool2d(self.conv1(x), 2))
        x = torch.relu(torch.max_pool2d(self.conv2(x), 2))
        return self.fc(torch.flatten(x, 1))


def channels_last_images(images):
    """N×1×28×28 with channels-last strides, (784, 1, 28, 1): `.contiguous(memory_format=
    torch.channels_last)` leaves a 1-channel tensor's strides as they are."""
    n = images.shape[0]
    return torch.as_strided(images.contiguous(), (n, 1, 28, 28), (784, 1, 28, 1))


def autocast_context(mode, device):
    if mode == "autocast":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_throughput(model, images, labels, batch_size, warmup, steps, device, mode="plain"):
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
        batch = images[index]
        if mode != "plain":
            batch = channels_last_images(batch)
        with autocast_context(mode, device):
            loss = loss_fn(model(batch), labels[index])
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


def inference_throughput(model, images, device, rounds=3, mode="plain"):
    model.eval()
    best = 0.0
    if mode != "plain":
        images = channels_last_images(images)
    with torch.no_grad(), autocast_context(mode, device):
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
    parser.add_argument("--mode", choices=["plain", "tuned", "autocast"], default="plain")
    parser.add_argument("--no-latency", action="store_true", help="skip the process-start latency")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    train_images = read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte")).to(device)
    train_labels = read_idx_labels(os.path.join(args.data, "train-labels-idx1-ubyte")).to(device)
    test_images = read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte")).to(device)
    if args.mode == "plain":
        model = MnistCnn().to(device)
    else:
        model = TunedCnn().to(device).to(memory_format=torch.channels_last)
    train_rate, train_seconds = train_throughput(
        model, train_images, train_labels, args.batch_size, args.warmup, args.steps, device,
        args.mode,
    )
    inference_rate = inference_throughput(model, test_images, device, mode=args.mode)
    latency = None
    if not args.no_latency:
        latency = predict_latency_ms(model.cpu(), test_images[0].cpu(), args.threads, args.scratch)
    print(
        json.dumps(
            {
                "implementation": f"pytorch {torch.__version__} eager, {args.mode}",
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
