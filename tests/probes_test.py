"""The ground-truth probes read the synthetic clips right, and the scores built on them separate synced from
shuffled pairs."""

import numpy as np
import pytest

from avdit_jax.core import monl
from avdit_jax.data import clips, synthetic_av
from avdit_jax.evals import clip_tasks, probes

SPEC = clips.ClipSpec(num_frames=9, frame_rate=8.0, height=32, width=32, sample_rate=8000)
SCENE = synthetic_av.Scene(clip=SPEC, radius=0.12)
RADIUS_PX = 0.12 * 32


@pytest.fixture(scope="module")
def rows():
  return [synthetic_av.make_clip(SCENE, 0, i) for i in range(16)]


def test_event_distance_and_jaccard_math():
  ref = [(0.10, 1), (0.50, 2)]
  det = [(0.12, 1), (0.90, 2), (0.30, 3)]
  # ref: 20 ms, 400 ms; det: 20 ms, 400 ms, capped 500 ms (no colour 3 in ref)
  assert probes.event_distance_ms(ref, det) == pytest.approx(1000 * (0.02 + 0.4 + 0.02 + 0.4 + 0.5) / 5)
  assert probes.event_distance_ms([], []) == 0.0
  assert probes.event_distance_ms(ref, []) == pytest.approx(500.0)
  assert probes.jaccard_distance({1, 2}, {2, 3}) == pytest.approx(1 - 1 / 3)
  assert probes.jaccard_distance(set(), set()) == 0.0


def test_probes_recover_the_ground_truth(rows):
  lo, hi = 0.5 / SPEC.frame_rate, (SPEC.num_frames - 1.5) / SPEC.frame_rate
  video_err, audio_err = [], []
  for row in rows:
    truth = clip_tasks.truth_events(row)
    bounces = probes.video_bounces(row["video"], 8.0, RADIUS_PX)
    video_err.append(probes.event_distance_ms(probes.in_window(truth, lo, hi), probes.in_window(bounces, lo, hi)))
    audio_err.append(probes.event_distance_ms(truth, probes.audio_onsets(row["audio"], SPEC)))
    colours = set(row["colour_ids"].tolist())
    assert probes.colours_present(row["video"]) == colours
    assert probes.pitches_present(row["audio"], SPEC) <= colours
  # Video bounces are frame-quantised (+-62 ms at 8 fps); audio onsets are within a few ms.
  assert np.mean(video_err) < 100, video_err
  assert np.mean(audio_err) < 30, audio_err


def test_scores_separate_synced_from_shuffled(rows):
  segments = monl.FrameSegments(audio=np.repeat(np.arange(3), 25).astype(np.int32),
                                video=np.arange(3, dtype=np.int32))
  windows = clip_tasks.segment_windows(SPEC, segments)
  assert windows[0] == (-3 / 8, 1 / 8) and windows[2] == (5 / 8, 9 / 8)
  for task in ("a2v", "v2a"):
    mask = monl.task_mask(task, 3)
    key = f"{task}_sync_ms"
    synced = [clip_tasks.score_sample(mask, r["video"], r["audio"], r, SPEC, windows, RADIUS_PX)[key] for r in rows]
    shuffled = [clip_tasks.score_sample(mask, o["video"], o["audio"], r, SPEC, windows, RADIUS_PX)[key]
                for r, o in zip(rows, rows[1:] + rows[:1])]
    assert np.mean(synced) < 0.5 * np.mean(shuffled), (task, np.mean(synced), np.mean(shuffled))
  # Identity: a continuation that keeps the clip's balls has no drift; another clip's balls do.
  mask = monl.task_mask("av_continue", 3, 1)
  same = [clip_tasks.score_sample(mask, r["video"], r["audio"], r, SPEC, windows, RADIUS_PX)["colour_drift"]
          for r in rows]
  other = [clip_tasks.score_sample(mask, o["video"], o["audio"], r, SPEC, windows, RADIUS_PX)["colour_drift"]
           for r, o in zip(rows, rows[1:] + rows[:1])]
  assert np.mean(same) == 0.0 and np.mean(other) > 0.3


def test_a_scene_that_pairs_colours_with_other_pitches_is_scored_by_its_own_pairing(tmp_path):
  """The unseen sets sound their new colours at default pitches (Scene.sounds): heard tones count for the colour
  that sounds at them, so a real clip scores as synced to itself; read as colour i at pitch i, every tone would
  be a wrong colour's."""
  scene = synthetic_av.Scene(clip=SPEC, radius=0.12, colours=synthetic_av.UNSEEN_COLOURS,
                             sounds=synthetic_av.UNSEEN_SOUNDS)
  unseen = [synthetic_av.make_clip(scene, 7, i) for i in range(8)]
  assert all(set(r["pitches"]) <= set(synthetic_av.PITCHES[list(synthetic_av.UNSEEN_SOUNDS)]) for r in unseen)
  sounds = clip_tasks.sound_colours("synthetic_av/tiny_unseen", str(tmp_path))     # what the evaluation reads
  assert sounds == {0: 6, 3: 7, 5: 8}
  assert clip_tasks.sound_colours("synthetic_av/tiny", str(tmp_path)) == {k: k for k in synthetic_av.DEFAULT_COLOURS}
  segments = monl.FrameSegments(audio=np.repeat(np.arange(3), 25).astype(np.int32),
                                video=np.arange(3, dtype=np.int32))
  windows = clip_tasks.segment_windows(SPEC, segments)
  score = lambda task, r, s: clip_tasks.score_sample(monl.task_mask(task, 3), r["video"], r["audio"], r, SPEC,
                                                    windows, RADIUS_PX, s)
  v2a = [score("v2a", r, sounds) for r in unseen]
  assert np.mean([s["v2a_sync_ms"] for s in v2a]) < 30 and np.mean([s["pitch_drift"] for s in v2a]) == 0.0
  assert np.mean([score("joint", r, sounds)["pitch_colour"] for r in unseen]) == 0.0
  assert np.mean([score("v2a", r, None)["v2a_sync_ms"] for r in unseen]) > 300
  with pytest.raises(ValueError, match="scene: sounds"):
    synthetic_av.Scene(colours=(6, 7), sounds=(0, 0))
