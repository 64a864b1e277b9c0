"""Mixture of Noise Levels: the diffusion timestep as a matrix t[m, n].

M modalities (audio, video) x N time segments. Training draws t per example from
a mixture of strategies; inference turns a task mask (which portions are given)
into the timestep matrix of each step. Pure numpy/jnp: no model, no I/O.

Conventions used across the package:
  * t is a noise level: an integer in [0, T] (the 'ddpm' process) or a float in [0, 1] ('flow').
    t = 0 is clean (no noise, no loss); anything above is noisy.
  * A task mask is a bool [M, N] array; True = the portion is given (conditioning).
  * Modality index 0 is audio, 1 is video (the paper's order).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MODALITIES = ("audio", "video")
AUDIO, VIDEO = 0, 1
NUM_MODALITIES = len(MODALITIES)

# Training strategies. Each draws noise levels for a group of cells that share one t.
#   vanilla               one t for the whole clip (standard diffusion);
#   per_modality          one t per modality row (UniDiffuser's Pm);
#   per_segment           one t per time-segment column, shared by the modalities (Pt);
#   per_segment_modality  every (modality, segment) cell its own t (Ptm);
#   conditional           a fixed task: its given cells clean, the rest one t (task-specific baseline).
STRATEGIES = ("vanilla", "per_modality", "per_segment", "per_segment_modality", "conditional")


# ----------------------------------------------------------------------------- layout


def segment_ids(length: int, patch: int, num_segments: int, *, what: str = "latent") -> np.ndarray:
  """Segment index of each frame of a latent axis of `length` frames, patched by `patch`.

  Segments are cut on the patch (token) grid so that a token never straddles two
  segments: token j of L = length // patch tokens is in segment floor(j * N / L).
  Returns int32 [length].
  """
  if patch < 1 or length % patch:
    raise ValueError(f"{what}: time length {length} is not divisible by the time patch size {patch}.")
  num_tokens = length // patch
  if num_tokens < num_segments:
    raise ValueError(
        f"{what}: {num_tokens} time tokens (length {length} / patch {patch}) cannot be cut into "
        f"{num_segments} segments; need at least one token per segment.")
  token_segment = (np.arange(num_tokens) * num_segments) // num_tokens
  return np.repeat(token_segment, patch).astype(np.int32)


class FrameSegments(NamedTuple):
  """Segment index of each latent frame, per modality: int32 [Ta] and [Tv]."""
  audio: np.ndarray
  video: np.ndarray

  @property
  def num_segments(self) -> int:
    return int(self.audio[-1]) + 1


def frame_segments(audio_frames: int, audio_patch: int, video_frames: int, video_patch: int,
                   num_segments: int) -> FrameSegments:
  return FrameSegments(
      segment_ids(audio_frames, audio_patch, num_segments, what="audio latent"),
      segment_ids(video_frames, video_patch, num_segments, what="video latent"))


def to_frames(values: jax.Array, segments: FrameSegments) -> tuple[jax.Array, jax.Array]:
  """Per-cell values [B, M, N] -> per-frame values broadcastable to the latents:
  audio [B, Ta, 1] and video [B, Tv, 1, 1, 1]."""
  audio = jnp.take(values[:, AUDIO, :], jnp.asarray(segments.audio), axis=1)
  video = jnp.take(values[:, VIDEO, :], jnp.asarray(segments.video), axis=1)
  return audio[:, :, None], video[:, :, None, None, None]


# ----------------------------------------------------------------------------- task masks


def _empty(num_segments: int) -> np.ndarray:
  return np.zeros((NUM_MODALITIES, num_segments), dtype=bool)


def _check_count(name: str, value: int, num_segments: int, *, field: str) -> None:
  if not 0 <= value <= num_segments:
    raise ValueError(f"task {name!r}: {field}={value} must be in [0, {num_segments}] (N = {num_segments}).")


def joint(num_segments: int) -> np.ndarray:
  """Nothing given: unconditional joint audio-video generation."""
  return _empty(num_segments)


def a2v(num_segments: int) -> np.ndarray:
  """Audio given, video generated."""
  mask = _empty(num_segments)
  mask[AUDIO] = True
  return mask


def v2a(num_segments: int) -> np.ndarray:
  """Video given, audio generated."""
  mask = _empty(num_segments)
  mask[VIDEO] = True
  return mask


def av_continue(num_segments: int, num_given: int = 1) -> np.ndarray:
  """The first `num_given` segments of both modalities given; the rest generated."""
  _check_count("av_continue", num_given, num_segments, field="num_given")
  mask = _empty(num_segments)
  mask[:, :num_given] = True
  return mask


def av_inpaint(num_segments: int, num_before: int = 1, num_after: int = 1) -> np.ndarray:
  """Interpolation: the first `num_before` and last `num_after` segments of both modalities given."""
  _check_count("av_inpaint", num_before + num_after, num_segments, field="num_before + num_after")
  mask = _empty(num_segments)
  mask[:, :num_before] = True
  mask[:, num_segments - num_after:] = True
  return mask


def _single_continue(modality: int, num_segments: int, num_given: int, other_given: bool) -> np.ndarray:
  _check_count(f"{MODALITIES[modality]}_continue", num_given, num_segments, field="num_given")
  mask = _empty(num_segments)
  mask[modality, :num_given] = True
  mask[1 - modality] = other_given
  return mask


def audio_continue(num_segments: int, num_given: int = 1, other_given: bool = True) -> np.ndarray:
  """Continue the audio from its first `num_given` segments; the video is given when `other_given`
  (video-conditioned audio continuation), else generated jointly."""
  return _single_continue(AUDIO, num_segments, num_given, other_given)


def video_continue(num_segments: int, num_given: int = 1, other_given: bool = True) -> np.ndarray:
  """Continue the video from its first `num_given` segments; the audio is given when `other_given`
  (the paper's audio-conditioned video continuation), else generated jointly."""
  return _single_continue(VIDEO, num_segments, num_given, other_given)


TASKS = {
    "joint": joint,
    "a2v": a2v,
    "v2a": v2a,
    "av_continue": av_continue,
    "av_inpaint": av_inpaint,
    "audio_continue": audio_continue,
    "video_continue": video_continue,
}


def task_mask(name: str, num_segments: int, *args, **kwargs) -> np.ndarray:
  """The mask of a named task, e.g. task_mask('av_continue', 5, num_given=3) or ('av_continue', 5, 3)."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)} or a mask.")
  try:
    return TASKS[name](num_segments, *args, **kwargs)
  except TypeError as e:
    raise ValueError(f"task {name!r}: bad arguments {args or ''}{kwargs or ''}: {e}") from None


def validate_mask(mask, num_segments: int, *, allow_nothing_given: bool = True,
                  what: str = "task mask") -> np.ndarray:
  """Checks a user mask and returns it as bool [M, N]. Errors name what was expected."""
  mask = np.asarray(mask)
  if mask.shape != (NUM_MODALITIES, num_segments):
    raise ValueError(f"{what}: shape {mask.shape}, expected ({NUM_MODALITIES}, {num_segments}) = "
                     f"(modalities {MODALITIES}, segments).")
  if mask.dtype != bool:
    if not np.isin(mask, (0, 1)).all():
      raise ValueError(f"{what}: entries must be boolean (True = given), got values {np.unique(mask)}.")
    mask = mask.astype(bool)
  if mask.all():
    raise ValueError(f"{what}: every portion is given, so there is nothing to generate.")
  if not allow_nothing_given and not mask.any():
    raise ValueError(f"{what}: nothing is given, but this use needs a conditioning portion "
                     "(e.g. guidance has no unconditional variant for the joint task).")
  return mask


def parse_mask(text: str, num_segments: int) -> np.ndarray:
  """A mask written as text: 'audio:0-4,video:0-1' gives audio segments 0..4 and video segments 0..1.

  Each item is `modality:range` with range `a-b` (inclusive), `a` or `all`; `;` may separate items too.
  """
  mask = _empty(num_segments)
  items = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
  if not items:
    raise ValueError(f"mask {text!r}: empty; expected e.g. 'audio:all,video:0-1'.")
  for item in items:
    modality, _, span = item.partition(":")
    if modality not in MODALITIES or not span:
      raise ValueError(f"mask {text!r}: item {item!r} must be 'audio:RANGE' or 'video:RANGE'.")
    if span == "all":
      first, last = 0, num_segments - 1
    else:
      lo, _, hi = span.partition("-")
      try:
        first, last = int(lo), int(hi or lo)
      except ValueError:
        raise ValueError(f"mask {text!r}: range {span!r} must be 'a-b', 'a' or 'all'.") from None
    if not 0 <= first <= last < num_segments:
      raise ValueError(f"mask {text!r}: range {span!r} outside segments 0..{num_segments - 1}.")
    mask[MODALITIES.index(modality), first:last + 1] = True
  return mask


# ----------------------------------------------------------------------------- inference timesteps


def _level(t) -> jax.Array:
  """A level as an array: Python ints become int32 (the DDPM index), floats keep their float dtype."""
  t = jnp.asarray(t)
  return t.astype(jnp.int32) if jnp.issubdtype(t.dtype, jnp.integer) else t.astype(jnp.float32)


def inference_timesteps(mask, t) -> jax.Array:
  """Given portions at t = 0, generated portions at the current step's t. [M, N], t's dtype."""
  t = _level(t)
  return jnp.where(jnp.asarray(mask), jnp.zeros_like(t), t)


def unconditional_timesteps(mask, t, num_timesteps, drop=None) -> jax.Array:
  """MoNL's guidance-free 'unconditional' pass: the dropped given portions at the noisiest level
  (`num_timesteps`: T for DDPM, 1.0 for flow; pure noise).

  `drop` (bool [M, N], default: all given portions) picks which conditioning is dropped, e.g. one end
  of an interpolation. Portions given and not dropped stay clean.
  """
  mask = jnp.asarray(mask)
  drop = mask if drop is None else jnp.asarray(drop) & mask
  t = inference_timesteps(mask, t)
  return jnp.where(drop, jnp.asarray(num_timesteps, t.dtype), t)


# ----------------------------------------------------------------------------- training timesteps


def strategy_probabilities(weights: Mapping[str, float]) -> np.ndarray:
  """Mixture weights (by strategy name) -> probabilities over STRATEGIES."""
  unknown = sorted(set(weights) - set(STRATEGIES))
  if unknown:
    raise ValueError(f"monl.weights: unknown strategies {unknown}; expected names from {STRATEGIES}.")
  probs = np.array([float(weights.get(name, 0.0)) for name in STRATEGIES])
  if (probs < 0).any() or not np.isfinite(probs).all() or probs.sum() <= 0:
    raise ValueError(f"monl.weights: need non-negative finite weights with a positive sum, got {dict(weights)}.")
  return probs / probs.sum()


def sample_timesteps(rng: jax.Array, batch_size: int, num_segments: int, num_timesteps: int,
                     probs: np.ndarray, *, clean_prob: float = 0.25,
                     task: np.ndarray | None = None, draw_levels=None) -> tuple[jax.Array, jax.Array]:
  """Draws a timestep matrix per example from the mixture.

  Args:
    probs: probabilities over STRATEGIES (from `strategy_probabilities`).
    clean_prob: in the per_modality / per_segment / per_segment_modality strategies each group of
      cells is clean (t = 0) with this probability, so that the model sees clean portions to
      condition on. If a draw leaves every group clean, one random cell's group is made noisy again
      (a clip with nothing to denoise carries no loss).
    task: bool [M, N] mask for the `conditional` strategy (required when it has weight).
    draw_levels: (key, shape) -> one noisy level per cell (the process's `draw_levels`, e.g. flow's
      logit-normal t); default: integers uniform in [1, num_timesteps].

  Returns:
    t: [B, M, N], int32 in [0, T] (or draw_levels' dtype); strategy: int32 [B], index into STRATEGIES.
  """
  probs = np.asarray(probs, dtype=np.float64)
  cond_index = STRATEGIES.index("conditional")
  if probs[cond_index] > 0:
    if task is None:
      raise ValueError("monl: the 'conditional' strategy has weight but no task mask was given.")
    task = validate_mask(task, num_segments, what="monl.task")
  shape = (batch_size, NUM_MODALITIES, num_segments)
  k_strategy, k_level, k_clean, k_row, k_col = jax.random.split(rng, 5)
  strategy = jax.random.choice(k_strategy, len(STRATEGIES), (batch_size,), p=jnp.asarray(probs, jnp.float32))
  if draw_levels is None:
    level = jax.random.randint(k_level, shape, 1, num_timesteps + 1)      # one level per cell
  else:
    level = draw_levels(k_level, shape)
  clean = jax.random.bernoulli(k_clean, clean_prob, shape)
  # A random cell per example whose group stays noisy if a draw came out all clean.
  keep_row = jax.random.randint(k_row, (batch_size, 1, 1), 0, NUM_MODALITIES)
  keep_col = jax.random.randint(k_col, (batch_size, 1, 1), 0, num_segments)
  rows = jnp.arange(NUM_MODALITIES)[None, :, None]
  cols = jnp.arange(num_segments)[None, None, :]

  def shared(x, over_modalities, over_segments):
    """Broadcasts a representative cell over each group: (0, 0) for the clip, (m, 0) for row m, ..."""
    x = x[:, :1] if over_modalities else x
    x = x[:, :, :1] if over_segments else x
    return jnp.broadcast_to(x, shape)

  patterns = {  # strategy -> (one t shared over modalities, one t shared over segments)
      "vanilla": (True, True),
      "per_modality": (False, True),
      "per_segment": (True, False),
      "per_segment_modality": (False, False),
  }
  candidates = []
  for name in STRATEGIES[:cond_index]:    # candidates in STRATEGIES order: `strategy` indexes them
    over_m, over_n = patterns[name]
    t_s = shared(level, over_m, over_n)
    if name != "vanilla":
      is_clean = shared(clean, over_m, over_n)
      in_kept_group = (over_m | (rows == keep_row)) & (over_n | (cols == keep_col))
      all_clean = is_clean.all(axis=(1, 2), keepdims=True)
      t_s = jnp.where(is_clean & ~(all_clean & in_kept_group), 0, t_s)
    candidates.append(t_s)
  task_t = (jnp.zeros(shape, level.dtype) if task is None
            else jnp.where(jnp.asarray(task), jnp.zeros_like(level), shared(level, True, True)))
  candidates.append(task_t)
  stacked = jnp.stack(candidates, axis=1)                                    # [B, S, M, N]
  t = jnp.take_along_axis(stacked, strategy[:, None, None, None], axis=1)[:, 0]
  return t.astype(level.dtype), strategy.astype(jnp.int32)
