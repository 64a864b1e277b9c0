"""AVDiT: adaLN-Zero init, per-(modality, segment) modulation, equivalent execution modes, cost, errors."""

import dataclasses

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax.core import monl
from avdit_jax.models import avdit

N = 4
AUDIO = (8, 2)          # 4 tokens with audio_patch 2 -> one per segment
VIDEO = (4, 4, 4, 3)    # 4 x 2 x 2 = 16 tokens with video_patch (1, 2, 2)


def _model(**kw):
  return avdit.make_model("tiny", num_segments=N, audio_patch=2, video_patch=(1, 2, 2), **kw)


class PerToken(avdit.AVDiT):
  """The reference math: every token's modulation computed from its own copy of its cell's vector."""

  def conditioning(self, t, layout):
    cond, runs = super().conditioning(t, layout)
    return avdit.to_tokens(cond, runs["all"]), None                   # (B, L, D)


class PerExample(avdit.AVDiT):
  """Plain DiT's cost: one adaLN per example, from t[:, 0, 0] (it ignores the rest of t)."""

  def conditioning(self, t, layout):
    cond = avdit.TimestepEmbedder(self.width, param_dtype=self.param_dtype, name="t_embed")(t[:, :1, :1])
    return nn.silu(cond), None                                        # (B, 1, D)


def _as(cls, model: avdit.AVDiT):
  return cls(**{f.name: getattr(model, f.name) for f in dataclasses.fields(avdit.AVDiT)
                if f.name not in ("parent", "name")})


def _inputs(batch=2, seed=0):
  # numpy, not jax.random: each eager jax op compiles on first use, which costs seconds here.
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(batch, *AUDIO)), jnp.float32),
          jnp.asarray(rng.normal(size=(batch, *VIDEO)), jnp.float32),
          jnp.asarray(rng.integers(0, 1001, size=(batch, 2, N)), jnp.int32))


def _init(m, a, v, t):
  return jax.jit(m.init)(jax.random.PRNGKey(0), a, v, t)


def _randomized(params, seed=1):
  """Params with every leaf random, so that zero-initialised layers do something."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(0.2 * rng.normal(size=x.shape), x.dtype), params)


def test_output_is_zero_at_init_and_shaped_like_the_latents():
  a, v, t = _inputs()
  m = _model()
  params = _init(m, a, v, t)
  out_a, out_v = jax.jit(m.apply)(params, a, v, t)
  assert out_a.shape == a.shape and out_v.shape == v.shape
  assert out_a.dtype == jnp.float32 and out_v.dtype == jnp.float32
  assert not np.asarray(out_a).any() and not np.asarray(out_v).any()


def test_one_cells_timestep_changes_exactly_its_tokens_modulation():
  a, v, t = _inputs(batch=1)
  m = _model()
  params = _randomized(_init(m, a, v, t))
  layout = avdit.layout_for(m, AUDIO, VIDEO)
  cells = layout.token_cells()

  @jax.jit
  def modulation(t):
    _, state = m.apply(params, a, v, t, capture_intermediates=True, mutable=["intermediates"])
    chunks = state["intermediates"]["block_0"]["adaLN"]["__call__"][0]
    return jnp.concatenate(chunks, axis=-1)[0]                                 # (L, 6D)

  base = modulation(t)
  for m_idx, n_idx in [(monl.AUDIO, 0), (monl.VIDEO, 2), (monl.VIDEO, N - 1)]:
    t2 = t.at[0, m_idx, n_idx].set((t[0, m_idx, n_idx] + 377) % 1001)
    changed = np.abs(np.asarray(modulation(t2) - base)).max(axis=-1) > 0
    expected = cells == m_idx * N + n_idx
    assert expected.sum() == (1 if m_idx == monl.AUDIO else 4)
    np.testing.assert_array_equal(changed, expected)


@pytest.mark.parametrize("audio_tokens, video_grid", [(64, (4, 8, 8)), (5, (6, 1, 3)), (4, (4, 1, 1))])
def test_cell_runs_broadcast_equals_the_gather_by_token_cell(audio_tokens, video_grid):
  # Uneven segments too: 5 audio tokens in 4 segments are cut 2, 1, 1, 1; 6 video frames 2, 1, 2, 1.
  layout = avdit.TokenLayout((audio_tokens, 1), (video_grid[0], *video_grid[1:], 1), 1, (1, 1, 1), N)
  cells = layout.token_cells()
  runs = avdit.cell_runs(cells)
  assert sum(n * per for _, n, per in runs) == len(cells)
  values = jnp.asarray(np.random.default_rng(0).normal(size=(2, 2 * N, 3)), jnp.float32)
  np.testing.assert_array_equal(avdit.to_tokens(values, runs), np.take(np.asarray(values), cells, axis=1))
  la = layout.num_audio_tokens
  for part in (cells[:la], cells[la:]):
    np.testing.assert_array_equal(avdit.to_tokens(values, avdit.cell_runs(part)),
                                  np.take(np.asarray(values), part, axis=1))


def test_per_segment_modulation_is_the_per_token_math():
  a, v, t = _inputs()
  params = _randomized(_init(_model(), a, v, t))
  seg = jax.jit(_model().apply)(params, a, v, t)
  tok = jax.jit(_as(PerToken, _model()).apply)(params, a, v, t)
  for x, y in zip(seg, tok):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(x)).max() > 1e-2     # a real, non-trivial output


@pytest.mark.parametrize("attention", [a for a in avdit.ATTENTION_IMPLS if a != "einsum"])
def test_attention_forms_compute_the_same_function(attention):
  a, v, t = _inputs()
  params = _randomized(_init(_model(), a, v, t))
  ref = jax.jit(_model().apply)(params, a, v, t)
  got = jax.jit(_model(attention=attention).apply)(params, a, v, t)
  for x, y in zip(ref, got):      # outputs of size ~10: float32 reassociation leaves ~3e-5
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(x)).max() > 1e-2


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_changes_memory_not_math(remat):
  a, v, t = _inputs()
  params = _randomized(_init(_model(), a, v, t))
  loss = lambda m: jax.jit(jax.grad(lambda p: sum(jnp.sum(o**2) for o in m.apply(p, a, v, t))))(params)
  ref, got = loss(_model()), loss(_model(remat=remat))
  for x, y in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_scanned_layers_compute_the_same_function():
  a, v, t = _inputs()
  looped, scanned = _model(), _model(scan_layers=True)
  params = dict(flax.linen.unbox(_randomized(_init(looped, a, v, t)))["params"])
  # nn.scan holds the blocks' params stacked along a leading 'layers' axis.
  blocks = [params.pop(f"block_{i}") for i in range(looped.depth)]
  scanned_params = dict(params, blocks=jax.tree.map(lambda *xs: jnp.stack(xs), *blocks))
  expected = flax.linen.unbox(_init(scanned, a, v, t))["params"]
  assert jax.tree.structure(expected) == jax.tree.structure(scanned_params)
  params.update({f"block_{i}": b for i, b in enumerate(blocks)})
  out_loop = jax.jit(looped.apply)({"params": params}, a, v, t)
  out_scan = jax.jit(scanned.apply)({"params": scanned_params}, a, v, t)
  for x, y in zip(out_loop, out_scan):
    np.testing.assert_allclose(x, y, atol=1e-5 * np.abs(np.asarray(x)).max())


def test_params_carry_logical_axis_names():
  a, v, t = _inputs()
  params = _init(_model(scan_layers=True), a, v, t)
  specs = flax.linen.get_partition_spec(params)["params"]
  assert tuple(specs["blocks"]["attn"]["query_kernel"]) == ("layers", "embed", "heads", "kv")
  assert tuple(specs["blocks"]["mlp_in"]["kernel"]) == ("layers", "embed", "mlp")
  assert tuple(specs["video_embed"]["kernel"]) == ("patch", "embed")
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, flax.linen.Partitioned))
  assert all(isinstance(leaf, flax.linen.Partitioned) for leaf in leaves)   # every param is named


def test_bf16_compute_keeps_f32_params_and_outputs():
  a, v, t = _inputs()
  m = _model(dtype=jnp.bfloat16)
  params = _randomized(_init(m, a, v, t))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  out = jax.jit(m.apply)(params, a, v, t)
  ref = jax.jit(_model().apply)(params, a, v, t)
  assert out[1].dtype == jnp.float32
  np.testing.assert_allclose(out[1], ref[1], atol=0.1 * np.abs(np.asarray(ref[1])).max())


# XLA's cost analysis counts a scanned (while-loop) body once, so FLOP counts use unrolled blocks.
def _train_step_flops(m, audio_shape, video_shape, batch):
  a = jnp.zeros((batch, *audio_shape))
  v = jnp.zeros((batch, *video_shape))
  t = jnp.zeros((batch, 2, m.num_segments), jnp.int32)
  params = jax.eval_shape(m.init, jax.random.PRNGKey(0), a, v, t)
  grad = jax.jit(jax.grad(lambda p: sum(jnp.sum(o**2) for o in m.apply(p, a, v, t))))
  return grad.lower(params).compile().cost_analysis()["flops"]


def test_per_segment_modulation_costs_at_most_5_percent_over_one_timestep_per_example():
  """At DiT-S shape (256 video tokens + 64 audio tokens, batch 8), counted by XLA, not timed."""
  kw = dict(num_segments=4, audio_patch=1, video_patch=(1, 2, 2), depth=2)
  shapes = ((64, 8), (4, 16, 16, 4), 8)
  model = avdit.make_model("S", **kw)
  per_segment = _train_step_flops(model, *shapes)
  per_example = _train_step_flops(_as(PerExample, model), *shapes)
  per_token = _train_step_flops(_as(PerToken, model), *shapes)
  assert per_segment <= 1.05 * per_example, (per_segment, per_example)
  assert per_token > 1.3 * per_example           # what the per-cell broadcast saves


def test_analytic_flops_match_xla_forward_count():
  m = avdit.make_model("S", num_segments=4, audio_patch=1, video_patch=(1, 2, 2), depth=2)
  a, v, t = jnp.zeros((2, 64, 8)), jnp.zeros((2, 4, 16, 16, 4)), jnp.zeros((2, 2, 4), jnp.int32)
  params = jax.eval_shape(m.init, jax.random.PRNGKey(0), a, v, t)
  xla = jax.jit(m.apply).lower(params, a, v, t).compile().cost_analysis()["flops"]
  analytic = avdit.count_flops(avdit.layout_for(m, a.shape[1:], v.shape[1:]), m, batch=2)
  assert 0.9 < analytic / xla < 1.1, (analytic, xla)


def test_analytic_remat_recompute_matches_what_xla_adds():
  """The FLOPs that full remat adds to a gradient step, by XLA's count, are count_remat_flops' (within 10%)."""
  kw = dict(num_segments=4, audio_patch=1, video_patch=(1, 2, 2), depth=2)
  shapes = ((64, 8), (4, 16, 16, 4), 2)
  plain, rematted = avdit.make_model("S", **kw), avdit.make_model("S", remat="full", **kw)
  added = _train_step_flops(rematted, *shapes) - _train_step_flops(plain, *shapes)
  analytic = avdit.count_remat_flops(avdit.layout_for(rematted, *shapes[:2]), rematted, batch=2)
  assert analytic > 0 and 0.9 < added / analytic < 1.1, (added, analytic)
  assert avdit.count_remat_flops(avdit.layout_for(plain, *shapes[:2]), plain, batch=2) == 0
  # 'dots_no_batch' keeps the dense layers' outputs: XLA adds a small fraction of the blocks' work.
  partial = avdit.make_model("S", remat="dots_no_batch", **kw)
  assert _train_step_flops(partial, *shapes) - _train_step_flops(plain, *shapes) < 0.25 * analytic


def test_bad_shapes_and_settings_raise_clear_errors():
  a, v, t = _inputs()
  m = _model()
  with pytest.raises(ValueError, match=r"spatial size 5x4 is not divisible by the patch 2x2"):
    jax.jit(m.init)(jax.random.PRNGKey(0), a, jnp.zeros((2, 4, 5, 4, 3)), t)
  with pytest.raises(ValueError, match=r"audio latent \(model.audio_patch\): time length 7"):
    jax.jit(m.init)(jax.random.PRNGKey(0), jnp.zeros((2, 7, 2)), v, t)
  with pytest.raises(ValueError, match="cannot be cut into 4 segments"):
    jax.jit(m.init)(jax.random.PRNGKey(0), jnp.zeros((2, 4, 2)), v, t)
  with pytest.raises(ValueError, match=r"expected t of shape \(2, 2, 4\)"):
    jax.jit(m.init)(jax.random.PRNGKey(0), a, v, jnp.zeros((2, 2, 5), jnp.int32))
  with pytest.raises(ValueError, match="model.attention"):
    _init(_model(attention="flash"), a, v, t)
  with pytest.raises(ValueError, match="model.variant"):
    avdit.make_model("XXL", num_segments=4)
  with pytest.raises(ValueError, match="unknown fields"):
    avdit.make_model("tiny", num_segments=4, dept=3)


def test_the_timestep_embedding_takes_continuous_t_on_either_scale():
  """Integer t gives the vectors it always gave (features of t cast to float); flow's t in [0, 1] with
  time_scale 1000 gives the outputs of t * 1000, so an embedding means the same at either scale."""
  ddpm, flow = _model(), _model(time_scale=1000.0)
  a, v = jnp.ones((2, *AUDIO)), jnp.ones((2, *VIDEO))
  t_int = jnp.asarray(np.random.default_rng(0).integers(0, 1001, (2, 2, N)), jnp.int32)
  params = ddpm.init(jax.random.PRNGKey(0), a, v, t_int)
  leaves, tree = jax.tree.flatten(params)       # off the zero init, so that the output depends on t
  rng = np.random.default_rng(1)          # numpy: jax.random.normal would compile once per param shape
  params = jax.tree.unflatten(tree, [np.asarray(x) + 0.05 * rng.standard_normal(x.shape, np.float32) for x in leaves])
  np.testing.assert_array_equal(avdit.timestep_features(t_int.astype(jnp.float32), 256),
                                avdit.timestep_features(t_int, 256))
  out_int = ddpm.apply(params, a, v, t_int)
  out_flow = flow.apply(params, a, v, t_int.astype(jnp.float32) / 1000.0)
  out_next = ddpm.apply(params, a, v, t_int + 1)
  for x, y, z in zip(out_int, out_flow, out_next):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(x - z)).max() > 1e-4          # the output does depend on t
