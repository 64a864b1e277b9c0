"""Frozen parameters, LoRA and init_from in the one training system (avdit_jax/train/trainable.py, models/lora.py)."""

import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from avdit_jax.models import lora
from avdit_jax.pretrained import files
from avdit_jax.train import trainable, trainer
from checkpoint_test import K, _assert_same_tree, _config, _main, _metrics

flat = lambda tree: traverse_util.flatten_dict(jax.device_get(tree))


def _initial(config):
  setup = trainer.build(config)
  return jax.device_get(setup.init_fn())


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  """A run of K steps training everything: the base model (adaLN-Zero gates start at zero, so LoRA on the blocks
  of an untrained model would get no gradient)."""
  workdir = tmp_path_factory.mktemp("base")
  return workdir, jax.device_get(trainer.train_and_evaluate(_config(num_steps=K), str(workdir)))


def _lora_config(base_dir, num_steps=2 * K):
  config = _config(num_steps=num_steps, trainable="lora")
  config.init_from = str(base_dir)
  return config


@pytest.fixture(scope="module")
def lora_run(base_run, tmp_path_factory):
  """LoRA on the base model for 2K steps (config.init_from), uninterrupted."""
  workdir = tmp_path_factory.mktemp("lora")
  return workdir, base_run[1], trainer.train_and_evaluate(_lora_config(base_run[0]), str(workdir))


def test_lora_trains_only_its_factors_and_leaves_every_frozen_leaf_bit_identical(lora_run):
  _, base, state = lora_run
  got, before = flat(state.params), flat(base.params)      # the base run's params, loaded by init_from
  frozen = [k for k in got if k[0] != trainable.LORA_KEY]
  assert sorted(frozen) == sorted(before) and all(np.array_equal(got[k], before[k]) for k in frozen)
  factors = {k: v for k, v in got.items() if k[0] == trainable.LORA_KEY}
  assert any(k[-1] == "b" and np.abs(v).max() > 0 for k, v in factors.items())      # B starts at zero
  # EMA and optimizer state hold the LoRA factors only: adam's mu and nu, one copy each, and its count.
  lora_shapes = sorted(v.shape for k, v in got.items() if k[0] == trainable.LORA_KEY)
  assert sorted(v.shape for v in flat(state.ema_params).values()) == lora_shapes
  opt_shapes = sorted(x.shape for x in jax.tree.leaves(state.opt_state) if x.ndim)
  assert opt_shapes == sorted(lora_shapes * 2)
  assert set(flat(state.opt_state[1][0].mu)) == set(flat(state.ema_params))        # adam's moments


def test_lora_resume_after_sigkill_is_bit_exact(base_run, lora_run, tmp_path):
  _, _, reference = lora_run
  rc, err = _main(tmp_path, f"--config.train.num_steps={2 * K}", "--config.train.trainable=lora",
                  f"--config.init_from={base_run[0]}", kill_after_save_of=K)
  assert rc == -signal.SIGKILL, err[-2000:]
  resumed = trainer.train_and_evaluate(_lora_config(base_run[0]), str(tmp_path))
  ref_rows, got_rows = _metrics(lora_run[0]), _metrics(tmp_path)
  assert [got_rows[s] for s in range(K + 1, 2 * K + 1)] == [ref_rows[s] for s in range(K + 1, 2 * K + 1)]
  _assert_same_tree(reference, resumed)


def test_sampling_params_merge_lora_and_match_the_trained_model(base_run, lora_run):
  workdir, _, state = lora_run
  config = _lora_config(base_run[0])
  params, model, _ = trainer.restore_params(config, workdir, use_ema=False)
  assert trainable.LORA_KEY not in params
  selection = trainable.for_config(config)
  merged = jax.device_get(selection.model_params(state.params))
  _assert_same_tree(params, merged)
  # The merged kernel is W + alpha / rank * A @ B, reshaped: check one attention projection by hand.
  w = flat(state.params)[("block_0", "attn", "query_kernel")]
  a, b = (flat(state.params)[(trainable.LORA_KEY, "block_0", "attn", "query_kernel", n)] for n in "ab")
  spec = selection.lora
  expected = w + spec.alpha / spec.rank * (a @ b).reshape(w.shape)
  np.testing.assert_allclose(flat(params)[("block_0", "attn", "query_kernel")], expected, rtol=1e-6, atol=1e-7)
  assert not np.array_equal(expected, w)
  # The same model with the EMA of the factors differs (EMA on) and keeps the frozen kernels' shapes.
  ema, _, _ = trainer.restore_params(config, workdir, use_ema=True)
  assert jax.tree.map(np.shape, ema) == jax.tree.map(np.shape, params)


def test_a_regex_selection_freezes_the_rest_with_no_state_for_it(tmp_path):
  config = _config(num_steps=K, trainable=r"^(audio_head|video_head)/|block_1/mlp_")
  start = _initial(config)
  state = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path)))
  got, before = flat(state.params), flat(start.params)
  chosen = {k for k in got if k[0].endswith("_head") or (k[0] == "block_1" and k[1].startswith("mlp_"))}
  assert set(flat(state.ema_params)) == chosen
  assert all(np.array_equal(got[k], before[k]) for k in got if k not in chosen)
  assert any(not np.array_equal(got[k], before[k]) for k in chosen)
  n_opt = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim)
  assert n_opt == 2 * sum(got[k].size for k in chosen)


def test_groups_and_bad_specs():
  config = _config(num_steps=K)
  params = jax.eval_shape(lambda: trainer.build(config).init_fn()).params
  for spec, expected in (("heads", {"audio_head", "video_head"}), ("embeddings", {"audio_embed", "video_embed",
                                                                                   "modality_embed"})):
    config.train.trainable = spec
    assert {k[0] for k in flat(trainable.for_config(config).split(params)[0])} == expected
  config.train.trainable = "nothing_matches_this"
  with pytest.raises(ValueError, match="train.trainable 'nothing_matches_this' selects no parameter"):
    trainer.build(config)
  config.train.trainable = "lora"
  config.train.lora.targets = ("q", "attn_typo")
  with pytest.raises(ValueError, match=r"train.lora.targets: unknown \['attn_typo'\]"):
    trainer.build(config)


def test_init_from_a_run_keeps_the_new_runs_optimizer_and_data_position(lora_run):
  workdir, _, state = lora_run               # the base run stopped at step K; this one trained 2K steps of its own
  assert int(np.asarray(state.opt_state[1][0].count)) == 2 * K
  assert sorted(_metrics(workdir)) == list(range(1, 2 * K + 1))
  from avdit_jax.train import checkpoint
  manager = checkpoint.make_manager(str(workdir), _config())
  data = manager.restore(2 * K, args=checkpoint.ocp.args.Composite(data=checkpoint.ocp.args.JsonRestore()))["data"]
  manager.close()
  assert data == {"next_batch": 2 * K}      # its own input position, from 0 (the base run's ended at K)


def test_init_from_a_converted_file_refuses_wrong_shapes_and_keys(tmp_path):
  config = _config(num_steps=1)                 # one step at lr 0: the state as init_from leaves it
  config.optim.update(lr=0.0, weight_decay=0.0)
  params = {k: v + 1.0 for k, v in flat(_initial(config).params).items()}
  good = tmp_path / "good.safetensors"
  files.write_params(str(good), params)
  config.init_from = str(good)
  state = jax.device_get(trainer.train_and_evaluate(config, str(tmp_path / "run")))
  _assert_same_tree(flat(state.params), params)
  _assert_same_tree(flat(state.ema_params), params)          # the EMA restarts from the loaded weights
  key = ("block_0", "mlp_in", "kernel")
  for name, weights, message in (
      ("shape", {**params, key: params[key].T}, r"block_0/mlp_in/kernel has shape \(256, 64\), the model's has "
                                                r"\(64, 256\)"),
      ("key", {**params, ("block_9", "bias"): np.zeros(3)}, r"block_9/bias \(shape \(3,\)\) is not a parameter")):
    bad = tmp_path / f"{name}.safetensors"
    files.write_params(str(bad), weights)
    config.init_from = str(bad)
    with pytest.raises(ValueError, match=message):
      trainer.train_and_evaluate(config, str(tmp_path / name))


def test_lora_merge_of_zero_factors_is_the_base_model():
  params = {"block_0": {"attn": {"query_kernel": jnp.ones((4, 2, 3)), "out_kernel": jnp.ones((2, 3, 4))},
                        "mlp_in": {"kernel": jnp.ones((4, 8)), "bias": jnp.zeros(8)}}}
  spec = lora.LoraSpec(rank=2, alpha=4.0, targets=("q", "out", "mlp"))
  factors = lora.init(params, spec, jax.random.PRNGKey(0))
  assert factors["block_0"]["attn"]["out_kernel"]["a"].shape == (6, 2)
  assert factors["block_0"]["attn"]["out_kernel"]["b"].shape == (2, 4)
  _assert_same_tree(lora.merge(params, factors, spec), params)
  # A scanned model's kernels carry a leading 'layers' axis: one pair of factors per layer.
  scanned = {"blocks": {"attn": {"query_kernel": jnp.ones((3, 4, 2, 3))}}}
  factors = lora.init(scanned, spec, jax.random.PRNGKey(0))
  assert factors["blocks"]["attn"]["query_kernel"]["a"].shape == (3, 4, 2)
  b = jnp.arange(3 * 2 * 6, dtype=jnp.float32).reshape(3, 2, 6)
  factors["blocks"]["attn"]["query_kernel"]["b"] = b
  merged = lora.merge(scanned, factors, spec)["blocks"]["attn"]["query_kernel"]
  a = factors["blocks"]["attn"]["query_kernel"]["a"]
  np.testing.assert_allclose(merged[1], 1 + 2.0 * (a[1] @ b[1]).reshape(4, 2, 3), rtol=1e-6)
