"""Components from a config: the one place where config fields become objects.

Each builder reads one section (`config.model`, `config.diffusion`, `config.monl`, `config.sampling`)
and raises errors that name the field.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections

from avdit_jax.core import diffusion, gaussian, monl, objective, sampling
from avdit_jax.models import av_dit, avdit

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def load_config(spec: str, *, relative_to: str | None = None) -> ml_collections.ConfigDict:
  """A config file by path with an optional ':variant' (e.g. 'configs/paper.py:xl,v5p'), as --config reads it.

  `relative_to` (a config file's __file__) resolves the path next to that file: how configs build on
  configs/common.py and on each other."""
  import importlib.util
  import os
  path, _, arg = spec.partition(":")
  if relative_to is not None:
    path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"config {spec!r}: no file {path}.")
  module_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _dtype(name: str, field: str):
  if name not in DTYPES:
    raise ValueError(f"{field}: unknown dtype {name!r}; expected one of {sorted(DTYPES)}.")
  return DTYPES[name]


MODEL_KINDS = ("avdit", "av_dit")


def model(config: ml_collections.ConfigDict):
  """The denoiser of config.model: kind 'avdit' (the default: models/avdit.py) or 'av_dit' (a frozen image DiT
  with adapters, models/av_dit.py); both are called as (audio, video, t) -> (audio_out, video_out)."""
  c = config.model
  kind = c.get("kind", "avdit")
  if kind not in MODEL_KINDS:
    raise ValueError(f"model.kind: unknown {kind!r}; expected one of {MODEL_KINDS}.")
  overrides = {k: v for k, v in c.items() if k not in ("kind", "variant", "dtype", "param_dtype", "num_segments")}
  dtype = _dtype(c.get("dtype", "float32"), "model.dtype")
  if kind == "av_dit":
    return av_dit.make_model(c.variant, num_segments=config.num_segments, dtype=dtype, **overrides)
  overrides["video_patch"] = tuple(overrides["video_patch"])
  return avdit.make_model(c.variant, num_segments=config.num_segments, dtype=dtype,
                          param_dtype=_dtype(c.get("param_dtype", "float32"), "model.param_dtype"), **overrides)


def count_flops(model, layout: avdit.TokenLayout, batch: int) -> float:
  """Analytic forward matmul FLOPs of either kind of model on one batch."""
  counter = av_dit.count_flops if isinstance(model, av_dit.AVAdaptedDiT) else avdit.count_flops
  return counter(layout, model, batch)


def frame_segments(config: ml_collections.ConfigDict) -> monl.FrameSegments:
  """Segment of each latent frame, checked against the model's patches."""
  (ta, _), (tv, *_) = config.data.audio_shape, config.data.video_shape
  m = model(config)
  avdit.layout_for(m, config.data.audio_shape, config.data.video_shape)  # checks shapes
  return monl.frame_segments(ta, m.audio_patch, tv, m.video_patch[0],
                             config.num_segments)


def gaussian_toy(config: ml_collections.ConfigDict, segments: monl.FrameSegments | None = None) -> gaussian.GaussianAV:
  """The jointly Gaussian toy of config.data's shapes (data.kind = 'gaussian'), seeded by data.seed."""
  c = config.data
  return gaussian.coupled_gaussian(tuple(c.audio_shape), tuple(c.video_shape),
                                   frame_segments(config) if segments is None else segments, seed=c.seed)


def schedule(config: ml_collections.ConfigDict) -> diffusion.Schedule:
  return diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)


def task(spec: str, num_segments: int):
  """A task from text: a name ('a2v', 'av_continue:3', 'av_inpaint:1:2') or a written mask
  ('audio:all,video:0-1'). Numbers after a name are its constructor's arguments in order."""
  if ":" in spec and spec.split(":")[0] in monl.MODALITIES:
    return monl.parse_mask(spec, num_segments)
  name, *args = spec.split(":")
  try:
    values = [int(a) for a in args]
  except ValueError:
    raise ValueError(f"task {spec!r}: arguments after the name must be integers.") from None
  return monl.task_mask(name, num_segments, *values) if values else monl.task_mask(name, num_segments)


def training_objective(config: ml_collections.ConfigDict) -> objective.Objective:
  c = config.monl
  return objective.make_objective(
      schedule=schedule(config), segments=frame_segments(config), weights=dict(c.weights),
      clean_prob=c.clean_prob, task=task(c.task, config.num_segments) if c.task else None,
      prediction=config.diffusion.prediction, modality_weights=tuple(c.modality_weights))


# config.sampling fields for the inference front end (avdit_jax/inference/run.py), not the sampler's.
FRONT_END_SAMPLING_FIELDS = ("use_ema", "tasks")


def sampler(config: ml_collections.ConfigDict, **overrides) -> sampling.SamplerConfig:
  c = {k: v for k, v in config.sampling.items() if k not in FRONT_END_SAMPLING_FIELDS}
  c.update(overrides)
  known = {f.name for f in dataclasses.fields(sampling.SamplerConfig)} - {"schedule", "segments", "prediction"}
  unknown = sorted(set(c) - known)
  if unknown:
    raise ValueError(f"sampling: unknown fields {unknown}; expected some of {sorted(known)} "
                     f"(and {list(FRONT_END_SAMPLING_FIELDS)}).")
  return sampling.SamplerConfig(schedule(config), frame_segments(config), prediction=config.diffusion.prediction,
                                **c)
