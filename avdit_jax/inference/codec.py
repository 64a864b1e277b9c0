"""Trained tokenizers as a codec: clips <-> latents.

  load(workdir)            a tokenizer run's newest checkpoint: its config, module and (EMA) params
  Codec(video, audio)      encode waveforms + uint8 frames to latents [Ta, Ca] and [T', H', W', Cv]; decode back
  load_pair(workdir)       the tokenizer pair of a main-job workdir (configs/quickstart.py)

Audio comes first in every signature and result, as everywhere in the package (monl.AUDIO = 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avdit_jax import paths
from avdit_jax.media import images
from avdit_jax.train import checkpoint, sharding, trainees, trainer


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
  config: ml_collections.ConfigDict
  module: object
  params: object
  step: int


def load(workdir: str, *, use_ema: bool = True) -> Tokenizer:
  """The newest restorable checkpoint of a tokenizer run in workdir, rebuilt from the config it saved."""
  config = checkpoint.saved_config(workdir)
  if config.get("trainee") not in ("video_tokenizer", "audio_tokenizer"):
    raise ValueError(f"{workdir}: the run trained {config.get('trainee', 'avdit')!r}, not a tokenizer.")
  params, module, step = trainer.restore_params(config, workdir, use_ema=use_ema,
                                                mesh=sharding.single_device_mesh(config))
  return Tokenizer(config, module, params, step)


class Codec:
  """A video and an audio tokenizer over one clip grid."""

  def __init__(self, video: Tokenizer, audio: Tokenizer):
    self.video, self.audio = video, audio
    self.spec = trainees.clip_spec(video.config)
    audio_spec = trainees.clip_spec(audio.config)
    if (audio_spec.sample_rate, audio_spec.audio_samples) != (self.spec.sample_rate, self.spec.audio_samples):
      raise ValueError(f"the tokenizers were trained on different clip grids: video {self.spec}, audio {audio_spec}.")
    self._encode_video = jax.jit(lambda p, x: video.module.apply({"params": p}, x, method=video.module.encode))
    self._encode_audio = jax.jit(lambda p, x: audio.module.apply({"params": p}, x, method=audio.module.encode))
    self._decode_video = jax.jit(lambda p, z: video.module.apply({"params": p}, z, method=video.module.decode))
    self._decode_audio = jax.jit(lambda p, z: audio.module.apply({"params": p}, z, method=audio.module.decode))

  @property
  def video_latent_shape(self) -> tuple:
    s = self.spec
    return self.video.module.latent_shape(s.num_frames, s.height, s.width)

  @property
  def audio_latent_shape(self) -> tuple:
    return self.audio.module.latent_shape(self.spec.audio_samples)

  def encode(self, waveforms: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [B, S] and uint8 [B, T, H, W, 3] -> (audio latents [B, Ta, Ca], video latents [B, T', H', W', Cv])."""
    video = jnp.asarray(images.frames_to_signed(frames))
    return (np.asarray(self._encode_audio(self.audio.params, jnp.asarray(waveforms, jnp.float32))),
            np.asarray(self._encode_video(self.video.params, video)))

  def decode(self, audio_latents, video_latents) -> tuple[np.ndarray, np.ndarray]:
    """Latents -> (float32 waveforms [B, S] in [-1, 1], uint8 frames [B, T, H, W, 3])."""
    audio = np.asarray(self._decode_audio(self.audio.params, jnp.asarray(audio_latents, jnp.float32)))
    video = np.asarray(self._decode_video(self.video.params, jnp.asarray(video_latents, jnp.float32)))
    return np.clip(audio, -1.0, 1.0).astype(np.float32), images.signed_to_frames(video)


def load_pair(workdir: str) -> Codec:
  """The tokenizer pair of a main-job workdir (configs/quickstart.py): its video_tokenizer and audio_tokenizer runs."""
  return Codec(load(paths.join(workdir, "video_tokenizer")), load(paths.join(workdir, "audio_tokenizer")))
