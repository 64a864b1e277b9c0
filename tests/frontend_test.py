"""The inference front end (inference/frontend.py): one Run for every caller, on the Gaussian toy's exact denoiser."""

import os

import jax
import numpy as np
import pytest

from avdit_jax import factory
from avdit_jax.core import monl
from avdit_jax.data import latents
from avdit_jax.evals import gaussian_toy
from avdit_jax.inference import frontend
from train_test import load_config


@pytest.fixture(scope="module")
def config():
  c = load_config(arg="test")
  c.sampling.update(num_steps=3, guidance=2.0)
  return c


def _clips(config, n=2):
  a, v = factory.gaussian_toy(config).sample(jax.random.PRNGKey(3), n)
  return np.asarray(a), np.asarray(v)


def test_a_task_with_nothing_given_samples_unguided(config):
  """Joint generation has no given portion to drop: the Run samples it without guidance instead of failing
  as the core sampler does, and a conditional task keeps the configured guidance."""
  run = gaussian_toy.exact_run(config)
  a, v = _clips(config)
  joint = run.sample(monl.joint(config.num_segments), a, v, jax.random.PRNGKey(0))
  unguided = run.sample(monl.joint(config.num_segments), a, v, jax.random.PRNGKey(0), guidance=0.0)
  np.testing.assert_array_equal(joint[0], unguided[0])
  cfg, _ = run.sampler(True)
  assert cfg.guidance == 2.0 and run.sampler(False)[0].guidance == 0.0
  assert len(run._samplers) == 3                    # guided, unguided, and the explicit guidance=0 override


def test_joint_generation_takes_the_joint_guidance_and_conditional_tasks_do_not(config):
  """sampling.joint_guidance guides a task with nothing given (cross-modal: each modality away from its
  prediction with the other at pure noise); conditional tasks keep MoNL's guidance alone."""
  c = load_config(arg="test")
  c.sampling.update(num_steps=3, guidance=2.0, joint_guidance=(1.5, 0.5))
  run = gaussian_toy.exact_run(c)
  assert run.sampler(False)[0].cross_guidance == (1.5, 0.5) and run.sampler(True)[0].cross_guidance == 0.0
  assert run.sampler(False, joint_guidance=0.0)[0].cross_guidance == 0.0
  a, v = _clips(c)
  joint = monl.joint(c.num_segments)
  guided = run.sample(joint, a, v, jax.random.PRNGKey(0))
  plain = run.sample(joint, a, v, jax.random.PRNGKey(0), joint_guidance=0.0)
  for x, y in zip(guided, plain):             # the toy's audio and video are coupled: both move
    assert np.isfinite(x).all() and np.abs(x - y).max() > 1e-3
  a2v = monl.a2v(c.num_segments)                # and the conditional task is the one without joint_guidance
  np.testing.assert_array_equal(run.sample(a2v, a, v, jax.random.PRNGKey(0))[1],
                                gaussian_toy.exact_run(config).sample(a2v, a, v, jax.random.PRNGKey(0))[1])


def test_given_portions_come_back_in_the_data_units(config):
  """With a normalizer the model sees normalised latents, the caller its own: given portions round-trip."""
  meta = latents.Metadata((8, 2), (4, 4, 4, 2), 1, ["x"], config.num_segments,
                          dict(audio_mean=[1.0, -2.0], audio_std=[3.0, 0.5], video_mean=[0.5, 0.0],
                               video_std=[2.0, 4.0]))
  plain = gaussian_toy.exact_run(config)
  scaled = frontend.Run(config, plain.network, plain.params, latents.Normalizer(meta))
  a, v = _clips(config)
  mask = monl.a2v(config.num_segments)
  got_a, got_v = scaled.sample(mask, a, v, jax.random.PRNGKey(0))
  np.testing.assert_allclose(got_a, a, rtol=1e-5, atol=1e-5)           # audio is given
  # The generated video is the model's sample in its own units, mapped back: the same draw as without the
  # normalizer, on inputs given in normalised units.
  norm_a, _ = latents.Normalizer(meta).to_model(a, v)
  ref_a, ref_v = plain.sample(mask, norm_a, v, jax.random.PRNGKey(0))
  np.testing.assert_allclose(got_v, ref_v * np.asarray(meta.normalization["video_std"]) +
                             np.asarray(meta.normalization["video_mean"]), rtol=1e-4, atol=1e-4)


def test_extend_continues_the_newest_latents(config):
  """Each window of the sliding window gives the model the newest N - 1 segments, and what it appends is
  the generated last segment: the input is kept, and every window's given part equals the sequence so far."""
  seen = []

  class Recording(frontend.Run):
    def sample(self, mask, audio, video, rng, **kw):
      seen.append((np.asarray(mask), np.array(audio), np.array(video)))
      return super().sample(mask, audio, video, rng, **kw)

  base = gaussian_toy.exact_run(config)
  run = Recording(config, base.network)
  a, v = _clips(config)
  out_a, out_v = run.extend(a, v, 3, jax.random.PRNGKey(1), guidance=0.0)
  seg = run.segments
  n = config.num_segments
  a_len, v_len = int(np.sum(seg.audio == n - 1)), int(np.sum(seg.video == n - 1))
  assert out_a.shape[1] == a.shape[1] + 3 * a_len and out_v.shape[1] == v.shape[1] + 3 * v_len
  np.testing.assert_array_equal(out_a[:, :a.shape[1]], a)
  np.testing.assert_array_equal(out_v[:, :v.shape[1]], v)
  assert len(seen) == 3
  ta, tv = len(seg.audio), len(seg.video)
  for i, (mask, window_a, window_v) in enumerate(seen):
    np.testing.assert_array_equal(mask, monl.av_continue(n, n - 1))
    end_a, end_v = a.shape[1] + i * a_len, v.shape[1] + i * v_len       # the sequence's length before window i
    np.testing.assert_array_equal(window_a[:, :ta - a_len], out_a[:, end_a - (ta - a_len):end_a])
    np.testing.assert_array_equal(window_v[:, :tv - v_len], out_v[:, end_v - (tv - v_len):end_v])


def test_a_checkpoint_from_before_the_flow_process_loads_and_samples(tmp_path):
  """tests/data/preflow_run: configs/gaussian.py:test trained 4 steps by the code before diffusion.process
  existed (its saved config has no process field, its AVDiT no time_scale), with 4-step a2v samples that
  code drew from it. It still restores as DDPM and samples the same latents."""
  import shutil
  src = os.path.join(os.path.dirname(__file__), "data", "preflow_run")
  workdir = str(tmp_path / "run")
  shutil.copytree(src, workdir)
  ref = np.load(os.path.join(src, "reference_a2v.npz"))
  run = frontend.Run.load(workdir)
  assert "process" not in run.config.diffusion and factory.process_name(run.config) == "ddpm"
  got_a, got_v = run.sample(monl.a2v(run.num_segments), ref["given_audio"], ref["given_video"],
                            jax.random.PRNGKey(0), num_steps=4)
  np.testing.assert_allclose(got_a, ref["audio"], atol=1e-5)
  np.testing.assert_allclose(got_v, ref["video"], rtol=1e-4, atol=1e-4)
