"""Video tokenizer in the style of MAGVIT-v2: a causal 3D-conv autoencoder with a continuous latent.

  frames [B, T, H, W, 3] in [-1, 1], T = 1 + r*k  --encode-->  latent [B, 1 + k, H/s, W/s, C]

Causal in time: every temporal convolution pads on the past side only (with copies of the first
frame), the norms are per frame, and the temporal downsampling is a stride-2 causal convolution, so
latent frame j depends on input frames <= r*j only; frame 0 is coded on its own. The decoder mirrors
it with causal convolutions and depth-to-time upsampling (2C channels -> 2 frames, the first extra
frame dropped: 1 + k -> 1 + 2k frames).

The latent is the mean of a diagonal Gaussian (regularizer 'kl', a small KL to N(0, 1) keeps its scale
in check) or the bare conv output ('none'), both in posterior.py, where a quantizer would slot in.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.models.tokenizers import posterior

def _inflated_init(key, shape, dtype=jnp.float32):
  """A kernel [kt, kh, kw, cin, cout] that starts as a per-frame 2D conv: the taps of past frames are zero
  (MAGVIT-v2's "inflation"). With every tap random, the untrained net blurs frames together and plain
  MSE training sat at the background-only plateau for hundreds of steps; this way it first learns each
  frame, then how to mix time."""
  spatial = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")(key, shape[1:], dtype)
  return jnp.zeros(shape, dtype).at[-1].set(spatial)


def _kernel(out_axis: str, zero: bool = False):
  return nn.with_logical_partitioning(nn.initializers.zeros if zero else _inflated_init, (None,) * 4 + (out_axis,))


class CausalConv3d(nn.Module):
  features: int
  kernel: tuple = (3, 3, 3)
  strides: tuple = (1, 1, 1)
  out_axis: str = "embed"
  zero_init: bool = False

  @nn.compact
  def __call__(self, x):                        # [B, T, H, W, C]
    kt, kh, kw = self.kernel
    x = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1, axis=1), x], axis=1) if kt > 1 else x
    pad = ((0, 0), (kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2))
    return nn.Conv(self.features, self.kernel, self.strides, padding=pad,
                   kernel_init=_kernel(self.out_axis, self.zero_init))(x)


class FrameNorm(nn.Module):
  """GroupNorm over each frame's (H, W, channel group): statistics never mix frames (causality)."""

  @nn.compact
  def __call__(self, x):
    b, t = x.shape[:2]
    groups = next(g for g in (8, 4, 2, 1) if x.shape[-1] % g == 0)
    return nn.GroupNorm(num_groups=groups)(x.reshape(b * t, *x.shape[2:])).reshape(x.shape)


class ResBlock(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    h = CausalConv3d(self.features)(nn.swish(FrameNorm()(x)))
    h = CausalConv3d(self.features, zero_init=True)(nn.swish(FrameNorm()(h)))   # starts as the identity
    if x.shape[-1] != self.features:
      x = CausalConv3d(self.features, (1, 1, 1))(x)
    return x + h


def to_tubelets(x, patch: tuple):
  """[B, 1 + pt*k, H, W, C] -> [B, 1 + k, H/ph, W/pw, pt*ph*pw*C]: causal tubelets as channels. Frame 0
  forms its own tubelet (padded with copies of itself), then every pt frames form one, so tubelet j
  holds frames <= pt*j only."""
  pt, ph, pw = patch
  x = jnp.concatenate([jnp.repeat(x[:, :1], pt - 1, axis=1), x], axis=1)
  b, t, h, w, c = x.shape
  x = x.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
  return x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // pt, h // ph, w // pw, pt * ph * pw * c)


def from_tubelets(x, patch: tuple):
  """The inverse of to_tubelets (the padding frames of tubelet 0 are dropped)."""
  pt, ph, pw = patch
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, pt, ph, pw, c // (pt * ph * pw)).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t * pt, h * ph, w * pw, c // (pt * ph * pw))[:, pt - 1:]


def _stem_kernel(patch: tuple) -> tuple:
  # Over tubelets the stem is a linear patch embedding (and its inverse at the output): a 3x3x3 stem
  # there slowed early training several-fold on the synthetic clips.
  return (3, 3, 3) if tuple(patch) == (1, 1, 1) else (1, 1, 1)


class Encoder(nn.Module):
  channels: int
  channel_mult: tuple
  temporal_down: tuple          # per downsampling (len(channel_mult) - 1 of them)
  spatial_down: tuple
  num_res_blocks: int
  out_features: int
  patch_size: tuple

  @nn.compact
  def __call__(self, x):
    x = CausalConv3d(self.channels, _stem_kernel(self.patch_size))(to_tubelets(x, self.patch_size))
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        x = ResBlock(self.channels * mult)(x)
      if level < len(self.channel_mult) - 1:
        st, ss = (2 if self.temporal_down[level] else 1), (2 if self.spatial_down[level] else 1)
        x = CausalConv3d(self.channels * mult, (3, 3, 3), (st, ss, ss))(x)
    x = ResBlock(self.channels * self.channel_mult[-1])(x)
    return CausalConv3d(self.out_features, (1, 1, 1), out_axis="embed_out")(nn.swish(FrameNorm()(x)))


class Decoder(nn.Module):
  channels: int
  channel_mult: tuple
  temporal_down: tuple
  spatial_down: tuple
  num_res_blocks: int
  patch_size: tuple

  @nn.compact
  def __call__(self, z):
    x = CausalConv3d(self.channels * self.channel_mult[-1])(z)
    x = ResBlock(self.channels * self.channel_mult[-1])(x)
    for level in reversed(range(len(self.channel_mult))):
      features = self.channels * self.channel_mult[level]
      for _ in range(self.num_res_blocks):
        x = ResBlock(features)(x)
      if level > 0:
        if self.temporal_down[level - 1]:        # depth to time: 1 + k -> 1 + 2k frames
          b, t, h, w, c = x.shape
          x = CausalConv3d(2 * c)(x).reshape(b, t, h, w, 2, c)
          x = jnp.moveaxis(x, 4, 2).reshape(b, 2 * t, h, w, c)[:, 1:]
        if self.spatial_down[level - 1]:
          b, t, h, w, c = x.shape
          x = jax.image.resize(x, (b, t, 2 * h, 2 * w, c), "nearest")
        x = CausalConv3d(self.channels * self.channel_mult[level - 1])(x)
    head = CausalConv3d(3 * int(np.prod(self.patch_size)), _stem_kernel(self.patch_size), out_axis="embed_out")
    return from_tubelets(head(nn.swish(FrameNorm()(x))), self.patch_size)


class VideoTokenizer(nn.Module):
  """Causal video autoencoder. Ratios: spatial patch_size[1] * 2^sum(spatial_down) (and [2] for the width),
  temporal patch_size[0] * 2^sum(temporal_down)."""
  latent_channels: int = 4
  channels: int = 32
  channel_mult: tuple = (1, 2, 2, 4)
  temporal_down: tuple = (False, True, True)
  spatial_down: tuple | None = None   # per downsampling; None: every one
  num_res_blocks: int = 1
  regularizer: str = "kl"
  patch_size: tuple = (1, 1, 1)   # (t, h, w) tubelets as channels: the convolutions start at that stride

  @property
  def _spatial_down(self) -> tuple:
    return (True,) * (len(self.channel_mult) - 1) if self.spatial_down is None else tuple(self.spatial_down)

  def setup(self):
    for name, value in (("temporal_down", self.temporal_down), ("spatial_down", self._spatial_down)):
      if len(value) != len(self.channel_mult) - 1:
        raise ValueError(f"video tokenizer: {name} {value} needs one entry per downsampling "
                         f"({len(self.channel_mult) - 1} for channel_mult {self.channel_mult}).")
    posterior.check(self.regularizer, "video tokenizer")
    out = posterior.num_outputs(self.latent_channels, self.regularizer)
    levels = (tuple(self.channel_mult), tuple(self.temporal_down), self._spatial_down)
    self.encoder = Encoder(self.channels, *levels, self.num_res_blocks, out, self.patch_size)
    self.decoder = Decoder(self.channels, *levels, self.num_res_blocks, self.patch_size)

  @property
  def spatial_ratio(self) -> int:
    if self.patch_size[1] != self.patch_size[2]:
      raise ValueError(f"video tokenizer: model.patch_size {tuple(self.patch_size)} must be square in space "
                       "(its height and width entries equal).")
    return self.patch_size[1] * 2 ** sum(bool(d) for d in self._spatial_down)

  @property
  def temporal_ratio(self) -> int:
    return self.patch_size[0] * 2 ** sum(bool(d) for d in self.temporal_down)

  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple:
    s, r = self.spatial_ratio, self.temporal_ratio
    if (num_frames - 1) % r or height % s or width % s:
      raise ValueError(f"video tokenizer: frames {num_frames} must be 1 + a multiple of {r}, and height x width "
                       f"{height}x{width} multiples of {s}.")
    return (1 + (num_frames - 1) // r, height // s, width // s, self.latent_channels)

  def encode_moments(self, frames):
    self.latent_shape(*frames.shape[1:4])
    h = self.encoder(frames)
    return posterior.moments(h, self.regularizer)

  def encode(self, frames):
    """frames [B, T, H, W, 3] in [-1, 1] -> latent [B, T', H', W', C] (the posterior mean)."""
    return self.encode_moments(frames)[0]

  def decode(self, latent):
    return self.decoder(latent)

  def __call__(self, frames, rng=None):
    """(reconstruction, KL per example [B]); with rng, decodes a posterior sample (training)."""
    mean, logvar = self.encode_moments(frames)
    z, kl = posterior.sample_and_kl(mean, logvar, rng)
    return self.decode(z), kl


def loss(model: VideoTokenizer, params, frames, rng, *, kl_weight: float):
  """Per-batch loss and its parts: pixel MSE + kl_weight * KL (per latent element)."""
  rec, kl = model.apply({"params": params}, frames, rng)
  mse = jnp.mean((rec - frames) ** 2)
  kl = jnp.mean(kl) / np.prod(model.latent_shape(*frames.shape[1:4]))
  return mse + kl_weight * kl, {"mse": mse, "kl": kl}


def psnr(reconstruction, frames) -> jnp.ndarray:
  """PSNR in dB per example [B] of frames in [-1, 1] (peak-to-peak 2)."""
  mse = jnp.mean((jnp.clip(reconstruction, -1, 1) - frames) ** 2, axis=tuple(range(1, frames.ndim)))
  return 10 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))
