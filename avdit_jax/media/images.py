"""Frames and sounds as arrays: pixel ranges, resizing, frame strips and spectrogram pictures (no file I/O)."""

from __future__ import annotations

import numpy as np
from PIL import Image


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


def comparison(rows: list[tuple[np.ndarray, np.ndarray]], sample_rate: int, scale: int = 3) -> np.ndarray:
  """Clips one above the other, each its frame strip (nearest-neighbour x `scale`, so edges stay as sharp as the
  model drew them) beside its spectrogram at the strip's height: uint8 [rows * (h + 4) - 4, w, 3], white gaps.
  rows: (uint8 frames [T, H, W, 3], waveform [S]) per clip, e.g. a real clip above the sample generated from it."""
  pictures = []
  for frames, audio in rows:
    strip = frame_strip(frames).repeat(scale, 0).repeat(scale, 1)                  # [h, ws, 3]
    spec = spectrogram_image(audio, sample_rate, height=strip.shape[0])            # [h, wa, 3]
    gap = np.full((strip.shape[0], 6, 3), 255, np.uint8)
    pictures.append(np.concatenate([strip, gap, spec], 1))
  return stacked(pictures, gap=4)


def stacked(pictures: list[np.ndarray], gap: int) -> np.ndarray:
  """uint8 pictures one above the other, left-aligned, with white gaps: [sum(h) + gap * (n - 1), max(w), 3]."""
  width = max(p.shape[1] for p in pictures)
  padded = [np.pad(p, ((0, gap), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pictures]
  return np.concatenate(padded, 0)[:-gap] if gap else np.concatenate(padded, 0)
