"""The MoNL training objective: draw t[m, n] from the mixture, noise each latent frame at its own
level, predict, and score the noisy frames only. Pure: the network enters as an apply function.
The process (core/process.py: 'ddpm' or 'flow') supplies the levels, the noising and the target."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import monl
from avdit_jax.core.diffusion import masked_sq_error
from avdit_jax.core.process import Process

# apply(audio_z, video_z, t[B, M, N]) -> (audio_out, video_out); t in the process's units (int or float)
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True, eq=False)  # identity eq/hash: it holds arrays
class Objective:
  """Everything the loss needs besides the network and the batch; static under jit."""
  process: Process
  segments: monl.FrameSegments
  strategy_probs: np.ndarray
  clean_prob: float = 0.25
  task: np.ndarray | None = None
  prediction: str = "epsilon"
  modality_weights: tuple = (1.0, 1.0)   # (audio, video) weight of each noisy element's squared error

  @property
  def num_segments(self) -> int:
    return self.segments.num_segments


def make_objective(*, process: Process, segments: monl.FrameSegments,
                   weights: Mapping[str, float], clean_prob: float = 0.25, task=None,
                   prediction: str = "epsilon", modality_weights=(1.0, 1.0)) -> Objective:
  """Checks the MoNL settings (names, ranges, the task mask) and builds the Objective."""
  if not 0.0 <= clean_prob < 1.0:
    raise ValueError(f"monl.clean_prob must be in [0, 1), got {clean_prob}.")
  process.check_prediction(prediction)
  if len(modality_weights) != monl.NUM_MODALITIES or min(modality_weights) < 0:
    raise ValueError(f"monl.modality_weights: expected {monl.NUM_MODALITIES} non-negative weights "
                     f"(audio, video), got {modality_weights}.")
  probs = monl.strategy_probabilities(weights)
  if task is not None:
    task = monl.validate_mask(task, segments.num_segments, what="monl.task")
  elif probs[monl.STRATEGIES.index("conditional")] > 0:
    raise ValueError("monl.weights gives the 'conditional' strategy weight but monl.task is not set.")
  return Objective(process, segments, probs, float(clean_prob), task, prediction,
                   tuple(float(w) for w in modality_weights))


def loss_fn(objective: Objective, denoise: DenoiseFn, audio: jax.Array, video: jax.Array,
            rng: jax.Array) -> tuple[jax.Array, dict]:
  """Mean squared error over the noisy latent elements of the batch.

  Returns the scalar loss and aux: per-strategy sums of weighted squared error and of weights
  (so per-strategy losses average exactly over any number of steps), and the timesteps drawn.
  """
  batch = audio.shape[0]
  k_t, k_audio, k_video = jax.random.split(rng, 3)
  process = objective.process
  t, strategy = monl.sample_timesteps(
      k_t, batch, objective.num_segments, process.pure_noise, objective.strategy_probs,
      clean_prob=objective.clean_prob, task=objective.task,
      draw_levels=process.draw_levels)                                            # [B, M, N], [B]
  t_a, t_v = monl.to_frames(t, objective.segments)                                # [B, Ta, 1], [B, Tv, 1, 1, 1]
  eps_a = jax.random.normal(k_audio, audio.shape, jnp.float32)
  eps_v = jax.random.normal(k_video, video.shape, jnp.float32)
  z_a = process.add_noise(audio, eps_a, t_a)
  z_v = process.add_noise(video, eps_v, t_v)
  out_a, out_v = denoise(z_a, z_v, t)
  sq_a, n_a = masked_sq_error(out_a, process.target(audio, eps_a, t_a, objective.prediction), t_a > 0,
                              process.loss_weight(t_a))
  sq_v, n_v = masked_sq_error(out_v, process.target(video, eps_v, t_v, objective.prediction), t_v > 0,
                              process.loss_weight(t_v))
  w_a, w_v = objective.modality_weights
  sq = w_a * sq_a + w_v * sq_v                                                    # [B]
  count = w_a * n_a + w_v * n_v                                                   # [B]
  loss = sq.sum() / jnp.maximum(count.sum(), 1.0)
  onehot = jax.nn.one_hot(strategy, len(monl.STRATEGIES), dtype=jnp.float32)     # [B, S]
  aux = {"strategy_sq": sq @ onehot, "strategy_count": count @ onehot, "t": t}
  return loss, aux
