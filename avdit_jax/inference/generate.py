"""A finished main-job run (avdit_jax/pipeline.py) in use: media in, media out.

  Generator.load(workdir)       the run's tokenizer pair and its AVDiT (a frontend.Run)
  gen.condition_from_media      a user's media file -> conditioning latents on the run's clip grid
                                (resampled, resized and cut; errors say what the file lacks)
  gen.decode                    latents of any length -> waveforms and frames
  sample_to_files               tools/sample.py: any task, a written mask, long-form by a sliding window

The tokenizers are causal convolutional nets, so latents longer than a training clip decode in one go.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from absl import logging

from avdit_jax import factory, paths
from avdit_jax.core import monl
from avdit_jax.data import clips
from avdit_jax.inference import codec, frontend
from avdit_jax.media import mediafile
from avdit_jax.train import checkpoint


@dataclasses.dataclass(eq=False)
class Generator:
  run: frontend.Run
  pair: codec.Codec

  @classmethod
  def load(cls, workdir: str) -> "Generator":
    parts = {name: paths.join(workdir, name) for name in ("video_tokenizer", "audio_tokenizer", "avdit")}
    missing = [name for name, d in parts.items() if not paths.path(checkpoint.directory(d)).is_dir()
               and not (paths.path(d) / codec.FRAME_VAE_FILE).exists()]       # a converted SD VAE has no checkpoint
    if missing:
      raise FileNotFoundError(f"--workdir {workdir}: no checkpoints for {missing}; expected the workdir of "
                              "configs/quickstart.py (run it first).")
    config = checkpoint.saved_config(parts["avdit"])
    moved = not paths.path(config.data.dir).is_dir()      # the workdir was moved or copied since training
    run = frontend.Run.load(parts["avdit"], config=config,
                            latents_dir=paths.join(workdir, "latents", "train") if moved else None)
    return cls(run, codec.load_pair(workdir))

  @property
  def spec(self) -> clips.ClipSpec:
    return self.pair.spec

  @property
  def step(self) -> int:
    return self.run.step

  @property
  def num_segments(self) -> int:
    return self.run.num_segments

  def condition_from_media(self, path: str, *, needs_audio: bool) -> tuple:
    """(waveform, frames, audio latents, video latents) of the first clip of `path` on the run's grid
    (resampled, resized and cut by clips.cut_clips). A file shorter than one clip is an error."""
    decoded = mediafile.decode(path, self.spec.sample_rate, require_audio=needs_audio)
    if decoded.duration + 1e-6 < self.spec.video_seconds:
      raise mediafile.MediaError(f"{path}: {decoded.duration:.2f} s long; the run's clips need "
                                 f"{self.spec.video_seconds:.2f} s ({self.spec.num_frames} frames at "
                                 f"{self.spec.frame_rate:g} fps) to condition on.")
    _, frames, audio = next(clips.cut_clips(decoded, self.spec, max_clips=1))
    a, v = self.pair.encode(audio[None], frames[None])
    return audio, frames, a[0], v[0]

  def decode(self, audio_latents, video_latents) -> tuple[np.ndarray, np.ndarray]:
    return self.pair.decode(audio_latents, video_latents)

  def spec_for(self, video_latent_frames: int) -> clips.ClipSpec:
    """The clip grid of a decoded latent sequence of this many video frames (long-form output)."""
    r = self.spec.temporal_ratio
    return dataclasses.replace(self.spec, num_frames=1 + r * (video_latent_frames - 1))

  def seconds_per_added_segment(self) -> float:
    """What one more segment of a sliding window adds: the last segment's latent video frames, r frames each."""
    seg = self.run.segments
    return float(np.sum(seg.video == seg.num_segments - 1)) * self.spec.temporal_ratio / self.spec.frame_rate


def sample_to_files(workdir: str | Generator, task: str, out: str, *, input_path: str | None = None,
                    seconds: float = 0.0, num_samples: int = 1, seed: int = 0, **sampler_overrides) -> list[dict]:
  """tools/sample.py: `task` (a name or a written mask) from the run in workdir (or a loaded Generator), written
  as media under `out`; `seconds` beyond one clip continues by a sliding window, to exactly that length.
  Returns the paths of each sample's files."""
  gen = workdir if isinstance(workdir, Generator) else Generator.load(workdir)
  mask = factory.task(task, gen.num_segments)
  seg = gen.run.segments
  frames = audio = None
  if mask.any():
    if not input_path:
      raise ValueError(f"task {task!r} conditions on given portions: it needs an input media file.")
    audio, frames, a, v = gen.condition_from_media(input_path, needs_audio=bool(mask[monl.AUDIO].any()))
    a, v = np.repeat(a[None], num_samples, 0), np.repeat(v[None], num_samples, 0)
  else:
    a = np.zeros((num_samples, len(seg.audio), gen.pair.audio_latent_shape[1]), np.float32)
    v = np.zeros((num_samples, len(seg.video), *gen.pair.video_latent_shape[1:]), np.float32)
  rng = jax.random.PRNGKey(seed)
  gen_a, gen_v = gen.run.sample(mask, a, v, rng, **sampler_overrides)
  extra = seconds - gen.spec.video_seconds
  more = int(np.ceil(extra / gen.seconds_per_added_segment() - 1e-6)) if extra > 1e-6 else 0
  if more:
    logging.info("long-form: %d more segments of %.3f s each", more, gen.seconds_per_added_segment())
    gen_a, gen_v = gen.run.extend(gen_a, gen_v, more, jax.random.fold_in(rng, 1), **sampler_overrides)
  out_audio, out_frames = gen.decode(gen_a, gen_v)
  spec = gen.spec_for(gen_v.shape[1])
  if more:                       # cut to exactly the length asked for (the lead is the same at any length)
    out_frames = out_frames[:, :int(round(seconds * spec.frame_rate))]
    out_audio = out_audio[:, :spec.lead_samples + int(round(seconds * spec.sample_rate))]
  written = []
  for k in range(num_samples):                  # out may be remote (clips.write_clip stages the files)
    files = {"sample": clips.write_clip(paths.join(out, f"{k}_sample"), out_frames[k], out_audio[k], spec)}
    if frames is not None:
      files["input"] = clips.write_clip(paths.join(out, f"{k}_input"), frames, audio, gen.spec)
      side = np.concatenate([_hold_last(frames, len(out_frames[k])), out_frames[k]], axis=2)
      files["side_by_side"] = clips.write_clip(paths.join(out, f"{k}_side_by_side"), side, out_audio[k], spec)
    written.append(files)
  return written


def _hold_last(frames: np.ndarray, length: int) -> np.ndarray:
  """The input's frames, then its last frame held, to the sample's length."""
  if len(frames) >= length:
    return frames[:length]
  return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), 0)])
