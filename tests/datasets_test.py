"""Data sets: the synthetic clips and their ground truth, media files in and out, the tfds builders."""

import os

import numpy as np
import pytest

from avdit_jax.data import clips, datasets, synthetic_av
from avdit_jax.media import mediafile

SMALL = clips.ClipSpec(num_frames=9, frame_rate=8.0, height=32, width=32, sample_rate=8000)


def test_clip_grid_puts_the_same_seconds_in_each_segment():
  spec = clips.ClipSpec()                                     # 17 frames at 8 fps, 16 kHz, ratio 4
  assert (spec.latent_frames, spec.audio_samples, spec.lead_samples) == (5, 40000, 6000)
  # Latent video frame k >= 1 holds frames 4k-3..4k = [(4k-3)/8, (4k+1)/8) s; audio segment k of 5 equal
  # ones, counted from the lead, spans the same seconds.
  for k in range(1, 5):
    audio_start = -spec.audio_lead + k * spec.audio_samples / 5 / spec.sample_rate
    assert audio_start == pytest.approx((4 * k - 3) / 8)
  with pytest.raises(ValueError, match="num_frames 16"):
    clips.ClipSpec(num_frames=16)


def test_synthetic_clip_is_deterministic_and_its_ground_truth_matches_the_media():
  scene = synthetic_av.Scene(clip=SMALL, radius=0.12)
  a, b, other = (synthetic_av.make_clip(scene, 0, 1), synthetic_av.make_clip(scene, 0, 1),
                 synthetic_av.make_clip(scene, 0, 2))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["video"], other["video"])
  # Each ball's pixel at its trajectory point has its palette colour (drawn last = on top: check the last ball).
  y, x = a["trajectories"][-1, 0].astype(int)
  np.testing.assert_allclose(a["video"][0, y, x], synthetic_av.PALETTE[a["colour_ids"][-1]], atol=2)
  # A tone starts at every collision: the audio is silent just before the first one and loud just after.
  first = a["collision_times"][0]
  at = int(round((first + SMALL.audio_lead) * SMALL.sample_rate))
  assert a["collision_times"].size > 0
  assert np.abs(a["audio"][max(at - 40, 0):at - 2]).max() < 1e-6 < np.abs(a["audio"][at:at + 40]).max()
  # The strongest frequency right after the bounce is that ball's pitch.
  window = a["audio"][at + 2:at + 2 + 512]
  freqs = np.fft.rfftfreq(512, 1 / SMALL.sample_rate)
  peak = freqs[np.argmax(np.abs(np.fft.rfft(window * np.hanning(512))))]
  assert abs(peak - a["pitches"][a["collision_objects"][0]]) < 2 * SMALL.sample_rate / 512


def _step_by_step(rng, n, times, radius, gravity, max_speed):
  """synthetic_av._simulate as the plain loop it integrates in chunks: one step at a time."""
  lo, hi = np.asarray(radius), 1.0 - np.asarray(radius)
  pos, vel = rng.uniform(lo, hi, size=(n, 2)), rng.uniform(-max_speed, max_speed, size=(n, 2))
  dt, out, events = times[1] - times[0], np.empty((n, len(times), 2)), []
  for i, t in enumerate(times):
    out[:, i] = pos
    vel[:, 0] += gravity * dt
    new = pos + vel * dt
    for axis in (0, 1):
      for wall, below in ((lo[axis], True), (hi[axis], False)):
        for b in np.flatnonzero((new[:, axis] < wall) if below else (new[:, axis] > wall)):
          events.append((t + (wall - pos[b, axis]) / (new[b, axis] - pos[b, axis]) * dt, b))
          new[b, axis] = 2 * wall - new[b, axis]
          vel[b, axis] = -vel[b, axis]
    pos = new
  return out, sorted(events)


@pytest.mark.parametrize("gravity", [6.0, 0.0])
def test_chunked_physics_equals_the_step_by_step_loop_bit_for_bit(gravity):
  times = np.arange(-0.25, 1.25, 5e-4)
  for seed in range(12):
    got = synthetic_av._simulate(np.random.default_rng(seed), 3, times, (0.09, 0.12), gravity, 1.2)
    want = _step_by_step(np.random.default_rng(seed), 3, times, (0.09, 0.12), gravity, 1.2)
    assert len(want[1]) > 2, "a check without bounces would test nothing"
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


def test_tiny_synthetic_split_builds_and_reads_back(tmp_path):
  datasets.prepare("synthetic_av/tiny", str(tmp_path))
  source, spec = datasets.data_source("synthetic_av/tiny", "train", str(tmp_path))
  assert spec == SMALL and len(source) == 8
  ids = sorted(source[i]["clip_id"].decode() for i in range(len(source)))
  assert ids == [f"train-{i:06d}" for i in range(8)]
  ex = next(source[i] for i in range(8) if source[i]["clip_id"] == b"train-000003")
  want = synthetic_av.make_clip(datasets.SyntheticAV.BUILDER_CONFIGS[2].scene, 0, 3)
  for key in ("video", "audio", "trajectories", "collision_times", "colour_ids"):
    np.testing.assert_array_equal(ex[key], want[key])
  with pytest.raises(ValueError, match="no split 'test'"):
    datasets.data_source("synthetic_av/tiny", "test", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="not built"):
    datasets.data_source("av_folder/small", "train", str(tmp_path))


def _long_clip(seconds_of_clips: int, seed: int):
  """Frames and audio (no lead) of `seconds_of_clips` consecutive synthetic clips, as one recording."""
  scene = synthetic_av.Scene(clip=SMALL, radius=0.12)
  parts = [synthetic_av.make_clip(scene, seed, i) for i in range(seconds_of_clips)]
  return (np.concatenate([p["video"] for p in parts]),
          np.concatenate([p["audio"][SMALL.lead_samples:] for p in parts]))


def test_folder_builder_decodes_media_and_skips_bad_files(tmp_path):
  manual = tmp_path / "media"
  (manual / "cats").mkdir(parents=True)
  frames, audio = _long_clip(2, seed=5)
  mediafile.write_mp4(str(manual / "cats" / "good.mp4"), frames, SMALL.frame_rate, audio, SMALL.sample_rate)
  mediafile.write_mp4(str(manual / "silent.mp4"), frames, SMALL.frame_rate)                  # no audio track
  good = (manual / "cats" / "good.mp4").read_bytes()
  (manual / "broken.mp4").write_bytes(good[:len(good) // 3])                           # truncated
  (manual / "noise.mp4").write_bytes(b"not a media file at all" * 10)                  # corrupt

  b = datasets.prepare("av_folder/small", str(tmp_path / "tfds"), str(manual), name="small_all",
                       validation_percent=0)
  skipped = sorted(os.path.basename(p) for p, _ in b.skipped)
  assert skipped == ["broken.mp4", "noise.mp4", "silent.mp4"], b.skipped
  assert "no audio track" in dict((os.path.basename(p), r) for p, r in b.skipped)["silent.mp4"]
  source = b.as_data_source(split="train")
  clips_by_start = {float(source[i]["start_seconds"]): source[i] for i in range(len(source))}
  assert sorted(clips_by_start) == [0.0, SMALL.video_seconds]
  for k, start in enumerate(sorted(clips_by_start)):
    ex = clips_by_start[start]
    assert ex["label"] == b"cats" and ex["source"] == b"cats/good.mp4"
    want = frames[k * SMALL.num_frames:(k + 1) * SMALL.num_frames].astype(np.float32)
    assert np.abs(ex["video"].astype(np.float32) - want).mean() < 4.0           # H.264 at crf 18
    body = audio[k * (SMALL.audio_samples - SMALL.lead_samples):][:SMALL.audio_samples - SMALL.lead_samples]
    got = ex["audio"][SMALL.lead_samples:]
    assert np.abs(got - body).max() < 0.05 and np.corrcoef(got, body)[0, 1] > 0.999    # AAC
    lead = ex["audio"][:SMALL.lead_samples]
    if k == 0:
      np.testing.assert_array_equal(lead, 0.0)                                    # before the file: silence
    else:
      np.testing.assert_allclose(lead, audio[k * 9000 - SMALL.lead_samples:k * 9000], atol=0.05)


def test_written_mp4_has_both_streams_with_their_durations(tmp_path):
  frames, audio = _long_clip(1, seed=1)
  path = str(tmp_path / "clip.mp4")
  mediafile.write_mp4(path, frames, SMALL.frame_rate, audio, SMALL.sample_rate)
  got = mediafile.stream_durations(path)
  assert got["frames"] == SMALL.num_frames
  assert got["video"] == pytest.approx(SMALL.video_seconds)
  assert got["audio"] == pytest.approx(len(audio) / SMALL.sample_rate, abs=0.15)   # AAC pads up to a frame
  with pytest.raises(ValueError, match="even height"):
    mediafile.write_mp4(path, frames[:, :31], SMALL.frame_rate)


def test_unknown_data_set_names_are_refused(tmp_path):
  with pytest.raises(ValueError, match="expected one of"):
    datasets.builder("youtube", str(tmp_path))
  with pytest.raises(ValueError, match="unknown config 'huge'"):
    datasets.builder("synthetic_av/huge", str(tmp_path))
  with pytest.raises(ValueError, match="new config name"):
    datasets.builder("synthetic_av/tiny", str(tmp_path), num_train=3)


def _set_display_matrix(path: str, matrix) -> None:
  """Writes a rotation into an mp4 the way phones do: the video track header's (tkhd, version 0) 3x3 matrix."""
  import struct
  data = bytearray(open(path, "rb").read())
  box = data.find(b"tkhd")
  assert box > 0 and data[box + 4] == 0
  at = box + 4 + 4 + 5 * 4 + 8 + 8           # after version/flags, 5 x 32-bit fields, reserved, layer..volume
  data[at:at + 36] = struct.pack(">9i", *matrix)
  open(path, "wb").write(bytes(data))


def test_a_phone_rotation_flag_turns_the_frames_upright(tmp_path):
  """A portrait phone video is stored landscape with a display matrix of a quarter turn clockwise."""
  frames = np.zeros((3, 32, 48, 3), np.uint8)
  frames[:, :8, :8] = (255, 0, 0)             # a red top-left corner
  path = str(tmp_path / "phone.mp4")
  mediafile.write_mp4(path, frames, 8.0, np.zeros(4000, np.float32), 8000)
  assert mediafile.decode(path, 8000).frames.shape[1:3] == (32, 48)          # no flag: as stored
  _set_display_matrix(path, [0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30])      # rotate 90 degrees clockwise
  shown = mediafile.decode(path, 8000).frames
  assert shown.shape[1:3] == (48, 32)
  red = (shown[0, ..., 0] > 200) & (shown[0, ..., 1] < 60)
  rows, cols = np.nonzero(red)
  assert rows.max() < 10 and cols.min() > 32 - 10, (rows, cols)            # the corner is now top-right
