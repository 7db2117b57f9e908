#!/usr/bin/env python3
"""Writes a hostile `.ot`: a TorchScript archive that runs code when libtorch's loader reads it.

  hostile_checkpoint.py OUT MARKER WEIGHTS.safetensors

The archive holds the weights of WEIGHTS (as buffers named the way tch names them, `conv1|weight`)
and a submodule whose `__setstate__` prints a line and overwrites the first six bytes of MARKER
with `!!!!!!` through a shared memory map. libtorch's TorchScript loader (what `tch` uses for
`.ot` files) runs that method; mnist-cnn's own reader must refuse the file and leave MARKER as it
was. Used by tests/it/hostile.rs; runs in the virtualenv of scripts/setup.sh.
"""
import sys
from typing import Tuple

import torch
from safetensors.torch import load_file


class Payload(torch.nn.Module):
    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        print("hostile code ran")
        written = torch.from_file(self.marker, True, 6, dtype=torch.uint8)
        written.fill_(33)
        # Used, so that TorchScript does not drop the write as dead code.
        print(int(written.sum()))


class Checkpoint(torch.nn.Module):
    def __init__(self, marker: str, weights):
        super().__init__()
        self.payload = Payload(marker)
        for name, tensor in weights.items():
            self.register_buffer(name.replace(".", "|"), tensor.contiguous())

    def forward(self, x):
        return x


def main():
    out, marker, weights = sys.argv[1:4]
    torch.jit.script(Checkpoint(marker, load_file(weights))).save(out)


if __name__ == "__main__":
    main()
