"""Rectified flow with a continuous time per element: z_t = (1 - t) x0 + t eps, t in [0, 1], t = 0 clean.

The network regresses the velocity v = dz/dt = eps - x0 (or x0, or eps). Training draws t per group of
cells from uniform, logit-normal (SD3: t = sigmoid(mean + std * n)), shifted (SD3/Flux: the uniform t
pushed towards noise by t' = s t / (1 + (s - 1) t)) or 'cosine' (the log-SNR of DDPM's cosine schedule at a
uniform step: t = sin(pi u / 2) / (sin(pi u / 2) + cos(pi u / 2)), the t of equal SNR). Each element's squared
error is weighted by `loss_weighting`: 'none', or 'ddpm_v', t^2 + (1 - t)^2, which makes the v-loss weigh the
x0 error as DDPM's v-prediction loss does at the same SNR (flow's 1 / t^2 against DDPM's 1 + SNR). This is the
'flow' process; `diffusion.Schedule` is the 'ddpm' one, with the same methods (see core/process.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

PREDICTIONS = ("v", "x0", "epsilon")
T_SAMPLING = ("uniform", "logit_normal", "shifted", "cosine")
LOSS_WEIGHTINGS = ("none", "ddpm_v")
SPACINGS = ("uniform", "shifted")
MIN_T = 1e-5      # the smallest noisy t training draws: t = 0 means clean


def shift_time(t, shift: float):
  """The SD3/Flux time shift t' = s t / (1 + (s - 1) t): s > 1 spends more of [0, 1] near noise."""
  return shift * t / (1.0 + (shift - 1.0) * t)


def _safe_div(num, den):
  return jnp.where(den != 0, num / jnp.where(den != 0, den, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class RectifiedFlow:
  """The flow process; `t` arguments are per-element times broadcastable to the latents (f32 in [0, 1])."""
  t_sampling: str = "uniform"
  logit_mean: float = 0.0
  logit_std: float = 1.0
  shift: float = 1.0          # t_sampling 'shifted': the train-time shift s
  loss_weighting: str = "none"

  name = "flow"
  predictions = PREDICTIONS
  pure_noise = 1.0            # the level of the guidance's dropped portions (pure noise)
  continuous = True

  def __post_init__(self):
    if self.t_sampling not in T_SAMPLING:
      raise ValueError(f"diffusion.t_sampling: unknown {self.t_sampling!r}; expected one of {T_SAMPLING}.")
    if self.loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f"diffusion.loss_weighting: unknown {self.loss_weighting!r}; expected one of "
                       f"{LOSS_WEIGHTINGS}.")
    if not self.logit_std > 0 or not self.shift > 0:
      raise ValueError(f"diffusion.logit_std and diffusion.shift must be > 0, got {self.logit_std}, {self.shift}.")

  def check_prediction(self, prediction: str):
    if prediction not in PREDICTIONS:
      raise ValueError(f"diffusion.prediction: unknown {prediction!r} for process 'flow'; expected one of "
                       f"{PREDICTIONS}.")

  def draw_levels(self, key: jax.Array, shape) -> jax.Array:
    """One noisy time per cell, f32 in [MIN_T, 1]."""
    if self.t_sampling == "logit_normal":
      t = jax.nn.sigmoid(self.logit_mean + self.logit_std * jax.random.normal(key, shape))
    else:
      t = jax.random.uniform(key, shape)
      if self.t_sampling == "shifted":
        t = shift_time(t, self.shift)
      elif self.t_sampling == "cosine":             # (1 - t) / t = cot(pi u / 2): the cosine schedule's SNR
        sin, cos = jnp.sin(0.5 * jnp.pi * t), jnp.cos(0.5 * jnp.pi * t)
        t = sin / (sin + cos)
    return jnp.clip(t, MIN_T, 1.0).astype(jnp.float32)

  def loss_weight(self, t):
    t = jnp.asarray(t, jnp.float32)
    if self.loss_weighting == "ddpm_v":
      return jnp.square(t) + jnp.square(1.0 - t)
    return jnp.ones_like(t)

  def coefficients(self, t):
    """(a, s) with z = a x0 + s eps."""
    t = jnp.asarray(t, jnp.float32)
    return 1.0 - t, t

  def add_noise(self, x0, eps, t):
    return (1.0 - t) * x0 + t * eps

  def target(self, x0, eps, t, prediction: str):
    self.check_prediction(prediction)
    return {"v": lambda: eps - x0, "x0": lambda: x0, "epsilon": lambda: eps}[prediction]()

  def to_x0_and_eps(self, z, output, t, prediction: str):
    """The network output at z_t -> (x0_hat, eps_hat); every form inverts where its divisor is non-zero."""
    self.check_prediction(prediction)
    if prediction == "v":                                   # z = x0 + t v, eps = x0 + v
      x0 = z - t * output
      return x0, x0 + output
    if prediction == "x0":
      return output, _safe_div(z - (1.0 - t) * output, t)
    return _safe_div(z - t * output, 1.0 - t), output

  def sampling_levels(self, num_steps: int, spacing: str = "uniform", shift: float = 1.0) -> np.ndarray:
    """Times from 1 (noise) to 0 (clean), f32 [S + 1]: evenly spaced, or shifted by `shift`."""
    if num_steps < 1:
      raise ValueError(f"sampling.num_steps must be >= 1, got {num_steps}.")
    if spacing not in SPACINGS:
      raise ValueError(f"sampling.spacing: unknown {spacing!r} for process 'flow'; expected one of {SPACINGS}.")
    t = np.linspace(1.0, 0.0, num_steps + 1)
    if spacing == "shifted":
      if not shift > 0:
        raise ValueError(f"sampling.shift must be > 0, got {shift}.")
      t = shift_time(t, shift)
    return t.astype(np.float32)
