"""Trained tokenizers as a codec: clips <-> latents.

  load(workdir)            a tokenizer run's newest checkpoint: its config, module and (EMA) params; or, where
                           frame_vae.json is, the frame-by-frame SD VAE it names (`frame_vae`, `save_frame_vae`)
  frame_vae(section, ...)  config.video_tokenizer of kind 'sd_vae': a converted SD VAE file as the video tokenizer
  Codec(video, audio)      encode waveforms + uint8 frames to latents [Ta, Ca] and [T', H', W', Cv]; decode back
  load_pair(workdir)       the tokenizer pair of a main-job workdir (configs/quickstart.py)

Audio comes first in every signature and result, as everywhere in the package (monl.AUDIO = 0).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from avdit_jax import paths
from avdit_jax.media import images
from avdit_jax.models import sd_vae
from avdit_jax.pretrained import files
from avdit_jax.pretrained import sd_vae as sd_vae_files
from avdit_jax.train import checkpoint, sharding, trainees, trainer

VIDEO_TOKENIZER_KINDS = ("trained", "sd_vae")
FRAME_VAE_FILE = "frame_vae.json"     # in a main job's video_tokenizer/ when that tokenizer is a converted SD VAE


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
  config: ml_collections.ConfigDict
  module: object
  params: object
  step: int


def load(workdir: str, *, use_ema: bool = True) -> Tokenizer:
  """The newest restorable checkpoint of a tokenizer run in workdir, rebuilt from the config it saved (or the
  SD VAE that workdir's frame_vae.json names)."""
  marker = paths.path(workdir) / FRAME_VAE_FILE
  if marker.exists():
    saved = ml_collections.ConfigDict(json.loads(marker.read_text()))
    return frame_vae(saved.video_tokenizer, saved.data.dataset, saved.data.tfds_dir)
  config = checkpoint.saved_config(workdir)
  if config.get("trainee") not in ("video_tokenizer", "audio_tokenizer"):
    raise ValueError(f"{workdir}: the run trained {config.get('trainee', 'avdit')!r}, not a tokenizer.")
  params, module, step = trainer.restore_params(config, workdir, use_ema=use_ema,
                                                mesh=sharding.single_device_mesh(config))
  return Tokenizer(config, module, params, step)


def video_tokenizer_kind(section: ml_collections.ConfigDict) -> str:
  """config.video_tokenizer.kind: 'trained' (absent: the default; a tokenizer trained by the job) or 'sd_vae'."""
  kind = section.get("kind", "trained")
  if kind not in VIDEO_TOKENIZER_KINDS:
    raise ValueError(f"video_tokenizer.kind: unknown {kind!r}; expected one of {VIDEO_TOKENIZER_KINDS}.")
  return kind


def frame_vae(section: ml_collections.ConfigDict, dataset: str, tfds_dir: str) -> Tokenizer:
  """A converted SD VAE (section.weights, from tools/convert_weights.py --kind=sd_vae; architecture section.vae)
  applied frame by frame (models/sd_vae.FrameVAE, latents times section.scale_factor) on dataset's clip grid,
  which must code every frame (temporal ratio 1, e.g. synthetic_av/small_frames)."""
  if not section.weights:
    raise ValueError("video_tokenizer.weights is empty: give a converted SD VAE file (tools/convert_weights.py "
                     "--kind=sd_vae).")
  v = section.vae
  module = sd_vae.FrameVAE(sd_vae.AutoencoderKL(block_out_channels=tuple(v.block_out_channels),
                                                layers_per_block=v.layers_per_block, groups=v.groups,
                                                latent_channels=v.latent_channels),
                           scale_factor=float(section.scale_factor))
  config = ml_collections.ConfigDict(dict(
      trainee="video_tokenizer", data=dict(dataset=dataset, tfds_dir=tfds_dir), video_tokenizer=section.to_dict(),
      model=dict(kind="sd_vae", weights=section.weights, scale_factor=module.scale_factor, **v.to_dict())))
  spec = trainees.clip_spec(config)
  if spec.temporal_ratio != module.temporal_ratio:
    raise ValueError(f"video_tokenizer.kind 'sd_vae' codes every frame (temporal ratio 1), but data set {dataset!r} "
                     f"has ratio {spec.temporal_ratio}; use a grid of ratio 1 (e.g. synthetic_av/small_frames).")
  module.latent_shape(spec.num_frames, spec.height, spec.width)    # frames divisible by the VAE's downsampling
  where = f"video_tokenizer.weights {section.weights}"
  flat = files.read_params(section.weights)
  files.check_matches(flat, sd_vae_files.param_shapes(module.vae, 4 * module.vae.downsampling), where)
  params = {"vae": traverse_util.unflatten_dict({k: jnp.asarray(a) for k, a in flat.items()})}
  return Tokenizer(config, module, params, 0)


def save_frame_vae(tokenizer: Tokenizer, workdir: str) -> None:
  """What `load(workdir)` needs to rebuild a frame_vae tokenizer (the section and the data set; the weights file
  stays where the section names it)."""
  paths.path(workdir).mkdir(parents=True, exist_ok=True)
  (paths.path(workdir) / FRAME_VAE_FILE).write_text(tokenizer.config.to_json(indent=1))


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
