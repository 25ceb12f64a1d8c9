#!/usr/bin/python3
"""malloc_ab.py: the training step at context 256 (16 windows) and 1,024 (4 windows, the same tokens),
shape A, bf16 autocast, 2 threads, with train/runtime.py's malloc settings (every block in the heap)
or, with --mmap, with blocks over 32 MB mapped and unmapped each time as glibc does by default
(M_MMAP_MAX back to glibc's 65,536). One configuration per process; alternate them:

  for r in 1 2; do /usr/bin/python3 train/malloc_ab.py --mmap; /usr/bin/python3 train/malloc_ab.py; done

Prints the median step time of each context and their ratio (runtime.py's docstring has the figures).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402,F401  (first, as train.py)

import argparse  # noqa: E402
import ctypes  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sasp_model import ModelConfig, SASPModel, init_paper_  # noqa: E402
from train import train_step  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmap", action="store_true", help="glibc's mmap of large blocks, as by default")
    a = ap.parse_args(argv)
    if a.mmap and not ctypes.CDLL("libc.so.6").mallopt(runtime.M_MMAP_MAX, 65536):
        sys.exit("malloc_ab: mallopt refused M_MMAP_MAX")
    torch.set_num_threads(2)
    cfg = ModelConfig(architecture="sasp", vocab_size=8192, d_model=256, n_layers=6, n_heads=4, d_ff=1024,
                      max_seq_len=1024)
    torch.manual_seed(0)
    m = SASPModel(cfg)
    init_paper_(m)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    ns = argparse.Namespace(bf16=True, clip=1.0)
    med = {}
    for name, (b, c), n in (("256", (16, 256), 4), ("1024", (4, 1024), 6)):
        times = []
        for _ in range(n):
            x, y = torch.randint(0, 8192, (b, c)), torch.randint(0, 8192, (b, c))
            t = time.perf_counter()
            train_step(m, opt, x, y, ns)
            times.append(time.perf_counter() - t)
        med[name] = float(np.median(times[1:]))  # the first step warms the allocator
    print(f"{'mmap' if a.mmap else 'heap'}: step at 256 {med['256'] * 1000:.0f} ms, at 1,024 "
          f"{med['1024'] * 1000:.0f} ms, ratio {med['1024'] / med['256']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
