"""The time grid of an audio-video clip, shared by the data sets, the tokenizers and the latents.

The video tokenizer is causal: latent frame 0 codes frame 0 alone, latent frame k >= 1 codes frames
(k-1)r+1 .. kr (r = temporal ratio, e.g. 17 frames -> 5 latents at r = 4). Frame f spans
[f, f+1) / fps, so latent k >= 1 spans [(k-1)r+1, kr+1) / fps and latent 0 only [0, 1) / fps.

The audio of a clip therefore starts (r-1)/fps seconds before the first frame (the "lead"; silence when
the source has nothing there): then every latent video frame spans exactly r/fps seconds of audio, and
cutting both latent sequences into N equal segments puts the same seconds in segment n of either
modality. For 17 frames at 8 fps: audio 2.5 s, five segments of 0.5 s.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from avdit_jax import paths
from avdit_jax.media import images, mediafile


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  num_frames: int = 17
  frame_rate: float = 8.0
  height: int = 128
  width: int = 128
  sample_rate: int = 16000
  temporal_ratio: int = 4         # the video tokenizer's temporal downsampling

  def __post_init__(self):
    if self.num_frames < 1 or (self.num_frames - 1) % self.temporal_ratio:
      raise ValueError(f"clip: num_frames {self.num_frames} must be 1 + a multiple of the temporal ratio "
                       f"{self.temporal_ratio} (e.g. 17 at ratio 4), so the causal video tokenizer can code it.")
    if self.frame_rate <= 0 or self.sample_rate <= 0:
      raise ValueError(f"clip: frame_rate {self.frame_rate} and sample_rate {self.sample_rate} must be positive.")
    per_latent = self.sample_rate * self.temporal_ratio / self.frame_rate
    if abs(per_latent - round(per_latent)) > 1e-9:
      raise ValueError(f"clip: sample_rate * temporal_ratio / frame_rate = {per_latent} audio samples per latent "
                       "video frame must be an integer.")

  @property
  def latent_frames(self) -> int:
    return 1 + (self.num_frames - 1) // self.temporal_ratio

  @property
  def samples_per_latent_frame(self) -> int:
    return round(self.sample_rate * self.temporal_ratio / self.frame_rate)

  @property
  def audio_samples(self) -> int:
    return self.latent_frames * self.samples_per_latent_frame

  @property
  def audio_lead(self) -> float:
    """Seconds of audio before the first frame."""
    return (self.temporal_ratio - 1) / self.frame_rate

  @property
  def lead_samples(self) -> int:
    return self.audio_samples - round(self.num_frames / self.frame_rate * self.sample_rate)

  @property
  def video_seconds(self) -> float:
    return self.num_frames / self.frame_rate

  @classmethod
  def from_config(cls, c) -> "ClipSpec":
    """From a config section with these field names (e.g. config.clip)."""
    return cls(**{f.name: (tuple(c[f.name]) if isinstance(c[f.name], list) else c[f.name])
                  for f in dataclasses.fields(cls) if f.name in c})


def cut_clips(decoded: mediafile.Decoded, spec: ClipSpec, max_clips: int | None = None):
  """Consecutive clips on spec's grid: yields (start seconds, uint8 [T, H, W, 3], float32 [S]).

  Frame f of a clip starting at s is the file's last frame shown at s + f / fps; the audio spans
  [s - lead, s + T / fps), zero where the file has none (before its start)."""
  count = int(np.floor(decoded.duration / spec.video_seconds + 1e-6))
  if max_clips is not None:
    count = min(count, max_clips)
  for k in range(count):
    start = k * spec.video_seconds
    want = start + np.arange(spec.num_frames) / spec.frame_rate
    idx = np.clip(np.searchsorted(decoded.frame_times, want + 1e-6, side="right") - 1, 0, len(decoded.frames) - 1)
    video = np.stack([images.resize_frame(decoded.frames[i], spec.height, spec.width) for i in idx])
    first = round(start * spec.sample_rate) - spec.lead_samples
    audio = np.zeros(spec.audio_samples, np.float32)
    lo, hi = max(first, 0), min(first + spec.audio_samples, len(decoded.audio))
    audio[lo - first:hi - first] = decoded.audio[lo:hi]
    yield start, video, audio


def write_clip(path_stem: str, frames: np.ndarray, waveform: np.ndarray, spec: ClipSpec) -> dict:
  """One clip (uint8 [T, H, W, 3], float [S] with its lead) -> <stem>.mp4, <stem>_frames.png, <stem>_spectrogram.png.

  The mp4's audio starts with the first frame: the lead (audio before it) is left out of the file."""
  suffixes = {"mp4": ".mp4", "frames": "_frames.png", "spectrogram": "_spectrogram.png"}
  stem = paths.path(path_stem)
  audio = waveform[spec.lead_samples:]
  with paths.staged_dir(stem.parent) as local:     # PyAV writes local files; a remote stem gets them uploaded
    at = {k: os.path.join(local, stem.name + s) for k, s in suffixes.items()}
    mediafile.write_mp4(at["mp4"], frames, spec.frame_rate, audio, spec.sample_rate)
    mediafile.save_png(at["frames"], images.frame_strip(frames))
    mediafile.save_png(at["spectrogram"], images.spectrogram_image(audio, spec.sample_rate))
  return {k: os.fspath(path_stem) + s for k, s in suffixes.items()}


def write_comparison(path: str, rows: list[tuple[np.ndarray, np.ndarray]], spec: ClipSpec) -> None:
  """Clips (uint8 frames, waveform with its lead) one above the other in one PNG (media/images.comparison)."""
  picture = images.comparison([(f, w[spec.lead_samples:]) for f, w in rows], spec.sample_rate)
  target = paths.path(path)
  with paths.staged_dir(target.parent) as local:
    mediafile.save_png(os.path.join(local, target.name), picture)
