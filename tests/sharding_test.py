"""Meshes from config on 8 CPU devices: DP, FSDP and FSDP + tensor train to the same losses."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from avdit_jax import factory
from avdit_jax.evals import evaluators
from avdit_jax.inference import frontend
from avdit_jax.models import avdit
from avdit_jax.train import sharding, trainer
from train_test import load_config

MESHES = {"data": (-1, 1, 1), "fsdp": (1, -1, 1), "fsdp_tensor": (2, 2, 2)}


def _run(tmp_path, name, shape):
  config = load_config(arg="test")
  config.train.num_steps = 3
  config.mesh.shape = shape
  workdir = str(tmp_path / name)
  evals = [] if name == "data" else evaluators.for_config(config, workdir)   # the sharded runs evaluate at their end
  state = trainer.train_and_evaluate(config, workdir, evals)
  rows = [json.loads(line) for line in open(tmp_path / name / "metrics.jsonl")]
  return [r["loss"] for r in rows if "loss" in r], state, rows


def test_data_fsdp_and_tensor_parallel_agree_evaluate_and_sample_like_a_data_parallel_restore(tmp_path):
  """DP, FSDP and FSDP + tensor train to the same losses with really sharded params and optimizer state; the
  sharded runs evaluate at their end and sample from their sharded params in place what the same checkpoint
  restored data-parallel samples. (One test: the sampling half reuses the sharded runs instead of training
  them again.)"""
  results = {name: _run(tmp_path, name, shape) for name, shape in MESHES.items()}
  reference = results["data"][0]
  assert len(reference) == 3
  for name, (losses, _, _) in results.items():
    np.testing.assert_allclose(losses, reference, rtol=2e-5, err_msg=name)
  # The states really are laid out differently: the MLP kernel is [64, 256] in the tiny model.
  shard = lambda x: x.sharding.shard_shape(x.shape)
  kernel = lambda name: results[name][1].params["block_0"]["mlp_in"]["kernel"]
  assert shard(kernel("data")) == (64, 256)
  assert shard(kernel("fsdp")) == (8, 256)
  assert shard(kernel("fsdp_tensor")) == (32, 128)
  mu = results["fsdp_tensor"][1].opt_state[1][0].mu["block_0"]["mlp_in"]["kernel"]
  assert shard(mu) == (32, 128)                                    # optimizer state follows the params

  for name, split in (("fsdp", (8, 256)), ("fsdp_tensor", (32, 128))):
    assert any("eval/gaussian_toy/a2v/mean_error" in r for r in results[name][2]), name
    workdir = str(tmp_path / name)
    sharded = frontend.Run.load(workdir)                         # the saved config's mesh: FSDP (+ tensor)
    kernel = sharded.params["block_0"]["mlp_in"]["kernel"]
    assert kernel.sharding.shard_shape(kernel.shape) == split, name        # [64, 256] on 'embed' x 'mlp'
    replicated = frontend.Run.load(workdir, config=load_config(arg="test"))   # mesh (-1, 1, 1)
    assert replicated.params["block_0"]["mlp_in"]["kernel"].sharding.is_fully_replicated
    config = sharded.config
    mask, clips = factory.task("a2v", config.num_segments), frontend.conditioning_clips(config, 2)
    got = sharded.sample(mask, *clips, jax.random.PRNGKey(0))
    want = replicated.sample(mask, *clips, jax.random.PRNGKey(0))
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_mesh_errors_name_the_field():
  with pytest.raises(ValueError, match=r"mesh.shape \(3, -1, 1\) does not divide the 8 devices"):
    sharding.mesh_shape(("data", "fsdp", "tensor"), (3, -1, 1), 8)
  with pytest.raises(ValueError, match=r"needs 16 devices, but there are 8"):
    sharding.mesh_shape(("data", "fsdp", "tensor"), (4, 4, 1), 8)
  with pytest.raises(ValueError, match="at most one -1"):
    sharding.mesh_shape(("data", "fsdp"), (-1, -1), 8)
  config = ml_collections.ConfigDict({"mesh": {"axes": ("data", "fsdp"), "rules": (("embed", "tensor"),)}})
  with pytest.raises(ValueError, match="'embed' maps to 'tensor', which is not in mesh.axes"):
    sharding.rules(config)
  mesh = sharding.make_mesh(ml_collections.ConfigDict({"mesh": {"axes": ("data",), "shape": (-1,)}}))
  with pytest.raises(ValueError, match="data.batch_size 12 is not divisible by the 8 batch shards"):
    sharding.check_divisible(12, mesh, (("batch", "data"),))


def test_a_mesh_that_cannot_split_a_parameter_names_it_and_the_field():
  config = load_config(arg="test")
  config.mesh.shape = (1, 1, 8)                  # tensor 8: the tiny model has 4 heads
  with pytest.raises(ValueError, match=r"config.mesh.shape \(1, 1, 8\): .* split 8 ways over \('tensor',\)"):
    trainer.build(config)


def test_new_params_reuse_the_compiled_sampler():
  """The params are an argument of the compiled sampler: a Run with other params of the same shapes traces
  nothing again (the network is called only while tracing)."""
  config = load_config(arg="test")
  setup = trainer.build(config)
  state = setup.init_fn()
  traced = []
  network = avdit.network(setup.model)
  run = frontend.Run(config, lambda *args: (traced.append(1), network(*args))[1], state.params)
  mask, clips = factory.task("a2v", config.num_segments), frontend.conditioning_clips(config, 2)
  first = run.sample(mask, *clips, jax.random.PRNGKey(0))
  count = len(traced)
  moved = jax.tree.map(lambda x: x + 0.01, state.params)
  second = run.with_params(moved, step=1).sample(mask, *clips, jax.random.PRNGKey(0))
  assert count > 0 and len(traced) == count
  assert not np.allclose(first[1], second[1])                    # and the new params are the ones used
