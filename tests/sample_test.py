"""The sampler against exact Gaussian conditionals: it must draw from p(generated | given) for every task.

With the Bayes-optimal denoiser of a jointly Gaussian audio-video model in place of the network, the
samples' mean and covariance are compared with the analytic conditional. Tolerance: the KL divergence
of the fitted sample Gaussian from the truth is, from finite samples alone, about d (d + 3) / (4 n)
for d generated elements and n samples; we allow twice that plus 0.005 for the discretisation of the
reverse process, and every coordinate's mean within 4.5 standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax.core import diffusion, gaussian, monl, sampling

N = 5
SEGS = monl.frame_segments(10, 1, 5, 1, N)
TOY = gaussian.coupled_gaussian((10, 1), (5, 2, 2, 1), SEGS, seed=0)
NUM_SAMPLES = 4096
TASKS = {
    "joint": monl.joint(N),
    "a2v": monl.a2v(N),
    "v2a": monl.v2a(N),
    "av_continue_1": monl.av_continue(N, 1),
    "av_continue_3": monl.av_continue(N, 3),
    "av_inpaint": monl.av_inpaint(N, 1, 1),
}
SAMPLERS = {  # name -> (schedule, SamplerConfig fields)
    "ddpm": ("linear", dict(sampler="ddpm", num_steps=250)),
    "ddim": ("cosine", dict(sampler="ddim", num_steps=100, eta=0.0)),
}


def _draw(task_mask, schedule, prediction="epsilon", seed=0, **fields):
  config = sampling.SamplerConfig(schedule, SEGS, prediction=prediction, **fields)
  a0, v0 = TOY.sample(jax.random.PRNGKey(100 + seed), 1)
  cond = sampling.make_condition(config, task_mask, jnp.repeat(a0, NUM_SAMPLES, 0),
                                 jnp.repeat(v0, NUM_SAMPLES, 0))
  audio, video = sampling.sample(sampling.without_params(TOY.denoiser(schedule, prediction)), config, cond,
                                 jax.random.PRNGKey(seed))
  return np.asarray(TOY.flatten(audio, video), np.float64), (a0, v0)


def _check_conditional(x, task_mask, given):
  gen, mean, cov = TOY.conditional(task_mask, *given)
  clean = np.asarray(TOY.flatten(*given), np.float64)[0]
  np.testing.assert_array_equal(x[:, ~gen], np.broadcast_to(clean[~gen], x[:, ~gen].shape))
  fit = gaussian.sample_fit(x[:, gen], mean, cov)
  assert fit["max_z"] < 4.5, f"a mean is {fit['max_z']:.1f} standard errors off"
  assert fit["kl"] < fit["tolerance"], f"KL {fit['kl']:.4f} from the true conditional exceeds {fit['tolerance']:.4f}"


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("task", sorted(TASKS))
def test_exact_denoiser_draws_the_true_conditional(task, sampler):
  schedule_name, fields = SAMPLERS[sampler]
  schedule = diffusion.make_schedule(schedule_name, 1000)
  x, given = _draw(TASKS[task], schedule, loop="fori", **fields)
  _check_conditional(x, TASKS[task], given)


def test_v_prediction_and_python_loop_draw_the_true_conditional():
  schedule = diffusion.make_schedule("cosine", 1000)
  mask = TASKS["av_continue_1"]
  x, given = _draw(mask, schedule, prediction="v", sampler="ddim", num_steps=100, loop="python")
  _check_conditional(x, mask, given)


def test_loop_forms_agree():
  schedule = diffusion.make_schedule("linear", 1000)
  config = dict(sampler="ddpm", num_steps=20)
  mask = TASKS["a2v"]
  x_py, _ = _draw(mask, schedule, loop="python", **config)
  x_fori, _ = _draw(mask, schedule, loop="fori", **config)
  np.testing.assert_allclose(x_py, x_fori, atol=1e-4)


def test_monl_guidance_pushes_away_from_the_unconditional():
  """Guidance w > 0 moves the a2v sample mean beyond the conditional mean, away from the prior's.

  If the unconditional pass did not drop the audio (t = T), both passes would agree and guidance
  would change nothing.
  """
  schedule = diffusion.make_schedule("linear", 1000)
  mask = TASKS["a2v"]
  means = {}
  for w in (0.0, 1.0):
    x, given = _draw(mask, schedule, sampler="ddim", num_steps=50, guidance=w, loop="fori")
    gen, cond_mean, _ = TOY.conditional(mask, *given)
    means[w] = x[:, gen].mean(0)
  direction = cond_mean - TOY.mean[gen]
  project = lambda m: (m - TOY.mean[gen]) @ direction / (direction @ direction)
  assert abs(project(means[0.0]) - 1.0) < 0.05
  assert project(means[1.0]) > 1.3


def test_bad_tasks_raise_before_sampling():
  schedule = diffusion.make_schedule("linear", 1000)
  config = sampling.SamplerConfig(schedule, SEGS, guidance=1.0)
  a, v = TOY.sample(jax.random.PRNGKey(0), 2)
  with pytest.raises(ValueError, match="nothing is given"):
    sampling.make_condition(config, TASKS["joint"], a, v)
  with pytest.raises(ValueError, match="nothing to generate"):
    sampling.make_condition(config, np.ones((2, N), bool), a, v)
  with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
    sampling.make_condition(config, np.zeros((2, 3), bool), a, v)
  with pytest.raises(ValueError, match="latent lengths"):
    sampling.make_condition(config, TASKS["a2v"], a[:, :4], v)
  with pytest.raises(ValueError, match="sampling.sampler"):
    sampling.SamplerConfig(schedule, SEGS, sampler="euler")


@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_a_sampling_step_costs_about_one_forward_pass(guidance):
  """XLA's FLOP count of one reverse step vs one network call on the same (guided: doubled) batch."""
  from avdit_jax.models import avdit
  net = avdit.make_model("S", depth=2, num_segments=4, audio_patch=1, video_patch=(1, 2, 2))
  segs = monl.frame_segments(64, 1, 4, 1, 4)
  audio, video = jnp.zeros((4, 64, 8)), jnp.zeros((4, 4, 16, 16, 4))
  t = jnp.zeros((4, 2, 4), jnp.int32)
  params = jax.eval_shape(net.init, jax.random.PRNGKey(0), audio, video, t)
  config = sampling.SamplerConfig(diffusion.make_schedule("cosine"), segs, prediction="v", guidance=guidance)
  cond = sampling.make_condition(config, monl.a2v(4), audio, video)
  state = sampling.State(audio, video, jax.random.PRNGKey(0))

  def one_step(p, s, c):
    return sampling.make_step(lambda params, a, v, tt: net.apply(params, a, v, tt), config)(s, jnp.int32(0), c, p)

  step_flops = jax.jit(one_step).lower(params, state, cond).compile().cost_analysis()["flops"]
  rows = 2 if guidance else 1
  fwd = jax.jit(net.apply).lower(params, jnp.zeros((4 * rows, 64, 8)), jnp.zeros((4 * rows, 4, 16, 16, 4)),
                                 jnp.zeros((4 * rows, 2, 4), jnp.int32)).compile().cost_analysis()["flops"]
  assert step_flops <= 1.05 * fwd, (step_flops, fwd)
