"""Trained tokenizers as a codec: clips <-> latents, and what it takes to use them.

  load(workdir)            a tokenizer run's newest checkpoint: its config, module and (EMA) params
  Codec(video, audio)      encode uint8 frames + waveforms to latents [T', H', W', Cv] and [Ta, Ca]; decode back
  reconstruction_report    PSNR (video) or log-spectral distance (audio) against the clip-mean baseline
  tokenize_split           a data set split -> latent shards in the training format (avdit_jax/data/latents.py),
                           resumable by shard, each process writing its own shards
  write_media              latents -> mp4 (H.264 + AAC) + frame-strip PNG + spectrogram PNG
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from avdit_jax.data import clips, datasets, latents
from avdit_jax.inference import run
from avdit_jax.media import images, mediafile
from avdit_jax.models.tokenizers import audio as audio_tok
from avdit_jax.models.tokenizers import video as video_tok
from avdit_jax.train import checkpoint, sharding, trainees


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
  config: ml_collections.ConfigDict
  module: object
  params: object
  step: int


def load(workdir: str, *, use_ema: bool = True) -> Tokenizer:
  """The newest restorable checkpoint of a tokenizer run in workdir, rebuilt from the config it saved."""
  config = checkpoint.saved_config(workdir)
  if config.get("trainee") not in ("video_tokenizer", "audio_tokenizer"):
    raise ValueError(f"{workdir}: the run trained {config.get('trainee', 'avdit')!r}, not a tokenizer.")
  params, module, step = run.load_params(config, workdir, use_ema=use_ema,
                                               mesh=sharding.single_device_mesh(config))
  return Tokenizer(config, module, params, step)


class Codec:
  """A video and an audio tokenizer over one clip grid."""

  def __init__(self, video: Tokenizer, audio: Tokenizer):
    self.video, self.audio = video, audio
    self.spec = trainees.clip_spec(video.config)
    audio_spec = trainees.clip_spec(audio.config)
    if (audio_spec.sample_rate, audio_spec.audio_samples) != (self.spec.sample_rate, self.spec.audio_samples):
      raise ValueError(f"the tokenizers were trained on different clip grids: video {self.spec}, audio {audio_spec}.")
    self._encode_video = jax.jit(lambda p, x: video.module.apply({"params": p}, x, method=video.module.encode))
    self._encode_audio = jax.jit(lambda p, x: audio.module.apply({"params": p}, x, method=audio.module.encode))
    self._decode_video = jax.jit(lambda p, z: video.module.apply({"params": p}, z, method=video.module.decode))
    self._decode_audio = jax.jit(lambda p, z: audio.module.apply({"params": p}, z, method=audio.module.decode))

  @property
  def video_latent_shape(self) -> tuple:
    s = self.spec
    return self.video.module.latent_shape(s.num_frames, s.height, s.width)

  @property
  def audio_latent_shape(self) -> tuple:
    return self.audio.module.latent_shape(self.spec.audio_samples)

  def encode(self, frames: np.ndarray, waveforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [B, T, H, W, 3] and float [B, S] -> (audio latents [B, Ta, Ca], video latents [B, T', H', W', Cv])."""
    video = jnp.asarray(images.frames_to_signed(frames))
    return (np.asarray(self._encode_audio(self.audio.params, jnp.asarray(waveforms, jnp.float32))),
            np.asarray(self._encode_video(self.video.params, video)))

  def decode(self, audio_latents, video_latents) -> tuple[np.ndarray, np.ndarray]:
    """Latents -> (uint8 frames [B, T, H, W, 3], float32 waveforms [B, S] in [-1, 1])."""
    video = np.asarray(self._decode_video(self.video.params, jnp.asarray(video_latents, jnp.float32)))
    audio = np.asarray(self._decode_audio(self.audio.params, jnp.asarray(audio_latents, jnp.float32)))
    return images.signed_to_frames(video), np.clip(audio, -1.0, 1.0).astype(np.float32)


def load_pair(workdir: str) -> Codec:
  """The tokenizer pair of a main-job workdir (configs/quickstart.py): its video_tokenizer and audio_tokenizer runs."""
  return Codec(load(os.path.join(workdir, "video_tokenizer")), load(os.path.join(workdir, "audio_tokenizer")))


# ============================================================================= quality


def reconstruction_report(tok: Tokenizer, *, split: str | None = None, num_clips: int | None = None) -> dict:
  """Reconstruction quality on a held-out split, next to each clip's mean as the trivial baseline.

  Video: PSNR (dB, higher is better). Audio: log-spectral distance (dB, lower is better) at ~32 ms windows."""
  c = tok.config
  split = split or c.eval.split
  count = num_clips or c.eval.num_clips
  source, spec = datasets.data_source(c.data.dataset, split, c.data.tfds_dir or None)
  count = min(count, len(source))
  key = "video" if c.trainee == "video_tokenizer" else "audio"
  if key == "video":
    load = lambda row: images.frames_to_signed(row["video"])
    score = lambda y, x: video_tok.psnr(jnp.asarray(y), jnp.asarray(x))
  else:
    n_fft = audio_tok.fft_sizes(spec.sample_rate)[1]
    load = lambda row: np.asarray(row["audio"], np.float32)
    score = lambda y, x: audio_tok.spectral.log_spectral_distance(jnp.asarray(y), jnp.asarray(x), n_fft)
  fn = jax.jit(lambda p, x: tok.module.apply({"params": p}, x)[0])
  model_scores, base_scores = [], []
  for start in range(0, count, 8):
    x = np.stack([load(source[i]) for i in range(start, min(start + 8, count))])
    model_scores.append(np.asarray(score(fn(tok.params, jnp.asarray(x)), x)))
    base_scores.append(np.asarray(score(clip_mean_baseline(key, x), x)))
  metric = "psnr_db" if key == "video" else "log_spectral_distance_db"
  return {"trainee": c.trainee, "step": tok.step, "split": split, "clips": count, "metric": metric,
          "model": float(np.mean(np.concatenate(model_scores))),
          "clip_mean_baseline": float(np.mean(np.concatenate(base_scores)))}


def clip_mean_baseline(key: str, x: np.ndarray) -> np.ndarray:
  """The trivial reconstruction a tokenizer must beat: each clip's mean (per pixel over time for video,
  a constant for audio)."""
  if key == "video":
    return np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
  return np.broadcast_to(x.mean(axis=-1, keepdims=True), x.shape)


def write_report(tok: Tokenizer, workdir: str) -> str:
  """The reconstruction report of a loaded tokenizer run as markdown, written to WORKDIR/report.md."""
  report = report_markdown(reconstruction_report(tok))
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report)
  return report


def report_markdown(r: dict) -> str:
  better = "higher" if r["metric"] == "psnr_db" else "lower"
  return (f"# {r['trainee']}: reconstruction on {r['clips']} {r['split']} clips (step {r['step']})\n\n"
          f"| {r['metric']} ({better} is better) | value |\n|---|---|\n"
          f"| tokenizer | {r['model']:.2f} |\n| clip-mean baseline | {r['clip_mean_baseline']:.2f} |\n")


# ============================================================================= latents on disk


def tokenize_split(codec: Codec, dataset: str, split: str, data_dir: str | None, out_dir: str, *,
                   num_segments: int, num_shards: int = 4, batch_size: int = 8,
                   process_index: int = 0, process_count: int = 1) -> latents.Metadata | None:
  """Encodes every clip of a split into latent shards. Shard k holds clips k, k + num_shards, ...

  A finished shard has a '.done' marker and is skipped on rerun. Process p writes shards p, p + P, ...;
  process 0 waits for all shards, then writes metadata.json (with statistics over every latent)."""
  source, spec = datasets.data_source(dataset, split, data_dir)
  if spec != codec.spec:
    raise ValueError(f"{dataset}: its clips ({spec}) are not the grid the tokenizers were trained on ({codec.spec}).")
  os.makedirs(out_dir, exist_ok=True)
  total = len(source)
  mine = list(range(process_index, num_shards, process_count))
  started, done_clips = time.time(), 0
  todo = sum(len(range(k, total, num_shards)) for k in mine if not os.path.exists(_done(out_dir, k, num_shards)))
  for k in mine:
    if os.path.exists(_done(out_dir, k, num_shards)):
      logging.info("shard %d of %d is done; skipping it", k, num_shards)
      continue
    writer = latents.LatentWriter(out_dir, codec.audio_latent_shape, codec.video_latent_shape, num_segments,
                               shard_offset=k, total_shards=num_shards)
    indices = list(range(k, total, num_shards))
    for b in range(0, len(indices), batch_size):
      rows = [source[i] for i in indices[b:b + batch_size]]
      audio, video = codec.encode(np.stack([r["video"] for r in rows]), np.stack([r["audio"] for r in rows]))
      for r, a, v in zip(rows, audio, video):
        writer.write(r["clip_id"].decode() if isinstance(r["clip_id"], bytes) else str(r["clip_id"]), a, v)
      done_clips += len(rows)
      _progress(done_clips, todo, started)
    with open(_done(out_dir, k, num_shards) + ".tmp", "w") as f:
      json.dump(writer.close_shards(), f)
    os.replace(_done(out_dir, k, num_shards) + ".tmp", _done(out_dir, k, num_shards))
  sys.stderr.write("\n")
  if process_index != 0:
    return None
  while not all(os.path.exists(_done(out_dir, k, num_shards)) for k in range(num_shards)):
    time.sleep(1.0)                   # other processes are still writing theirs
  return _write_metadata(codec, out_dir, num_shards, num_segments, dataset, split)


def _done(out_dir: str, shard: int, num_shards: int) -> str:
  return os.path.join(out_dir, f"latents-{shard:05d}-of-{num_shards:05d}.done")


def _progress(done: int, total: int, started: float) -> None:
  rate = done / max(time.time() - started, 1e-9)
  eta = (total - done) / rate if rate > 0 else float("nan")
  sys.stderr.write(f"\rtokenize: {done}/{total} clips  {rate:.1f} clips/s  ETA {eta:.0f}s   ")
  sys.stderr.flush()


def _write_metadata(codec: Codec, out_dir: str, num_shards: int, num_segments: int, dataset: str,
                    split: str) -> latents.Metadata:
  partials = []
  for k in range(num_shards):
    with open(_done(out_dir, k, num_shards)) as f:
      partials.append(json.load(f))
  count, stats = sum(p["count"] for p in partials), latents.statistics(partials)
  shards = [f"latents-{k:05d}-of-{num_shards:05d}.array_record" for k in range(num_shards)]
  meta = latents.Metadata(codec.audio_latent_shape, codec.video_latent_shape, count, shards, num_segments, stats,
                       frame_rate=codec.spec.frame_rate, sample_rate=codec.spec.sample_rate,
                       tokenizer={"video": {"step": codec.video.step, "model": codec.video.config.model.to_dict()},
                                  "audio": {"step": codec.audio.step, "model": codec.audio.config.model.to_dict()},
                                  "clip": dataclasses.asdict(codec.spec), "dataset": dataset, "split": split})
  meta.write(out_dir)
  return meta


# ============================================================================= media out


def write_media(path_stem: str, frames: np.ndarray, waveform: np.ndarray, spec: clips.ClipSpec) -> dict:
  """One clip (uint8 [T, H, W, 3], float [S] with its lead) -> <stem>.mp4, <stem>_frames.png, <stem>_spectrogram.png.

  The mp4's audio starts with the first frame: the lead (audio before it) is left out of the file."""
  paths = {"mp4": path_stem + ".mp4", "frames": path_stem + "_frames.png",
           "spectrogram": path_stem + "_spectrogram.png"}
  mediafile.write_mp4(paths["mp4"], frames, spec.frame_rate, waveform[spec.lead_samples:], spec.sample_rate)
  mediafile.save_png(paths["frames"], images.frame_strip(frames))
  mediafile.save_png(paths["spectrogram"], images.spectrogram_image(waveform[spec.lead_samples:], spec.sample_rate))
  return paths
