"""Frechet and kernel distances against references written with scipy and plain loops."""

import numpy as np
import pytest
import scipy.linalg

from avdit_jax.evals import metrics


def _frechet_scipy(a, b):
  mu_a, mu_b = a.mean(0), b.mean(0)
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(s_a @ s_b)
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(root)))


def test_frechet_distance_matches_scipy_and_its_closed_forms():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
  b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
  assert metrics.frechet_distance(a, b) == pytest.approx(_frechet_scipy(a, b), rel=1e-6)
  assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
  # Same covariance, shifted mean: the distance is the squared shift.
  assert metrics.frechet_distance(a, a + np.arange(6)) == pytest.approx(np.sum(np.arange(6.0) ** 2), rel=1e-9)
  with pytest.raises(ValueError, match="feature sizes differ"):
    metrics.frechet_distance(a, b[:, :5])


def test_kernel_distance_is_the_unbiased_mmd():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 1.0
  k = lambda x, y: (np.dot(x, y) / 3 + 1) ** 3
  n = len(a)
  xx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  yy = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  xy = sum(k(a[i], b[j]) for i in range(n) for j in range(n)) / (n * n)
  assert metrics.kernel_distance(a, b, subset_size=n) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
  # Unbiased: two samples of one distribution average to about zero, a shifted one does not.
  same = [metrics.kernel_distance(rng.normal(size=(200, 3)), rng.normal(size=(200, 3))) for _ in range(5)]
  assert abs(np.mean(same)) < 0.05 < metrics.kernel_distance(a, b, subset_size=n)


def test_av_align_counts_onsets_matched_to_flow_peaks():
  assert metrics.align_score(np.array([0.1, 0.5]), np.array([0.15, 0.9]), 8.0) == pytest.approx(1 / 3)
  assert metrics.align_score(np.array([]), np.array([]), 8.0) == 1.0
  # A square that jerks at frames 4 and 10 while clicks sound at those frames aligns; shifted clicks do not.
  fps, sr = 10.0, 8000
  frames = np.zeros((16, 32, 32, 3), np.uint8)
  x = np.cumsum([0] + [1 if i not in (4, 10) else 8 for i in range(1, 16)])
  for k in range(16):
    frames[k, 10:18, x[k] % 20:x[k] % 20 + 8] = 255
  def clicks(times):
    audio = np.zeros(int(1.6 * sr))
    for t in times:
      i = int(t * sr)
      audio[i:i + 400] += np.sin(np.arange(400) * 0.9) * np.exp(-np.arange(400) / 100)
    return audio
  np.testing.assert_allclose(metrics.flow_peak_times(frames, fps), [0.4, 1.0])
  np.testing.assert_allclose(metrics.audio_onset_times(clicks([0.4, 1.0]), sr), [0.4, 1.0], atol=0.02)
  assert metrics.av_align(frames, clicks([0.4, 1.0]), fps, sr) == 1.0
  assert metrics.av_align(frames, clicks([0.7, 1.35]), fps, sr) == 0.0
