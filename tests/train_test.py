"""Training the tiny AVDiT with MoNL on jointly Gaussian latents actually learns the conditionals."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax import factory
from avdit_jax.core import monl, objective
from avdit_jax.evals import gaussian_toy
from avdit_jax.inference import frontend
from avdit_jax.train import trainees, trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name="gaussian", arg=""):
  return factory.load_config(os.path.join(ROOT, "configs", f"{name}.py") + (f":{arg}" if arg else ""))


@pytest.mark.parametrize("process", ["ddpm", "flow"])
def test_loss_is_lowest_for_the_exact_denoiser_and_ignores_clean_portions(process):
  config = load_config()
  config.diffusion.process = process
  obj = factory.training_objective(config)
  toy = factory.gaussian_toy(config)
  a, v = toy.sample(jax.random.PRNGKey(0), 256)
  exact = toy.denoiser(obj.process, obj.prediction)
  zero = lambda za, zv, t: (jnp.zeros_like(za), jnp.zeros_like(zv))
  loss_fn = jax.jit(lambda d, k: objective.loss_fn(obj, d, a, v, k), static_argnums=0)
  l_exact, aux = loss_fn(exact, jax.random.PRNGKey(1))
  l_zero, _ = loss_fn(zero, jax.random.PRNGKey(1))
  assert float(l_exact) < 0.8 * float(l_zero)
  t = np.asarray(aux["t"])
  assert (t == 0).any()                                   # the mixture shows clean portions
  assert t.dtype == (np.float32 if process == "flow" else np.int32) and t.max() <= obj.process.pure_noise
  # Clean elements carry no loss: the element count matches the noisy cells exactly.
  cells_audio = np.bincount(obj.segments.audio, minlength=config.num_segments) * a.shape[-1]
  cells_video = np.bincount(obj.segments.video, minlength=config.num_segments) * np.prod(v.shape[2:])
  noisy = ((t[:, 0] > 0) * cells_audio).sum() + ((t[:, 1] > 0) * cells_video).sum()
  assert float(aux["strategy_count"].sum()) == noisy


def test_bad_process_settings_raise_naming_the_field():
  config = load_config()
  config.diffusion.process = "edm"
  with pytest.raises(ValueError, match="diffusion.process: unknown 'edm'"):
    factory.training_objective(config)
  config.diffusion.process, config.diffusion.t_sampling = "ddpm", "logit_normal"
  with pytest.raises(ValueError, match="diffusion.t_sampling 'logit_normal' is the flow process's"):
    factory.training_objective(config)
  config.diffusion.process, config.diffusion.prediction = "flow", "score"
  with pytest.raises(ValueError, match="diffusion.prediction: unknown 'score' for process 'flow'"):
    factory.training_objective(config)


@pytest.mark.parametrize("schedule,prediction", [("cosine", "v"), ("linear", "epsilon")])
def test_tiny_avdit_learns_the_a2v_conditional(schedule, prediction, tmp_path):
  config = load_config()
  config.diffusion.schedule, config.diffusion.prediction = schedule, prediction
  config.train.num_steps = 300
  config.train.log_every = 1
  state = trainer.train_and_evaluate(config, str(tmp_path))

  losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
  assert len(losses) == 300
  assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:5])

  model = factory.model(config)
  trainee = trainees.for_config(config)
  fresh = jax.jit(lambda: trainer.init_state(config, trainee, trainer.make_optimizer(config)))().params
  draws = dict(num_conditions=4, samples_per_condition=64)
  errors = lambda run: gaussian_toy.task_errors(config, run, ["a2v"], **draws)["a2v"]
  got = errors(frontend.Run.for_params(config, model, state.params))
  base = errors(frontend.Run.for_params(config, model, fresh))
  floor = errors(gaussian_toy.exact_run(config))
  assert got["mean"] < base["mean"]
  assert got["std"] < base["std"]                  # the spread is learnt too (tools/table1.py scores both)
  assert floor["std"] < got["std"]
  if prediction == "v":   # measured: ~0.09 against 0.48 for the prior mean; epsilon needs ~1000 steps
    assert got["mean"] < 0.5 * got["prior_mean"], got


def test_per_strategy_losses_are_logged(tmp_path):
  config = load_config(arg="test")
  trainer.train_and_evaluate(config, str(tmp_path))
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2, 3, 4]
  keys = set().union(*rows)
  assert {"loss", "grad_norm", "lr"} <= keys
  assert any(k.startswith("loss/") for k in keys)
  assert all(k[5:] in monl.STRATEGIES for k in keys if k.startswith("loss/"))
  # Throughput is timed from the end of the first (compiling) step on; MFU needs a configured peak.
  assert "steps_per_sec" not in rows[0] and rows[-1]["steps_per_sec"] > 0
  assert rows[-1]["examples_per_sec"] == rows[-1]["steps_per_sec"] * config.data.batch_size
  assert rows[-1]["tflops_per_device"] > 0 and "mfu" not in rows[-1]
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tensorboard"))


def test_mfu_against_a_measured_peak(tmp_path):
  config = load_config(arg="test")
  config.train.peak_flops_per_device = -1.0          # measure this machine's matmul peak at start
  trainer.train_and_evaluate(config, str(tmp_path))
  last = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
  # The tiny test model is far from a big matmul's rate, but its MFU is a positive fraction of it.
  assert 0 < last["mfu"] < 1
  peak = last["tflops_per_device"] * 1e12 / last["mfu"]
  assert peak > 1e9                                  # any CPU of this decade does a GFLOP/s


def test_bad_monl_config_raises_naming_the_field():
  config = load_config()
  config.monl.weights = dict(vanilla=1.0, per_modal=1.0)
  with pytest.raises(ValueError, match="monl.weights: unknown strategies"):
    factory.training_objective(config)
  config = load_config()
  config.monl.weights = dict(conditional=1.0)
  with pytest.raises(ValueError, match="monl.task is not set"):
    factory.training_objective(config)
  config.monl.task = "audio:all,video:all"
  with pytest.raises(ValueError, match="monl.task: every portion is given"):
    factory.training_objective(config)
  config = load_config()
  config.model.video_patch = (1, 3, 3)
  with pytest.raises(ValueError, match="not divisible by the patch 3x3"):
    factory.training_objective(config)


def test_unknown_config_override_is_refused_by_name(tmp_path):
  import subprocess
  import sys
  out = subprocess.run([sys.executable, "-m", "avdit_jax.main", "--config=configs/gaussian.py:test",
                        f"--workdir={tmp_path}", "--config.train.num_stpes=3"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0
  assert "num_stpes" in out.stderr and 'Did you mean "num_steps"' in out.stderr
  assert not os.path.exists(tmp_path / "metrics.jsonl")


def test_sample_mode_writes_every_task_from_the_checkpoint(tmp_path):
  import subprocess
  import sys
  base = [sys.executable, "-m", "avdit_jax.main", "--config=configs/gaussian.py:test", f"--workdir={tmp_path}"]
  out = subprocess.run(base + ["--mode=sample"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "no checkpoints in" in out.stderr and "train there first" in out.stderr
  assert subprocess.run(base, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
  out = subprocess.run(base + ["--mode=sample"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  config = load_config(arg="test")
  for spec in config.sampling.tasks:
    z = np.load(tmp_path / "samples" / (spec.replace(":", "_") + ".npz"))
    mask = factory.task(spec, config.num_segments)
    np.testing.assert_array_equal(z["mask"], mask)
    assert z["audio"].shape == (4, *config.data.audio_shape) and np.isfinite(z["video"]).all()
    given_video = mask[monl.VIDEO][factory.frame_segments(config).video]           # per video frame
    np.testing.assert_array_equal(z["video"][:, given_video], z["given_video"][:, given_video])
