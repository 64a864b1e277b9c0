"""Components from a config: the one place where config fields become objects.

Each builder reads one section (`config.model`, `config.diffusion`, `config.monl`, `config.sampling`)
and raises errors that name the field.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib

import jax.numpy as jnp
import ml_collections

from avdit_jax.core import diffusion, flow, gaussian, monl, objective, sampling
from avdit_jax.models import av_dit, avdit, dit

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


def guidance_field(weight=0.0) -> ml_collections.FieldReference:
  """A `sampling.guidance` config value that the command line can set to a number or an (audio, video) pair:
  ml_collections fixes a field's type from its first value (a float field refuses '(3.0, 7.0)'), and type
  `object` makes config_flags read the flag as a Python literal instead. check_override checks the value."""
  return ml_collections.FieldReference(weight, field_type=object)


# config.sampling's guidance weights: one number or an (audio, video) pair each (guidance_field).
GUIDANCE_FIELDS = ("guidance", "joint_guidance", "cross_guidance")


def check_override(config: ml_collections.ConfigDict, override: str, where: str = "the config") -> None:
  """`a.b.c=value` (a --config.a.b.c flag without its prefix) must name a field that exists in `config`;
  otherwise a one-line ValueError naming the override, the keys at the level where it went wrong and, for a
  misplaced key, where that name does exist. A `sampling.guidance` (or `joint_guidance`) value must be one
  weight or an (audio, video) pair, in a field made by `guidance_field`."""
  name = override.split("=", 1)[0]
  node, walked = config, []
  for key in name.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or key not in node:
      level = f"config.{'.'.join(walked)}" if walked else "the top level"
      keys = sorted(node.keys()) if isinstance(node, (ml_collections.ConfigDict, dict)) else []
      found = _find_key(config, key)
      close = difflib.get_close_matches(key, keys, n=1)
      hint = (f"; {key!r} exists at {', '.join(found)}." if found else
              f'. Did you mean "{close[0]}"?' if close else ".")
      listing = f"the keys there are {keys}" if keys else f"config.{'.'.join(walked)} is a value, not a section"
      raise ValueError(f"--config.{name}: {where} has no {key!r} at {level} ({listing}){hint}")
    node, walked = node[key], walked + [key]
  if walked[-2:-1] == ["sampling"] and walked[-1] in GUIDANCE_FIELDS and "=" in override:
    _check_guidance(config, name, override.split("=", 1)[1], where)


def _check_guidance(config: ml_collections.ConfigDict, name: str, text: str, where: str) -> None:
  *parents, key = name.split(".")
  section = config
  for k in parents:
    section = section[k]
  try:
    value = ast.literal_eval(text)
    sampling.guidance_weights(value)
  except (SyntaxError, ValueError, TypeError):
    raise ValueError(f"--config.{name}={text}: expected a number >= 0 or an (audio, video) pair of them, "
                     "e.g. 3.0 or '(3.0, 7.0)'.") from None
  if section.get_type(key) is not object:
    raise ValueError(f"--config.{name}: {where} holds it as a plain {section.get_type(key).__name__}, which "
                     "the command line cannot change to a pair; make it factory.guidance_field(...) there.")


def _find_key(node, key: str, prefix: str = "config") -> list[str]:
  found = []
  if isinstance(node, (ml_collections.ConfigDict, dict)):
    for k in node.keys():
      if k == key:
        found.append(f"{prefix}.{k}")
      found += _find_key(node[k], key, f"{prefix}.{k}")
  return found


def check_command_line(argv, default_spec: str | None = None) -> None:
  """Before absl parses anything: the --config file (or `default_spec`, the flag's default) loads and every
  --config.a.b=v names an existing field (one-line errors instead of a traceback from inside flag parsing)."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), default_spec)
  overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
  if spec is None or not overrides:
    return
  config = load_config(spec)
  for override in overrides:
    check_override(config, override, where=spec)


def exit_on_bad_command_line(default_spec: str | None = None) -> None:
  """check_command_line on sys.argv, exiting with its one line: a bad config file or override names itself
  before anything parses flags (a --config flag with a default loads it, and its overrides, when defined)."""
  import sys
  try:
    check_command_line(sys.argv[1:], default_spec)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")


def run_app(main) -> None:
  """absl's app.run(main) for an entry point with a --config flag (no default), after exit_on_bad_command_line."""
  from absl import app
  exit_on_bad_command_line()
  app.run(main)


def _dtype(name: str, field: str):
  if name not in DTYPES:
    raise ValueError(f"{field}: unknown dtype {name!r}; expected one of {sorted(DTYPES)}.")
  return DTYPES[name]


MODEL_KINDS = ("avdit", "av_dit")


def model_kind(model_config: ml_collections.ConfigDict) -> str:
  """model_config.kind, 'avdit' where unset (configs written before AV-DiT), checked against MODEL_KINDS."""
  kind = model_config.get("kind", "avdit")
  if kind not in MODEL_KINDS:
    raise ValueError(f"model.kind: unknown {kind!r}; expected one of {MODEL_KINDS}.")
  return kind


def model(config: ml_collections.ConfigDict):
  """The denoiser of config.model: kind 'avdit' (the default: models/avdit.py) or 'av_dit' (a frozen image DiT
  with adapters, models/av_dit.py); both are called as (audio, video, t) -> (audio_out, video_out)."""
  c = config.model
  kind = model_kind(c)
  overrides = {k: v for k, v in c.items() if k not in ("kind", "variant", "dtype", "param_dtype", "num_segments")}
  dtype = _dtype(c.get("dtype", "float32"), "model.dtype")
  if kind == "av_dit":
    return av_dit.make_model(c.variant, num_segments=config.num_segments, time_scale=time_scale(config),
                             dtype=dtype, **overrides)
  overrides["video_patch"] = tuple(overrides["video_patch"])
  return avdit.make_model(c.variant, num_segments=config.num_segments, time_scale=time_scale(config), dtype=dtype,
                          param_dtype=_dtype(c.get("param_dtype", "float32"), "model.param_dtype"), **overrides)


# The av_dit model fields that are its image DiT's (the rest are the adapters').
IMAGE_DIT_FIELDS = ("depth", "width", "num_heads", "mlp_ratio", "patch", "num_classes", "freq_shift")
# Every model field image_dit reads: all that a saved image DiT run's config needs to hold.
IMAGE_MODEL_FIELDS = ("kind", "variant", "dtype", "learn_sigma") + IMAGE_DIT_FIELDS


def image_dit(config: ml_collections.ConfigDict) -> dit.DiT:
  """The image DiT inside config's AV-DiT (model.kind 'av_dit'), on one latent frame of data.video_shape: the
  same param names and shapes, so its trained params are the AV-DiT's frozen backbone (config.init_from)."""
  c = config.model
  kind = model_kind(c)
  if kind != "av_dit":
    raise ValueError(f"trainee 'image_dit': model.kind is {kind!r}; expected 'av_dit' (the image DiT is that "
                     "model's backbone).")
  _, h, w, cv = tuple(config.data.video_shape)
  if h != w:
    raise ValueError(f"trainee 'image_dit': data.video_shape {tuple(config.data.video_shape)} has {h}x{w} frames; "
                     "the DiT needs square ones.")
  fields = {k: c[k] for k in IMAGE_DIT_FIELDS if k in c}
  return dit.make_dit(c.variant, input_size=h, in_channels=cv, out_channels=2 * cv if c.get("learn_sigma") else cv,
                      dtype=_dtype(c.get("dtype", "float32"), "model.dtype"), **fields)


def count_flops(model, layout: avdit.TokenLayout, batch: int) -> float:
  """Analytic forward matmul FLOPs of either kind of model on one batch."""
  counter = av_dit.count_flops if isinstance(model, av_dit.AVAdaptedDiT) else avdit.count_flops
  return counter(layout, model, batch)


def count_train_flops(config: ml_collections.ConfigDict, model, layout: avdit.TokenLayout, batch: int) -> float:
  """Model FLOPs of one train step: 3 x forward, but an AV-DiT whose DiT is frozen (train.trainable 'adapters')
  computes no gradient of the DiT's weights (av_dit.count_train_flops). Other partial selections (a regex, LoRA)
  are counted as 3 x forward, an upper bound."""
  if isinstance(model, av_dit.AVAdaptedDiT):
    frozen = str(config.train.get("trainable", "all")).strip() == "adapters"
    return av_dit.count_train_flops(layout, model, batch, frozen_backbone=frozen)
  return 3 * avdit.count_flops(layout, model, batch)


def count_remat_flops(model, layout: avdit.TokenLayout, batch: int) -> float:
  """Forward FLOPs the backward pass recomputes under model.remat (AVDiT's; AV-DiT recomputes nothing)."""
  return 0.0 if isinstance(model, av_dit.AVAdaptedDiT) else avdit.count_remat_flops(layout, model, batch)


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


PROCESSES = ("ddpm", "flow")
FLOW_FIELDS = ("t_sampling", "logit_mean", "logit_std", "shift", "loss_weighting")


def process_name(config: ml_collections.ConfigDict) -> str:
  """config.diffusion.process; configs saved before it existed are DDPM's."""
  name = config.diffusion.get("process", "ddpm")
  if name not in PROCESSES:
    raise ValueError(f"diffusion.process: unknown {name!r}; expected one of {PROCESSES}.")
  return name


def process(config: ml_collections.ConfigDict):
  """The diffusion process of config.diffusion (core/process.py): the DDPM schedule or rectified flow."""
  if process_name(config) == "ddpm":
    if config.diffusion.get("t_sampling", "uniform") != "uniform":
      raise ValueError(f"diffusion.t_sampling {config.diffusion.t_sampling!r} is the flow process's; "
                       "process 'ddpm' draws its integer t uniformly (set diffusion.process='flow').")
    if config.diffusion.get("loss_weighting", "none") != "none":
      raise ValueError(f"diffusion.loss_weighting {config.diffusion.loss_weighting!r} is the flow process's; "
                       "process 'ddpm' weighs every element once (set diffusion.process='flow').")
    return schedule(config)
  c = config.diffusion
  return flow.RectifiedFlow(**{k: c[k] for k in FLOW_FIELDS if k in c})


def time_scale(config: ml_collections.ConfigDict) -> float:
  """What the network's timestep embedding multiplies t by: flow's t in [0, 1] reaches DDPM's 0..1000."""
  return 1000.0 if process_name(config) == "flow" else 1.0


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
      process=process(config), segments=frame_segments(config), weights=dict(c.weights),
      clean_prob=c.clean_prob, task=task(c.task, config.num_segments) if c.task else None,
      prediction=config.diffusion.prediction, modality_weights=tuple(c.modality_weights))


# config.sampling fields for the inference front end (avdit_jax/inference/frontend.py), not the sampler's.
FRONT_END_SAMPLING_FIELDS = ("use_ema", "tasks", "joint_guidance")


def sampler(config: ml_collections.ConfigDict, **overrides) -> sampling.SamplerConfig:
  c = {k: v for k, v in config.sampling.items() if k not in FRONT_END_SAMPLING_FIELDS}
  c.update(overrides)
  known = {f.name for f in dataclasses.fields(sampling.SamplerConfig)} - {"process", "segments", "prediction"}
  unknown = sorted(set(c) - known)
  if unknown:
    raise ValueError(f"sampling: unknown fields {unknown}; expected some of {sorted(known)} "
                     f"(and {list(FRONT_END_SAMPLING_FIELDS)}).")
  return sampling.SamplerConfig(process(config), frame_segments(config), prediction=config.diffusion.prediction,
                                **c)
