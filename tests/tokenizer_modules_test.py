"""The tokenizer modules without training: causality of the video codec, shape checks, the STFT loss (no xdist
group: these need none of the quickstart run that tokenizers_test.py shares)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avdit_jax.models.tokenizers import audio as audio_tok
from avdit_jax.models.tokenizers import video as video_tok


def init(module, shape):
  return jax.jit(lambda s: module.init(jax.random.key(s, impl="rbg"), jnp.zeros((1, *shape))))(0)["params"]


@pytest.mark.parametrize("layout", [
    dict(channel_mult=(1, 2, 2), temporal_down=(True, True)),                       # strided causal convs
    dict(channel_mult=(1,), temporal_down=(), patch_size=(4, 4, 4)),               # causal tubelets
])
def test_video_encoder_is_causal_and_codes_the_first_frame_alone(layout):
  module = video_tok.VideoTokenizer(latent_channels=2, channels=4, **layout)
  frames = np.random.default_rng(0).uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32)
  # Every weight nonzero: at init past-frame taps are zero (inflation), which would hide the receptive field.
  leaves, tree = jax.tree.flatten(init(module, frames.shape[1:]))
  rng = np.random.default_rng(1)          # numpy: jax.random.normal would compile once per param shape
  params = jax.tree.unflatten(tree, [np.asarray(x) + 0.1 * rng.standard_normal(x.shape, np.float32) for x in leaves])
  encode = jax.jit(lambda p, x: module.apply({"params": p}, x, method=module.encode))
  base = np.asarray(encode(params, frames))
  assert base.shape == (1, 3, 4, 4, 2)
  for k in range(1, 9):                        # latent j codes frames 4j-3 .. 4j: a change at k reaches j >= ceil(k/4)
    moved = frames.copy()
    moved[:, k] += 0.5
    changed = np.abs(np.asarray(encode(params, moved)) - base).max(axis=(0, 2, 3, 4)) > 0
    first = -(-k // 4)
    assert not changed[:first].any(), (k, changed)
    assert changed[first], (k, changed)
  # The decoder is causal too: latent j reaches output frames >= 4j - 3 only.
  decode = jax.jit(lambda p, z: module.apply({"params": p}, z, method=module.decode))
  out = np.asarray(decode(params, base))
  bumped = base.copy()
  bumped[:, 2] += 1.0
  diff = np.abs(np.asarray(decode(params, bumped)) - out).max(axis=(0, 2, 3, 4)) > 0
  assert out.shape == frames.shape and not diff[:5].any() and diff[5:].all()


def test_tokenizer_shapes_are_checked_with_clear_errors():
  video = video_tok.VideoTokenizer(channel_mult=(1, 2, 2, 4), temporal_down=(False, True, True))
  assert video.latent_shape(17, 128, 128) == (5, 16, 16, 4)
  with pytest.raises(ValueError, match="1 \\+ a multiple of 4"):
    video.latent_shape(16, 128, 128)
  with pytest.raises(ValueError, match="one entry per downsampling"):
    video_tok.VideoTokenizer(channel_mult=(1, 2), temporal_down=(True, True)).init(
        jax.random.key(0, impl="rbg"), jnp.zeros((1, 5, 8, 8, 3)))
  audio = audio_tok.AudioTokenizer(strides=(2, 4, 5, 8))
  assert audio.latent_shape(40000) == (125, 8)        # 2.5 s at 16 kHz -> 50 latent frames per second
  with pytest.raises(ValueError, match="not a multiple of the hop 320"):
    audio.latent_shape(40001)


def test_multi_resolution_stft_loss_is_zero_for_equal_signals_and_grows_with_error():
  x = jnp.sin(jnp.arange(4000) * 0.3)[None]
  sizes = audio_tok.fft_sizes(8000)
  same = float(audio_tok.spectral.multi_resolution_stft_loss(x, x, sizes)[0])
  near = float(audio_tok.spectral.multi_resolution_stft_loss(x * 1.1, x, sizes)[0])
  far = float(audio_tok.spectral.multi_resolution_stft_loss(x * 2.0, x, sizes)[0])
  assert same < 1e-6 < near < far
