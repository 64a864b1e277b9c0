"""A gs:// workdir on a GCS emulator running on this machine (conftest.py's `gcs`): training, a resume after
SIGKILL, sampling, metrics.jsonl, TensorBoard and latent directories all go through avdit_jax/paths.py."""

import json
import os
import signal

import numpy as np

from avdit_jax import factory, paths
from avdit_jax.data import latents, streams
from avdit_jax.inference import frontend
from avdit_jax.train import trainer
from checkpoint_test import K, _assert_same_tree, _config, _main
from train_test import ROOT


def _rows(workdir) -> dict:
  return {r["step"]: trainer.deterministic(r) for r in map(json.loads, trainer.read_metrics_lines(
      paths.join(workdir, "metrics.jsonl")))}


def test_a_gs_workdir_trains_resumes_after_sigkill_bit_exactly_and_samples(gcs, tmp_path):
  reference = trainer.train_and_evaluate(_config(num_steps=2 * K), str(tmp_path / "ref"))
  remote = f"{gcs}/run"
  rc, err = _main(remote, f"--config.train.num_steps={2 * K}", kill_after_save_of=K)
  assert rc == -signal.SIGKILL, err[-3000:]
  assert max(_rows(remote)) <= K
  resumed = trainer.train_and_evaluate(_config(num_steps=2 * K), remote)
  ref_rows, got_rows = _rows(tmp_path / "ref"), _rows(remote)
  assert sorted(got_rows) == list(range(1, 2 * K + 1))
  assert all(got_rows[s] == ref_rows[s] for s in range(K + 1, 2 * K + 1))      # every logged float, exactly
  _assert_same_tree(reference.params, resumed.params)
  _assert_same_tree(reference.opt_state, resumed.opt_state)

  run = frontend.Run.load(remote)
  assert run.step == 2 * K
  written = frontend.write_task_samples(run, remote, ("a2v",), num_samples=2)
  with paths.path(written["a2v"]).open("rb") as f:
    got = np.load(f)["video"]
  local = frontend.write_task_samples(frontend.Run.load(str(tmp_path / "ref")), str(tmp_path / "ref"), ("a2v",),
                                      num_samples=2)
  np.testing.assert_array_equal(got, np.load(local["a2v"])["video"])
  root = paths.path(remote)
  assert sorted(p.name for p in (root / "checkpoints").iterdir() if p.name.isdigit()) == [str(K), str(2 * K)]
  assert any(p.name.startswith("events.out.tfevents") for p in (root / "tensorboard").iterdir())
  assert not os.path.exists(os.path.join(ROOT, "gs:"))                      # nothing went to a local 'gs:' dir


def test_latent_directories_write_and_read_on_gs(gcs, tmp_path):
  config = _config()
  config.data.kind, config.data.batch_size = "latents", 8
  toy = factory.gaussian_toy(config)
  batches = {}
  for where in (str(tmp_path / "latents"), f"{gcs}/latents"):
    streams.write_gaussian_latents(toy, config, where, 16, num_shards=2)
    meta = latents.Metadata.read(where)
    assert meta.num_clips == 16 and len(meta.shards) == 2
    config.data.dir = where
    batches[where] = next(iter(streams.latent_dataset(config)))
  a, b = batches.values()
  np.testing.assert_array_equal(a["video"], b["video"])
  np.testing.assert_array_equal(a["audio"], b["audio"])
  assert {p.name for p in paths.path(f"{gcs}/latents").iterdir()} == {"metadata.json", *meta.shards}


def test_converted_weights_write_and_read_on_gs(gcs):
  # What tools/convert_weights.py --out=gs://... writes and config.init_from / a tokenizer's weights then read.
  from avdit_jax.pretrained import files
  flat = {("block_0", "kernel"): np.arange(6, dtype=np.float32).reshape(2, 3), ("scale",): np.ones(4, np.float32)}
  target = f"{gcs}/weights/converted.safetensors"
  files.write_params(target, flat, source="test")
  assert not paths.path(target + ".part").exists()
  back = files.read_params(target)
  assert back.keys() == flat.keys()
  for k in flat:
    np.testing.assert_array_equal(back[k], flat[k])
  assert files.read_state_dict(target).keys() == {"block_0/kernel", "scale"}
