"""Checkpoints: exact resume after SIGKILL, SIGTERM, a corrupt newest checkpoint, another mesh, bad configs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from avdit_jax.train import trainer
from train_test import ROOT, load_config

K = 4


def _config(**train_fields):
  config = load_config(arg="test")
  config.checkpoint.every_steps = K
  config.checkpoint.async_save = False
  config.evals = {}
  for key, value in train_fields.items():
    config.train[key] = value
  return config


# The entry point, with every checkpoint save followed by a SIGKILL once the save of step argv[1] is on disk:
# a process that dies hard at the worst moment for a resume.
KILL_AFTER_SAVE = """
import os, signal, sys
from absl import app
from avdit_jax import main
from avdit_jax.train import checkpoint
kill_at, sys.argv = int(sys.argv[1]), sys.argv[:1] + sys.argv[2:]
save = checkpoint.save
def save_then_die(manager, step, *args, **kwargs):
  started = save(manager, step, *args, **kwargs)
  if step == kill_at:
    manager.wait_until_finished()
    os.kill(os.getpid(), signal.SIGKILL)
  return started
checkpoint.save = save_then_die
app.run(main.main)
"""


def _main(workdir, *overrides, wait=True, kill_after_save_of=None):
  entry = ["-m", "avdit_jax.main"] if kill_after_save_of is None else ["-c", KILL_AFTER_SAVE, str(kill_after_save_of)]
  cmd = [sys.executable, *entry, "--config=configs/gaussian.py:test", f"--workdir={workdir}",
         f"--config.checkpoint.every_steps={K}", "--config.evals.gaussian_toy.tasks=()", *overrides]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if wait:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err
  return proc


def _metrics(workdir):
  """step -> the row's deterministic fields (wall-clock throughput differs between runs by nature)."""
  rows = map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
  return {row["step"]: trainer.deterministic(row) for row in rows}


def _assert_same_tree(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_after_sigkill_is_bit_exact(tmp_path):
  reference = trainer.train_and_evaluate(_config(num_steps=2 * K), str(tmp_path / "ref"))
  killed = tmp_path / "killed"
  rc, err = _main(killed, f"--config.train.num_steps={2 * K}", kill_after_save_of=K)
  assert rc == -signal.SIGKILL, err[-2000:]
  assert max(_metrics(killed)) <= K
  resumed = trainer.train_and_evaluate(_config(num_steps=2 * K), str(killed))
  ref_rows, got_rows = _metrics(tmp_path / "ref"), _metrics(killed)
  assert sorted(got_rows) == list(range(1, 2 * K + 1))
  for step in range(K + 1, 2 * K + 1):
    assert got_rows[step] == ref_rows[step], step             # every logged float, exactly
  _assert_same_tree(reference.params, resumed.params)
  _assert_same_tree(reference.opt_state, resumed.opt_state)
  _assert_same_tree(reference.ema_params, resumed.ema_params)


def test_sigterm_saves_at_the_step_it_stopped_and_exits_zero(tmp_path):
  proc = _main(tmp_path, "--config.train.num_steps=100000", "--config.checkpoint.every_steps=100000", wait=False)
  path = tmp_path / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-2000:]
  saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert saved and saved[-1] == max(_metrics(tmp_path)) and saved[-1] < 100000
  state = trainer.train_and_evaluate(_config(num_steps=saved[-1] + 1), str(tmp_path))
  assert int(state.step) == saved[-1] + 1                    # and it resumes from there


def test_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
  trainer.train_and_evaluate(_config(num_steps=2 * K), str(tmp_path))
  first = _metrics(tmp_path)
  state_dir = tmp_path / "checkpoints" / str(2 * K) / "state"
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(max(os.path.getsize(f.name) // 3, 0))
  with caplog.at_level("WARNING"):
    state = trainer.train_and_evaluate(_config(num_steps=2 * K), str(tmp_path))
  assert any("skipping checkpoint" in r.getMessage() and f"/{2 * K}" in r.getMessage() for r in caplog.records)
  assert int(state.step) == 2 * K
  again = _metrics(tmp_path)
  assert [again[s] for s in range(K + 1, 2 * K + 1)] == [first[s] for s in range(K + 1, 2 * K + 1)]


def test_checkpoint_restores_onto_another_mesh(tmp_path):
  config = _config(num_steps=K)
  trainer.train_and_evaluate(config, str(tmp_path))
  trainer.train_and_evaluate(_config(num_steps=2 * K), str(tmp_path / "ref"))
  config = _config(num_steps=2 * K)
  config.mesh.shape = (2, 2, 2)
  state = trainer.train_and_evaluate(config, str(tmp_path))
  kernel = state.params["block_0"]["mlp_in"]["kernel"]
  assert kernel.sharding.shard_shape(kernel.shape) == (32, 128)          # laid out on the new mesh
  ref, got = _metrics(tmp_path / "ref"), _metrics(tmp_path)
  np.testing.assert_allclose([got[s]["loss"] for s in range(K + 1, 2 * K + 1)],
                             [ref[s]["loss"] for s in range(K + 1, 2 * K + 1)], rtol=1e-5)


def test_checkpoint_of_another_model_config_is_refused(tmp_path):
  trainer.train_and_evaluate(_config(num_steps=K), str(tmp_path))
  config = _config(num_steps=2 * K)
  config.model.variant = "mini"
  with pytest.raises(ValueError, match=r"checkpoint .*/4 was written with config.model = .*'variant': 'tiny'"):
    trainer.train_and_evaluate(config, str(tmp_path))
  shutil.rmtree(tmp_path)


def test_checkpoint_of_other_shapes_is_refused_not_set_aside(tmp_path):
  trainer.train_and_evaluate(_config(num_steps=K), str(tmp_path))
  config = _config(num_steps=2 * K)
  config.data.audio_shape = (8, 4)                       # audio_embed's kernel becomes [8, 64] (saved: [4, 64])
  with pytest.raises(ValueError, match=r"checkpoint .*/4 holds params of other shapes than this config builds "
                                       r"\(\['audio_embed'\]\['kernel'\] \(4, 64\) saved, \(8, 64\) built"):
    trainer.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == [str(K)]      # nothing set aside


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
  trainer.train_and_evaluate(_config(num_steps=K), str(tmp_path))
  path = tmp_path / "metrics.jsonl"
  whole = path.read_text()
  path.write_text(whole + '{"step": 5, "loss": 0.12')          # a kill in the middle of writing step 5's row
  trainer.train_and_evaluate(_config(num_steps=K + 1), str(tmp_path))
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert [r["step"] for r in rows] == list(range(1, K + 2))
  path.write_text(whole.replace('"step": 2,', '"step": 2, oops', 1))   # not torn: a broken row in the middle
  with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a metrics row"):
    trainer.train_and_evaluate(_config(num_steps=K + 1), str(tmp_path))


@pytest.mark.parametrize("field,value", [("train.log_every", 0), ("checkpoint.every_steps", 0),
                                         ("train.num_steps", -1), ("data.batch_size", 0),
                                         ("checkpoint.max_to_keep", 0)])
def test_intervals_and_sizes_must_be_positive_before_anything_compiles(field, value, monkeypatch):
  config = _config()
  section, name = field.split(".")
  config[section][name] = value
  monkeypatch.setattr(trainer, "build", lambda *a, **k: pytest.fail("built before the check"))
  with pytest.raises(ValueError, match=rf"^config.{field} must be a whole number >= 1, got {value}\.$"):
    trainer.train_and_evaluate(config, "")


def test_saving_small_replicated_arrays_compiles_nothing(tmp_path):
  """Orbax's replica-parallel save slices each replicated array per device with an eager jit(slice), one compile
  per (shape, device) on a process's first save (~0.4 s a shape here); checkpoint.py keeps small arrays whole.
  Shown failing once without that registration: 8 compiles per shape."""
  from jax.sharding import NamedSharding, PartitionSpec
  from avdit_jax.train import checkpoint
  replicated = NamedSharding(jax.make_mesh((8,), ("data",)), PartitionSpec())
  state = {f"w{i}": jax.device_put(np.full((3, 5 + i), i, np.float32), replicated) for i in range(4)}
  compiles = []
  listener = lambda event, *_, **__: compiles.append(event) if event.endswith("backend_compile_duration") else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    manager = checkpoint.make_manager(str(tmp_path), _config())
    assert checkpoint.save(manager, 1, state, {"position": 0}, _config())
    manager.wait_until_finished()
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not compiles, f"{len(compiles)} programs compiled to save {len(state)} small arrays"
  import orbax.checkpoint as ocp
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  restored = manager.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(state))
