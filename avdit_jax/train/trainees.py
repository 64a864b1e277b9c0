"""What the training system trains: the AVDiT on latents, or a tokenizer on clips, chosen by config.trainee.

A Trainee is everything model-specific that train.py needs; the loop, sharding, checkpoints, logging and
resume are the same for all of them:
  init(seed) -> params boxed with logical axis names       loss(params, batch, rng) -> (loss, aux)
  example_shapes: the batch's per-example float32 shapes    summarize(aux on host) -> {name: float}
  stream(config, state) -> the input iterator (with get_state) flops_per_example: train FLOPs (3 x fwd when
                                                                 every weight trains; factory.count_train_flops)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from avdit_jax import factory
from avdit_jax.core import monl
from avdit_jax.core import objective as objective_lib
from avdit_jax.data import clips, datasets, streams
from avdit_jax.models import avdit
from avdit_jax.models.tokenizers import audio as audio_tok
from avdit_jax.models.tokenizers import video as video_tok

TRAINEES = ("avdit", "image_dit", "video_tokenizer", "audio_tokenizer")


@dataclasses.dataclass(frozen=True, eq=False)
class Trainee:
  name: str
  module: nn.Module
  example_shapes: dict
  init: Callable[[int], Any]
  loss: Callable[[Any, dict, jax.Array], tuple[jax.Array, dict]]
  summarize: Callable[[dict], dict]
  stream: Callable[[ml_collections.ConfigDict, dict | None], Any]
  flops_per_example: float


def for_config(config: ml_collections.ConfigDict) -> Trainee:
  name = config.get("trainee", "avdit")
  if name == "avdit":
    return _avdit(config)
  if name == "image_dit":
    return _image_dit(config)
  if name == "video_tokenizer":
    return _video_tokenizer(config)
  if name == "audio_tokenizer":
    return _audio_tokenizer(config)
  raise ValueError(f"config.trainee: unknown {name!r}; expected one of {TRAINEES}.")


def _forward_flops(module: nn.Module, init, shape) -> float:
  """XLA's FLOP count of the module's forward pass on one example (no scans inside: the count is whole)."""
  params = nn.unbox(jax.eval_shape(init, 0))
  lowered = jax.jit(lambda p, x: module.apply({"params": p}, x)).lower(
      params, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  return float(lowered.cost_analysis().get("flops", 0.0))


# ============================================================================= AVDiT on latents


def _avdit(config) -> Trainee:
  model = factory.model(config)
  objective = factory.training_objective(config)
  shapes = {"audio": tuple(config.data.audio_shape), "video": tuple(config.data.video_shape)}

  def init(seed):
    t = jnp.zeros((1, monl.NUM_MODALITIES, config.num_segments), jnp.int32)
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *shapes["audio"])), jnp.zeros((1, *shapes["video"])),
                      t)["params"]

  def loss(params, batch, rng):
    denoise = lambda a, v, t: model.apply({"params": params}, a, v, t)
    value, aux = objective_lib.loss_fn(objective, denoise, batch["audio"], batch["video"], rng)
    return value, {"strategy_sq": aux["strategy_sq"], "strategy_count": aux["strategy_count"]}

  def summarize(aux):
    return {f"loss/{name}": float(aux["strategy_sq"][i] / aux["strategy_count"][i])
            for i, name in enumerate(monl.STRATEGIES) if aux["strategy_count"][i] > 0}

  flops = factory.count_train_flops(config, model, avdit.layout_for(model, shapes["audio"], shapes["video"]), 1)
  return Trainee("avdit", model, shapes, init, loss, summarize,
                 lambda c, state: input_stream(c, objective.segments, state), flops)


def _image_dit(config) -> Trainee:
  """AV-DiT's image DiT pretrained alone on single latent frames (frame 0 of each clip of data.dir), with the
  config's diffusion process and prediction: what the AV-DiT then freezes (its stage in pipeline.py)."""
  model = factory.image_dit(config)
  process = factory.process(config)
  process.check_prediction(config.diffusion.prediction)
  scale = factory.time_scale(config)
  shape = (model.input_size, model.input_size, model.in_channels)
  if config.data.kind != "latents":
    raise ValueError(f"trainee 'image_dit': data.kind {config.data.kind!r}; expected 'latents' (frames of data.dir).")

  def init(seed):
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *shape)), jnp.zeros((1,)))["params"]

  def loss(params, batch, rng):
    x0 = batch["video"]                                                         # (B, H, W, C)
    k_t, k_eps = jax.random.split(rng)
    t = process.draw_levels(k_t, (x0.shape[0],))                                # (B,)
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    t_el = t[:, None, None, None]
    out = model.apply({"params": params}, process.add_noise(x0, eps, t_el), t.astype(jnp.float32) * scale)
    err = jnp.square(out[..., :model.in_channels] - process.target(x0, eps, t_el, config.diffusion.prediction))
    return jnp.mean(err), {}

  def forward(p, x):
    return model.apply({"params": p}, x, jnp.zeros((x.shape[0],)))

  params = nn.unbox(jax.eval_shape(init, 0))
  lowered = jax.jit(forward).lower(params, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
  flops = 3 * float(lowered.cost_analysis().get("flops", 0.0))
  return Trainee("image_dit", model, {"video": shape}, init, loss, lambda aux: {},
                 lambda c, state: streams.first_frame_stream(c, state), flops)


def input_stream(config, segments, state: dict | None = None):
  """The AVDiT's training input named by data.kind: 'gaussian' (the toy, drawn on the fly) or 'latents' (data.dir)."""
  if config.data.kind == "gaussian":
    return streams.GaussianStream(factory.gaussian_toy(config, segments), config, state)
  if config.data.kind == "latents":
    return streams.latent_stream(config, state)
  raise ValueError(f"data.kind: unknown {config.data.kind!r}; expected 'gaussian' or 'latents'.")


# ============================================================================= tokenizers on clips


def clip_spec(config) -> clips.ClipSpec:
  """The clip grid of config.data.dataset (from its builder config; nothing is built)."""
  return datasets.clip_spec(datasets.builder(config.data.dataset, data_dir=config.data.tfds_dir or None))


def video_tokenizer_model(config) -> video_tok.VideoTokenizer:
  c = config.model
  return video_tok.VideoTokenizer(latent_channels=c.latent_channels, channels=c.channels,
                                  channel_mult=tuple(c.channel_mult), temporal_down=tuple(c.temporal_down),
                                  spatial_down=None if c.spatial_down is None else tuple(c.spatial_down),
                                  patch_size=tuple(c.patch_size), num_res_blocks=c.num_res_blocks,
                                  regularizer=c.regularizer)


def audio_tokenizer_model(config) -> audio_tok.AudioTokenizer:
  c = config.model
  return audio_tok.AudioTokenizer(latent_channels=c.latent_channels, channels=c.channels,
                                  strides=tuple(c.strides), patch_size=c.patch_size, regularizer=c.regularizer)


def _tokenizer_init(module, shape):
  # rbg keys: with partitionable threefry, XLA:CPU takes ~25 s to compile one key per conv kernel.
  return lambda seed: module.init(jax.random.key(seed, impl="rbg"), jnp.zeros((1, *shape)))["params"]


def _summarize_scalars(aux):
  return {f"loss/{k}": float(v) for k, v in aux.items()}


def _video_tokenizer(config) -> Trainee:
  spec = clip_spec(config)
  module = video_tokenizer_model(config)
  if module.temporal_ratio != spec.temporal_ratio:
    raise ValueError(f"model.temporal_down gives a temporal ratio {module.temporal_ratio}, but data set "
                     f"{config.data.dataset} is cut for ratio {spec.temporal_ratio}.")
  shape = (spec.num_frames, spec.height, spec.width, 3)
  module.latent_shape(*shape[:3])                           # checks the grid

  def loss(params, batch, rng):
    return video_tok.loss(module, params, batch["video"], rng, kl_weight=config.loss.kl_weight)

  flops = 3 * _forward_flops(module, _tokenizer_init(module, shape), shape)
  return Trainee("video_tokenizer", module, {"video": shape}, _tokenizer_init(module, shape), loss,
                 _summarize_scalars, lambda c, state: streams.clip_stream(c, ("video",), state), flops)


def _audio_tokenizer(config) -> Trainee:
  spec = clip_spec(config)
  module = audio_tokenizer_model(config)
  shape = (spec.audio_samples,)
  module.latent_shape(spec.audio_samples)
  if spec.audio_samples // module.hop % spec.latent_frames:
    raise ValueError(f"model.strides (hop {module.hop}) give {spec.audio_samples // module.hop} audio latent frames, "
                     f"not a multiple of the {spec.latent_frames} latent video frames: segments would not align.")

  def loss(params, batch, rng):
    return audio_tok.loss(module, params, batch["audio"], rng, sample_rate=spec.sample_rate,
                          kl_weight=config.loss.kl_weight, stft_weight=config.loss.stft_weight,
                          l1_weight=config.loss.l1_weight)

  flops = 3 * _forward_flops(module, _tokenizer_init(module, shape), shape)
  return Trainee("audio_tokenizer", module, {"audio": shape}, _tokenizer_init(module, shape), loss,
                 _summarize_scalars, lambda c, state: streams.clip_stream(c, ("audio",), state), flops)

