"""AVDiT: a diffusion transformer over the audio and video latent tokens of a clip (flax.linen).

  video [B, Tv, H, W, Cv] --patchify+linear--> [B, Lv, D] + spatio-temporal sincos + modality emb --+
  audio [B, Ta, Ca]       --patchify+linear--> [B, La, D] + temporal sincos        + modality emb --+-> concat [B, L, D]
  t     [B, M, N]         --sincos+MLP + modality emb--> c [B, M*N, D] (one per (modality, segment))
  K x adaLN-Zero block (each token modulated by the c of its own (modality, segment))
  per modality: final adaLN + linear head, un-patchified -> eps (or v) of each latent's shape.

The adaLN projections run once per (modality, segment) cell and are broadcast to the tokens: the same
math as per-token modulation at M*N rows of matmul instead of L. A cell's tokens are consecutive, so the
broadcast is static (`cell_runs`): no gather, whose gradient would be a scatter-add. Parameters and main
activations carry logical axis names ('batch', 'length', 'embed', 'mlp', 'heads', 'kv', ...) for sharding by rules.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.core import monl

# name -> (depth, width, heads); DiT's S/B/L/XL plus sizes for tests and laptops.
VARIANTS = {
    "tiny": (2, 64, 4),
    "mini": (4, 128, 4),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
    "XL": (28, 1152, 16),
}
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
ATTENTION_IMPLS = ("einsum", "dot_product")

zeros_init = nn.initializers.zeros
xavier = nn.initializers.xavier_uniform()


def _dense(features, axes, name=None, init=xavier, dtype=jnp.float32, param_dtype=jnp.float32,
           use_bias=True):
  return nn.Dense(features, name=name, dtype=dtype, param_dtype=param_dtype, use_bias=use_bias,
                  kernel_init=nn.with_logical_partitioning(init, axes),
                  bias_init=nn.with_logical_partitioning(zeros_init, axes[-1:]))


def sincos(positions: np.ndarray, dim: int, max_period: float = 10000.0) -> np.ndarray:
  """Sinusoidal features of (possibly fractional) positions: [..., ] -> [..., dim] (numpy)."""
  half = dim // 2
  freqs = np.exp(-math.log(max_period) * np.arange(half) / half)
  args = np.asarray(positions, np.float64)[..., None] * freqs
  emb = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
  return np.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, dim - 2 * half)]).astype(np.float32)


def timestep_features(t: jax.Array, dim: int, max_period: float = 10000.0, freq_shift: float = 0.0) -> jax.Array:
  """Sinusoidal features [cos, sin] of (continuous) timesteps, traced: [...] -> [..., dim] f32. Frequencies are
  max_period^(-i / (dim / 2 - freq_shift)): DiT's with shift 0, diffusers' DiT embedding with shift 1."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift))
  args = t.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


@dataclasses.dataclass(frozen=True)
class TokenLayout:
  """Static layout of the joint token sequence [audio tokens; video tokens] for given latent shapes.

  Everything here is numpy, computed once at trace time from shapes and patch sizes.
  """
  audio_shape: tuple   # (Ta, Ca)
  video_shape: tuple   # (Tv, H, W, Cv)
  audio_patch: int
  video_patch: tuple   # (pt, ph, pw)
  num_segments: int

  def __post_init__(self):
    ta, _ = self.audio_shape
    tv, h, w, _ = self.video_shape
    pt, ph, pw = self.video_patch
    if h % ph or w % pw:
      raise ValueError(f"video latent: spatial size {h}x{w} is not divisible by the patch {ph}x{pw} "
                       "(model.video_patch).")
    # These raise with the offending length and patch when they do not divide.
    monl.segment_ids(ta, self.audio_patch, self.num_segments, what="audio latent (model.audio_patch)")
    monl.segment_ids(tv, pt, self.num_segments, what="video latent (model.video_patch)")

  @property
  def audio_grid(self):  # tokens along time
    return self.audio_shape[0] // self.audio_patch

  @property
  def video_grid(self):  # (time, height, width) tokens
    (tv, h, w, _), (pt, ph, pw) = self.video_shape, self.video_patch
    return tv // pt, h // ph, w // pw

  @property
  def num_audio_tokens(self):
    return self.audio_grid

  @property
  def num_video_tokens(self):
    return int(np.prod(self.video_grid))

  def token_cells(self) -> np.ndarray:
    """Index m * N + n of each token's (modality, segment) cell: int32 [L]."""
    n = self.num_segments
    audio_seg = monl.segment_ids(self.audio_grid, 1, n)
    gt, gh, gw = self.video_grid
    video_seg = np.repeat(monl.segment_ids(gt, 1, n), gh * gw)
    return np.concatenate([monl.AUDIO * n + audio_seg, monl.VIDEO * n + video_seg]).astype(np.int32)

  def positional_encoding(self, dim: int) -> np.ndarray:
    """Fixed sincos encodings [L, dim] on one time axis shared by both modalities.

    Time is measured in units of the finer modality's token spacing, with both modalities spanning
    the same clip, so audio and video tokens of the same instant get the same temporal code. Video
    adds a 2D spatial code.
    """
    gt, gh, gw = self.video_grid
    ga = self.audio_grid
    unit = max(ga, gt)
    audio_time = (np.arange(ga) + 0.5) * unit / ga
    video_time = (np.arange(gt) + 0.5) * unit / gt
    audio = sincos(audio_time, dim)                                   # [La, D]
    quarter = dim // 2
    spatial = np.concatenate([
        np.broadcast_to(sincos(np.arange(gh), quarter)[:, None], (gh, gw, quarter)),
        np.broadcast_to(sincos(np.arange(gw), dim - quarter)[None, :], (gh, gw, dim - quarter)),
    ], axis=-1)                                                       # [gh, gw, D]
    video = sincos(video_time, dim)[:, None, None] + spatial[None]    # [gt, gh, gw, D]
    return np.concatenate([audio, video.reshape(-1, dim)]).astype(np.float32)


def layout_for(config_or_model, audio_shape, video_shape) -> TokenLayout:
  m = config_or_model
  return TokenLayout(tuple(audio_shape), tuple(video_shape), int(m.audio_patch),
                     tuple(int(p) for p in m.video_patch), int(m.num_segments))


class TimestepEmbedder(nn.Module):
  """t [B, M, N] -> c [B, M*N, D]: sincos + MLP (DiT) plus a learned modality embedding."""
  width: int
  freq_dim: int = 256
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, t):
    b, m, n = t.shape
    h = timestep_features(t, self.freq_dim)                                        # (B, M, N, F)
    h = _dense(self.width, ("freq", "embed"), "mlp_in", param_dtype=self.param_dtype)(h)
    h = _dense(self.width, ("embed", "embed_out"), "mlp_out",
               param_dtype=self.param_dtype)(nn.silu(h))                           # (B, M, N, D)
    modality = self.param("modality", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, "embed")), (m, self.width), self.param_dtype)
    return (h + modality[None, :, None, :]).reshape(b, m * n, self.width)          # (B, M*N, D)


def cell_runs(token_cells: np.ndarray) -> tuple[tuple[int, int, int], ...]:
  """Each token's cell index [L] as groups (first cell, number of cells, tokens per cell) in token order:
  runs of consecutive cells with equally many consecutive tokens each. Static (numpy, at trace time)."""
  cells = np.asarray(token_cells)
  starts = np.flatnonzero(np.diff(cells, prepend=-1))
  groups = []
  for start, count in zip(starts, np.diff(np.append(starts, len(cells)))):
    cell, count = int(cells[start]), int(count)
    if groups and groups[-1][0] + groups[-1][1] == cell and groups[-1][2] == count:
      groups[-1][1] += 1
    else:
      groups.append([cell, 1, count])
  return tuple(tuple(g) for g in groups)


def to_tokens(values: jax.Array, runs: tuple | None) -> jax.Array:
  """Per-cell values [B, G, K] -> per-token [B, L, K] by broadcasting along `cell_runs` groups; with runs
  None, values pass through (G = 1 broadcasts in the arithmetic that uses them)."""
  if runs is None:
    return values
  b, _, k = values.shape
  parts = [jnp.broadcast_to(values[:, first:first + n, None], (b, n, per, k)).reshape(b, n * per, k)
           for first, n, per in runs]
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)


class Modulation(nn.Module):
  """adaLN-Zero projection of the conditioning, computed per cell and broadcast to the tokens."""
  width: int
  num_chunks: int
  runs: tuple | None = None     # cell_runs of the tokens; None when G is 1 or L
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, cond):
    # cond: (B, G, D), already SiLU'd.
    mod = _dense(self.num_chunks * self.width, ("embed", "modulation"), "proj", init=zeros_init,
                 param_dtype=self.param_dtype)(cond)                                # (B, G, k*D)
    mod = to_tokens(mod, self.runs)                                                 # (B, L, k*D)
    return jnp.split(mod, self.num_chunks, axis=-1)


def modulate(x, shift, scale):
  return x * (1.0 + scale.astype(x.dtype)) + shift.astype(x.dtype)


class Attention(nn.Module):
  width: int
  num_heads: int
  impl: str = "einsum"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # Explicit [D, H, Dh] kernels and einsums (not DenseGeneral, which builds its kernel flat and then
    # reshapes: under a mesh context flax would constrain the flat kernel with 3-axis names).
    head_dim = self.width // self.num_heads
    def proj(name):
      kernel = self.param(f"{name}_kernel", nn.with_logical_partitioning(
          nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2)), ("embed", "heads", "kv")),
          (self.width, self.num_heads, head_dim), self.param_dtype)
      bias = self.param(f"{name}_bias", nn.with_logical_partitioning(zeros_init, ("heads", "kv")),
                        (self.num_heads, head_dim), self.param_dtype)
      y = jnp.einsum("bld,dhk->blhk", x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))
    q, k, v = proj("query"), proj("key"), proj("value")                             # (B, L, H, Dh)
    if self.impl == "einsum":
      logits = jnp.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(head_dim)            # (B, H, L, L)
      weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
      out = jnp.einsum("bhlm,bmhd->blhd", weights, v)                               # (B, L, H, Dh)
    else:
      out = jax.nn.dot_product_attention(q, k, v)                                   # (B, L, H, Dh)
    kernel = self.param("out_kernel", nn.with_logical_partitioning(
        nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2), ("heads", "kv", "embed")),
        (self.num_heads, head_dim, self.width), self.param_dtype)
    bias = self.param("out_bias", nn.with_logical_partitioning(zeros_init, ("embed",)), (self.width,),
                      self.param_dtype)
    return jnp.einsum("blhk,hkd->bld", out, kernel.astype(self.dtype)) + bias.astype(self.dtype)   # (B, L, D)


class Block(nn.Module):
  """DiT block with adaLN-Zero; the modulation of each token comes from its own cell."""
  width: int
  num_heads: int
  mlp_ratio: float = 4.0
  attention: str = "einsum"
  runs: tuple | None = None     # cell_runs of the tokens (None: cond is per example or per token)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond):
    # x: (B, L, D); cond: (B, G, D) SiLU'd.
    shift1, scale1, gate1, shift2, scale2, gate2 = Modulation(
        self.width, 6, self.runs, self.param_dtype, name="adaLN")(cond)            # 6 x (B, L, D)
    norm = lambda name: nn.LayerNorm(1e-6, use_bias=False, use_scale=False, dtype=self.dtype, name=name)
    h = modulate(norm("norm1")(x), shift1, scale1)
    x = x + gate1.astype(x.dtype) * Attention(self.width, self.num_heads, self.attention, self.dtype,
                                              self.param_dtype, name="attn")(h)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    h = modulate(norm("norm2")(x), shift2, scale2)
    h = _dense(int(self.width * self.mlp_ratio), ("embed", "mlp"), "mlp_in", dtype=self.dtype,
               param_dtype=self.param_dtype)(h)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=True), ("batch", "length", "mlp"))
    h = _dense(self.width, ("mlp", "embed"), "mlp_out", dtype=self.dtype, param_dtype=self.param_dtype)(h)
    x = x + gate2.astype(x.dtype) * h
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class ScannedBlock(Block):
  """Block with the (carry, out) signature that nn.scan wants."""

  def __call__(self, x, cond):
    return super().__call__(x, cond), None


class FinalLayer(nn.Module):
  """adaLN (shift, scale) + linear to one patch of latent per token, zero-initialised."""
  width: int
  out_features: int
  runs: tuple | None = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond):
    shift, scale = Modulation(self.width, 2, self.runs, self.param_dtype, name="adaLN")(cond)
    h = modulate(nn.LayerNorm(1e-6, use_bias=False, use_scale=False, dtype=x.dtype)(x), shift, scale)
    return _dense(self.out_features, ("embed", "patch"), "linear", init=zeros_init, dtype=jnp.float32,
                  param_dtype=self.param_dtype)(h)


def _remat_policy(name):
  return {
      "full": None,
      "dots": jax.checkpoint_policies.checkpoint_dots,
      "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
  }[name]


class AVDiT(nn.Module):
  """Joint audio-video noise predictor. Shapes and patches are checked at trace time, before compilation.

  Attributes:
    num_segments: N, the time segments of the MoNL grid.
    audio_patch: audio latent frames per token.
    video_patch: (time, height, width) of a video patch.
    remat: 'none' | 'full' | 'dots' | 'dots_no_batch' rematerialisation of each block.
    scan_layers: scan one block over depth (fast compiles, a 'layers' axis on block params).
    dtype: compute dtype (e.g. bfloat16); params stay `param_dtype`, outputs are float32.
    time_scale: the timestep embedding sees t * time_scale (t may be continuous): 1 for DDPM's integer
      t in [0, T], 1000 for flow's t in [0, 1], so both span the same sinusoid frequencies.
  """
  num_segments: int
  depth: int = 12
  width: int = 384
  num_heads: int = 6
  mlp_ratio: float = 4.0
  audio_patch: int = 1
  video_patch: tuple = (1, 2, 2)
  attention: str = "einsum"
  remat: str = "none"
  scan_layers: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  time_scale: float = 1.0

  def _check(self):
    for field, value, allowed in (("attention", self.attention, ATTENTION_IMPLS),
                                  ("remat", self.remat, REMAT_POLICIES)):
      if value not in allowed:
        raise ValueError(f"model.{field}: unknown {value!r}; expected one of {allowed}.")
    if self.width % self.num_heads:
      raise ValueError(f"model.width {self.width} is not divisible by model.num_heads {self.num_heads}.")

  @nn.compact
  def __call__(self, audio, video, t):
    """audio [B, Ta, Ca], video [B, Tv, H, W, Cv], t [B, M, N] (int or float) -> (audio_out, video_out) f32."""
    self._check()
    if audio.ndim != 3 or video.ndim != 5 or t.ndim != 3:
      raise ValueError(f"AVDiT expects audio [B, Ta, Ca], video [B, Tv, H, W, Cv], t [B, M, N]; got "
                       f"{audio.shape}, {video.shape}, {t.shape}.")
    b = audio.shape[0]
    if video.shape[0] != b or t.shape != (b, monl.NUM_MODALITIES, self.num_segments):
      raise ValueError(f"batch/timestep mismatch: audio {audio.shape}, video {video.shape}, t {t.shape} "
                       f"(expected t of shape ({b}, {monl.NUM_MODALITIES}, {self.num_segments})).")
    layout = layout_for(self, audio.shape[1:], video.shape[1:])
    x = self.tokens(audio, video, layout)                                          # (B, L, D)
    cond, runs = self.conditioning(t, layout)                                      # (B, G, D), G = M*N
    x = self.blocks(x, cond, runs)                                                 # (B, L, D)
    return self.heads(x, cond, runs, layout, audio.shape[-1], video.shape[-1])

  def tokens(self, audio, video, layout: TokenLayout):
    """Patchify both latents, embed, add the modality embedding and the shared-time positions: (B, L, D)."""
    d, pa = self.width, self.audio_patch
    pt, ph, pw = self.video_patch
    a_tok = einops.rearrange(audio, "b (t p) c -> b t (p c)", p=pa)                  # (B, La, pa*Ca)
    v_tok = einops.rearrange(video, "b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)",
                             pt=pt, ph=ph, pw=pw)                                     # (B, Lv, P*Cv)
    a_tok = _dense(d, ("patch", "embed"), "audio_embed", dtype=self.dtype,
                   param_dtype=self.param_dtype)(a_tok.astype(self.dtype))
    v_tok = _dense(d, ("patch", "embed"), "video_embed", dtype=self.dtype,
                   param_dtype=self.param_dtype)(v_tok.astype(self.dtype))
    modality = self.param("modality_embed", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, "embed")), (monl.NUM_MODALITIES, d), self.param_dtype)
    x = jnp.concatenate([a_tok + modality[monl.AUDIO].astype(self.dtype),
                         v_tok + modality[monl.VIDEO].astype(self.dtype)], axis=1)    # (B, L, D)
    x = x + jnp.asarray(layout.positional_encoding(d), self.dtype)[None]
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))

  def conditioning(self, t, layout: TokenLayout):
    """One SiLU'd vector per (modality, segment) cell, (B, M*N, D), and the `cell_runs` that carry each cell's
    vector to its tokens: {'all', 'audio', 'video'} (runs None: the vectors are per example or per token)."""
    cells = layout.token_cells()                                                     # (L,) numpy
    la = layout.num_audio_tokens
    runs = {"all": cell_runs(cells), "audio": cell_runs(cells[:la]), "video": cell_runs(cells[la:])}
    t = t.astype(jnp.float32) * self.time_scale                                      # (B, M, N)
    cond = TimestepEmbedder(self.width, param_dtype=self.param_dtype, name="t_embed")(t)   # (B, M*N, D)
    return nn.silu(cond), runs

  def blocks(self, x, cond, runs):
    block_kwargs = dict(width=self.width, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                        attention=self.attention, runs=None if runs is None else runs["all"], dtype=self.dtype,
                        param_dtype=self.param_dtype)
    block_cls = ScannedBlock if self.scan_layers else Block
    if self.remat != "none":
      block_cls = nn.remat(block_cls, policy=_remat_policy(self.remat), prevent_cse=not self.scan_layers)
    if self.scan_layers:
      x, _ = nn.scan(block_cls, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=nn.broadcast, length=self.depth,
                     metadata_params={nn.PARTITION_NAME: "layers"})(**block_kwargs, name="blocks")(x, cond)
    else:
      for i in range(self.depth):
        x = block_cls(**block_kwargs, name=f"block_{i}")(x, cond)
    return x

  def heads(self, x, cond, runs, layout: TokenLayout, audio_channels: int, video_channels: int):
    """One head per modality, each modulated by its tokens' cells, un-patchified to the latents' shapes."""
    d, pa = self.width, self.audio_patch
    pt, ph, pw = self.video_patch
    la = layout.num_audio_tokens

    def head(name, tokens, out_features, modality, token_slice):
      if runs is None:
        c = cond if cond.shape[1] == 1 else cond[:, token_slice]
        return FinalLayer(d, out_features, None, self.param_dtype, name=name)(tokens, c)
      return FinalLayer(d, out_features, runs[modality], self.param_dtype, name=name)(tokens, cond)
    a_out = head("audio_head", x[:, :la], pa * audio_channels, "audio", slice(0, la))     # (B, La, pa*Ca)
    v_out = head("video_head", x[:, la:], pt * ph * pw * video_channels, "video", slice(la, None))
    gt, gh, gw = layout.video_grid
    a_out = einops.rearrange(a_out, "b t (p c) -> b (t p) c", p=pa)
    v_out = einops.rearrange(v_out, "b (t h w) (pt ph pw c) -> b (t pt) (h ph) (w pw) c",
                             t=gt, h=gh, w=gw, pt=pt, ph=ph, pw=pw)
    return a_out, v_out


def denoiser(model: nn.Module, params):
  """The network as the objective takes it: denoise(audio, video, t) -> (audio_out, video_out)."""
  return lambda audio, video, t: model.apply({"params": params}, audio, video, t)


def network(model: nn.Module):
  """The network as the sampler takes it, params first: network(params, audio, video, t) -> (audio_out, video_out)."""
  return lambda params, audio, video, t: model.apply({"params": params}, audio, video, t)


def make_model(variant: str = "S", **overrides) -> AVDiT:
  """AVDiT by variant name ('tiny', 'mini', 'S', 'B', 'L', 'XL') with field overrides."""
  if variant not in VARIANTS:
    raise ValueError(f"model.variant: unknown {variant!r}; expected one of {sorted(VARIANTS)}.")
  depth, width, heads = VARIANTS[variant]
  fields = dict(depth=depth, width=width, num_heads=heads)
  fields.update(overrides)
  unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(AVDiT)})
  if unknown:
    raise ValueError(f"model: unknown fields {unknown}.")
  return AVDiT(**fields)


def _block_flops(layout: TokenLayout, model: AVDiT) -> float:
  """Forward matmul FLOPs of one block on one example."""
  d = model.width
  length = layout.num_audio_tokens + layout.num_video_tokens
  hidden = int(d * model.mlp_ratio)
  attention = 2 * 2 * length * length * d
  adaln = 2 * monl.NUM_MODALITIES * model.num_segments * d * 6 * d     # once per cell, broadcast to the tokens
  return 2 * length * (4 * d * d + 2 * d * hidden) + attention + adaln


def count_flops(layout: TokenLayout, model: AVDiT, batch: int) -> float:
  """Analytic forward matmul FLOPs (2 per multiply-add) of the model on one batch.

  Counts the dense layers and attention's two matmuls; elementwise work is left out, as in
  the usual MFU convention.
  """
  d, depth = model.width, model.depth
  per_block = _block_flops(layout, model)
  cells = monl.NUM_MODALITIES * model.num_segments
  (ta, ca), (tv, h, w, cv) = layout.audio_shape, layout.video_shape
  patch_io = 2 * 2 * (ta * ca + tv * h * w * cv) * d           # patch embeddings in, heads out
  final_modulation = 2 * cells * d * 2 * d
  t_embed = 2 * cells * (256 * d + d * d)
  return float(batch * (depth * per_block + patch_io + final_modulation + t_embed))


def count_remat_flops(layout: TokenLayout, model: AVDiT, batch: int) -> float:
  """Forward matmul FLOPs that the backward pass recomputes under model.remat: the whole blocks for 'full',
  none otherwise. Training then runs 3 x forward + this: the hardware FLOPs, next to the 3 x forward model
  FLOPs of MFU. 'dots' keeps every matmul output; under 'dots_no_batch' XLA was measured (on CPU) to add
  about a tenth of attention's batched matmuls, which this leaves out (tests/model_test.py)."""
  return float(batch * model.depth * _block_flops(layout, model)) if model.remat == "full" else 0.0
