"""Meshes from config on 8 CPU devices: DP, FSDP and FSDP + tensor train to the same losses."""

import json

import ml_collections
import numpy as np
import pytest

from avdit_jax.train import sharding, trainer
from train_test import load_config

MESHES = {"data": (-1, 1, 1), "fsdp": (1, -1, 1), "fsdp_tensor": (2, 2, 2)}


def _run(tmp_path, name, shape):
  config = load_config(arg="test")
  config.train.num_steps = 3
  config.mesh.shape = shape
  workdir = tmp_path / name
  state = trainer.train_and_evaluate(config, str(workdir))
  losses = [json.loads(line)["loss"] for line in open(workdir / "metrics.jsonl")]
  return losses, state


def test_data_fsdp_and_tensor_parallel_agree(tmp_path):
  results = {name: _run(tmp_path, name, shape) for name, shape in MESHES.items()}
  reference, _ = results["data"]
  assert len(reference) == 3
  for name, (losses, _) in results.items():
    np.testing.assert_allclose(losses, reference, rtol=2e-5, err_msg=name)
  # The states really are laid out differently: the MLP kernel is [64, 256] in the tiny model.
  shard = lambda x: x.sharding.shard_shape(x.shape)
  kernel = lambda name: results[name][1].params["block_0"]["mlp_in"]["kernel"]
  assert shard(kernel("data")) == (64, 256)
  assert shard(kernel("fsdp")) == (8, 256)
  assert shard(kernel("fsdp_tensor")) == (32, 128)
  mu = results["fsdp_tensor"][1].opt_state[1][0].mu["block_0"]["mlp_in"]["kernel"]
  assert shard(mu) == (32, 128)                                    # optimizer state follows the params


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
