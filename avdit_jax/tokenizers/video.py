"""Video tokenizer in the style of MAGVIT-v2: a causal 3D-conv autoencoder with a continuous latent.

  frames [B, T, H, W, 3] in [-1, 1], T = 1 + r*k  --encode-->  latent [B, 1 + k, H/s, W/s, C]

Causal in time: every temporal convolution pads on the past side only (with copies of the first
frame), the norms are per frame, and the temporal downsampling is a stride-2 causal convolution, so
latent frame j depends on input frames <= r*j only; frame 0 is coded on its own. The decoder mirrors
it with causal convolutions and depth-to-time upsampling (2C channels -> 2 frames, the first extra
frame dropped: 1 + k -> 1 + 2k frames).

The latent is the mean of a diagonal Gaussian (regularizer 'kl', a small KL to N(0, 1) keeps its scale
in check) or the bare conv output ('none'); a quantizer would slot in at `_regularize`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax.tokenizers import posterior

def _kernel(ndim: int, out_axis: str = "embed"):
  return nn.with_logical_partitioning(nn.initializers.variance_scaling(1.0, "fan_in", "uniform"), (None,) * (ndim - 1) + (out_axis,))


class CausalConv3d(nn.Module):
  features: int
  kernel: tuple = (3, 3, 3)
  strides: tuple = (1, 1, 1)
  out_axis: str = "embed"

  @nn.compact
  def __call__(self, x):                        # [B, T, H, W, C]
    kt, kh, kw = self.kernel
    x = jnp.concatenate([jnp.repeat(x[:, :1], kt - 1, axis=1), x], axis=1) if kt > 1 else x
    pad = ((0, 0), (kh // 2, (kh - 1) // 2), (kw // 2, (kw - 1) // 2))
    return nn.Conv(self.features, self.kernel, self.strides, padding=pad, kernel_init=_kernel(5, self.out_axis))(x)


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
    h = CausalConv3d(self.features)(nn.swish(FrameNorm()(h)))
    if x.shape[-1] != self.features:
      x = CausalConv3d(self.features, (1, 1, 1))(x)
    return x + h


class Encoder(nn.Module):
  channels: int
  channel_mult: tuple
  temporal_down: tuple          # per downsampling (len(channel_mult) - 1 of them)
  num_res_blocks: int
  out_features: int

  @nn.compact
  def __call__(self, x):
    x = CausalConv3d(self.channels)(x)
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        x = ResBlock(self.channels * mult)(x)
      if level < len(self.channel_mult) - 1:
        st = 2 if self.temporal_down[level] else 1
        x = CausalConv3d(self.channels * mult, (3, 3, 3), (st, 2, 2))(x)
    x = ResBlock(self.channels * self.channel_mult[-1])(x)
    return CausalConv3d(self.out_features, (1, 1, 1), out_axis="embed_out")(nn.swish(FrameNorm()(x)))


class Decoder(nn.Module):
  channels: int
  channel_mult: tuple
  temporal_down: tuple
  num_res_blocks: int

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
        b, t, h, w, c = x.shape
        x = jax.image.resize(x, (b, t, 2 * h, 2 * w, c), "nearest")
        x = CausalConv3d(self.channels * self.channel_mult[level - 1])(x)
    return CausalConv3d(3, out_axis="embed_out")(nn.swish(FrameNorm()(x)))


class VideoTokenizer(nn.Module):
  """Causal video autoencoder. spatial ratio 2^(len(channel_mult)-1), temporal ratio 2^sum(temporal_down)."""
  latent_channels: int = 4
  channels: int = 32
  channel_mult: tuple = (1, 2, 2, 4)
  temporal_down: tuple = (False, True, True)
  num_res_blocks: int = 1
  regularizer: str = "kl"

  def setup(self):
    if len(self.temporal_down) != len(self.channel_mult) - 1:
      raise ValueError(f"video tokenizer: temporal_down {self.temporal_down} needs one entry per downsampling "
                       f"({len(self.channel_mult) - 1} for channel_mult {self.channel_mult}).")
    posterior.check(self.regularizer, "video tokenizer")
    out = posterior.num_outputs(self.latent_channels, self.regularizer)
    self.encoder = Encoder(self.channels, tuple(self.channel_mult), tuple(self.temporal_down),
                           self.num_res_blocks, out)
    self.decoder = Decoder(self.channels, tuple(self.channel_mult), tuple(self.temporal_down), self.num_res_blocks)

  @property
  def spatial_ratio(self) -> int:
    return 2 ** (len(self.channel_mult) - 1)

  @property
  def temporal_ratio(self) -> int:
    return 2 ** sum(bool(d) for d in self.temporal_down)

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
