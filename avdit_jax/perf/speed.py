"""Timing on the machine at hand: the best of repeated calls, and the reference FLOP/s of a large jitted matmul.

The training log's MFU divides by `train.peak_flops_per_device`; -1 there measures it with `matmul_peak` at
the start of the run (for CPUs and other machines without a spec-sheet figure). tools/benchmark.py times
everything with `best_time` and reports its ratios against the same `matmul_peak`.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def best_time(fn, *args, repeats: int) -> float:
  """Seconds of the fastest of `repeats` calls of fn(*args) (which returns arrays to wait on), after a
  warm-up call that compiles, so compilation is left out."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(max(repeats, 1)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def matmul_peak(dtype="float32", *, n: int = 2048, repeats: int = 10, device=None) -> float:
  """FLOP/s of an n x n jitted matmul on one device (the default one), the best of `repeats` calls.

  Short calls vary: the best of many is the figure that repeats between runs (+-10% here)."""
  device = device or jax.devices()[0]
  a = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype), device)
  return 2 * n**3 / best_time(jax.jit(lambda x: x @ x), a, repeats=repeats)
