"""The image DiT of Peebles & Xie (2023), class-conditional, built from AVDiT's own Block and FinalLayer.

  x [B, H, W, C] --patchify + linear--> [B, L, D] + fixed 2D sincos (DiT's)
  t [B] --sincos + MLP--> + y [B] --embedding (row num_classes: no label)--> c [B, D]
  depth x avdit.Block (adaLN-Zero, one modulation per example) -> avdit.FinalLayer -> [B, H, W, out_channels]

The blocks are AVDiT's (same class, same param names), so a converted DiT's blocks are an AVDiT backbone's
(avdit_jax/pretrained/dit.py reads the public checkpoints into this module).
"""

from __future__ import annotations

import dataclasses

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from avdit_jax.models import avdit

# 'XL/2' -> (depth, width, heads, patch), the paper's table.
VARIANTS = {f"{name}/{p}": (*size, p) for name, size in
            {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}.items()
            for p in (2, 4, 8)}


def dit_sincos(positions: np.ndarray, dim: int) -> np.ndarray:
  """DiT's (MAE's) 1D code: [sin, cos] of positions * 10000^(-i / (dim / 2)): [...] -> [..., dim]."""
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
  args = np.asarray(positions, np.float64)[..., None] * omega
  return np.concatenate([np.sin(args), np.cos(args)], axis=-1)


def positional_encoding(grid: int, dim: int) -> np.ndarray:
  """DiT's fixed 2D code of a grid x grid token map in row-major order: [L, dim], the first half coding the
  column, the second the row (as MAE's meshgrid(w, h) has it)."""
  rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
  return np.concatenate([dit_sincos(cols.reshape(-1), dim // 2),
                         dit_sincos(rows.reshape(-1), dim // 2)], axis=-1).astype(np.float32)


class DiT(nn.Module):
  """Noise predictor for [B, H, W, C] latents. out_channels = 2 * in_channels for the published (learn-sigma) ones;
  num_classes 0: unconditional (no label embedding). freq_shift: 0 as in DiT's code, 1 as diffusers evaluates
  the same weights (avdit.timestep_features)."""
  input_size: int = 32
  patch: int = 2
  in_channels: int = 4
  out_channels: int = 8
  depth: int = 28
  width: int = 1152
  num_heads: int = 16
  mlp_ratio: float = 4.0
  num_classes: int = 1000
  freq_shift: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, t, y=None):
    """x [B, H, W, C], t [B] (timesteps), y [B] int class labels or None (the no-label row) -> [B, H, W, out]."""
    b, h, w, c = x.shape
    if h != self.input_size or w != self.input_size or c != self.in_channels:
      raise ValueError(f"DiT expects [B, {self.input_size}, {self.input_size}, {self.in_channels}], got {x.shape}.")
    p, d = self.patch, self.width
    tokens = einops.rearrange(x, "b (h p) (w q) c -> b (h w) (p q c)", p=p, q=p)            # (B, L, p*p*C)
    x = nn.Dense(d, name="x_embed", dtype=self.dtype)(tokens)                                # (B, L, D)
    x = x + jnp.asarray(positional_encoding(h // p, d), x.dtype)[None]
    freq = avdit.timestep_features(jnp.asarray(t), 256, freq_shift=self.freq_shift)            # (B, 256)
    c_vec = TimestepMLP(d, name="t_embed")(freq)                                             # (B, D)
    if self.num_classes:
      labels = jnp.full((b,), self.num_classes, jnp.int32) if y is None else jnp.asarray(y, jnp.int32)
      c_vec = c_vec + nn.Embed(self.num_classes + 1, d, name="y_embed")(labels)                # (B, D)
    cond = nn.silu(c_vec)[:, None, :]                                                          # (B, 1, D)
    for i in range(self.depth):
      x = avdit.Block(d, self.num_heads, self.mlp_ratio, dtype=self.dtype, name=f"block_{i}")(x, cond)
    out = avdit.FinalLayer(d, p * p * self.out_channels, name="final")(x, cond)                # (B, L, p*p*out)
    return einops.rearrange(out, "b (h w) (p q c) -> b (h p) (w q) c", h=h // p, p=p, q=p)


class TimestepMLP(nn.Module):
  """DiT's timestep MLP: sincos features [..., 256] -> [..., D]."""
  width: int

  @nn.compact
  def __call__(self, freq):
    return nn.Dense(self.width, name="mlp_out")(nn.silu(nn.Dense(self.width, name="mlp_in")(freq)))


def from_variant(cls, variant: str, overrides: dict, what: str):
  """cls (DiT, or a model built around one) at the paper's size of that name ('S/2' ... 'XL/8'), fields
  overridden (overrides win); `what` names the model in errors."""
  if variant not in VARIANTS:
    raise ValueError(f"{what}: unknown DiT variant {variant!r}; expected one of {sorted(VARIANTS)}.")
  depth, width, heads, patch = VARIANTS[variant]
  fields = {**dict(depth=depth, width=width, num_heads=heads, patch=patch), **overrides}
  unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise ValueError(f"{what}: unknown fields {unknown}.")
  return cls(**fields)


def make_dit(variant: str = "XL/2", **overrides) -> DiT:
  """A DiT by the paper's name ('S/2' ... 'XL/8') with field overrides (input_size, num_classes, ...)."""
  return from_variant(DiT, variant, overrides, "DiT")


def param_shapes(model: DiT) -> dict:
  """{path tuple: shape} of the model's params (nothing is computed)."""
  x = jnp.zeros((1, model.input_size, model.input_size, model.in_channels))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, jnp.zeros((1,)))["params"])
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(nn.unbox(params)).items()}
