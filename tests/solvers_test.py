"""Few-step solvers of both processes: the true conditionals in <= 20 network evaluations with the exact
denoiser, single steps against diffusers' schedulers, Euler converging to Heun, per-modality guidance."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax.core import diffusion, flow, gaussian, monl, sampling, solvers

N = 5
SEGS = monl.frame_segments(10, 1, 5, 1, N)
TOY = gaussian.coupled_gaussian((10, 1), (5, 2, 2, 1), SEGS, seed=0)
NUM_SAMPLES = 4096          # the tolerance of tests/sample_test.py (gaussian.sample_fit) at the same n
TASKS = {
    "joint": monl.joint(N),
    "a2v": monl.a2v(N),
    "v2a": monl.v2a(N),
    "av_continue_1": monl.av_continue(N, 1),
    "av_inpaint": monl.av_inpaint(N, 1, 1),
    "audio_continue_2": monl.audio_continue(N, 2),
    "video_continue_2": monl.video_continue(N, 2),
    "written_mask": monl.parse_mask("audio:0-1,video:3-4", N),
}
# The best solver of each process at 20 network evaluations (tools/solvers.py has the others).
BEST = {
    "ddpm": (diffusion.make_schedule("cosine", 1000), dict(sampler="dpm++2m", num_steps=20)),
    "flow": (flow.RectifiedFlow(), dict(sampler="dpm++2m", num_steps=20)),
}


@functools.cache
def _sampler(process_name):
  process, fields = BEST[process_name]
  config = sampling.SamplerConfig(process, SEGS, prediction="v", loop="fori", **fields)
  assert config.network_evaluations <= 20
  network = sampling.without_params(TOY.denoiser(process, "v"))
  return config, functools.partial(sampling.make_sampler(network, config), None)


@pytest.mark.parametrize("process_name", sorted(BEST))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_twenty_evaluations_draw_the_true_conditional(task, process_name):
  config, run = _sampler(process_name)
  mask = TASKS[task]
  a0, v0 = TOY.sample(jax.random.PRNGKey(100), 1)
  cond = sampling.make_condition(config, mask, jnp.repeat(a0, NUM_SAMPLES, 0), jnp.repeat(v0, NUM_SAMPLES, 0))
  x = np.asarray(TOY.flatten(*run(cond, jax.random.PRNGKey(0))), np.float64)
  gen, mean, cov = TOY.conditional(mask, a0, v0)
  np.testing.assert_array_equal(x[:, ~gen], np.broadcast_to(np.asarray(TOY.flatten(a0, v0))[0, ~gen], x[:, ~gen].shape))
  fit = gaussian.sample_fit(x[:, gen], mean, cov)
  assert fit["max_z"] < 4.5, f"a mean is {fit['max_z']:.1f} standard errors off"
  assert fit["kl"] < fit["tolerance"], f"KL {fit['kl']:.4f} exceeds {fit['tolerance']:.4f}"


# ----------------------------------------------------------------------------- against diffusers


def _toy_model(z, t):
  """A deterministic elementwise 'network' both implementations call: any smooth function of (z, t) will do."""
  return 0.6 * z + 0.1 * jnp.cos(jnp.asarray(t, jnp.float32) / 123.0 + jnp.arange(z.shape[-1]))


def _reference_output(x, t):
  import torch
  return torch.tensor(np.asarray(_toy_model(x.numpy(), t)), dtype=x.dtype)


def _our_trajectory(config, z0):
  """Every audio state of our sampler from z0 on the joint task (all generated; the video is ignored)."""
  denoise = lambda a, v, t: (_toy_model(a, t[0, 0, 0]), jnp.zeros_like(v))
  step = jax.jit(sampling.make_step(sampling.without_params(denoise), config))
  audio, video = jnp.asarray(z0, jnp.float32), jnp.zeros((z0.shape[0], 5, 2, 2, 1))
  cond = sampling.make_condition(config, monl.joint(N), audio, video)
  state = sampling.State(audio, video, jax.random.PRNGKey(0), jnp.zeros_like(audio), jnp.zeros_like(video))
  states = []
  for i in range(config.num_steps):
    state = step(state, jnp.int32(i), cond, None)
    states.append(np.asarray(state.audio, np.float64))
  return states


def _diffusers():
  return pytest.importorskip("diffusers", reason="diffusers is not installed: no reference implementation")


def test_ddpm_dpmpp_2m_matches_diffusers():
  """DPMSolverMultistepScheduler (dpmsolver++, order 2, trailing, final sigma 0) on the same cosine schedule:
  its timestep tau is our t = tau + 1 (our alpha_bar[0] = 1 is the clean level)."""
  diffusers = _diffusers()
  import torch
  steps = 10
  ref = diffusers.DPMSolverMultistepScheduler(
      num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
      algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", final_sigmas_type="zero")
  ref.set_timesteps(steps)
  config = sampling.SamplerConfig(diffusion.make_schedule("cosine", 1000), SEGS, num_steps=steps,
                                  sampler="dpm++2m", prediction="v")
  np.testing.assert_array_equal(ref.timesteps.numpy() + 1, config.levels[:-1])
  z0 = np.random.default_rng(0).normal(size=(3, 10, 1))
  ours = _our_trajectory(config, z0)
  x = torch.tensor(z0)
  for i, tau in enumerate(ref.timesteps):
    out = _reference_output(x, int(tau) + 1)
    x = ref.step(out, tau, x).prev_sample
    np.testing.assert_allclose(ours[i], x.numpy(), rtol=2e-4, atol=2e-4, err_msg=f"step {i}")


def test_flow_dpmpp_2m_matches_diffusers():
  """The flow form (use_flow_sigmas, flow_prediction: x0 = z - sigma v) on our shifted time grid."""
  diffusers = _diffusers()
  import torch
  steps = 8
  config = sampling.SamplerConfig(flow.RectifiedFlow(), SEGS, num_steps=steps, sampler="dpm++2m",
                                  prediction="v", spacing="shifted", shift=3.0)
  ref = diffusers.DPMSolverMultistepScheduler(
      num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
      algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
  ref.set_timesteps(steps)
  ref.sigmas = torch.tensor(config.levels, dtype=torch.float32)    # its grid starts at 1 - 1/1000; ours at 1
  z0 = np.random.default_rng(1).normal(size=(3, 10, 1))
  ours = _our_trajectory(config, z0)
  x = torch.tensor(z0)
  for i, tau in enumerate(ref.timesteps):
    out = _reference_output(x, config.levels[i])
    x = ref.step(out, tau, x).prev_sample
    np.testing.assert_allclose(ours[i], x.numpy(), rtol=2e-4, atol=2e-4, err_msg=f"step {i}")


def test_flow_euler_and_shift_match_diffusers():
  """FlowMatchEulerDiscreteScheduler(shift=3) shifts our uniform grid to our 'shifted' one, and its steps
  (z + (sigma' - sigma) v) are ours."""
  diffusers = _diffusers()
  import torch
  steps = 6
  config = sampling.SamplerConfig(flow.RectifiedFlow(), SEGS, num_steps=steps, sampler="euler", prediction="v",
                                  spacing="shifted", shift=3.0)
  ref = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
  ref.set_timesteps(sigmas=list(np.linspace(1.0, 0.0, steps + 1)[:-1]))
  np.testing.assert_allclose(ref.sigmas.numpy(), config.levels, rtol=1e-6, atol=1e-6)
  z0 = np.random.default_rng(2).normal(size=(3, 10, 1))
  ours = _our_trajectory(config, z0)
  x = torch.tensor(z0, dtype=torch.float32)
  for i, tau in enumerate(ref.timesteps):
    out = _reference_output(x, config.levels[i])
    x = ref.step(out, tau, x).prev_sample
    np.testing.assert_allclose(ours[i], x.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"step {i}")


def test_euler_at_many_steps_converges_to_heun():
  """Both integrate the same probability-flow ODE from the same noise: Euler's samples approach Heun's as
  its steps shrink (and few Euler steps are visibly elsewhere, so the comparison can fail)."""
  process = flow.RectifiedFlow()
  mask = TASKS["av_continue_1"]
  a0, v0 = TOY.sample(jax.random.PRNGKey(7), 1)
  def draw(sampler, steps):
    config = sampling.SamplerConfig(process, SEGS, num_steps=steps, sampler=sampler, prediction="v", loop="fori")
    cond = sampling.make_condition(config, mask, jnp.repeat(a0, 64, 0), jnp.repeat(v0, 64, 0))
    return np.asarray(TOY.flatten(*sampling.sample(sampling.without_params(TOY.denoiser(process, "v")), config, cond,
                                                         jax.random.PRNGKey(3))))
  heun = draw("heun", 32)
  far, near = (np.abs(draw("euler", steps) - heun).max() for steps in (8, 512))
  assert near < 0.02 < far, (near, far)


# ----------------------------------------------------------------------------- guidance per modality


def test_audio_weight_alone_leaves_the_video_unguided():
  """Guidance (w_audio, 0): the video of the guided step equals the unguided step's exactly; the audio moves."""
  def denoise(a, v, t):     # row-wise, so the guided call's conditional rows equal the unguided call's
    level = t.astype(jnp.float32).sum(axis=(1, 2))                                     # [B]
    return 0.5 * a + 0.3 * level[:, None, None], 0.7 * v - 0.2 * level[:, None, None, None, None]
  a, v = TOY.sample(jax.random.PRNGKey(0), 4)
  mask = monl.av_continue(N, 1)
  out = {}
  for w in ((0.0, 0.0), (2.0, 0.0)):
    config = sampling.SamplerConfig(flow.RectifiedFlow(), SEGS, num_steps=4, sampler="euler", prediction="v",
                                    guidance=w)
    cond = sampling.make_condition(config, mask, a, v)
    state = sampling.State(*TOY.sample(jax.random.PRNGKey(1), 4), jax.random.PRNGKey(2))
    out[w] = jax.jit(sampling.make_step(sampling.without_params(denoise), config))(state, jnp.int32(1), cond, None)
  np.testing.assert_array_equal(out[(2.0, 0.0)].video, out[(0.0, 0.0)].video)
  gen_a = np.asarray(monl.to_frames(jnp.asarray(~mask)[None], SEGS)[0][0, :, 0])
  assert np.abs(np.asarray(out[(2.0, 0.0)].audio - out[(0.0, 0.0)].audio)[:, gen_a]).min() > 1e-3


def test_guidance_weights_and_bad_settings_raise():
  schedule = diffusion.make_schedule("cosine", 1000)
  assert sampling.SamplerConfig(schedule, SEGS, guidance=(0.0, 3.0)).weights == (0.0, 3.0)
  assert sampling.SamplerConfig(schedule, SEGS, guidance=2).weights == (2.0, 2.0)
  assert not sampling.SamplerConfig(schedule, SEGS, guidance=[0, 0]).guided
  with pytest.raises(ValueError, match="sampling.guidance: expected a number or an"):
    sampling.SamplerConfig(schedule, SEGS, guidance=(1.0, 2.0, 3.0))
  with pytest.raises(ValueError, match="sampling.guidance must be >= 0"):
    sampling.SamplerConfig(schedule, SEGS, guidance=(1.0, -1.0))
  with pytest.raises(ValueError, match="for process 'ddpm'"):
    sampling.SamplerConfig(schedule, SEGS, sampler="heun")
  with pytest.raises(ValueError, match="for process 'flow'"):
    sampling.SamplerConfig(flow.RectifiedFlow(), SEGS, sampler="ddpm", prediction="v")
  with pytest.raises(ValueError, match="sampling.spacing: unknown 'karras' for process 'flow'"):
    sampling.SamplerConfig(flow.RectifiedFlow(), SEGS, spacing="karras", prediction="v")
  with pytest.raises(ValueError, match="diffusion.t_sampling"):
    flow.RectifiedFlow(t_sampling="beta")


# ----------------------------------------------------------------------------- the flow process, spacings


@pytest.mark.parametrize("prediction", flow.PREDICTIONS)
def test_flow_targets_invert_to_x0_and_eps(prediction):
  process = flow.RectifiedFlow()
  rng = np.random.default_rng(0)
  x0, eps = rng.normal(size=(2, 50)).astype(np.float32)
  t = np.linspace(0.02, 0.98, 50).astype(np.float32)
  z = process.add_noise(x0, eps, t)
  x0_hat, eps_hat = process.to_x0_and_eps(z, process.target(x0, eps, t, prediction), t, prediction)
  np.testing.assert_allclose(x0_hat, x0, atol=2e-4)
  np.testing.assert_allclose(eps_hat, eps, atol=2e-4)


def test_flow_time_draws():
  key = jax.random.PRNGKey(0)
  uniform = np.asarray(flow.RectifiedFlow().draw_levels(key, (20000,)))
  logit = np.asarray(flow.RectifiedFlow("logit_normal", logit_mean=1.0, logit_std=0.5).draw_levels(key, (20000,)))
  shifted = np.asarray(flow.RectifiedFlow("shifted", shift=3.0).draw_levels(key, (20000,)))
  assert uniform.min() > 0 and uniform.max() <= 1 and abs(uniform.mean() - 0.5) < 0.01
  logits = np.log(logit / (1 - logit))
  assert abs(logits.mean() - 1.0) < 0.02 and abs(logits.std() - 0.5) < 0.02
  np.testing.assert_allclose(shifted, flow.shift_time(uniform, 3.0), rtol=1e-5)   # same key, same u
  assert shifted.mean() > 0.6                                                      # pushed towards noise


def test_flow_cosine_draws_and_ddpm_v_weighting_are_the_cosine_ddpm_loss():
  """'cosine' t has the SNRs of the cosine DDPM at uniform steps, and with 'ddpm_v' a flow v error costs what
  DDPM's v-loss charges for the same x0 error at the same SNR."""
  key = jax.random.PRNGKey(1)
  t = np.asarray(flow.RectifiedFlow("cosine").draw_levels(key, (20000,)))
  schedule = diffusion.make_schedule("cosine")
  abar = np.asarray(schedule.alpha_bar)[1:]
  log_snr_ddpm = np.log(abar / (1 - abar))                 # at every integer step, drawn uniformly in training
  log_snr_flow = 2 * np.log((1 - t) / t)
  q = [0.1, 0.25, 0.5, 0.75, 0.9]                          # the tails differ by the schedule's offset s = 0.008
  np.testing.assert_allclose(np.quantile(log_snr_flow, q), np.quantile(log_snr_ddpm, q), atol=0.25)
  process = flow.RectifiedFlow(loss_weighting="ddpm_v")
  t = np.linspace(0.02, 0.98, 49).astype(np.float32)
  sigma = t / np.sqrt(t ** 2 + (1 - t) ** 2)                # DDPM's sqrt(1 - abar) at the same SNR
  x0, eps = np.random.default_rng(0).normal(size=(2, 49)).astype(np.float32)
  z = process.add_noise(x0, eps, t)
  err = 0.1                                                # a v error -> an x0 error of t * err
  x0_hat, _ = process.to_x0_and_eps(z, process.target(x0, eps, t, "v") + err, t, "v")
  ddpm_v_loss = np.square((x0_hat - x0) / sigma)           # DDPM v-prediction: x0 error = sigma * v error
  np.testing.assert_allclose(process.loss_weight(t) * err ** 2, ddpm_v_loss, rtol=1e-3)
  assert float(flow.RectifiedFlow().loss_weight(0.3)) == 1.0
  with pytest.raises(ValueError, match="diffusion.loss_weighting"):
    flow.RectifiedFlow(loss_weighting="sd3")


@pytest.mark.parametrize("spacing", diffusion.SPACINGS)
def test_ddpm_spacings_run_from_T_to_zero(spacing):
  schedule = diffusion.make_schedule("linear", 1000)
  for steps in (1, 5, 20, 50):
    levels = schedule.sampling_levels(steps, spacing, 3.0)
    assert len(levels) == steps + 1 and levels[-1] == 0 and (np.diff(levels) < 0).all()
    assert levels[0] == 1000 or spacing == "karras"
  assert diffusion.sampling_timesteps(10, 10, "karras", alpha_bar=np.asarray(
      diffusion.make_schedule("linear", 10).alpha_bar)).tolist() == list(range(10, -1, -1))


def test_network_evaluations():
  assert solvers.network_evaluations("heun", 10) == 19
  assert solvers.network_evaluations("dpm++2m", 20) == 20


def _reads_the_other(params, audio, video, t):
  """A network whose audio output is the video's mean where video is not at pure noise (flow: t < 1), and the
  other way round; with the own latents added, so each pass's own input shows too."""
  seen_v = (t[:, monl.VIDEO, :1] < 1).astype(audio.dtype)[:, :, None]          # [B, 1, 1]
  seen_a = (t[:, monl.AUDIO, :1] < 1).astype(audio.dtype)[:, :, None, None, None]  # [B, 1, 1, 1, 1]
  out_a = audio + seen_v * video.mean(axis=(1, 2, 3, 4))[:, None, None]
  out_v = video + seen_a * audio.mean(axis=(1, 2))[:, None, None, None, None]
  return out_a, out_v


@pytest.mark.parametrize("weights", [2.0, (0.5, 3.0)])
def test_cross_guidance_pushes_each_modality_away_from_its_prediction_without_the_other(weights):
  """Joint generation (nothing given): out_m = cond_m + c_m (cond_m - out_m with the other modality at pure
  noise); the pass without the other sees the same own latents, so the push is c_m x what the other adds."""
  process = flow.RectifiedFlow()
  config = sampling.SamplerConfig(process, SEGS, sampler="euler", num_steps=4, prediction="v",
                                  cross_guidance=weights)
  assert config.cross_guided and not config.guided
  c_a, c_v = config.cross_weights
  cond = sampling.make_condition(config, monl.joint(N), np.zeros((2, 10, 1)), np.zeros((2, 5, 2, 2, 1)))
  z_a = jax.random.normal(jax.random.PRNGKey(1), (2, 10, 1))
  z_v = jax.random.normal(jax.random.PRNGKey(2), (2, 5, 2, 2, 1))
  level = 0.5
  got = sampling.make_predict(_reads_the_other, config)(None, z_a, z_v, level, cond, jax.random.PRNGKey(3))
  want_a = z_a + (1 + c_a) * z_v.mean(axis=(1, 2, 3, 4))[:, None, None]
  want_v = z_v + (1 + c_v) * z_a.mean(axis=(1, 2))[:, None, None, None, None]
  for (x0, eps), out, z in zip(got, (want_a, want_v), (z_a, z_v)):
    want_x0, want_eps = process.to_x0_and_eps(z, out, level, "v")
    np.testing.assert_allclose(x0, want_x0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eps, want_eps, rtol=1e-5, atol=1e-5)
  # With MoNL's guidance too (a2v: audio given), both pushes add: video's unconditional pass and its pass
  # without audio both drop the audio, so video gets (1 + w + c) x what the audio adds.
  both = dataclasses.replace(config, guidance=1.5)
  cond = sampling.make_condition(both, monl.a2v(N), np.asarray(z_a), np.zeros((2, 5, 2, 2, 1)))
  (_, _), (x0_v, _) = sampling.make_predict(_reads_the_other, both)(None, z_a, z_v, level, cond,
                                                                     jax.random.PRNGKey(3))
  want_v = z_v + (1 + 1.5 + c_v) * z_a.mean(axis=(1, 2))[:, None, None, None, None]
  np.testing.assert_allclose(x0_v, process.to_x0_and_eps(z_v, want_v, level, "v")[0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match=r"^sampling.cross_guidance must be >= 0"):
    dataclasses.replace(config, cross_guidance=(1.0, -1.0))
