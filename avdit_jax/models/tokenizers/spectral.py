"""Short-time Fourier transforms for the audio tokenizer's loss and for reporting spectral distances."""

from __future__ import annotations

import jax.numpy as jnp


def stft_magnitude(x: jnp.ndarray, n_fft: int, hop: int) -> jnp.ndarray:
  """|STFT| of waveforms [..., S] with a periodic Hann window, frames not centred: [..., frames, n_fft//2+1]."""
  count = 1 + (x.shape[-1] - n_fft) // hop
  if count < 1:
    raise ValueError(f"STFT: {x.shape[-1]} samples are fewer than one window of {n_fft}.")
  idx = jnp.arange(count)[:, None] * hop + jnp.arange(n_fft)[None, :]
  window = 0.5 - 0.5 * jnp.cos(2 * jnp.pi * jnp.arange(n_fft) / n_fft)
  return jnp.abs(jnp.fft.rfft(x[..., idx] * window, axis=-1))


def multi_resolution_stft_loss(pred: jnp.ndarray, target: jnp.ndarray, fft_sizes, eps: float = 1e-5) -> jnp.ndarray:
  """Mean over resolutions of spectral convergence + mean |log magnitude difference| (per example: [B])."""
  total = 0.0
  for n in fft_sizes:
    p, t = stft_magnitude(pred, n, n // 4), stft_magnitude(target, n, n // 4)
    axes = tuple(range(1, p.ndim))
    convergence = jnp.sqrt(jnp.sum((t - p) ** 2, axes)) / (jnp.sqrt(jnp.sum(t**2, axes)) + eps)
    log_mag = jnp.mean(jnp.abs(jnp.log(p + eps) - jnp.log(t + eps)), axes)
    total = total + convergence + log_mag
  return total / len(fft_sizes)


def log_spectral_distance(pred: jnp.ndarray, target: jnp.ndarray, n_fft: int, floor_db: float = -80.0) -> jnp.ndarray:
  """Log-spectral distance in dB per example [B]: RMS over frequency of the dB difference, averaged over
  frames. Magnitudes below `floor_db` of the target's loudest bin count as the floor (silence is silence)."""
  p, t = stft_magnitude(pred, n_fft, n_fft // 4), stft_magnitude(target, n_fft, n_fft // 4)
  ref = jnp.max(t, axis=(-2, -1), keepdims=True)
  to_db = lambda m: jnp.maximum(20 * jnp.log10(m / (ref + 1e-12) + 1e-12), floor_db)
  return jnp.mean(jnp.sqrt(jnp.mean((to_db(p) - to_db(t)) ** 2, axis=-1)), axis=-1)
