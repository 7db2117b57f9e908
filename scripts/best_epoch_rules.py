#!/usr/bin/env python3
"""Which epoch should a fine-tune on a small picture folder keep? Compares four rules on the same
runs: the highest validation accuracy (the first epoch to reach it), the highest accuracy with
ties broken by the lower validation loss (the tool's rule), the lowest validation loss, and the
last epoch; each rule's epoch is scored on other pictures.

    python3 scripts/render_digits.py --first 0 --count 1000 --out /tmp/pics/train
    python3 scripts/render_digits.py --first 1000 --count 2000 --out /tmp/pics/other
    python3 scripts/best_epoch_rules.py --start runs/X/model.ot \
        --train /tmp/pics/train --other /tmp/pics/other --seeds 1,2,3,4,5

Each seed fine-tunes for --epochs (constant learning rate) with --val-split held out. The weights
of epoch k come from a run of --epochs k with the same seed, which is the long run's prefix
(checked on metrics.jsonl); they are read from its resume.ot (the last epoch) with torch and
written as a safetensors state dict for `mnist-cnn eval`. Needs the venv's torch (scripts/setup.sh).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess

import torch

RULES = ["accuracy only", "accuracy, ties to loss", "loss only", "last"]


def options():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default="target/release/mnist-cnn")
    p.add_argument("--start", required=True, help="the checkpoint to fine-tune")
    p.add_argument("--train", required=True, help="picture folder to fine-tune on")
    p.add_argument("--other", required=True, help="picture folder to score the kept epochs on")
    p.add_argument("--val-split", default="0.1")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", default="1e-3")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--work", default="/tmp/best-epoch-rules", help="scratch folder (replaced)")
    return p.parse_args()


def finetune(o, seed, epochs):
    out = os.path.join(o.work, f"seed{seed}-epochs{epochs}")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([o.bin, "finetune", "--from", o.start, "--images", o.train,
                    "--val-split", o.val_split, "--epochs", str(epochs), "--lr", o.lr,
                    "--seed", str(seed), "--out", out, "--no-report", "--json"],
                   check=True, capture_output=True)
    return out


def epochs_of(out):
    lines = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return [r for r in lines if r["epoch"] > 0]


def last_epoch_as_safetensors(out):
    """The model tensors of resume.ot (the run's last epoch) as a safetensors state dict."""
    saved = torch.jit.load(os.path.join(out, "resume.ot")).state_dict()
    tensors = {k[len("model|"):].replace("|", "."): v.contiguous()
               for k, v in saved.items() if k.startswith("model|")}
    header, blobs, offset = {"__metadata__": {"architecture": "tutorial"}}, [], 0
    for name, tensor in sorted(tensors.items()):
        data = tensor.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path = os.path.join(out, "last.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
    return path


def accuracy_on(o, model):
    done = subprocess.run([o.bin, "eval", "--model", model, "--images", o.other, "--json"],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)["accuracy"]


def choices(records, epochs):
    acc = [r["validation_accuracy"] for r in records]
    loss = [r["validation_loss"] for r in records]
    return {
        "accuracy only": acc.index(max(acc)) + 1,
        "accuracy, ties to loss": min((-a, l, i + 1) for i, (a, l) in enumerate(zip(acc, loss)))[2],
        "loss only": loss.index(min(loss)) + 1,
        "last": epochs,
    }


def main():
    o = options()
    os.makedirs(o.work, exist_ok=True)
    rows = []
    for seed in [int(s) for s in o.seeds.split(",")]:
        full = finetune(o, seed, o.epochs)
        records = epochs_of(full)
        chosen = choices(records, o.epochs)
        tool = json.load(open(os.path.join(full, "config.json")))["final_metrics"]["chosen_epoch"]
        assert chosen["accuracy, ties to loss"] == tool, (chosen, tool)
        scores = {}
        for k in sorted(set(chosen.values())):
            out = full if k == o.epochs else finetune(o, seed, k)
            scored = lambda rs: [(r["validation_accuracy"], r["validation_loss"]) for r in rs]
            assert scored(epochs_of(out)) == scored(records[:k]), f"seed {seed}: not a prefix"
            scores[k] = accuracy_on(o, last_epoch_as_safetensors(out))
        row = {"seed": seed, **{rule: [k, scores[k]] for rule, k in chosen.items()},
               "validation_accuracy": [r["validation_accuracy"] for r in records],
               "validation_loss": [round(r["validation_loss"], 4) for r in records]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    for rule in RULES:
        kept = [r[rule][0] for r in rows]
        scored = [100 * r[rule][1] for r in rows]
        print(f"{rule:24s} epochs {kept}  other pictures {[round(s, 2) for s in scored]}"
              f"  mean {sum(scored) / len(scored):.2f}%")


if __name__ == "__main__":
    main()
