"""The continuous latent shared by both tokenizers: a diagonal Gaussian posterior with a KL to N(0, 1)
('kl'), or the bare encoder output ('none'). A quantizer would be a third regulariser here."""

from __future__ import annotations

import jax
import jax.numpy as jnp

REGULARIZERS = ("kl", "none")


def check(regularizer: str, what: str) -> None:
  if regularizer not in REGULARIZERS:
    raise ValueError(f"{what}: regularizer {regularizer!r}; expected one of {REGULARIZERS}.")


def num_outputs(latent_channels: int, regularizer: str) -> int:
  return latent_channels * (2 if regularizer == "kl" else 1)


def moments(h: jax.Array, regularizer: str) -> tuple[jax.Array, jax.Array | None]:
  """Encoder output -> (mean, log-variance or None)."""
  if regularizer != "kl":
    return h, None
  mean, logvar = jnp.split(h, 2, axis=-1)
  return mean, jnp.clip(logvar, -20.0, 10.0)


def sample_and_kl(mean, logvar, rng) -> tuple[jax.Array, jax.Array]:
  """(latent, KL per example [B]): a posterior sample when rng is given, else the mean."""
  if logvar is None:
    return mean, jnp.zeros(mean.shape[0])
  z = mean if rng is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
  kl = 0.5 * jnp.sum(mean**2 + jnp.exp(logvar) - 1.0 - logvar, axis=tuple(range(1, mean.ndim)))
  return z, kl
