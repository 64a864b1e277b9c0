"""The machine's reference FLOP/s: a large jitted matmul, timed where the model runs.

The training log's MFU divides by `train.peak_flops_per_device`; -1 there measures it with `matmul_peak`
at the start of the run (for CPUs and other machines without a spec-sheet figure), and
tools/benchmark.py reports every speed ratio against the same measurement.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak(dtype="float32", *, n: int = 2048, repeats: int = 10, device=None) -> float:
  """FLOP/s of an n x n jitted matmul on one device (the default one), the best of `repeats` calls.

  Short calls vary: the best of many is the figure that repeats between runs (+-10% here)."""
  device = device or jax.devices()[0]
  a = jax.device_put(jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype), device)
  matmul = jax.jit(lambda x: x @ x)
  jax.block_until_ready(matmul(a))     # compile
  best = float("inf")
  for _ in range(max(repeats, 1)):
    t0 = time.perf_counter()
    jax.block_until_ready(matmul(a))
    best = min(best, time.perf_counter() - t0)
  return 2 * n**3 / best
