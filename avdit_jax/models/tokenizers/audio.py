"""Audio tokenizer in the style of SoundStream: a strided 1D-conv autoencoder with a continuous latent.

  waveform [B, S] in [-1, 1]  --encode-->  latent [B, S / prod(strides), C]

Encoder: a conv, then per stride s a block of residual units (dilations 1, 3, 9) and a strided conv
that doubles the channels; decoder: transposed convs mirroring it. Default strides (2, 4, 5, 8) take
16 kHz to 50 latent frames per second; (2, 4, 4, 5) take 8 kHz to 50. The regulariser matches the video
tokenizer's ('kl' or 'none'). The loss is a multi-resolution STFT loss (log floor LOG_FLOOR) plus an optional
waveform L1 (l1_weight; off in the configs: it pulls tones of unpredictable phase towards silence) and the KL.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from avdit_jax.models.tokenizers import posterior, spectral


def _kernel(out_axis: str = "embed", zero: bool = False):
  init = nn.initializers.zeros if zero else nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
  return nn.with_logical_partitioning(init, (None, None, out_axis))


class ResidualUnit(nn.Module):
  features: int
  dilation: int

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(self.features, (7,), kernel_dilation=(self.dilation,), padding="SAME", kernel_init=_kernel())(nn.elu(x))
    h = nn.Conv(self.features, (1,), kernel_init=_kernel(zero=True))(nn.elu(h))    # starts as the identity
    return x + h


class Encoder(nn.Module):
  channels: int
  strides: tuple
  out_features: int
  patch_size: int

  @nn.compact
  def __call__(self, x):                        # [B, S]
    x = x.reshape(x.shape[0], -1, self.patch_size)          # patch_size samples per step as channels
    x = nn.Conv(self.channels, (7,), padding="SAME", kernel_init=_kernel())(x)
    for i, s in enumerate(self.strides):
      c = self.channels * 2**i
      for d in (1, 3, 9):
        x = ResidualUnit(c, d)(x)
      x = nn.Conv(2 * c, (2 * s,), strides=(s,), padding=((s // 2, s - s // 2),), kernel_init=_kernel())(nn.elu(x))
    return nn.Conv(self.out_features, (3,), padding="SAME", kernel_init=_kernel("embed_out"))(nn.elu(x))


class Decoder(nn.Module):
  channels: int
  strides: tuple
  patch_size: int

  @nn.compact
  def __call__(self, z):                        # [B, S / hop, C]
    x = nn.Conv(self.channels * 2 ** len(self.strides), (7,), padding="SAME", kernel_init=_kernel())(z)
    for i, s in reversed(list(enumerate(self.strides))):
      c = self.channels * 2**i
      x = nn.ConvTranspose(c, (2 * s,), strides=(s,), padding="SAME", kernel_init=_kernel())(nn.elu(x))
      for d in (1, 3, 9):
        x = ResidualUnit(c, d)(x)
    x = nn.Conv(self.patch_size, (7,), padding="SAME", kernel_init=_kernel("embed_out"))(nn.elu(x))
    return x.reshape(x.shape[0], -1)


class AudioTokenizer(nn.Module):
  latent_channels: int = 8
  channels: int = 16
  strides: tuple = (2, 4, 5, 8)
  regularizer: str = "kl"
  patch_size: int = 1           # samples per step before the first conv (a cheap first downsampling)

  def setup(self):
    posterior.check(self.regularizer, "audio tokenizer")
    out = posterior.num_outputs(self.latent_channels, self.regularizer)
    self.encoder = Encoder(self.channels, tuple(self.strides), out, self.patch_size)
    self.decoder = Decoder(self.channels, tuple(self.strides), self.patch_size)

  @property
  def hop(self) -> int:
    return self.patch_size * int(np.prod(self.strides))

  def latent_shape(self, num_samples: int) -> tuple:
    if num_samples % self.hop:
      raise ValueError(f"audio tokenizer: {num_samples} samples is not a multiple of the hop {self.hop} "
                       f"(patch_size {self.patch_size} x strides {tuple(self.strides)}).")
    return (num_samples // self.hop, self.latent_channels)

  def encode_moments(self, waveform):
    self.latent_shape(waveform.shape[-1])
    h = self.encoder(waveform)
    return posterior.moments(h, self.regularizer)

  def encode(self, waveform):
    """waveform [B, S] -> latent [B, S / hop, C] (the posterior mean)."""
    return self.encode_moments(waveform)[0]

  def decode(self, latent):
    return self.decoder(latent)

  def __call__(self, waveform, rng=None):
    """(reconstruction [B, S], KL per example [B]); with rng, decodes a posterior sample (training)."""
    mean, logvar = self.encode_moments(waveform)
    z, kl = posterior.sample_and_kl(mean, logvar, rng)
    return self.decode(z), kl


# The log-magnitude term's floor. At 1e-5 (~120 dB below a full-scale tone's bin) matching the silence between
# bounces dominated the loss and the decoder learned near-silence (output RMS 1% of the input's after 900
# steps); at 0.1 silence is matched to ~60 dB and the energy goes where the tones are.
LOG_FLOOR = 0.1


def fft_sizes(sample_rate: int) -> tuple:
  """STFT resolutions of the loss: windows of about 16, 32 and 64 ms."""
  base = int(2 ** np.round(np.log2(0.016 * sample_rate)))
  return (base, 2 * base, 4 * base)


def loss(model: AudioTokenizer, params, waveform, rng, *, sample_rate: int, kl_weight: float, stft_weight: float = 1.0,
         l1_weight: float = 1.0):
  """Per-batch loss and its parts: l1_weight * L1 + stft_weight * multi-res STFT + kl_weight * KL (per latent
  element). A waveform L1 alone pulls tones of unpredictable phase towards silence."""
  rec, kl = model.apply({"params": params}, waveform, rng)
  l1 = jnp.mean(jnp.abs(rec - waveform))
  stft = jnp.mean(spectral.multi_resolution_stft_loss(rec, waveform, fft_sizes(sample_rate), eps=LOG_FLOOR))
  kl = jnp.mean(kl) / np.prod(model.latent_shape(waveform.shape[-1]))
  return l1_weight * l1 + stft_weight * stft + kl_weight * kl, {"l1": l1, "stft": stft, "kl": kl}
