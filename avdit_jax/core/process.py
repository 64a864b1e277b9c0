"""The one interface the objective, the sampler and the Gaussian oracle use to talk to a diffusion process.

Two processes implement it: 'ddpm' (`diffusion.Schedule`: integer t in [0, T], z = sqrt(abar) x0 +
sqrt(1 - abar) eps) and 'flow' (`flow.RectifiedFlow`: t in [0, 1], z = (1 - t) x0 + t eps). In both t = 0
is clean and every element may carry its own t (callers broadcast per-cell t with `monl.to_frames`).
"""

from __future__ import annotations

from typing import Protocol

import jax
import numpy as np


class Process(Protocol):
  name: str                   # 'ddpm' | 'flow'
  predictions: tuple          # what the network may regress
  pure_noise: float           # the noisiest level: T or 1.0
  continuous: bool            # t is float (flow) or an integer index (ddpm)

  def check_prediction(self, prediction: str) -> None: ...
  def draw_levels(self, key: jax.Array, shape) -> jax.Array: ...          # noisy levels, one per cell
  def coefficients(self, t) -> tuple[jax.Array, jax.Array]: ...           # (a, s): z = a x0 + s eps
  def add_noise(self, x0, eps, t) -> jax.Array: ...
  def target(self, x0, eps, t, prediction: str) -> jax.Array: ...
  def loss_weight(self, t) -> jax.Array: ...                               # of each element's squared error
  def to_x0_and_eps(self, z, output, t, prediction: str) -> tuple[jax.Array, jax.Array]: ...
  def sampling_levels(self, num_steps: int, spacing: str, shift: float) -> np.ndarray: ...  # [S + 1], to 0
