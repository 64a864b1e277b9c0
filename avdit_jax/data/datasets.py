"""Audio-video clip data sets as tensorflow-datasets builders (array_record files, no TensorFlow).

Every builder yields clips on a ClipSpec grid (avdit_jax/data/clips.py) with the same features:
  video   uint8 [T, H, W, 3]      audio  float32 [S] (mono, lead included)
  clip_id text                    plus builder-specific fields (ground truth, source file, label).

  synthetic_av    the embedded default: bouncing balls whose bounces sound (avdit_jax/data/synthetic_av.py),
                  with ground truth. Configs: 'default' (paper-like: 128x128, 17 frames at 8 fps, 16 kHz),
                  'small' (CPU: 32x32, 9 frames, 8 kHz), 'tiny' (tests), 'small_unseen' (small's grid, other colours
                  paired with small's pitches: a fine-tuning target), 'tiny_unseen' (a handful of those),
                  'small_frames' and 'tiny_frames' (small's scenes on a grid of temporal ratio 1, for an image VAE
                  per frame).
  av_folder       any folder of media files with audio (manual_dir, searched recursively).
  landscape       Landscape (MM-Diffusion's release), manual_dir/{train,test}/<class>/*.mp4.
  aist_plus_plus  AIST++ dance clips (MM-Diffusion's release), manual_dir/{train,test}/*.mp4.

Build with `tools/build_dataset.py` or `prepare(name, data_dir, manual_dir)`; read with
`data_source(name, split, data_dir)` (random access, for grain). A file that cannot be decoded or has
no audio is skipped with a warning naming it; the build goes on and reports the count.
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from avdit_jax.data import clips, synthetic_av
from avdit_jax.media import mediafile

MEDIA_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")


def _clip_features(spec: clips.ClipSpec, **extra) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "video": tfds.features.Tensor(shape=(spec.num_frames, spec.height, spec.width, 3), dtype=np.uint8),
      "audio": tfds.features.Tensor(shape=(spec.audio_samples,), dtype=np.float32),
      "clip_id": tfds.features.Text(),
      **extra,
  })


def _spec_metadata(spec: clips.ClipSpec) -> dict:
  return {"clip": dataclasses.asdict(spec)}


# ============================================================================= synthetic


@dataclasses.dataclass
class SyntheticAVConfig(tfds.core.BuilderConfig):
  scene: synthetic_av.Scene = synthetic_av.Scene()
  num_train: int = 2048
  num_validation: int = 128
  seed: int = 0


_SMALL_CLIP = clips.ClipSpec(num_frames=9, frame_rate=8.0, height=32, width=32, sample_rate=8000)
# For a per-frame video tokenizer (models/sd_vae.FrameVAE): every frame is a latent frame and the audio has no lead.
# 12 frames at 8 fps: the 12000 audio samples of _SMALL_CLIP's and 3 segments of 4 frames (1.5 s, no lead).
_FRAMES_CLIP = clips.ClipSpec(num_frames=12, frame_rate=8.0, height=32, width=32, sample_rate=8000, temporal_ratio=1)


class SyntheticAV(tfds.core.GeneratorBasedBuilder):
  """Bouncing balls whose bounces sound at the pitch of their colour, with ground truth."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "small_unseen and tiny_unseen sound their colours at default pitches (Scene.sounds)."}
  BUILDER_CONFIGS = [
      SyntheticAVConfig(name="default", description="128x128, 17 frames at 8 fps, 16 kHz mono.",
                        scene=synthetic_av.Scene(num_distractors=1, background_noise=0.003)),
      SyntheticAVConfig(name="small", description="32x32, 9 frames at 8 fps, 8 kHz mono: for a CPU.",
                        scene=synthetic_av.Scene(clip=_SMALL_CLIP, radius=0.12), num_train=1024, num_validation=64),
      SyntheticAVConfig(name="tiny", description="small's clips, a handful of them: for tests.",
                        scene=synthetic_av.Scene(clip=_SMALL_CLIP, radius=0.12), num_train=8, num_validation=4),
      SyntheticAVConfig(name="small_unseen", description="small's grid with colours that 'small' never has "
                        "(synthetic_av.UNSEEN_COLOURS), each sounding at one of small's pitches (UNSEEN_SOUNDS): "
                        "new pairings, a fine-tuning target.", seed=7,
                        scene=synthetic_av.Scene(clip=_SMALL_CLIP, radius=0.12, colours=synthetic_av.UNSEEN_COLOURS,
                                                 sounds=synthetic_av.UNSEEN_SOUNDS),
                        num_train=256, num_validation=64),
      SyntheticAVConfig(name="tiny_unseen", description="small_unseen's clips, a handful of them: for tests.", seed=7,
                        scene=synthetic_av.Scene(clip=_SMALL_CLIP, radius=0.12, colours=synthetic_av.UNSEEN_COLOURS,
                                                 sounds=synthetic_av.UNSEEN_SOUNDS),
                        num_train=8, num_validation=4),
      SyntheticAVConfig(name="small_frames", description="small's scenes, 12 frames on a grid of temporal ratio 1 "
                        "(a frame-by-frame image VAE as the video tokenizer).",
                        scene=synthetic_av.Scene(clip=_FRAMES_CLIP, radius=0.12), num_train=1024, num_validation=64),
      SyntheticAVConfig(name="tiny_frames", description="small_frames' clips, a handful of them: for tests.",
                        scene=synthetic_av.Scene(clip=_FRAMES_CLIP, radius=0.12), num_train=8, num_validation=4),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.scene.clip
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=_clip_features(
            spec,
            colour_ids=tfds.features.Tensor(shape=(None,), dtype=np.int32),
            pitches=tfds.features.Tensor(shape=(None,), dtype=np.float32),
            trajectories=tfds.features.Tensor(shape=(None, spec.num_frames, 2), dtype=np.float32),
            collision_times=tfds.features.Tensor(shape=(None,), dtype=np.float32),
            collision_objects=tfds.features.Tensor(shape=(None,), dtype=np.int32)),
        metadata=tfds.core.MetadataDict(_spec_metadata(spec)))

  def _split_generators(self, dl_manager):
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "validation": self._generate_examples("validation", c.num_validation)}

  def _generate_examples(self, split: str, count: int):
    c = self.builder_config
    seed = c.seed * 2 + (split == "validation")       # disjoint streams per split
    for i in range(count):
      clip = synthetic_av.make_clip(c.scene, seed, i)
      clip["clip_id"] = f"{split}-{i:06d}"
      yield clip["clip_id"], clip


# ============================================================================= media folders


@dataclasses.dataclass
class MediaFolderConfig(tfds.core.BuilderConfig):
  clip: clips.ClipSpec = clips.ClipSpec()
  max_clips_per_file: int = 0     # 0: every whole clip in the file
  validation_percent: int = 5     # av_folder only: files hashed into 'validation' by path (none: no such split)


class _MediaFolder(tfds.core.GeneratorBasedBuilder):
  """Clips cut from the media files in manual_dir (see each subclass for the layout)."""

  VERSION = tfds.core.Version("1.0.0")
  SPLIT_DIRS: dict = {}           # split -> subdirectory of manual_dir ({} : one folder, hashed into splits)

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.skipped: list[tuple[str, str]] = []      # (path, reason) of files left out of the last build

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.clip
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=_clip_features(spec, source=tfds.features.Text(), start_seconds=np.float32,
                                label=tfds.features.Text()),
        metadata=tfds.core.MetadataDict(_spec_metadata(spec)))

  def _files(self, root: str) -> list[str]:
    if not os.path.isdir(root):
      raise FileNotFoundError(f"{type(self).__name__}: manual_dir {root!r} is not a directory.\n"
                              f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    found = sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names
                   if f.lower().endswith(MEDIA_SUFFIXES))
    if not found:
      raise FileNotFoundError(f"{type(self).__name__}: no media files ({', '.join(MEDIA_SUFFIXES)}) under {root}.")
    return found

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    if self.SPLIT_DIRS:
      return {split: self._generate_examples(self._files(os.path.join(root, sub)), root)
              for split, sub in self.SPLIT_DIRS.items()}
    files = self._files(root)
    pct = self.builder_config.validation_percent
    in_val = [zlib.crc32(os.path.relpath(f, root).encode()) % 100 < pct for f in files]
    splits = {"train": [f for f, v in zip(files, in_val) if not v],
              "validation": [f for f, v in zip(files, in_val) if v]}
    return {split: self._generate_examples(chosen, root) for split, chosen in splits.items() if chosen}

  def _generate_examples(self, files: list[str], root: str):
    c = self.builder_config
    kept = 0
    for path in files:
      rel = os.path.relpath(path, root)
      try:
        decoded = mediafile.decode(path, c.clip.sample_rate)
        cut = list(clips.cut_clips(decoded, c.clip, c.max_clips_per_file or None))
      except mediafile.MediaError as e:
        logging.warning("skipping %s", e)
        self.skipped.append((path, str(e)))
        continue
      if not cut:
        reason = f"{path}: shorter ({decoded.duration:.2f} s) than one clip ({c.clip.video_seconds:.3f} s)."
        logging.warning("skipping %s", reason)
        self.skipped.append((path, reason))
        continue
      kept += 1
      for start, video, audio in cut:
        clip_id = f"{rel}@{start:.3f}"
        yield clip_id, {"video": video, "audio": audio, "clip_id": clip_id, "source": rel,
                        "start_seconds": np.float32(start), "label": os.path.basename(os.path.dirname(rel))}
    logging.info("%s: %d of %d files gave clips; %d skipped so far: %s", type(self).__name__, kept, len(files),
                 len(self.skipped), [p for p, _ in self.skipped])


class AVFolder(_MediaFolder):
  """Every media file with an audio track under manual_dir (searched recursively); 5% of the files
  (by a hash of their path) go to 'validation'. The label is the file's parent folder name."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put media files with audio (mp4, mkv, mov, webm, avi) anywhere under manual_dir."
  BUILDER_CONFIGS = [MediaFolderConfig(name="default", description="128x128, 17 frames at 8 fps, 16 kHz."),
                     MediaFolderConfig(name="small", description="32x32, 9 frames at 8 fps, 8 kHz.", clip=_SMALL_CLIP)]


class Landscape(_MediaFolder):
  """Landscape (Lee et al. 2022; MM-Diffusion's 256x256 release): nature scenes with their sounds,
  9 classes, 928 train / 100 test videos. The label is the class folder."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download MM-Diffusion's Landscape release (linked from github.com/researchmm/MM-Diffusion, 'landscape') and "
      "unpack it so that manual_dir holds train/<class>/*.mp4 and test/<class>/*.mp4.")
  SPLIT_DIRS = {"train": "train", "test": "test"}
  BUILDER_CONFIGS = [MediaFolderConfig(name="default", description="256x256, 17 frames at 8 fps, 16 kHz.",
                                       clip=clips.ClipSpec(height=256, width=256)),
                     MediaFolderConfig(name="128", description="128x128, 17 frames at 8 fps, 16 kHz.")]


class AistPlusPlus(_MediaFolder):
  """AIST++ dance videos with their music (Li et al. 2021), as cut by MM-Diffusion (1020 train / 20 test
  clips of 10 s). The label is empty."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download MM-Diffusion's AIST++ release (linked from github.com/researchmm/MM-Diffusion, 'aist++') and "
      "unpack it so that manual_dir holds train/*.mp4 and test/*.mp4.")
  SPLIT_DIRS = {"train": "train", "test": "test"}
  BUILDER_CONFIGS = [MediaFolderConfig(name="default", description="128x128, 17 frames at 8 fps, 16 kHz.")]


BUILDERS = {"synthetic_av": SyntheticAV, "av_folder": AVFolder, "landscape": Landscape,
            "aist_plus_plus": AistPlusPlus}


# ============================================================================= build and read


def builder(dataset: str, data_dir: str, **config_overrides) -> tfds.core.GeneratorBasedBuilder:
  """A builder from 'name[/config]' (e.g. 'synthetic_av/small'). Overrides replace fields of that builder
  config and must include a new `name`, so the variant is built into a directory of its own."""
  name = dataset
  base, _, config_name = name.partition("/")
  if base not in BUILDERS:
    raise ValueError(f"data set {name!r}: unknown; expected one of {sorted(BUILDERS)} (optionally '/<config>').")
  cls = BUILDERS[base]
  names = [c.name for c in cls.BUILDER_CONFIGS]
  config_name = config_name or names[0]
  if config_name not in names:
    raise ValueError(f"data set {name!r}: unknown config {config_name!r}; expected one of {names}.")
  config = next(c for c in cls.BUILDER_CONFIGS if c.name == config_name)
  if config_overrides:
    if config_overrides.get("name", config_name) == config_name:
      raise ValueError(f"data set {name!r}: overriding {sorted(config_overrides)} needs a new config name "
                       "(name=...), else the variant would share the directory of the original.")
    config = dataclasses.replace(config, **config_overrides)
  return cls(config=config, data_dir=data_dir, file_format="array_record")


def prepare(dataset: str, data_dir: str, manual_dir: str | None = None, **config_overrides):
  """Builds the data set into data_dir unless it is there already; returns the builder."""
  b = builder(dataset, data_dir, **config_overrides)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None)
  return b


def clip_spec(b: tfds.core.DatasetBuilder) -> clips.ClipSpec:
  config = b.builder_config
  return config.scene.clip if hasattr(config, "scene") else config.clip


def data_source(name: str, split: str, data_dir: str | None):
  """The prepared split as a random-access source (for grain) and its ClipSpec. The synthetic sets are
  built on first use; the others need `tools/build_dataset.py` first."""
  b = builder(name, data_dir)
  if not b.is_prepared() and name.startswith("synthetic_av"):
    b.download_and_prepare()        # generated, nothing to download; tfds renames a finished build into place
  if not b.is_prepared():
    raise FileNotFoundError(f"data set {name!r} is not built in {data_dir!r}; build it with "
                            f"`python tools/build_dataset.py --dataset={name} --data_dir={data_dir}`.")
  if split not in b.info.splits:
    raise ValueError(f"data set {name!r} has no split {split!r}; it has {sorted(b.info.splits)}.")
  return b.as_data_source(split=split), clip_spec(b)
