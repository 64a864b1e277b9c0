"""A trained AVDiT in use: the one front end through which everything samples.

  Run.load(workdir)               the newest checkpoint that restores, onto any mesh (default: the run's own
                                  config.mesh), with the saved config and the latents' normalisation
  Run.for_params(config, model, params)    live params (an evaluator during training, an untrained baseline)
  Run.for_denoiser(config, denoise)        any denoise(audio, video, t): e.g. the Gaussian toy's exact denoiser
  run.with_params(params)                  the same run (and compiled samplers) with other params
  run.sample(mask, audio, video, rng)      any task mask on latents in the data's units
  run.extend(audio, video, k, rng)         long-form: k more segments by a sliding window
  write_task_samples(run, workdir)         --mode=sample

The front end owns the rules that every caller used to repeat: normalisation (the model sees the latent
directory's normalised units, callers the data's), guidance for a task with nothing given (joint generation
has no given portion to drop, so MoNL's guidance is off there and cross-modal guidance at
sampling.joint_guidance guides it instead), which params sampling uses (sampling.use_ema), and a
cache of compiled samplers per setting (the mask and the params are arguments, so every task shares one
program, and new params of the same shape retrace nothing). Params stay where they are: a sharded tree
(FSDP, tensor parallel, over any number of processes) is used in place; the conditioning and the rng are
replicated onto its mesh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from avdit_jax import factory, paths
from avdit_jax.core import monl, sampling
from avdit_jax.data import latents
from avdit_jax.models import avdit
from avdit_jax.train import checkpoint, sharding, trainer


def use_ema(config: ml_collections.ConfigDict) -> bool:
  """Whether sampling uses the EMA params: sampling.use_ema (configs saved before it existed: eval.use_ema)."""
  if "use_ema" in config.sampling:
    return bool(config.sampling.use_ema)
  return bool(config.get("eval", {}).get("use_ema", True))


def normalizer_for(config: ml_collections.ConfigDict, latents_dir: str | None = None) -> latents.Normalizer | None:
  """The normalisation the AVDiT trained with: the latent directory's statistics (data.kind 'latents' with
  data.normalize), else None (the Gaussian toy's latents are the model's units)."""
  if config.data.kind != "latents" or not config.data.get("normalize", True):
    return None
  return latents.Normalizer(latents.Metadata.read(latents_dir or config.data.dir))


@dataclasses.dataclass(eq=False)
class Run:
  config: ml_collections.ConfigDict               # the AVDiT run's config
  network: sampling.Network                       # network(params, audio, video, t) in the model's units
  params: Any = None                              # the network's params, on any mesh (None: it needs none)
  normalizer: latents.Normalizer | None = None    # None: the data's units are the model's
  step: int = 0
  _samplers: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def for_params(cls, config, model, params, *, normalizer=None, step: int = 0) -> "Run":
    return cls(config, avdit.network(model), params, normalizer, step)

  @classmethod
  def for_denoiser(cls, config, denoise: Callable, normalizer=None) -> "Run":
    return cls(config, sampling.without_params(denoise), None, normalizer)

  def with_params(self, params, *, step: int = 0) -> "Run":
    """This run with other params of the same shapes: it shares the compiled samplers (nothing retraces)."""
    return dataclasses.replace(self, params=params, step=step)

  @classmethod
  def load(cls, workdir: str, *, config: ml_collections.ConfigDict | None = None, mesh=None,
           latents_dir: str | None = None) -> "Run":
    """The AVDiT run in workdir (its saved config unless `config` is given). `latents_dir` is where its latent
    directory is now, if it moved (default: the config's data.dir)."""
    config = checkpoint.saved_config(workdir) if config is None else config
    if config.get("trainee", "avdit") != "avdit":
      raise ValueError(f"--workdir {workdir}: the run trained {config.trainee!r}, not an AVDiT.")
    params, model, step = trainer.restore_params(config, workdir, use_ema=use_ema(config), mesh=mesh)
    return cls.for_params(config, model, params, normalizer=normalizer_for(config, latents_dir), step=step)

  @property
  def num_segments(self) -> int:
    return self.config.num_segments

  @property
  def segments(self) -> monl.FrameSegments:
    return factory.frame_segments(self.config)

  def sampler(self, guided: bool, **overrides) -> tuple[sampling.SamplerConfig, Callable]:
    """(config, compiled run(cond, rng)) for config.sampling with overrides. guided False (nothing is given):
    no MoNL guidance, and cross-modal guidance at sampling.joint_guidance (an override may set either)."""
    key = (tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in overrides.items())), guided)
    if key not in self._samplers:
      joint_weight = overrides.pop("joint_guidance", self.config.sampling.get("joint_guidance", 0.0))
      cfg = factory.sampler(self.config, **overrides)
      if not guided:
        cfg = dataclasses.replace(cfg, guidance=0.0, cross_guidance=overrides.get("cross_guidance", joint_weight))
      self._samplers[key] = cfg, sampling.make_sampler(self.network, cfg)
    return self._samplers[key]

  def sample(self, mask, audio, video, rng: jax.Array, *, drop=None, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """One sample per row of the given latents [B, ...] (data units; values outside the given portions are
    ignored) for the task `mask` (bool [M, N]); `drop` picks the given portions that guidance drops (default:
    all of them); overrides replace config.sampling fields (num_steps, guidance, sampler, ...)."""
    mask = monl.validate_mask(mask, self.num_segments)
    cfg, run = self.sampler(bool(mask.any()), **overrides)
    a, v = self.to_model(audio, video)
    cond = sampling.make_condition(cfg, mask, np.asarray(a, np.float32), np.asarray(v, np.float32), drop)
    cond, rng = sharding.replicate_like(self.params, (cond, rng))
    gen_a, gen_v = sharding.to_host(run(self.params, cond, rng))
    return self.from_model(gen_a, gen_v)

  def to_model(self, audio, video):
    return (audio, video) if self.normalizer is None else self.normalizer.to_model(audio, video)

  def from_model(self, audio, video):
    audio, video = np.asarray(audio), np.asarray(video)
    return (audio, video) if self.normalizer is None else self.normalizer.from_model(audio, video)

  def extend(self, audio, video, num_segments_more: int, rng: jax.Array, **overrides):
    """Appends num_segments_more segments to clips [B, T, ...] (data units) by sliding the window one segment
    at a time: the window's first N - 1 segments are the newest latents, given; its last is generated."""
    seg = self.segments
    n = self.num_segments
    a_len = int(np.sum(seg.audio == n - 1))            # latent frames of the last segment
    v_len = int(np.sum(seg.video == n - 1))
    ta, tv = len(seg.audio), len(seg.video)
    mask = monl.av_continue(n, n - 1)
    audio, video = np.asarray(audio), np.asarray(video)
    for i in range(num_segments_more):
      window_a = np.concatenate([audio[:, audio.shape[1] - (ta - a_len):], np.zeros_like(audio[:, :a_len])], axis=1)
      window_v = np.concatenate([video[:, video.shape[1] - (tv - v_len):], np.zeros_like(video[:, :v_len])], axis=1)
      gen_a, gen_v = self.sample(mask, window_a, window_v, jax.random.fold_in(rng, i), **overrides)
      audio = np.concatenate([audio, gen_a[:, -a_len:]], axis=1)
      video = np.concatenate([video, gen_v[:, -v_len:]], axis=1)
    return audio, video


def conditioning_clips(config: ml_collections.ConfigDict, count: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` clips to condition on, in the data's units: the latent directory's first clips, or held-out draws
  of the Gaussian toy (seed 10_000, apart from training's stream)."""
  if config.data.kind == "latents":
    rows = latents.read_clips(config.data.dir, latents.Metadata.read(config.data.dir), count)
    return np.stack([r["audio"] for r in rows]), np.stack([r["video"] for r in rows])
  if config.data.kind == "gaussian":
    audio, video = factory.gaussian_toy(config).sample(jax.random.PRNGKey(10_000), count)
    return np.asarray(audio), np.asarray(video)
  raise ValueError(f"data.kind: unknown {config.data.kind!r}; expected 'gaussian' or 'latents'.")


def write_task_samples(run: Run, workdir: str, tasks, *, num_samples: int = 4, seed: int = 0) -> dict:
  """--mode=sample: every task on clips of the run's data, written as WORKDIR/samples/<task>.npz (generated
  latents, the clean latents they were conditioned on, the mask; data units; workdir may be remote).
  Returns {task: path}."""
  audio, video = conditioning_clips(run.config, num_samples)
  out_dir = paths.path(workdir) / "samples"
  written = {}
  for i, spec in enumerate(tasks):
    mask = factory.task(spec, run.num_segments)
    gen_audio, gen_video = run.sample(mask, audio, video, jax.random.PRNGKey(seed + i))
    written[spec] = paths.join(out_dir, spec.replace(":", "_") + ".npz")
    if jax.process_index() == 0:
      out_dir.mkdir(parents=True, exist_ok=True)
      with paths.path(written[spec]).open("wb") as f:
        np.savez(f, audio=gen_audio, video=gen_video, given_audio=audio, given_video=video, mask=mask)
    logging.info("task %s: %d samples -> %s", spec, len(gen_audio), written[spec])
  return written
