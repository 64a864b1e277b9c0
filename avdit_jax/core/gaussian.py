"""A jointly Gaussian audio-video toy whose every conditional and optimal denoiser is analytic.

Latents are flattened to one vector x ~ N(mu, Sigma) of d = Ta*Ca + Tv*H*W*Cv elements. Sigma couples
neighbouring segments (an exponential kernel in time) and the two modalities (shared random features
per element), so that a2v, v2a, continuation and interpolation each have a non-trivial answer.

For per-element noise levels, z = a * x + s * eps (DDPM: a = sqrt(abar), s = sqrt(1 - abar); rectified
flow: a = 1 - t, s = t), and with K = A Sigma A + S^2
  E[eps | z] = S K^-1 (z - A mu),      E[x | z] = mu + Sigma A K^-1 (z - A mu),
the Bayes-optimal predictors for any mix of clean (s = 0) and noisy elements; any target of the process
(epsilon, v, the flow's velocity eps - x, x itself) is linear in the two, so its optimum is too.
Plugged into the sampler in place of the network, it tests the conditioning and sampler math
independently of learning.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import monl


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianAV:
  audio_shape: tuple      # (Ta, Ca)
  video_shape: tuple      # (Tv, H, W, Cv)
  segments: monl.FrameSegments
  mean: np.ndarray        # [d]
  cov: np.ndarray         # [d, d], float64

  @property
  def audio_size(self) -> int:
    return int(np.prod(self.audio_shape))

  @property
  def dim(self) -> int:
    return self.audio_size + int(np.prod(self.video_shape))

  def flatten(self, audio, video):
    b = audio.shape[0]
    return jnp.concatenate([audio.reshape(b, -1), video.reshape(b, -1)], axis=1)

  def unflatten(self, x):
    b = x.shape[0]
    return (x[:, :self.audio_size].reshape(b, *self.audio_shape),
            x[:, self.audio_size:].reshape(b, *self.video_shape))

  def sample(self, rng, n: int):
    """n draws of (audio, video) from the joint."""
    chol = np.linalg.cholesky(self.cov).astype(np.float32)
    x = self.mean.astype(np.float32) + jax.random.normal(rng, (n, self.dim)) @ chol.T
    return self.unflatten(x)

  def element_mask(self, mask) -> np.ndarray:
    """bool [M, N] cell mask -> bool [d] element mask (True = given)."""
    mask = np.asarray(mask, bool)
    a = np.broadcast_to(mask[monl.AUDIO][self.segments.audio][:, None], self.audio_shape)
    v = np.broadcast_to(mask[monl.VIDEO][self.segments.video][:, None, None, None], self.video_shape)
    return np.concatenate([a.reshape(-1), v.reshape(-1)])

  def conditional(self, mask, audio, video):
    """Exact p(generated | given) for one example: (generated element mask [d], mean, cov), float64."""
    given = self.element_mask(mask)
    gen = ~given
    x = np.asarray(self.flatten(audio, video), np.float64)[0]
    s_gg, s_gc, s_cc = self.cov[np.ix_(gen, gen)], self.cov[np.ix_(gen, given)], self.cov[np.ix_(given, given)]
    if given.any():
      gain = np.linalg.solve(s_cc, s_gc.T).T
      mean = self.mean[gen] + gain @ (x[given] - self.mean[given])
      cov = s_gg - gain @ s_gc.T
    else:
      mean, cov = self.mean[gen], s_gg
    return gen, mean, cov

  def denoiser(self, process, prediction: str = "epsilon"):
    """The optimal network of a process (core/process.py): apply(audio_z, video_z, t[B, M, N]) -> outputs
    of the latents' shapes."""
    cov = jnp.asarray(self.cov, jnp.float32)
    mean = jnp.asarray(self.mean, jnp.float32)
    process.check_prediction(prediction)

    def posterior(a, s, centred):  # a, s: [d] one noise pattern; centred: [B, d] = z - a * mean
      cov_z = a[:, None] * cov * a[None, :] + jnp.diag(s * s)                        # [d, d]
      y = jnp.linalg.solve(cov_z, centred.T)                                          # [d, B]
      return (mean + (cov @ (a[:, None] * y)).T), (s[:, None] * y).T                  # x0, eps [B, d]

    def apply(audio_z, video_z, t):
      t_a, t_v = monl.to_frames(t, self.segments)
      t_flat = self.flatten(jnp.broadcast_to(t_a, audio_z.shape), jnp.broadcast_to(t_v, video_z.shape))
      a, s = process.coefficients(t_flat)                                            # [B, d]
      centred = self.flatten(audio_z, video_z) - a * mean
      # One factorisation when the whole batch shares a noise pattern (the usual sampling case).
      x0, eps = jax.lax.cond(
          (t == t[:1]).all(),
          lambda: posterior(a[0], s[0], centred),
          lambda: jax.vmap(lambda ai, si, ci: jax.tree.map(lambda r: r[0], posterior(ai, si, ci[None])))(
              a, s, centred))
      return self.unflatten(process.target(x0, eps, t_flat, prediction))

    return apply


def coupled_gaussian(audio_shape, video_shape, segments: monl.FrameSegments, *, length_scale: float = 1.5,
                     features: int = 4, jitter: float = 0.05, seed: int = 0) -> GaussianAV:
  """A Gaussian whose covariance couples neighbouring segments and the two modalities.

  Sigma[i, j] = exp(-|tau_i - tau_j| / length_scale) * <phi_i, phi_j> + jitter * [i == j], where tau is
  the element's time in segments and phi a random unit vector per (modality, in-frame position):
  a Schur product of positive semi-definite kernels plus a ridge, hence positive definite.
  """
  rng = np.random.default_rng(seed)
  ta, ca = audio_shape
  tv = video_shape[0]
  per_frame_v = int(np.prod(video_shape[1:]))
  n = segments.num_segments
  tau = np.concatenate([np.repeat((np.arange(ta) + 0.5) * n / ta, ca),
                        np.repeat((np.arange(tv) + 0.5) * n / tv, per_frame_v)])
  phi_a = rng.normal(size=(ca, features))
  phi_v = rng.normal(size=(per_frame_v, features))
  phi = np.concatenate([np.tile(phi_a, (ta, 1)), np.tile(phi_v, (tv, 1))])
  phi /= np.linalg.norm(phi, axis=1, keepdims=True)
  cov = np.exp(-np.abs(tau[:, None] - tau[None]) / length_scale) * (phi @ phi.T)
  cov += jitter * np.eye(len(tau))
  mean = 0.5 * rng.normal(size=len(tau))
  return GaussianAV(tuple(audio_shape), tuple(video_shape), segments, mean, cov)


def gaussian_kl(mean_p, cov_p, mean_q, cov_q) -> float:
  """KL(N(mean_p, cov_p) || N(mean_q, cov_q)), float64."""
  d = len(mean_p)
  q_inv = np.linalg.inv(cov_q)
  diff = mean_q - mean_p
  _, logdet_p = np.linalg.slogdet(cov_p)
  _, logdet_q = np.linalg.slogdet(cov_q)
  return 0.5 * float(np.trace(q_inv @ cov_p) + diff @ q_inv @ diff - d + logdet_q - logdet_p)


def sample_fit(x, mean, cov) -> dict:
  """How n samples x [n, d] fit N(mean, cov): the KL of their fitted Gaussian from it, the tolerance that
  finite samples alone explain, and the largest |mean error| in standard errors.

  From finite samples alone that KL is about d (d + 3) / (4 n); the tolerance is twice that plus 0.005 for
  the discretisation of the reverse process (the sampler tests' rule, with means within 4.5 standard errors).
  """
  n, d = x.shape
  z = np.abs(x.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
  kl = gaussian_kl(x.mean(0), np.cov(x.T), mean, cov)
  tolerance = 2 * d * (d + 3) / (4 * n) + 0.005
  return {"kl": kl, "tolerance": tolerance, "max_z": float(z.max()),
          "ok": bool(kl < tolerance and z.max() < 4.5)}
