"""Synthetic audio-video clips with ground truth: coloured balls under gravity, and every bounce sounds.

Each sounding ball has a colour from PALETTE; when it hits a wall, floor or ceiling it makes a decaying
tone at the pitch of its colour (PITCHES). Grey distractor balls drift without gravity and make no sound;
optional background noise. A clip is a pure function of (spec, seed, index), and keeps its ground
truth (colours, pitches, trajectories, collision times) so that evaluation can measure sync and
identity exactly. Audio covers the clip's time grid (avdit_jax/data/clips.py), lead included.

Pure numpy: the tfds builder (avdit_jax/data/datasets.py) wraps it, and tests call it directly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from avdit_jax.data import clips

# Colour i sounds at pitch i unless a scene pairs them otherwise (Scene.sounds): well apart in pitch (a minor third
# and more) and in hue (over 60 RGB apart, the probes' tolerance, also from every blend of two of them or of one
# with the background, as anti-aliased edges make). The first six are the default scenes'; the last three colours
# (pink, navy, pale green) only the 'unseen' sets', which sound them at default pitches (UNSEEN_SOUNDS): new
# pairings a model trained on the defaults has never seen, in tones an audio tokenizer trained on the defaults
# codes (the quickstart's reproduces only the six pitches it heard, WORKSPACE.md). Their own pitches (200, 1760,
# 2349 Hz, each over 3 bins of the probes' 32 ms window from every other) are for scenes that pick them.
PALETTE = np.array([[230, 60, 50], [60, 200, 70], [60, 110, 240], [240, 210, 50], [220, 70, 220], [60, 210, 220],
                    [255, 195, 225], [0, 0, 120], [210, 255, 150]], np.uint8)
PITCHES = np.array([330.0, 440.0, 587.3, 784.0, 1046.5, 1396.9, 200.0, 1760.0, 2349.3], np.float32)
DEFAULT_COLOURS = (0, 1, 2, 3, 4, 5)
UNSEEN_COLOURS = (6, 7, 8)
UNSEEN_SOUNDS = (0, 3, 5)           # the PITCHES the unseen colours sound at: 330, 784 and 1396.9 Hz
DISTRACTOR_COLOUR = np.array([150, 150, 150], np.uint8)
BACKGROUND = np.array([24, 24, 32], np.uint8)


@dataclasses.dataclass(frozen=True)
class Scene:
  clip: clips.ClipSpec = clips.ClipSpec()
  num_objects: int = 2            # sounding balls (distinct colours)
  colours: tuple = DEFAULT_COLOURS   # the palette entries (PALETTE) the balls are drawn from
  sounds: tuple | None = None     # the PITCHES entry each of `colours` sounds at (None: its own, colour i at pitch i)
  num_distractors: int = 0        # silent grey balls
  radius: float = 0.09            # ball radius, fraction of the frame height
  gravity: float = 6.0            # frame heights / s^2
  max_speed: float = 1.2          # initial speed bound, frame heights / s
  tone_decay: float = 0.06        # seconds, e-folding time of a bounce's tone
  background_noise: float = 0.0   # std of white noise added to the audio
  physics_dt: float = 5e-4        # seconds per simulation step (collision times are interpolated)

  def __post_init__(self):
    if not set(self.colours) <= set(range(len(PALETTE))) or len(set(self.colours)) != len(self.colours):
      raise ValueError(f"scene: colours {self.colours} must be distinct indices into the {len(PALETTE)} of PALETTE.")
    if self.sounds is not None and (len(self.sounds) != len(self.colours) or len(set(self.sounds)) != len(self.sounds)
                                    or not set(self.sounds) <= set(range(len(PITCHES)))):
      raise ValueError(f"scene: sounds {self.sounds} must be distinct indices into the {len(PITCHES)} of PITCHES, "
                       f"one per colour of {self.colours}.")
    if not 1 <= self.num_objects <= len(self.colours):
      raise ValueError(f"scene: num_objects {self.num_objects} must be in [1, {len(self.colours)}] (one colour "
                       "each).")
    if not 0 < self.radius < 0.5:
      raise ValueError(f"scene: radius {self.radius} must be in (0, 0.5).")

  @property
  def sound_ids(self) -> tuple:
    """The PITCHES entry each of `colours` sounds at."""
    return self.colours if self.sounds is None else self.sounds


def _simulate(rng, n: int, times: np.ndarray, radius, gravity: float, max_speed: float):
  """Balls in the unit square (y, x) bouncing elastically off the walls; `radius` (y, x) in its units.
  Returns positions [n, len(times), 2] and collisions as (time, ball) sorted by time.

  Each step is vel_y += gravity * dt; new = pos + vel * dt, then reflection at a crossed wall. Free flight
  between bounces is integrated a chunk of steps at a time with np.add.accumulate, which adds in the step
  order, so the positions are those of the step-by-step loop bit for bit (tests/datasets_test.py)."""
  lo, hi = np.asarray(radius), 1.0 - np.asarray(radius)
  pos = rng.uniform(lo, hi, size=(n, 2))
  vel = rng.uniform(-max_speed, max_speed, size=(n, 2))
  dt = times[1] - times[0]
  kick = np.array([gravity * dt, 0.0])
  out = np.empty((n, len(times), 2))
  events = []
  i = 0
  while i < len(times):
    k = min(_CHUNK, len(times) - i)
    vels = np.add.accumulate(np.concatenate([vel[None], np.broadcast_to(kick, (k, n, 2))]))[1:]   # [k, n, 2]
    news = np.add.accumulate(np.concatenate([pos[None], vels * dt]))                            # [k+1, n, 2]
    crossed = ((news[1:] < lo) | (news[1:] > hi)).any(axis=(1, 2))                            # [k]
    free = int(np.argmax(crossed)) if crossed.any() else k        # steps before the first wall crossing
    m = min(free + 1, k)                                            # steps whose start position is known
    out[:, i:i + m] = news[:m].transpose(1, 0, 2)
    if free == k:
      pos, vel, i = news[k], vels[k - 1], i + k
      continue
    pos, vel, new, t = news[free], vels[free].copy(), news[free + 1].copy(), times[i + free]
    for axis in (0, 1):
      for wall, below in ((lo[axis], True), (hi[axis], False)):
        hit = (new[:, axis] < wall) if below else (new[:, axis] > wall)
        for b in np.flatnonzero(hit):
          frac = (wall - pos[b, axis]) / (new[b, axis] - pos[b, axis])     # crossing point within the step
          events.append((t + frac * dt, b))
          new[b, axis] = 2 * wall - new[b, axis]
          vel[b, axis] = -vel[b, axis]
    pos, i = new, i + free + 1
  events.sort()
  return out, events


_CHUNK = 256      # steps of free flight integrated at once


def _render(spec: clips.ClipSpec, centres, colours, radius: float) -> np.ndarray:
  """Anti-aliased discs over the background: uint8 [T, H, W, 3]. centres [K, T, 2] in unit square."""
  h, w = spec.height, spec.width
  ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
  frames = np.broadcast_to(BACKGROUND.astype(np.float32), (spec.num_frames, h, w, 3)).copy()
  for k in range(centres.shape[0]):
    cy, cx = centres[k, :, 0][:, None, None] * h, centres[k, :, 1][:, None, None] * w
    dist = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)                             # pixels
    alpha = np.clip(radius * h - dist + 0.5, 0.0, 1.0)[..., None]
    frames = frames * (1 - alpha) + alpha * colours[k].astype(np.float32)
  return np.round(frames).astype(np.uint8)


def make_clip(scene: Scene, seed: int, index: int) -> dict:
  """One clip: 'video' uint8 [T, H, W, 3], 'audio' float32 [S] in [-1, 1], and its ground truth."""
  spec = scene.clip
  rng = np.random.default_rng([seed, index])
  start = -spec.audio_lead
  stop = spec.audio_samples / spec.sample_rate + start
  times = np.arange(start, stop, scene.physics_dt)
  picked = rng.choice(len(scene.colours), size=scene.num_objects, replace=False)
  colour_ids = np.asarray(scene.colours)[picked].astype(np.int32)
  pitches = PITCHES[np.asarray(scene.sound_ids)[picked]]
  radius = (scene.radius, scene.radius * spec.height / spec.width)
  paths, events = _simulate(rng, scene.num_objects, times, radius, scene.gravity, scene.max_speed)
  frame_times = np.arange(spec.num_frames) / spec.frame_rate
  at_frames = ((frame_times - start) / scene.physics_dt).round().astype(int)
  centres = paths[:, at_frames]
  colours = PALETTE[colour_ids]
  if scene.num_distractors:
    d_paths, _ = _simulate(rng, scene.num_distractors, times, radius, 0.0, scene.max_speed)
    centres = np.concatenate([d_paths[:, at_frames], centres])    # distractors drawn first, behind
    colours = np.concatenate([np.repeat(DISTRACTOR_COLOUR[None], scene.num_distractors, 0), colours])
  video = _render(spec, centres, colours, scene.radius)
  # Audio: a decaying tone per bounce, at the pitch its colour sounds at.
  t_audio = start + np.arange(spec.audio_samples) / spec.sample_rate
  audio = np.zeros(spec.audio_samples)
  for when, ball in events:
    dt = t_audio - when
    on = dt >= 0
    audio[on] += 0.5 * np.exp(-dt[on] / scene.tone_decay) * np.sin(2 * np.pi * pitches[ball] * dt[on])
  if scene.background_noise:
    audio += rng.normal(0.0, scene.background_noise, size=audio.shape)
  audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
  return {
      "video": video,
      "audio": audio,
      "colour_ids": colour_ids,
      "pitches": pitches,
      "trajectories": (paths[:, at_frames] * np.array([spec.height, spec.width])).astype(np.float32),  # pixels
      "collision_times": np.array([e[0] for e in events], np.float32).reshape(-1),   # s from the first frame
      "collision_objects": np.array([e[1] for e in events], np.int32).reshape(-1),
  }
