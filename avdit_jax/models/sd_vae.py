"""The Stable Diffusion image VAE (diffusers' AutoencoderKL) in linen, NHWC, and as a frame-by-frame video tokenizer.

  x [B, H, W, 3] in [-1, 1] -> Encoder (conv_in, per level: resnets + stride-2 conv, mid: resnet, attention, resnet,
  GroupNorm, SiLU, conv_out) -> quant_conv -> (mean, logvar) [B, H/f, W/f, C] each, f = 2^(levels - 1)
  z -> post_quant_conv -> Decoder (conv_in, mid, per level reversed: resnets + nearest x2 + conv, ...) -> [B, H, W, 3]

`FrameVAE` applies it to every frame of a clip [B, T, H, W, 3] with the latents scaled by `scale_factor`
(0.18215 for SD's), the interface of the video tokenizers (encode / decode / latent_shape, temporal ratio 1).
Names follow diffusers' modules, so the converter (avdit_jax/pretrained/sd_vae.py) is a renaming.
"""

from __future__ import annotations

import dataclasses

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp


def _norm(groups: int, name: str):
  return nn.GroupNorm(num_groups=groups, epsilon=1e-6, use_fast_variance=False, name=name)


def _conv(features: int, name: str, kernel: int = 3, stride: int = 1, padding="SAME"):
  return nn.Conv(features, (kernel, kernel), (stride, stride), padding=padding, name=name)


class Resnet(nn.Module):
  out_channels: int
  groups: int

  @nn.compact
  def __call__(self, x):                                     # (B, H, W, Cin) -> (B, H, W, Cout)
    h = _conv(self.out_channels, "conv1")(nn.silu(_norm(self.groups, "norm1")(x)))
    h = _conv(self.out_channels, "conv2")(nn.silu(_norm(self.groups, "norm2")(h)))
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, "conv_shortcut", kernel=1)(x)
    return x + h


class Attention(nn.Module):
  """One-head self-attention over the pixels, with a residual (the VAE's mid block)."""
  groups: int

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    y = _norm(self.groups, "group_norm")(x).reshape(b, h * w, c)                      # (B, L, C)
    q, k, v = (nn.Dense(c, name=n)(y) for n in ("to_q", "to_k", "to_v"))
    weights = jax.nn.softmax(jnp.einsum("blc,bmc->blm", q, k).astype(jnp.float32) / jnp.sqrt(c), axis=-1)
    out = nn.Dense(c, name="to_out")(jnp.einsum("blm,bmc->blc", weights.astype(v.dtype), v))
    return x + out.reshape(b, h, w, c)


class Mid(nn.Module):
  channels: int
  groups: int

  @nn.compact
  def __call__(self, x):
    x = Resnet(self.channels, self.groups, name="resnet_0")(x)
    x = Attention(self.groups, name="attention")(x)
    return Resnet(self.channels, self.groups, name="resnet_1")(x)


class Encoder(nn.Module):
  block_out_channels: tuple
  layers_per_block: int
  groups: int
  latent_channels: int

  @nn.compact
  def __call__(self, x):
    x = _conv(self.block_out_channels[0], "conv_in")(x)
    for i, ch in enumerate(self.block_out_channels):
      for j in range(self.layers_per_block):
        x = Resnet(ch, self.groups, name=f"down_{i}_resnet_{j}")(x)
      if i < len(self.block_out_channels) - 1:               # stride 2 after padding right and bottom only
        x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        x = _conv(ch, f"down_{i}_downsample", stride=2, padding="VALID")(x)
    x = Mid(self.block_out_channels[-1], self.groups, name="mid")(x)
    x = nn.silu(_norm(self.groups, "norm_out")(x))
    return _conv(2 * self.latent_channels, "conv_out")(x)    # (B, H/f, W/f, 2C): mean, logvar


class Decoder(nn.Module):
  block_out_channels: tuple
  layers_per_block: int
  groups: int
  out_channels: int = 3

  @nn.compact
  def __call__(self, z):
    x = _conv(self.block_out_channels[-1], "conv_in")(z)
    x = Mid(self.block_out_channels[-1], self.groups, name="mid")(x)
    levels = tuple(reversed(self.block_out_channels))
    for i, ch in enumerate(levels):
      for j in range(self.layers_per_block + 1):
        x = Resnet(ch, self.groups, name=f"up_{i}_resnet_{j}")(x)
      if i < len(levels) - 1:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2
        x = _conv(ch, f"up_{i}_upsample")(x)
    x = nn.silu(_norm(self.groups, "norm_out")(x))
    return _conv(self.out_channels, "conv_out")(x)


class AutoencoderKL(nn.Module):
  """SD's VAE: 4 levels of (128, 256, 512, 512) channels, 2 resnets each, 32 groups, 4 latent channels (f = 8)."""
  block_out_channels: tuple = (128, 256, 512, 512)
  layers_per_block: int = 2
  groups: int = 32
  latent_channels: int = 4

  def setup(self):
    self.encoder = Encoder(self.block_out_channels, self.layers_per_block, self.groups, self.latent_channels)
    self.quant_conv = nn.Conv(2 * self.latent_channels, (1, 1))
    self.post_quant_conv = nn.Conv(self.latent_channels, (1, 1))
    self.decoder = Decoder(self.block_out_channels, self.layers_per_block, self.groups)

  @property
  def downsampling(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  def encode(self, x):
    """x [B, H, W, 3] in [-1, 1] -> (mean, logvar) [B, H/f, W/f, C] each (the posterior before the scale factor)."""
    moments = self.quant_conv(self.encoder(x))
    return jnp.split(moments, 2, axis=-1)

  def decode(self, z):
    return self.decoder(self.post_quant_conv(z))

  def __call__(self, x):
    mean, _ = self.encode(x)
    return self.decode(mean)


class FrameVAE(nn.Module):
  """An image VAE as a video tokenizer: each frame on its own, latents times scale_factor (temporal ratio 1)."""
  vae: AutoencoderKL = dataclasses.field(default_factory=AutoencoderKL)
  scale_factor: float = 0.18215

  temporal_ratio = 1

  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple:
    f = self.vae.downsampling
    if height % f or width % f:
      raise ValueError(f"FrameVAE: frames {height}x{width} are not divisible by the VAE's downsampling {f}.")
    return (num_frames, height // f, width // f, self.vae.latent_channels)

  def encode(self, frames):
    """[B, T, H, W, 3] in [-1, 1] -> scaled posterior means [B, T, H/f, W/f, C]."""
    b = frames.shape[0]
    mean, _ = self.vae.encode(einops.rearrange(frames, "b t h w c -> (b t) h w c"))
    return einops.rearrange(mean * self.scale_factor, "(b t) h w c -> b t h w c", b=b)

  def decode(self, latent):
    b = latent.shape[0]
    frames = self.vae.decode(einops.rearrange(latent / self.scale_factor, "b t h w c -> (b t) h w c"))
    return einops.rearrange(frames, "(b t) h w c -> b t h w c", b=b)

  def __call__(self, frames):
    return self.decode(self.encode(frames))
