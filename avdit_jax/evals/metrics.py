"""Distribution distances between feature sets: the math under FVD, FAD and KVD.

  frechet_distance(a, b)   ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to
                           features [n, d] (FVD with video features, FAD with audio features)
  kernel_distance(a, b)    unbiased MMD^2 with the polynomial kernel (x.y / d + 1)^3 (KVD / KID), the mean
                           over random subsets as in the KID paper
  av_align(frames, audio)  AV-Align (Yariv et al. 2024): audio onsets vs peaks of optical-flow magnitude,
                           an onset matching a peak within one frame; intersection over union in [0, 1]

The feature extractors plug in as functions features[n, d] = extract(clips): evals/features.py has I3D for
video and a VGGish-style net for audio.
"""

from __future__ import annotations

import cv2
import numpy as np


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"features must be [n >= 2, d], got {x.shape}.")
  return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets [n, d] (same d)."""
  mu_a, s_a = _moments(a)
  mu_b, s_b = _moments(b)
  if mu_a.shape != mu_b.shape:
    raise ValueError(f"feature sizes differ: {mu_a.shape[0]} vs {mu_b.shape[0]}.")
  # tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix,
  # so a symmetric eigendecomposition suffices (no complex sqrtm).
  w, v = np.linalg.eigh(s_a)
  root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
  trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * trace_sqrt)


def kernel_distance(a: np.ndarray, b: np.ndarray, *, subset_size: int = 1000, num_subsets: int = 100,
                    seed: int = 0) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets of both sets."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    raise ValueError(f"features must be [n, d] with the same d, got {a.shape} and {b.shape}.")
  d = a.shape[1]
  m = min(subset_size, len(a), len(b))
  if m < 2:
    raise ValueError("kernel distance needs at least 2 examples per set.")
  rng = np.random.default_rng(seed)
  kernel = lambda x, y: (x @ y.T / d + 1.0) ** 3
  values = []
  repeats = num_subsets if m < min(len(a), len(b)) else 1      # subsets of the whole sets are all the same
  for _ in range(repeats):
    x = a[rng.choice(len(a), m, replace=False)]
    y = b[rng.choice(len(b), m, replace=False)]
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))
    values.append(off(kxx) + off(kyy) - 2 * kxy.mean())
  return float(np.mean(values))


def audio_onset_times(audio: np.ndarray, sample_rate: int, *, hop_s: float = 0.01, window_s: float = 0.04,
                      threshold: float = 0.3) -> np.ndarray:
  """Onsets (s from the first sample, at window centres): peaks of the spectral flux of the log spectrum that exceed
  `threshold` of its maximum, at least 50 ms apart."""
  hop, win = max(1, int(hop_s * sample_rate)), int(window_s * sample_rate)
  x = np.asarray(audio, np.float64)
  if len(x) < win:
    return np.zeros(0)
  starts = np.arange(0, len(x) - win + 1, hop)
  spec = np.log1p(100 * np.abs(np.fft.rfft(x[starts[:, None] + np.arange(win)] * np.hanning(win), axis=-1)))
  flux = np.concatenate([[0.0], np.maximum(np.diff(spec, axis=0), 0).sum(axis=1)])
  return (_peaks(flux, threshold, max(1, int(round(0.05 / hop_s)))) * hop + win / 2) / sample_rate  # window centres


def flow_peak_times(frames: np.ndarray, frame_rate: float, *, threshold: float = 0.3) -> np.ndarray:
  """Times (s) of the peaks of mean optical-flow magnitude (Farneback) between consecutive frames,
  each at the later frame of its pair."""
  grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
  mags = [0.0]
  for a, b in zip(grey[:-1], grey[1:]):
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
  return _peaks(np.asarray(mags), threshold, 1) / frame_rate


def _peaks(x: np.ndarray, threshold: float, min_gap: int) -> np.ndarray:
  """Indices of local maxima above threshold * max(x), greedily at least min_gap apart."""
  if len(x) < 3 or x.max() <= 0:
    return np.zeros(0, int)
  is_peak = np.r_[False, (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:]), False] & (x > threshold * x.max())
  picked = []
  for i in np.flatnonzero(is_peak)[np.argsort(-x[is_peak])]:
    if all(abs(i - j) >= min_gap for j in picked):
      picked.append(i)
  return np.sort(np.asarray(picked, int))


def av_align(frames: np.ndarray, audio: np.ndarray, frame_rate: float, sample_rate: int) -> float:
  """AV-Align of one clip (uint8 frames [T, H, W, 3], mono audio starting with the first frame):
  matched onsets / (onsets + flow peaks - matched), an onset matched when a peak is within 1 / fps."""
  onsets, peaks = audio_onset_times(audio, sample_rate), flow_peak_times(frames, frame_rate)
  return align_score(onsets, peaks, frame_rate)


def align_score(onsets: np.ndarray, peaks: np.ndarray, frame_rate: float) -> float:
  if len(onsets) + len(peaks) == 0:
    return 1.0
  matched = sum(bool(np.any(np.abs(np.asarray(peaks) - t) < 1.0 / frame_rate)) for t in onsets)
  return float(matched / (len(onsets) + len(peaks) - matched))
