"""Sampling from a finished quickstart-style run (avdit_jax/pipeline.py): media in, media out.

  Run.load(workdir)        the run's tokenizers, AVDiT (newest checkpoint) and latent statistics
  run.condition_from_mp4   a user's media file -> the conditioning latents on the run's clip grid
                           (resampled, resized and cut; errors say what the file lacks)
  run.sample               any task mask on a batch of conditioning latents
  run.extend               long-form generation: slide a window one segment at a time, the last
                           N - 1 segments given, until the requested length
  run.decode               latents (of any length) -> uint8 frames and waveforms

The tokenizers are causal convolutional nets, so latents longer than a training clip decode in one go.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from avdit_jax import factory
from avdit_jax.core import monl, sampling
from avdit_jax.data import clips, latents
from avdit_jax.evals import clip_tasks
from avdit_jax.inference import codec, run
from avdit_jax.media import mediafile
from avdit_jax.train import checkpoint


@dataclasses.dataclass(eq=False)
class Run:
  config: ml_collections.ConfigDict          # the AVDiT run's config
  pair: codec.Codec
  norm: latents.Normalizer
  params: object
  model: object
  step: int
  _samplers: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def load(cls, workdir: str, *, use_ema: bool | None = None) -> "Run":
    parts = {name: os.path.join(workdir, name) for name in ("video_tokenizer", "audio_tokenizer", "avdit")}
    missing = [name for name, d in parts.items() if not os.path.isdir(os.path.join(d, "checkpoints"))]
    if missing:
      raise FileNotFoundError(f"--workdir {workdir}: no checkpoints for {missing}; expected the workdir of "
                              "configs/quickstart.py (run it first).")
    config = checkpoint.saved_config(parts["avdit"])
    pair = codec.load_pair(workdir)
    meta = latents.Metadata.read(config.data.dir if os.path.isdir(config.data.dir)
                              else os.path.join(workdir, "latents", "train"))
    ema = config.eval.use_ema if use_ema is None else use_ema
    params, model, step = run.load_params(config, parts["avdit"], use_ema=ema)
    return cls(config, pair, latents.Normalizer(meta), params, model, step)

  @property
  def spec(self) -> clips.ClipSpec:
    return self.pair.spec

  @property
  def num_segments(self) -> int:
    return self.config.num_segments

  def condition_from_mp4(self, path: str, *, needs_audio: bool) -> tuple:
    """(frames, waveform, audio latents, video latents) of the first clip of `path` on the run's grid
    (resampled, resized and cut by clips.cut_clips). A file shorter than one clip is an error."""
    decoded = mediafile.decode(path, self.spec.sample_rate, require_audio=needs_audio)
    if decoded.duration + 1e-6 < self.spec.video_seconds:
      raise mediafile.MediaError(f"{path}: {decoded.duration:.2f} s long; the run's clips need "
                             f"{self.spec.video_seconds:.2f} s ({self.spec.num_frames} frames at "
                             f"{self.spec.frame_rate:g} fps) to condition on.")
    _, frames, audio = next(clips.cut_clips(decoded, self.spec, max_clips=1))
    a, v = self.pair.encode(frames[None], audio[None])
    return frames, audio, a[0], v[0]

  def sample(self, mask: np.ndarray, audio_latents: np.ndarray, video_latents: np.ndarray, rng: jax.Array, *,
             num_steps: int | None = None, guidance: float | None = None, sampler: str | None = None):
    """Latents (un-normalised) of one sample per row of the given latents [B, ...]."""
    overrides = {k: v for k, v in (("num_steps", num_steps), ("guidance", guidance), ("sampler", sampler))
                 if v is not None}
    key = (tuple(sorted(overrides.items())), bool(np.asarray(mask).any()))
    if key not in self._samplers:                    # one compiled sampler per setting, reused across tasks
      cfg = factory.sampler(self.config, **overrides)
      cfg = cfg if key[1] else clip_tasks.unconditional(cfg)
      self._samplers[key] = cfg, sampling.make_sampler(
          lambda a, v, t: self.model.apply({"params": self.params}, a, v, t), cfg)
    cfg, run = self._samplers[key]
    a, v = self.norm.to_model(np.asarray(audio_latents, np.float32), np.asarray(video_latents, np.float32))
    cond = sampling.make_condition(cfg, monl.validate_mask(mask, self.num_segments), jnp.asarray(a), jnp.asarray(v))
    gen_a, gen_v = run(cond, rng)
    return self.norm.from_model(gen_a, gen_v)

  def extend(self, audio_latents, video_latents, num_segments_more: int, rng: jax.Array, **kw):
    """Appends num_segments_more segments to clips [B, ...] by sliding the window one segment at a time:
    the window's first N - 1 segments are given (the newest latents), the last is generated."""
    seg = factory.frame_segments(self.config)
    a_len = int(np.sum(seg.audio == seg.num_segments - 1))    # latent frames of the last segment
    v_len = int(np.sum(seg.video == seg.num_segments - 1))
    n = self.num_segments
    mask = monl.av_continue(n, n - 1)
    audio, video = np.asarray(audio_latents), np.asarray(video_latents)
    ta, tv = seg.audio.shape[0], seg.video.shape[0]
    for i in range(num_segments_more):
      window_a = np.concatenate([audio[:, -(ta - a_len):], np.zeros_like(audio[:, :a_len])], axis=1)
      window_v = np.concatenate([video[:, -(tv - v_len):], np.zeros_like(video[:, :v_len])], axis=1)
      gen_a, gen_v = self.sample(mask, window_a, window_v, jax.random.fold_in(rng, i), **kw)
      audio = np.concatenate([audio, gen_a[:, -a_len:]], axis=1)
      video = np.concatenate([video, gen_v[:, -v_len:]], axis=1)
    return audio, video

  def decode(self, audio_latents, video_latents) -> tuple[np.ndarray, np.ndarray]:
    return self.pair.decode(audio_latents, video_latents)

  def spec_for(self, video_latent_frames: int) -> clips.ClipSpec:
    """The clip grid of a decoded latent sequence of this many video frames (long-form output)."""
    r = self.spec.temporal_ratio
    return dataclasses.replace(self.spec, num_frames=1 + r * (video_latent_frames - 1))


def sample_to_files(workdir: str | Run, task: str, out: str, *, input_path: str | None = None, seconds: float = 0.0,
                    num_samples: int = 1, seed: int = 0, **sampler_overrides) -> list[dict]:
  """tools/sample.py: `task` (a name or a written mask) from the run in workdir (or a loaded Run), written
  as media under `out`; returns the paths of each sample's files."""
  run = workdir if isinstance(workdir, Run) else Run.load(workdir)
  mask = factory.task(task, run.num_segments)
  seg = factory.frame_segments(run.config)
  frames = audio = None
  if mask.any():
    if not input_path:
      raise ValueError(f"task {task!r} conditions on given portions: it needs an input media file.")
    frames, audio, a, v = run.condition_from_mp4(input_path, needs_audio=bool(mask[monl.AUDIO].any()))
    a, v = np.repeat(a[None], num_samples, 0), np.repeat(v[None], num_samples, 0)
  else:
    a = np.zeros((num_samples, len(seg.audio), run.pair.audio_latent_shape[1]), np.float32)
    v = np.zeros((num_samples, len(seg.video), *run.pair.video_latent_shape[1:]), np.float32)
  rng = jax.random.PRNGKey(seed)
  gen_a, gen_v = run.sample(mask, a, v, rng, **sampler_overrides)
  per_segment = run.spec.video_seconds / run.num_segments
  extra = seconds - run.spec.video_seconds
  more = int(np.ceil(extra / per_segment - 1e-6)) if extra > 0 else 0
  if more:
    logging.info("long-form: %d more segments of %.3f s each", more, per_segment)
    gen_a, gen_v = run.extend(gen_a, gen_v, more, jax.random.fold_in(rng, 1), **sampler_overrides)
  out_frames, out_audio = run.decode(gen_a, gen_v)
  spec = run.spec_for(gen_v.shape[1])
  os.makedirs(out, exist_ok=True)
  written = []
  for k in range(num_samples):
    paths = {"sample": codec.write_media(os.path.join(out, f"{k}_sample"), out_frames[k], out_audio[k], spec)}
    if frames is not None:
      paths["input"] = codec.write_media(os.path.join(out, f"{k}_input"), frames, audio, run.spec)
      side = np.concatenate([_hold_last(frames, len(out_frames[k])), out_frames[k]], axis=2)
      paths["side_by_side"] = codec.write_media(os.path.join(out, f"{k}_side_by_side"), side, out_audio[k], spec)
    written.append(paths)
  return written


def _hold_last(frames: np.ndarray, length: int) -> np.ndarray:
  """The input's frames, then its last frame held, to the sample's length."""
  if len(frames) >= length:
    return frames[:length]
  return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), 0)])
