"""Gaussian diffusion (DDPM) with a timestep per token: schedules, forward process, targets, loss, reverse steps.

Everything is elementwise in the noise level, so each latent element may carry its own t: callers
broadcast `alpha_bar` to the latent's shape (see `monl.to_frames`). t = 0 means clean
(alpha_bar = 1); the reverse steps leave clean elements unchanged. `Schedule` is the 'ddpm' process of
core/process.py (its methods take t, the module's functions alpha_bar); core/flow.py is the other.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
SPACINGS = ("uniform", "shifted", "karras")


class Schedule(NamedTuple):
  """alpha_bar[t] for t = 0..T, with alpha_bar[0] = 1 (clean); the 'ddpm' process (core/process.py)."""
  alpha_bar: jax.Array  # f32 [T + 1]

  name = "ddpm"
  predictions = PREDICTIONS
  continuous = False

  @property
  def num_timesteps(self) -> int:
    return self.alpha_bar.shape[0] - 1

  @property
  def pure_noise(self) -> int:
    return self.num_timesteps

  def check_prediction(self, prediction: str):
    if prediction not in PREDICTIONS:
      raise ValueError(f"diffusion.prediction: unknown {prediction!r} for process 'ddpm'; expected one of "
                       f"{PREDICTIONS}.")

  def draw_levels(self, key: jax.Array, shape) -> jax.Array:
    """One noisy level per cell, int32 uniform in [1, T]."""
    return jax.random.randint(key, shape, 1, self.num_timesteps + 1)

  def coefficients(self, t):
    abar = self.alpha_bar[t]
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)

  def add_noise(self, x0, eps, t):
    return add_noise(x0, eps, self.alpha_bar[t])

  def loss_weight(self, t):
    """Every noisy element's squared error counts once (DDPM's simple loss)."""
    return jnp.ones(jnp.shape(t), jnp.float32)

  def target(self, x0, eps, t, prediction: str):
    return target(x0, eps, self.alpha_bar[t], prediction)

  def to_x0_and_eps(self, z, output, t, prediction: str):
    return to_x0_and_eps(z, output, self.alpha_bar[t], prediction)

  def sampling_levels(self, num_steps: int, spacing: str = "uniform", shift: float = 1.0) -> np.ndarray:
    return sampling_timesteps(self.num_timesteps, num_steps, spacing, shift, np.asarray(self.alpha_bar))


def make_schedule(name: str = "cosine", num_timesteps: int = 1000) -> Schedule:
  """Linear (Ho et al., betas 1e-4..0.02 at T = 1000, rescaled for other T) or cosine (Nichol & Dhariwal)."""
  if num_timesteps < 1:
    raise ValueError(f"diffusion.num_timesteps must be >= 1, got {num_timesteps}.")
  if name == "linear":
    scale = 1000.0 / num_timesteps
    betas = np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
  elif name == "cosine":
    s = 0.008
    f = np.cos((np.arange(num_timesteps + 1) / num_timesteps + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
  else:
    raise ValueError(f"diffusion.schedule: unknown schedule {name!r}; expected one of {SCHEDULES}.")
  alpha_bar = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
  return Schedule(jnp.asarray(alpha_bar, jnp.float32))


def add_noise(x0: jax.Array, noise: jax.Array, alpha_bar: jax.Array) -> jax.Array:
  """z_t = sqrt(abar) x0 + sqrt(1 - abar) eps, with abar broadcastable to x0 (one per element if need be)."""
  return jnp.sqrt(alpha_bar) * x0 + jnp.sqrt(1.0 - alpha_bar) * noise


def target(x0: jax.Array, noise: jax.Array, alpha_bar: jax.Array, prediction: str) -> jax.Array:
  """What the network regresses: epsilon (the paper's) or v = sqrt(abar) eps - sqrt(1 - abar) x0."""
  if prediction == "epsilon":
    return noise
  if prediction == "v":
    return jnp.sqrt(alpha_bar) * noise - jnp.sqrt(1.0 - alpha_bar) * x0
  raise ValueError(f"diffusion.prediction: unknown {prediction!r}; expected one of {PREDICTIONS}.")


def to_x0_and_eps(z: jax.Array, output: jax.Array, alpha_bar: jax.Array,
                  prediction: str) -> tuple[jax.Array, jax.Array]:
  """The network output at z_t -> (x0_hat, eps_hat). Clean elements (abar = 1) give x0_hat = z."""
  a, s = jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)
  if prediction == "epsilon":
    eps = output
    x0 = (z - s * eps) / a
  elif prediction == "v":
    x0 = a * z - s * output
    eps = s * z + a * output
  else:
    raise ValueError(f"diffusion.prediction: unknown {prediction!r}; expected one of {PREDICTIONS}.")
  return x0, eps


def masked_sq_error(output: jax.Array, tgt: jax.Array, noisy: jax.Array,
                    weight: jax.Array | float = 1.0) -> tuple[jax.Array, jax.Array]:
  """Per-example (sum of weighted squared errors over noisy elements, number of noisy elements).

  `noisy` and `weight` (the process's loss weight per element) broadcast to the latent's shape; clean elements
  carry no loss (nothing to predict). Returns f32 [B], f32 [B].
  """
  noisy = jnp.broadcast_to(noisy, output.shape).astype(jnp.float32)
  err = jnp.square(output.astype(jnp.float32) - tgt.astype(jnp.float32)) * noisy * weight
  axes = tuple(range(1, output.ndim))
  return err.sum(axes), noisy.sum(axes)


def _safe_div(num, den):
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def ddim_step(z: jax.Array, x0: jax.Array, eps: jax.Array, alpha_bar: jax.Array,
              alpha_bar_prev: jax.Array, eta: float, noise: jax.Array) -> jax.Array:
  """DDIM update z_t -> z_prev (Song et al.), eta = 0 deterministic, eta = 1 equals DDPM's posterior.

  sigma^2 = eta^2 (1 - abar_prev) / (1 - abar) (1 - abar / abar_prev); elements with abar = abar_prev
  (e.g. clean ones, abar = 1) are left as they are.
  """
  var = eta**2 * _safe_div(1.0 - alpha_bar_prev, 1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)
  var = jnp.clip(var, 0.0, 1.0 - alpha_bar_prev)
  direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - var, 0.0)) * eps
  z_prev = jnp.sqrt(alpha_bar_prev) * x0 + direction + jnp.sqrt(var) * noise
  return jnp.where(alpha_bar_prev == alpha_bar, z, z_prev)


def ddpm_step(z: jax.Array, x0: jax.Array, alpha_bar: jax.Array, alpha_bar_prev: jax.Array,
              noise: jax.Array, variance: str = "small") -> jax.Array:
  """Ancestral DDPM update z_t -> z_prev from the posterior q(z_prev | z_t, x0_hat) (Ho et al.).

  Works on any sub-sequence of timesteps (beta = 1 - abar / abar_prev). variance 'small' is the
  posterior's beta_tilde, 'large' is beta.
  """
  beta = 1.0 - alpha_bar / alpha_bar_prev
  coef_x0 = _safe_div(jnp.sqrt(alpha_bar_prev) * beta, 1.0 - alpha_bar)
  coef_z = _safe_div(jnp.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev), 1.0 - alpha_bar)
  if variance == "small":
    var = _safe_div((1.0 - alpha_bar_prev) * beta, 1.0 - alpha_bar)
  elif variance == "large":
    var = beta
  else:
    raise ValueError(f"sampling.ddpm_variance: expected 'small' or 'large', got {variance!r}.")
  z_prev = coef_x0 * x0 + coef_z * z + jnp.sqrt(var) * noise
  return jnp.where(alpha_bar_prev == alpha_bar, z, z_prev)


def sampling_timesteps(num_timesteps: int, num_steps: int, spacing: str = "uniform", shift: float = 1.0,
                       alpha_bar: np.ndarray | None = None) -> np.ndarray:
  """Steps from T to 0, int32 [S + 1], strictly decreasing.

  'uniform': evenly spaced ending at T ('trailing'); 'shifted': the fractions i / S through the SD3 shift
  s u / (1 + (s - 1) u) (s > 1 spends more steps near noise); 'karras': sigma = sqrt((1 - abar) / abar)
  evenly spaced in sigma^(1/7) between sigma(T) and sigma(1) (Karras et al.), each at its nearest t.
  """
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f"sampling.num_steps must be in [1, T = {num_timesteps}], got {num_steps}.")
  if spacing not in SPACINGS:
    raise ValueError(f"sampling.spacing: unknown {spacing!r} for process 'ddpm'; expected one of {SPACINGS}.")
  if spacing == "uniform":
    return np.round(np.arange(num_steps, -1, -1) * num_timesteps / num_steps).astype(np.int32)
  if spacing == "shifted":
    if not shift > 0:
      raise ValueError(f"sampling.shift must be > 0, got {shift}.")
    u = np.arange(num_steps, 0, -1) / num_steps
    levels = np.round(num_timesteps * shift * u / (1 + (shift - 1) * u))
  else:
    if alpha_bar is None:
      raise ValueError("karras spacing needs the schedule's alpha_bar.")
    abar = np.asarray(alpha_bar[1:], np.float64)
    log_sigma = 0.5 * np.log(np.maximum(1 - abar, 1e-12) / abar)                  # [T], t = 1..T, increasing
    rho = 7.0
    hi, lo = np.exp(log_sigma[-1]) ** (1 / rho), np.exp(log_sigma[0]) ** (1 / rho)
    ramp = np.linspace(0, 1, num_steps) if num_steps > 1 else np.zeros(1)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    levels = 1 + np.abs(np.log(sigmas)[:, None] - log_sigma[None]).argmin(1)
  levels = np.clip(levels, 1, num_timesteps).astype(np.int64)
  for i in range(1, num_steps):                      # rounding may merge neighbours: keep them distinct,
    levels[i] = min(levels[i], levels[i - 1] - 1)    # moving the later one down (then up, if below 1)
  for i in range(num_steps - 1, -1, -1):
    levels[i] = max(levels[i], num_steps - i)
    if i + 1 < num_steps:
      levels[i] = max(levels[i], levels[i + 1] + 1)
  if levels[0] > num_timesteps:
    raise ValueError(f"sampling.spacing {spacing!r}: {num_steps} distinct steps do not fit in T = {num_timesteps}.")
  return np.concatenate([levels, [0]]).astype(np.int32)
