"""runtime.py: process settings the training scripts need, applied when imported (first, before torch
starts its threads): train.py, step_bench.py and profile_step.py import it.

- OMP_WAIT_POLICY=PASSIVE: libgomp's threads spin while they wait, against OpenBLAS's own threads; on
  two cores that cost a third of the throughput (2,040-2,230 tokens/s passive against 1,290-1,410
  spinning, shape A).
- glibc's malloc keeps what is freed: a training step allocates and frees tensors of many MB (the
  chunks of logits, attention scores, gradients), which glibc hands back to the kernel (munmap, or a
  trim of the heap) and takes again the next time, so every step faulted in and zeroed its pages
  anew. On the 2-vCPU VMs of this project a page fault is dear: shape A at 2 threads, bf16, took 722-786
  ms a step with glibc's defaults and 512-515 ms with both thresholds raised (train/step_bench.py,
  alternated; Pre-LN 504-542 ms either way). M_MMAP_THRESHOLD at its largest (32 MB on 64-bit) keeps
  blocks up to that in the heap, and M_TRIM_THRESHOLD keeps the heap's free top. Blocks over 32 MB
  (the attention scores of a window of 1,024: 4 x 4 x 1,024 x 1,024 floats) were still mapped and
  unmapped each time: M_MMAP_MAX = 0 puts every block in the heap. Measured in fresh processes,
  alternated, 2 threads, bf16, shape A at context 1,024 (4 windows a step) against 256 (16 windows):
  with mmap 1,218-1,605 ms against 568-717 (2.15-2.24x), without 704-720 ms against 516-531 (1.36x).
  Period 6's steps at 1,024 had taken 3.2x those at 256. train/malloc_ab.py reruns the comparison (the
  figures above came from its first form, which switched mmap off where this one switches it on).
"""
import ctypes
import ctypes.util
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mallopt refuses more


def _keep_freed_memory():
    """Returns True when glibc took both settings (False elsewhere: another libc, or no mallopt)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return (bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
            and bool(mallopt(M_MMAP_MAX, 0)))


MALLOC_TUNED = _keep_freed_memory()
