#!/usr/bin/env python3
"""The one rule of docs/architecture.md: dependencies point down the layers, never up.

Reads every `crate::…` path in src/ (grouped `use crate::{a, b::c}` included) and fails, naming the
file and the line, when a top-level module uses one of a higher layer, or one of its own layer that
the table does not allow. Usage: python3 scripts/check_layers.py [SRC_DIR] (default: src).
"""
import os
import re
import sys

# Lowest first; keep in step with the table in docs/architecture.md.
LAYERS = [
    ("foundations", {"shape", "choice", "rule", "rng", "device", "runtime", "interrupt", "progress", "fsutil", "machine", "precision"}),
    ("core", {"nn", "model", "optim", "data"}),
    ("training and evaluation", {"train", "eval"}),
    ("files", {"io"}),
    ("run", {"run"}),
    ("front ends", {"cli", "serve", "report"}),
]
# Uses allowed between two modules of one layer.
SIDEWAYS = {("model", "nn"), ("optim", "model"), ("optim", "nn"), ("train", "eval"),
            ("cli", "serve"), ("cli", "report"),
            ("precision", "choice"), ("precision", "machine")}

RANK = {module: rank for rank, (_, modules) in enumerate(LAYERS) for module in modules}


def crate_paths(text):
    """(line number, first module) of every crate:: path, comments left out."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("//", 1)[0]
        found += [(number, m) for m in re.findall(r"\bcrate::(\w+)", code)]
    # `use crate::{a, b::c};` may span lines: take the first segment of each item.
    for group in re.finditer(r"\buse\s+crate::\{(.*?)\};", text, re.S):
        number = text.count("\n", 0, group.start()) + 1
        depth, item = 0, ""
        for ch in group.group(1) + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                name = item.strip().split("::")[0].strip()
                if re.fullmatch(r"\w+", name) and name != "self":
                    found.append((number, name))
                item = ""
            elif depth == 0 or ch not in "{}":
                item += ch if depth == 0 else ""
    return found


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    problems = []
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            module = parts[0]
            if module in ("lib", "main"):
                continue
            if module not in RANK:
                problems.append(f"{path}: module {module} is in no layer of docs/architecture.md")
                continue
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for number, used in crate_paths(text):
                if used == module or used not in RANK:
                    continue
                up = RANK[used] > RANK[module]
                sideways = RANK[used] == RANK[module] and (module, used) not in SIDEWAYS
                if up or sideways:
                    problems.append(
                        f"{path}:{number}: {module} ({LAYERS[RANK[module]][0]}) uses {used} "
                        f"({LAYERS[RANK[used]][0]})"
                    )
    for problem in sorted(set(problems)):
        print(problem)
    print(f"{len(set(problems))} use(s) against the layers")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
