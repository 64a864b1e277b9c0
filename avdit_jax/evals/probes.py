"""Ground-truth probes on the synthetic clips (avdit_jax/data/synthetic_av.py): what a clip shows and sounds.

Detectors read decoded media, never latents, so they score the whole generator (AVDiT + tokenizer):
  video_tracks     per palette colour and frame: pixel area and centroid
  video_bounces    wall bounces seen in the video: a velocity reversal on one axis next to that wall
  audio_onsets     bounce sounds: onsets of each palette pitch's band energy
  colours_present / pitches_present   which palette entries a clip shows / sounds
and the scores built on them:
  event_distance_ms  symmetric nearest-event distance between two event lists (same colour), in ms
  jaccard_distance   1 - |A & B| / |A | B| between two sets of palette indices

Times are seconds from the first video frame (the audio starts clip.audio_lead earlier), as in the
ground truth. Pure numpy.
"""

from __future__ import annotations

import numpy as np

from avdit_jax.data import clips, synthetic_av

COLOUR_TOLERANCE = 60.0      # uint8 RGB distance within which a pixel has a palette colour
MIN_AREA = 4.0               # pixels of a colour for it to be present in a frame
EVENT_CAP_S = 0.5            # a missing or spurious event costs this much (half a second)


def video_tracks(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """frames uint8 [T, H, W, 3] -> (area [K, T] in pixels, centroid [K, T, 2] (y, x) in pixels, NaN when
  the colour covers fewer than MIN_AREA pixels), K = len(PALETTE)."""
  f = frames.astype(np.float32)
  dist = np.linalg.norm(f[None] - synthetic_av.PALETTE.astype(np.float32)[:, None, None, None], axis=-1)
  mask = dist < COLOUR_TOLERANCE                                         # [K, T, H, W]
  area = mask.sum(axis=(2, 3)).astype(np.float32)
  ys, xs = np.meshgrid(np.arange(frames.shape[1]) + 0.5, np.arange(frames.shape[2]) + 0.5, indexing="ij")
  with np.errstate(invalid="ignore", divide="ignore"):
    centroid = np.stack([(mask * ys).sum(axis=(2, 3)), (mask * xs).sum(axis=(2, 3))], -1) / area[..., None]
  centroid[area < MIN_AREA] = np.nan
  return area, centroid


def video_bounces(frames: np.ndarray, frame_rate: float, radius_px: float) -> list[tuple[float, int]]:
  """(time, colour) of each bounce seen in the video: at frame k the velocity on an axis reverses, and the
  ball at k is within one step of the wall it turned away from. (Under gravity the top of an arc also
  reverses y, but away from the ceiling, so it is not counted.) Times are frame times, so they are
  accurate to half a frame."""
  _, centroid = video_tracks(frames)
  size = np.array(frames.shape[1:3], np.float32)
  events = []
  for k_colour in range(centroid.shape[0]):
    c = centroid[k_colour]
    for k in range(1, len(c) - 1):
      v_in, v_out = c[k] - c[k - 1], c[k + 1] - c[k]
      if np.isnan(v_in).any() or np.isnan(v_out).any():
        continue
      for axis in (0, 1):
        if v_in[axis] * v_out[axis] >= 0 or max(abs(v_in[axis]), abs(v_out[axis])) < 0.5:
          continue
        margin = radius_px + max(abs(v_in[axis]), abs(v_out[axis])) + 1.0
        wall = c[k, axis] if v_in[axis] < 0 else size[axis] - c[k, axis]     # distance to the wall it met
        if wall < margin:
          events.append((k / frame_rate, k_colour))
          break
  return sorted(events)


def _band_envelopes(audio: np.ndarray, sample_rate: int, hop_s: float = 0.004, window_s: float = 0.032):
  """Magnitude of each palette pitch's band over time: ([K, frames], frame centre times in s from the
  audio's first sample)."""
  hop, win = max(1, int(hop_s * sample_rate)), int(window_s * sample_rate)
  padded = np.pad(audio.astype(np.float32), (win // 2, win // 2))
  starts = np.arange(0, len(padded) - win + 1, hop)
  frames = padded[starts[:, None] + np.arange(win)] * np.hanning(win).astype(np.float32)
  spectrum = np.abs(np.fft.rfft(frames, axis=-1))                               # [frames, bins]
  freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
  bands = []
  for pitch in synthetic_av.PITCHES:
    near = np.abs(freqs - pitch) <= max(0.06 * pitch, sample_rate / win)          # a semitone and more
    bands.append(spectrum[:, near].max(axis=-1) if near.any() else np.zeros(len(starts)))
  return np.stack(bands), starts / sample_rate              # frame i is centred on sample starts[i]


def audio_onsets(audio: np.ndarray, spec: clips.ClipSpec, *, threshold: float = 0.15) -> list[tuple[float, int]]:
  """(time, colour) of each bounce heard: a rise of the colour's pitch band by more than `threshold` of the
  loudest band level (and of 0.02 absolute), taken at its steepest point, at most one per 50 ms."""
  env, times = _band_envelopes(audio, spec.sample_rate)
  rise = np.diff(env, axis=1, prepend=env[:, :1])
  level = max(float(env.max()), 1e-6)
  events = []
  gap = max(1, int(round(0.05 / (times[1] - times[0])))) if len(times) > 1 else 1
  for k in range(env.shape[0]):
    # A rise is summed over the attack (a few frames), then peaks picked greedily with a minimum gap.
    attack = np.convolve(np.maximum(rise[k], 0), np.ones(4), mode="same")
    candidates = np.flatnonzero(attack > max(threshold * level, 0.02))
    for i in candidates[np.argsort(-attack[candidates])]:
      if all(abs(i - j) >= gap for j, _ in events if _ == k):
        events.append((i, k))
  out = [(float(times[i]) - spec.audio_lead, k) for i, k in events]
  return sorted(out)


def colours_present(frames: np.ndarray) -> set[int]:
  """Palette colours covering at least MIN_AREA pixels in at least half of the frames."""
  area, _ = video_tracks(frames)
  return {int(k) for k in np.flatnonzero((area >= MIN_AREA).mean(axis=1) >= 0.5)}


def pitches_present(audio: np.ndarray, spec: clips.ClipSpec, *, threshold: float = 0.25) -> set[int]:
  """Palette pitches whose band peaks above `threshold` of the loudest band (and 0.02 absolute)."""
  env, _ = _band_envelopes(audio, spec.sample_rate)
  peak = env.max(axis=1)
  return {int(k) for k in np.flatnonzero(peak >= max(threshold * float(peak.max()), 0.02))}


def in_window(events, start: float, stop: float) -> list:
  return [e for e in events if start <= e[0] <= stop]


def event_distance_ms(reference, detected, *, cap_s: float = EVENT_CAP_S) -> float:
  """Mean over both lists of each event's distance to the nearest event of the same colour in the other
  list (capped at cap_s: a missing or spurious event costs cap_s), in ms; 0 when both are empty."""
  def nearest(a, b):
    out = []
    for t, k in a:
      times = [s for s, j in b if j == k]
      out.append(min([abs(t - s) for s in times] + [cap_s]))
    return out
  both = nearest(reference, detected) + nearest(detected, reference)
  return 1000.0 * float(np.mean(both)) if both else 0.0


def jaccard_distance(a: set, b: set) -> float:
  return 1.0 - len(a & b) / len(a | b) if a | b else 0.0
