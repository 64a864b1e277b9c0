"""Media files in and out: decode any audio-video file (PyAV), write mp4 (H.264 + AAC) and PNG (Pillow).

Decoding returns the file's own frames (upright, as its rotation metadata says they are shown) with their
times and its audio resampled and mixed to mono
(data/clips.py cuts them onto a clip grid). Files without an audio track, or that fail to decode, raise
MediaError naming the file.
"""

from __future__ import annotations

import dataclasses
import fractions

import av
import numpy as np
from PIL import Image



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


def upright(frame: av.VideoFrame) -> np.ndarray:
  """A decoded frame as RGB uint8 [H, W, 3], turned as the file says it is shown: phones store portrait video
  landscape with a display matrix (FFmpeg's `rotation`: degrees counter-clockwise, e.g. -90 for a quarter turn
  clockwise). Mirrored matrices are rare and not handled."""
  image = frame.to_ndarray(format="rgb24")
  turns = int(round((frame.rotation or 0) / 90.0)) % 4
  return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


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
            frames.append(upright(frame))
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


def save_png(path: str, image: np.ndarray) -> None:
  Image.fromarray(np.asarray(image, np.uint8)).save(path)
