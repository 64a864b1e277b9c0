"""Schedules, the per-element forward process, targets, the masked loss and the reverse steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax.core import diffusion, monl


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_schedules_decrease_from_clean_to_noise(name):
  s = diffusion.make_schedule(name, 1000)
  abar = np.asarray(s.alpha_bar)
  assert s.num_timesteps == 1000 and abar[0] == 1.0
  assert (np.diff(abar) < 0).all() and abar[-1] < 1e-3 and abar[-1] > 0


def test_bad_schedule_settings_raise():
  with pytest.raises(ValueError, match="unknown schedule 'cos'"):
    diffusion.make_schedule("cos")
  with pytest.raises(ValueError, match="num_steps must be in"):
    diffusion.sampling_timesteps(1000, 0)
  with pytest.raises(ValueError, match="prediction"):
    diffusion.target(jnp.zeros(2), jnp.zeros(2), jnp.ones(2), "x0")


def test_forward_process_honours_a_per_element_t():
  """Each frame is noised at the level of its own (modality, segment) cell."""
  schedule = diffusion.make_schedule("linear", 1000)
  segs = monl.frame_segments(8, 2, 4, 1, 4)
  t = jnp.array([[[0, 10, 500, 1000], [1000, 0, 250, 1]]])                  # [1, M, N]
  abar_a, abar_v = monl.to_frames(schedule.alpha_bar[t], segs)
  x_a, x_v = jnp.ones((1, 8, 3)), jnp.ones((1, 4, 2, 2, 1))
  n = 20000
  noise_a = jax.random.normal(jax.random.PRNGKey(0), (n, 8, 3))
  z_a = diffusion.add_noise(x_a, noise_a, abar_a)
  abar = np.asarray(schedule.alpha_bar)
  expect_mean = np.sqrt(abar[np.asarray(t)[0, 0][segs.audio]])                 # per audio frame
  np.testing.assert_allclose(np.asarray(z_a).mean(axis=(0, 2)), expect_mean, atol=0.02)
  np.testing.assert_allclose(np.asarray(z_a).var(axis=(0, 2)), 1 - expect_mean**2, atol=0.03)
  assert (np.asarray(z_a)[:, :2] == 1.0).all()                                # t = 0: exactly clean
  z_v = diffusion.add_noise(x_v, jnp.zeros((1, 4, 2, 2, 1)), abar_v)
  np.testing.assert_allclose(np.asarray(z_v)[0, :, 0, 0, 0], np.sqrt(abar[[1000, 0, 250, 1]]), rtol=1e-6)


@pytest.mark.parametrize("prediction", diffusion.PREDICTIONS)
def test_targets_invert_to_x0_and_eps(prediction):
  rng = np.random.default_rng(0)
  x0, eps = rng.normal(size=(2, 50)).astype(np.float32)
  abar = np.linspace(0.999, 0.01, 50).astype(np.float32)
  z = diffusion.add_noise(x0, eps, abar)
  x0_hat, eps_hat = diffusion.to_x0_and_eps(z, diffusion.target(x0, eps, abar, prediction), abar, prediction)
  np.testing.assert_allclose(x0_hat, x0, atol=2e-4)
  np.testing.assert_allclose(eps_hat, eps, atol=2e-4)


def test_masked_loss_ignores_clean_elements():
  out = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
  tgt = jnp.zeros_like(out)
  sq, count = diffusion.masked_sq_error(out, tgt, jnp.array([[True, False, True], [False, False, False]]))
  np.testing.assert_allclose(sq, [10.0, 0.0])
  np.testing.assert_allclose(count, [2.0, 0.0])


def test_ddpm_step_equals_ddim_with_eta_one():
  """DDIM(eta = 1) is DDPM's ancestral step with the posterior variance (Song et al., eq. 16)."""
  rng = np.random.default_rng(1)
  z, x0, noise = rng.normal(size=(3, 64)).astype(np.float32)
  abar, abar_prev = np.float32(0.3), np.float32(0.5)
  eps = (z - np.sqrt(abar) * x0) / np.sqrt(1 - abar)
  a = diffusion.ddim_step(z, x0, eps, abar, abar_prev, 1.0, noise)
  b = diffusion.ddpm_step(z, x0, abar, abar_prev, noise, "small")
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_reverse_steps_leave_clean_elements_and_land_on_x0():
  z = jnp.array([0.7, -0.2])
  x0 = jnp.array([0.1, 0.4])
  eps = jnp.array([0.3, 0.3])
  noise = jnp.array([5.0, 5.0])
  ones = jnp.ones(2)
  np.testing.assert_array_equal(diffusion.ddim_step(z, x0, eps, ones, ones, 1.0, noise), z)
  np.testing.assert_array_equal(diffusion.ddpm_step(z, x0, ones, ones, noise), z)
  abar = jnp.full(2, 0.2)
  np.testing.assert_allclose(diffusion.ddim_step(z, x0, eps, abar, ones, 1.0, noise), x0, atol=1e-6)
  np.testing.assert_allclose(diffusion.ddpm_step(z, x0, abar, ones, noise), x0, atol=1e-6)


def test_sampling_timesteps_run_from_T_to_zero():
  steps = diffusion.sampling_timesteps(1000, 50)
  assert steps[0] == 1000 and steps[-1] == 0 and len(steps) == 51
  assert (np.diff(steps) < 0).all()
  np.testing.assert_array_equal(diffusion.sampling_timesteps(10, 10), np.arange(10, -1, -1))
