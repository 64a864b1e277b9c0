"""Two processes on localhost (jax.distributed over CPU) train like one process with the same global batch."""

import json
import re
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
  assert "[p1]" in out.stdout and re.search(r"process 1 of 2 \(pid \d+\), 4 local / 8 global devices", out.stdout)

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


def _launch(workdir, *overrides, mode="train"):
  cmd = [sys.executable, "launch/local.py", "--num_processes=2", "--devices_per_process=4", "--",
         sys.executable, "-m", "avdit_jax.main", "--config=configs/gaussian.py:test", f"--workdir={workdir}",
         f"--mode={mode}", "--config.mesh.shape=(1,-1,1)", *overrides]          # FSDP over both processes
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_to_one_of_two_processes_saves_one_step_then_fsdp_evaluates_and_samples(tmp_path):
  """SIGTERM to process 1 only: both processes checkpoint the same step (JAX's preemption sync point) and exit 0.
  Then, FSDP over both processes, the resumed run's end-of-run evaluation and --mode=sample work, and the samples
  equal a data-parallel restore's in one process."""
  import os
  import signal
  import threading
  import time
  workdir = tmp_path / "run"
  proc = _launch(workdir, "--config.train.num_steps=100000", "--config.checkpoint.every_steps=100000",
                 "--config.evals.gaussian_toy.tasks=()")
  lines, pids = [], {}
  def read():
    for line in proc.stdout:
      lines.append(line)
      if line.startswith("[launch] process"):
        pids[int(line.split()[2].rstrip(":"))] = int(line.split()[-1])
  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  metrics, deadline = workdir / "metrics.jsonl", time.time() + 300
  while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
    time.sleep(0.2)
  os.kill(pids[1], signal.SIGTERM)
  assert proc.wait(timeout=300) == 0, "".join(lines[-60:])
  reader.join(timeout=30)
  saved = [line for line in lines if "preempted: checkpoint saved at step" in line]
  steps = {int(line.split()[-2].rstrip(",")) for line in saved}
  assert {line[:4] for line in saved} == {"[p0]", "[p1]"} and len(steps) == 1, saved
  step = steps.pop()
  assert sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit()) == [step]

  # Resume for one more step, FSDP over both processes; the Gaussian-toy evaluation runs at the end.
  resumed = _launch(workdir, f"--config.train.num_steps={step + 1}", "--config.evals.gaussian_toy.tasks=('a2v',)")
  out, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, out[-3000:]
  assert any("eval/gaussian_toy/a2v/mean_error" in r for r in map(json.loads, open(metrics)))
  sampled = _launch(workdir, "--config.sampling.tasks=('a2v',)", mode="sample")
  out, _ = sampled.communicate(timeout=600)
  assert sampled.returncode == 0, out[-3000:]
  got = np.load(workdir / "samples" / "a2v.npz")

  from avdit_jax.inference import frontend
  config = load_config(arg="test")                                 # data parallel, one process
  want = frontend.write_task_samples(frontend.Run.load(str(workdir), config=config), str(tmp_path / "one"), ("a2v",))
  for key in ("audio", "video"):
    np.testing.assert_allclose(got[key], np.load(want["a2v"])[key], rtol=1e-4, atol=1e-5)
