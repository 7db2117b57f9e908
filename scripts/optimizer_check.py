#!/usr/bin/env python3
"""PyTorch's optimizers and gradient clipping on given weights and gradients, for comparison with
mnist-cnn's own (src/optim/).

  optimizer_check.py INPUT CASES OUTPUT

INPUT is a safetensors file with the starting weights `init.NAME` and the gradients of each step
`grad.K.NAME` (K from 0); CASES a JSON file with a list of {"optimizer": "adam"|"adamw"|"sgd",
"lr", "weight_decay", "momentum", "nesterov", "betas", "eps", "clip_grad_norm" (or null)}. For each case, the weights start from `init`, every step
sets the gradients to exactly `grad.K` (the networks' own gradients would differ by rounding),
clips them when asked, and steps the optimizer; weight decay applies to one parameter group
(weights) and not to the other (biases and batch-norm weights), as mnist-cnn's does.

OUTPUT gets `case.I.NAME` (the weights after the last step) and `case.I.grad_norm.K` (the norm
before clipping at step K, when clipping).
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def decays(name):
    """mnist-cnn's rule: no decay for biases and batch-norm weights."""
    return not name.endswith(".bias") and not name.split(".")[0].startswith("bn")


def make_optimizer(case, decayed, others):
    groups = [
        {"params": decayed, "weight_decay": case["weight_decay"]},
        {"params": others, "weight_decay": 0.0},
    ]
    kind = case["optimizer"]
    if kind == "sgd":
        return torch.optim.SGD(
            groups, lr=case["lr"], momentum=case["momentum"], nesterov=case["nesterov"]
        )
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return cls(groups, lr=case["lr"], betas=tuple(case["betas"]), eps=case["eps"], foreach=False)


def main():
    source, cases_file, target = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(cases_file) as f:
        cases = json.load(f)
    with safe_open(source, framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    names = sorted(key[len("init."):] for key in tensors if key.startswith("init."))
    steps = 1 + max(int(key.split(".")[1]) for key in tensors if key.startswith("grad."))
    out = {}
    for index, case in enumerate(cases):
        params = {n: tensors[f"init.{n}"].clone().requires_grad_(True) for n in names}
        decayed = [params[n] for n in names if decays(n)]
        others = [params[n] for n in names if not decays(n)]
        optimizer = make_optimizer(case, decayed, others)
        for step in range(steps):
            for n in names:
                params[n].grad = tensors[f"grad.{step}.{n}"].clone()
            if case.get("clip_grad_norm") is not None:
                norm = torch.nn.utils.clip_grad_norm_(
                    [params[n] for n in names], case["clip_grad_norm"], foreach=False
                )
                out[f"case.{index}.grad_norm.{step}"] = norm.reshape(1).clone()
            optimizer.step()
        for n in names:
            out[f"case.{index}.{n}"] = params[n].detach().clone()
    save_file(out, target)
    print(json.dumps({"cases": len(cases), "steps": steps, "parameters": names}))


if __name__ == "__main__":
    main()
