"""Media files: mp4 with audio in and out (PyAV), clips on a ClipSpec's grid, and quick-look PNGs (Pillow).

Reading decodes a whole file, converts it to the clip grid (frames sampled at the spec's frame rate,
centre-cropped to its aspect and resized; audio resampled and mixed to mono), and cuts consecutive
clips. Files without an audio track, or that fail to decode, raise MediaError naming the file.
"""

from __future__ import annotations

import dataclasses
import fractions

import av
import numpy as np
from PIL import Image

from avdit_jax import clips


class MediaError(ValueError):
  """A media file that cannot be used; the message names the file and why."""


@dataclasses.dataclass
class Decoded:
  frames: np.ndarray              # uint8 [F, H, W, 3], the file's own frames
  frame_times: np.ndarray         # float64 [F], seconds from the start of the file
  audio: np.ndarray               # float32 [S], mono at `sample_rate`
  sample_rate: int

  @property
  def duration(self) -> float:
    last = self.frame_times[-1] + (np.median(np.diff(self.frame_times)) if len(self.frame_times) > 1 else 0.0)
    return float(min(last, len(self.audio) / self.sample_rate))


def decode(path: str, sample_rate: int, *, require_audio: bool = True) -> Decoded:
  """All frames (RGB) and the audio (mono float32, resampled to sample_rate) of a media file. Without
  `require_audio`, a file with no audio track decodes to silence of the video's length."""
  try:
    with av.open(path) as container:
      if not container.streams.video:
        raise MediaError(f"{path}: no video track.")
      if not container.streams.audio and require_audio:
        raise MediaError(f"{path}: no audio track.")
      vstream = container.streams.video[0]
      astream = container.streams.audio[0] if container.streams.audio else None
      resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
      frames, times, audio = [], [], []
      for packet in container.demux(*[s for s in (vstream, astream) if s is not None]):
        for frame in packet.decode():
          if isinstance(frame, av.VideoFrame):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * frame.time_base) if frame.pts is not None else len(times) / float(
                vstream.average_rate or 1))
          else:
            audio.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(frame))
      if astream is not None:
        audio.extend(r.to_ndarray().reshape(-1) for r in resampler.resample(None))
  except MediaError:
    raise
  except (av.FFmpegError, OSError, ValueError) as e:
    raise MediaError(f"{path}: cannot be decoded ({type(e).__name__}: {e}).") from e
  if not frames:
    raise MediaError(f"{path}: no decodable video frames.")
  times = np.asarray(times) - times[0]
  if astream is None:
    step = np.median(np.diff(times)) if len(times) > 1 else 0.0
    audio = [np.zeros(int(round((times.max() + step) * sample_rate)), np.float32)]
  elif not audio or sum(len(a) for a in audio) == 0:
    raise MediaError(f"{path}: the audio track has no samples.")
  order = np.argsort(times, kind="stable")
  return Decoded(np.stack(frames)[order], times[order], np.concatenate(audio).astype(np.float32), sample_rate)


def frames_to_signed(frames: np.ndarray) -> np.ndarray:
  """uint8 frames -> float32 in [-1, 1], what the video tokenizer reads."""
  return np.asarray(frames).astype(np.float32) / 127.5 - 1.0


def signed_to_frames(x: np.ndarray) -> np.ndarray:
  """float frames in [-1, 1] -> uint8 (rounded, clipped): the inverse of frames_to_signed."""
  return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
  """Centre crop to height:width, then resize (bilinear, antialiased): uint8 [height, width, 3]."""
  h, w = frame.shape[:2]
  if h * width > w * height:        # too tall: crop rows
    ch = round(w * height / width)
    frame = frame[(h - ch) // 2:(h - ch) // 2 + ch]
  elif h * width < w * height:      # too wide: crop columns
    cw = round(h * width / height)
    frame = frame[:, (w - cw) // 2:(w - cw) // 2 + cw]
  if frame.shape[:2] == (height, width):
    return np.ascontiguousarray(frame)
  return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None))


def cut_clips(decoded: Decoded, spec: clips.ClipSpec, max_clips: int | None = None):
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
    video = np.stack([resize_frame(decoded.frames[i], spec.height, spec.width) for i in idx])
    first = round(start * spec.sample_rate) - spec.lead_samples
    audio = np.zeros(spec.audio_samples, np.float32)
    lo, hi = max(first, 0), min(first + spec.audio_samples, len(decoded.audio))
    audio[lo - first:hi - first] = decoded.audio[lo:hi]
    yield start, video, audio


def write_mp4(path: str, frames: np.ndarray, frame_rate: float, audio: np.ndarray | None = None,
              sample_rate: int = 16000, *, crf: int = 18) -> None:
  """uint8 frames [T, H, W, 3] (H, W even) as H.264 and, if given, mono float audio [S] in [-1, 1] as AAC."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}.")
  if frames.shape[1] % 2 or frames.shape[2] % 2:
    raise ValueError(f"{path}: H.264 (yuv420p) needs an even height and width, got {frames.shape[1:3]}.")
  rate = fractions.Fraction(frame_rate).limit_denominator(1001)
  with av.open(path, mode="w") as container:
    vstream = container.add_stream("libx264", rate=rate)
    vstream.height, vstream.width = frames.shape[1:3]
    vstream.pix_fmt = "yuv420p"
    vstream.options = {"crf": str(crf)}
    astream = None
    if audio is not None:
      astream = container.add_stream("aac", rate=sample_rate, layout="mono")
    for frame in frames:
      for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in vstream.encode():
      container.mux(packet)
    if astream is not None:
      samples = np.clip(np.asarray(audio, np.float32).reshape(1, -1), -1.0, 1.0)
      chunk = 1024
      for i in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + chunk]), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts = sample_rate, i
        for packet in astream.encode(frame):
          container.mux(packet)
      for packet in astream.encode():
        container.mux(packet)


def stream_durations(path: str) -> dict:
  """Seconds of each stream of a media file, measured by decoding it: {'video': s, 'audio': s, 'frames': n}."""
  out = {"video": 0.0, "audio": 0.0, "frames": 0}
  with av.open(path) as container:
    if container.streams.video:
      vs = container.streams.video[0]
      n = sum(1 for _ in container.decode(vs))
      out["frames"], out["video"] = n, n / float(vs.average_rate)
  with av.open(path) as container:
    if container.streams.audio:
      samples = sum(f.samples for f in container.decode(container.streams.audio[0]))
      out["audio"] = samples / container.streams.audio[0].rate
  return out


# ============================================================================= quick-look images


def frame_strip(frames: np.ndarray, max_frames: int = 9) -> np.ndarray:
  """Evenly spaced frames side by side, with a 2-pixel gap: uint8 [H, k*(W+2)-2, 3]."""
  idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
  h, w = frames.shape[1:3]
  strip = np.full((h, len(idx) * (w + 2) - 2, 3), 255, np.uint8)
  for j, i in enumerate(idx):
    strip[:, j * (w + 2):j * (w + 2) + w] = frames[i]
  return strip


def log_spectrogram(audio: np.ndarray, sample_rate: int, window_seconds: float = 0.032) -> np.ndarray:
  """dB magnitude of a Hann-windowed STFT at 50% overlap: float32 [freq, time], low frequency first."""
  n = max(16, int(2 ** np.round(np.log2(window_seconds * sample_rate))))
  hop = n // 2
  audio = np.pad(np.asarray(audio, np.float32), (0, max(0, n - len(audio))))
  count = 1 + (len(audio) - n) // hop
  frames = np.stack([audio[i * hop:i * hop + n] for i in range(count)]) * np.hanning(n)
  return (20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)).T + 1e-5)).astype(np.float32)


def spectrogram_image(audio: np.ndarray, sample_rate: int, height: int = 128, floor_db: float = -80.0) -> np.ndarray:
  """A spectrogram as uint8 RGB [height, time, 3], high frequencies at the top, dark = quiet."""
  spec = log_spectrogram(audio, sample_rate)
  level = np.clip((spec - spec.max() - floor_db) / -floor_db, 0.0, 1.0)[::-1]
  rgb = np.stack([level ** 0.7, level ** 1.5, 0.35 * np.sqrt(level) + 0.4 * level ** 3], -1)  # dark blue -> amber
  img = Image.fromarray((rgb * 255).astype(np.uint8))
  return np.asarray(img.resize((max(img.width, 64) * 2, height), Image.Resampling.BILINEAR))


def save_png(path: str, image: np.ndarray) -> None:
  Image.fromarray(np.asarray(image, np.uint8)).save(path)
