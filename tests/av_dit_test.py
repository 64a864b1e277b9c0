"""AV-DiT (models/av_dit.py) in the one training system: the image DiT inside it, its frozen backbone, every task."""

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from avdit_jax import factory, pipeline
from avdit_jax.core import monl
from avdit_jax.inference import frontend
from avdit_jax.models import av_dit, dit
from avdit_jax.pretrained import files
from avdit_jax.train import checkpoint, trainable, trainer
from train_test import load_config

STEPS = 3
flat = lambda tree: traverse_util.flatten_dict(jax.device_get(tree))
is_adapter = lambda key: re.search(av_dit.ADAPTERS, "/".join(key)) is not None


def _config(**model):
  c = load_config("av_dit", "test")
  c.model.update(**model)
  c.train.update(num_steps=STEPS)
  c.checkpoint.update(every_steps=STEPS, async_save=False)
  c.evals = {}
  c.sampling.num_steps = 2
  return c


def _random_dit(config, seed=0):
  """The image DiT that config's AV-DiT holds, every param drawn at random (a trained DiT's adaLN and head are
  not zero, as a fresh one's are, whose output would be zero whatever the model does)."""
  m = config.model
  image = dit.DiT(input_size=config.data.video_shape[1], patch=factory.model(config).patch,
                  in_channels=config.data.video_shape[-1], out_channels=config.data.video_shape[-1], depth=m.depth,
                  width=m.width, num_heads=m.num_heads, num_classes=m.num_classes)
  shapes = dit.param_shapes(image)
  rng = np.random.default_rng(seed)        # numpy: jax.random.normal would compile once per param shape
  params = {k: 0.3 * rng.standard_normal(s, np.float32) for k, s in sorted(shapes.items())}
  return image, params


def test_at_init_the_video_branch_is_the_image_dit_frame_by_frame():
  config = _config(num_classes=3)
  model, (image, dit_params) = factory.model(config), _random_dit(config)
  b, n = 2, config.num_segments
  audio = jax.random.normal(jax.random.PRNGKey(1), (b, *config.data.audio_shape))
  video = jax.random.normal(jax.random.PRNGKey(2), (b, *config.data.video_shape))
  t = jax.random.randint(jax.random.PRNGKey(3), (b, monl.NUM_MODALITIES, n), 0, 1000)   # a t per cell
  own = flat(nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(4), audio, video, t)["params"]))
  assert set(dit_params) <= set(own) and set(own) - set(dit_params) == {k for k in own if is_adapter(k)}
  params = traverse_util.unflatten_dict({**own, **dit_params})
  apply = jax.jit(lambda p: model.apply({"params": p}, audio, video, t)[1])
  got = apply(params)
  seg = monl.segment_ids(video.shape[1], 1, n)
  # Every frame at once as a batch of images, each at its own segment's t, with DiT's no-label row.
  frames = video.reshape(-1, *video.shape[2:])                                       # (B*Tv, H, W, C)
  frame_t = t[:, monl.VIDEO][:, seg].reshape(-1)                                     # (B*Tv,)
  want = jax.jit(image.apply)({"params": traverse_util.unflatten_dict(dit_params)}, frames, frame_t)
  np.testing.assert_allclose(got, want.reshape(got.shape), rtol=1e-5, atol=1e-5)
  # The check sees the adapters: a temporal gate that is not zero mixes frames, and the frames differ.
  opened = traverse_util.unflatten_dict({**own, **dit_params, ("temporal_0", "gate"): jnp.ones(config.model.width)})
  mixed = apply(opened)
  assert np.abs(np.asarray(mixed) - np.asarray(got)).max() > 1e-3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """STEPS steps of AV-DiT with trainable 'adapters', its backbone loaded from a converted DiT file (init_from)."""
  config = _config()
  _, dit_params = _random_dit(config)
  path = str(tmp_path_factory.mktemp("dit") / "dit.safetensors")
  files.write_params(path, dit_params, source="random")
  config.init_from = path
  workdir = str(tmp_path_factory.mktemp("av_dit"))
  return config, workdir, dit_params, trainer.train_and_evaluate(config, workdir)


def test_the_frozen_backbone_is_bit_identical_after_training_and_the_adapters_moved(run):
  config, _, dit_params, state = run
  got = flat(state.params)
  for key, value in dit_params.items():
    np.testing.assert_array_equal(got[key], value, err_msg="/".join(key))
  initial = flat(trainer.build(config).init_fn().params)
  moved = {key[0] for key in got if is_adapter(key) and not np.array_equal(got[key], initial[key])}
  assert moved == {key[0] for key in got if is_adapter(key)}, sorted(moved)
  # Only the adapters carry optimizer state and EMA.
  assert set(flat(state.ema_params)) == {k for k in got if is_adapter(k)}
  assert int(state.step) == STEPS


def test_parameter_counts_trainable_vs_total(run):
  config, _, dit_params, state = run
  selection = trainable.for_config(config)
  n_trainable, total = selection.count(jax.device_get(state.params))
  assert total - n_trainable == sum(v.size for v in dit_params.values())         # the frozen part is the DiT
  # At the paper's scale (DiT-XL/2 with its 1000 classes and learned sigma), counted from shapes alone: the
  # counts do not depend on the latents' sizes, so the smallest ones that fit trace fastest.
  image_count = sum(int(np.prod(s)) for s in dit.param_shapes(dit.make_dit("XL/2", input_size=32)).values())
  counts = {}
  for temporal_dim in (0, 288):        # temporal attention at the full width 1152, and at a quarter of it
    xl = av_dit.make_model("XL/2", num_segments=1, audio_patch=1, learn_sigma=True, num_classes=1000,
                           temporal_dim=temporal_dim)
    shapes = nn.unbox(jax.eval_shape(xl.init, jax.random.PRNGKey(0), jnp.zeros((1, 1, 16)),
                                     jnp.zeros((1, 1, 2, 2, 4)), jnp.zeros((1, 2, 1), jnp.int32))["params"])
    sizes = {k: int(np.prod(v.shape)) for k, v in traverse_util.flatten_dict(shapes).items()}
    counts[temporal_dim] = sum(v for k, v in sizes.items() if is_adapter(k)), sum(sizes.values())
    assert counts[temporal_dim][1] - counts[temporal_dim][0] == image_count
  print(f"tiny: {n_trainable} of {total} train; XL/2: " +
        ", ".join(f"temporal_dim {k}: {a / 1e6:.1f}M of {b / 1e6:.1f}M" for k, (a, b) in counts.items()))
  assert counts[0][0] < 0.25 * counts[0][1] and counts[288][0] < 0.1 * counts[288][1]


def test_every_monl_task_samples_from_an_av_dit_checkpoint_through_the_front_end(run):
  """--mode=sample's path (frontend.write_task_samples on Run.load) for one task of every kind, and guidance."""
  config, workdir, _, _ = run
  loaded = frontend.Run.load(workdir)
  segments = factory.frame_segments(config)
  tasks = ("joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1", "audio_continue:2", "video_continue:2")
  assert {spec.split(":")[0] for spec in tasks} == set(monl.TASKS)
  for spec, path in frontend.write_task_samples(loaded, workdir, tasks, num_samples=2).items():
    got = np.load(path)
    a, v, given_a, given_v = got["audio"], got["video"], got["given_audio"], got["given_video"]
    assert a.shape == given_a.shape and v.shape == given_v.shape and np.isfinite(a).all() and np.isfinite(v).all()
    mask_a, mask_v = got["mask"][monl.AUDIO][segments.audio], got["mask"][monl.VIDEO][segments.video]
    np.testing.assert_allclose(a[:, mask_a], given_a[:, mask_a], rtol=1e-4, atol=1e-4, err_msg=spec)
    np.testing.assert_allclose(v[:, mask_v], given_v[:, mask_v], rtol=1e-4, atol=1e-4, err_msg=spec)
    assert not np.allclose(v[:, ~mask_v], given_v[:, ~mask_v]) if (~mask_v).any() else True
  # MoNL guidance: the dropped-condition half runs in the same batched call and changes the sample.
  a, v = given_a, given_v
  mask = monl.a2v(config.num_segments)
  plain = loaded.sample(mask, a, v, jax.random.PRNGKey(0))[1]
  guided = loaded.sample(mask, a, v, jax.random.PRNGKey(0), guidance=2.0)[1]
  assert np.isfinite(guided).all() and not np.allclose(guided, plain)


def test_bad_model_fields_are_named():
  with pytest.raises(ValueError, match="model.kind"):
    factory.model(_config(kind="avdiT"))
  with pytest.raises(ValueError, match=r"model \(kind 'av_dit'\): unknown fields \['video_patch'\]"):
    factory.model(_config(video_patch=(1, 2, 2)))
  with pytest.raises(ValueError, match="unknown DiT variant 'tiny'"):
    factory.model(_config(variant="tiny"))


def test_the_image_stage_checkpoint_survives_a_change_of_the_adapters():
  # The image stage's config holds only what builds the image DiT: a run with other adapters (temporal_dim,
  # adapter_dim) finds its saved image_dit compatible and reuses it, while a change of the DiT itself is refused.
  recipe = os.path.join(os.path.dirname(__file__), "..", "configs", "av_dit_quickstart.py")
  config = factory.load_config(recipe + ":test")
  saved = pipeline.image_dit_config(config).to_dict()
  config.avdit.model.update(temporal_dim=0, adapter_dim=16)
  changed = pipeline.image_dit_config(config)
  assert changed.model.to_dict() == saved["model"]
  checkpoint.check_compatible(saved, changed, "W/image_dit")
  config.avdit.model.width *= 2
  with pytest.raises(ValueError, match=r"W/image_dit was written with config.model"):
    checkpoint.check_compatible(saved, pipeline.image_dit_config(config), "W/image_dit")
  assert factory.image_dit(pipeline.image_dit_config(config)).width == 2 * 32
