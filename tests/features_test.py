"""FVD / FAD feature extractors: the pinned I3D checked for stability and sense; the VGGish loader and frontend."""

import numpy as np
import pytest

from avdit_jax.data import clips, synthetic_av
from avdit_jax.evals import features, metrics

SPEC = clips.ClipSpec(num_frames=9, frame_rate=8.0, height=32, width=32, sample_rate=8000)


def _clips(seed: int, n: int):
  scene = synthetic_av.Scene(clip=SPEC, radius=0.12)
  made = [synthetic_av.make_clip(scene, seed, i) for i in range(n)]
  return np.stack([c["video"] for c in made]), np.stack([c["audio"] for c in made])


@pytest.fixture(scope="module")
def i3d():
  return features.I3DFeatures(batch_size=4)


def test_i3d_is_stable_and_sensible_on_fixed_clips(i3d):
  frames, _ = _clips(0, 4)
  out = i3d(frames)
  assert out.shape == (4, 400) and np.isfinite(out).all()
  np.testing.assert_array_equal(out, i3d(frames))                       # stable across calls
  np.testing.assert_allclose(i3d(frames[2:3])[0], out[2], rtol=1e-4, atol=1e-4)   # and batch positions
  cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
  mirrored = i3d(np.ascontiguousarray(frames[:, :, :, ::-1]))
  assert min(cos(out[k], mirrored[k]) for k in range(4)) > 0.9          # Kinetics training used flips
  noise = i3d(np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8))
  assert max(cos(out[k], noise[k]) for k in range(4)) < 0.8
  with pytest.raises(ValueError, match=r"uint8 frames \[B, T, H, W, 3\]"):
    i3d(frames.astype(np.float32))


def test_fvd_with_i3d_ranks_a_corrupted_set_behind_a_fresh_draw(i3d):
  real, _ = _clips(1, 8)
  fresh, _ = _clips(2, 8)
  still = np.repeat(real[:, :1], SPEC.num_frames, axis=1)                # no motion at all
  f_real, f_fresh, f_still = i3d(real), i3d(fresh), i3d(still)
  fresh_fd = metrics.frechet_distance(f_real, f_fresh)
  assert abs(metrics.frechet_distance(f_real, f_real)) < 1e-4 * fresh_fd    # 8 clips in 400-d: sqrtm's round-off
  assert fresh_fd < metrics.frechet_distance(f_real, f_still)


def test_vggish_frontend_puts_a_tone_in_its_mel_band():
  mel = features.mel_matrix()
  assert mel.shape == (257, 64) and (mel >= 0).all() and (mel.sum(0) > 0).all()
  t = np.arange(16000) / 16000
  examples = features.log_mel_examples(np.sin(2 * np.pi * 1000 * t), 16000)
  assert examples.shape == (1, 96, 64)
  band = int(np.argmax(examples[0].mean(0)))
  centres = np.linspace(features._hz_to_mel(125), features._hz_to_mel(7500), 66)[1:-1]
  assert abs(band - int(np.argmin(abs(centres - features._hz_to_mel(1000))))) <= 1
  # 8 kHz input is resampled to 16 kHz first: the same tone lands in the same band.
  t8 = np.arange(8000) / 8000
  assert int(np.argmax(features.log_mel_examples(np.sin(2 * np.pi * 1000 * t8), 8000)[0].mean(0))) == band


def test_vggish_loads_a_user_weight_file_and_names_what_is_wrong(tmp_path):
  rng = np.random.default_rng(0)
  shapes = features.vggish_shapes()
  weights = {k: (rng.standard_normal(s, dtype=np.float32) / np.sqrt(np.prod(s[:-1]) if len(s) > 1 else 1.0))
             for k, s in shapes.items()}
  path = str(tmp_path / "vggish.npz")
  np.savez(path, **weights)
  vggish = features.VGGishFeatures(path, sample_rate=SPEC.sample_rate)
  _, audio = _clips(0, 3)
  emb = vggish(audio)
  assert emb.shape == (3, 128) and np.isfinite(emb).all()
  np.testing.assert_array_equal(emb, vggish(audio))
  assert np.abs(emb[0] - emb[1]).max() > 0                               # different clips, different rows
  assert abs(metrics.frechet_distance(emb, emb)) < 1e-4 * np.sum(np.var(emb, 0))

  with pytest.raises(ValueError, match="FAD needs VGGish weights"):
    features.VGGishFeatures("", sample_rate=8000)
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    features.VGGishFeatures(str(tmp_path / "nope.npz"), sample_rate=8000)
  del weights["vggish/fc2/biases"]
  np.savez(path, **weights)
  with pytest.raises(ValueError, match="missing 'vggish/fc2/biases'"):
    features.VGGishFeatures(path, sample_rate=8000)
  weights["vggish/fc2/biases"] = np.zeros(7, np.float32)
  np.savez(path, **weights)
  with pytest.raises(ValueError, match=r"'vggish/fc2/biases' has shape \(7,\), expected \(128,\)"):
    features.VGGishFeatures(path, sample_rate=8000)
