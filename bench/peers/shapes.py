"""The two benchmark shapes and the random weights every model writer here draws from.

Shape A: vocab 8192, d_model 256, 6 layers, 4 heads, MLP 1024, context 512.
Shape B: vocab 8192, d_model 512, 8 layers, 8 heads, MLP 2048, context 512.
The weights are random (speed does not depend on them); each writer seeds its own generator, so a
model file is the same on every run.
"""
import sys

import numpy as np

SHAPES = {
    "A": dict(vocab=8192, d=256, layers=6, heads=4, mlp=1024, ctx=512),
    "B": dict(vocab=8192, d=512, layers=8, heads=8, mlp=2048, ctx=512),
}


def shape(name):
    if name not in SHAPES:
        sys.exit("unknown shape %r (A or B)" % name)
    return SHAPES[name]


class Weights:
    """Normal(0, 0.02^2) matrices, the same sequence for the same seed."""

    def __init__(self, seed=1234):
        self.rng = np.random.default_rng(seed)

    def matrix(self, rows, cols, scale=0.02):
        return self.rng.standard_normal((rows, cols), dtype=np.float32) * scale


def bf16_bits(a):
    """float32 array -> uint16 bfloat16 bit patterns, rounded to nearest even."""
    x = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16)
