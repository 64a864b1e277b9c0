"""Two processes on localhost (jax.distributed over CPU) train like one process with the same global batch."""

import json
import subprocess
import sys

import numpy as np

from avdit_jax import factory
from avdit_jax.data import streams
from avdit_jax.train import sharding, trainer
from train_test import ROOT, load_config


def _config(latents, workdir_steps):
  config = load_config(arg="test")
  config.data.kind, config.data.dir, config.data.batch_size = "latents", str(latents), 8
  config.train.num_steps = workdir_steps
  config.checkpoint.every_steps = 4
  config.evals = {}
  return config


def test_two_processes_match_one_and_their_checkpoint_resumes(tmp_path):
  latents = tmp_path / "latents"
  config = _config(latents, 4)
  streams.write_gaussian_latents(factory.gaussian_toy(config), config, str(latents), 40, num_shards=2)
  two = tmp_path / "two"
  cmd = [sys.executable, "launch/local.py", "--num_processes=2", "--devices_per_process=4", "--",
         sys.executable, "-m", "avdit_jax.main", "--config=configs/gaussian.py:test", f"--workdir={two}",
         "--config.data.kind=latents", f"--config.data.dir={latents}", "--config.data.batch_size=8",
         "--config.checkpoint.every_steps=4", "--config.evals.gaussian_toy.tasks=()"]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:]
  assert "[p1]" in out.stdout and "process 1 of 2, 4 local / 8 global devices" in out.stdout

  one = tmp_path / "one"
  trainer.train_and_evaluate(_config(latents, 6), str(one))      # 1 process, the same 8 devices' mesh
  rows = lambda d: {r["step"]: r for r in map(json.loads, open(d / "metrics.jsonl"))}
  got, ref = rows(two), rows(one)
  assert sorted(got) == [1, 2, 3, 4]
  np.testing.assert_allclose([got[s]["loss"] for s in got], [ref[s]["loss"] for s in got], rtol=1e-5)

  state = trainer.train_and_evaluate(_config(latents, 6), str(two))   # the 2-process checkpoint, 1 process
  assert int(sharding.to_host(state.step)) == 6
  resumed = rows(two)
  np.testing.assert_allclose([resumed[s]["loss"] for s in (5, 6)], [ref[s]["loss"] for s in (5, 6)], rtol=1e-5)
