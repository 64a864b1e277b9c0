"""The training input streams, each with a position that checkpoints save (a small JSON dict).

  latent_stream   grain over a latent directory (latents.py): seeded global shuffle, repeat, this process's
                  rows of every global batch, decode + validate (shape, dtype, finite values; errors name the
                  directory and the clip), normalise, batch, optional multi-worker prefetch
  clip_stream     the same pipeline over a clip data set (datasets.py), for the tokenizers
  GaussianStream  latents drawn on the fly from the jointly Gaussian toy (core/gaussian.py)

Every process reads contiguous rows of the same global batch, so a multi-process run sees exactly the
batches of a 1-process run.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import jax
import numpy as np

from avdit_jax.data import datasets, latents
from avdit_jax.media import images


class _ProcessRows(grain.MapDataset):
  """Process p's rows [p*b, (p+1)*b) of every global batch of B = b * P consecutive elements."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, index: int, count: int):
    super().__init__(parent)
    self._b = global_batch // count
    self._global, self._offset = global_batch, index * self._b

  def __len__(self):
    return len(self._parents[0]) // self._global * self._b

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    return self._parents[0][(i // self._b) * self._global + self._offset + i % self._b]


class _DecodeAndCheck:
  """bytes -> normalised {'audio', 'video'}; a bad record raises with its shard and clip."""

  def __init__(self, meta: latents.Metadata, normalize: bool, where: str):
    self.meta, self.where = meta, where
    self.normalizer = latents.Normalizer(meta) if normalize else None

  def __call__(self, record: bytes) -> dict:
    ex = latents.decode(record)
    clip = ex.get("clip_id", "?")
    for name, shape in (("audio", self.meta.audio_shape), ("video", self.meta.video_shape)):
      x = ex.get(name)
      if not isinstance(x, np.ndarray) or x.shape != shape or x.dtype != np.dtype(self.meta.dtype):
        got = (x.shape, x.dtype) if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{self.where}: clip {clip!r} has {name} {got}, metadata says {shape} {self.meta.dtype}.")
      if not np.isfinite(x).all():
        raise ValueError(f"{self.where}: clip {clip!r} has non-finite {name} latents.")
    audio, video = ex["audio"], ex["video"]
    if self.normalizer is not None:
      audio, video = self.normalizer.to_model(audio, video)
    return {"audio": audio.astype(np.float32), "video": video.astype(np.float32)}


def check_against_config(meta: latents.Metadata, config, directory: str) -> None:
  c = config.data
  for name, want in (("audio_shape", tuple(c.audio_shape)), ("video_shape", tuple(c.video_shape))):
    if getattr(meta, name) != want:
      raise ValueError(f"{directory}/{latents.METADATA}: {name} {getattr(meta, name)} but config.data.{name} "
                       f"is {want}.")
  if meta.num_segments != config.num_segments:
    raise ValueError(f"{directory}/{latents.METADATA}: num_segments {meta.num_segments} but config.num_segments is "
                     f"{config.num_segments}.")


def _batches(source, transform, config, process_index: int | None, process_count: int | None):
  """Seeded shuffle, repeat, this process's rows of each global batch of config.data.batch_size,
  `transform` per record, batching and optional worker prefetch: the pipeline every input shares."""
  c = config.data
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if c.batch_size % count:
    raise ValueError(f"data.batch_size {c.batch_size} is not divisible by the {count} processes.")
  ds = grain.MapDataset.source(source).seed(c.seed).shuffle().repeat()
  ds = _ProcessRows(ds, c.batch_size, index, count).map(transform)
  it = ds.batch(c.batch_size // count, drop_remainder=True).to_iter_dataset()
  if c.get("num_workers", 0) > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=c.num_workers))
  return it


def latent_dataset(config, *, process_index: int | None = None, process_count: int | None = None):
  """The grain IterDataset of this process's batches: {'audio': [b, ...], 'video': [b, ...]}."""
  c = config.data
  meta = latents.Metadata.read(c.dir)
  check_against_config(meta, config, c.dir)
  source = grain.sources.ArrayRecordDataSource(latents.shard_files(c.dir, meta))
  return _batches(source, _DecodeAndCheck(meta, c.get("normalize", True), c.dir), config, process_index,
                  process_count)


# ============================================================================= streams for training


class GaussianStream:
  """Latents from the jointly Gaussian toy, drawn on the fly: batch k is a function of (data.seed, k).

  Every process draws the same global batch and keeps its own rows, so a run is the same whatever
  the number of processes. State: {'next_batch': k}.
  """

  def __init__(self, toy, config, state: dict | None = None):
    c = config.data
    self._draw = jax.jit(lambda k: toy.sample(jax.random.fold_in(jax.random.PRNGKey(c.seed), k), c.batch_size))
    rows = c.batch_size // jax.process_count()
    self._mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    self._next = (state or {}).get("next_batch", 0)

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    audio, video = self._draw(self._next)
    self._next += 1
    return {"audio": np.asarray(audio)[self._mine], "video": np.asarray(video)[self._mine]}

  def get_state(self) -> dict:
    return {"next_batch": self._next}


class GrainStream:
  """An iterator over a grain IterDataset with its position as state (what checkpoints save)."""

  def __init__(self, dataset, state: dict | None = None):
    self._it = iter(dataset)
    if state:
      self._it.set_state(state)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    return next(self._it)

  def get_state(self) -> dict:
    return self._it.get_state()


def latent_stream(config, state: dict | None = None) -> GrainStream:
  """The grain pipeline over the latent directory config.data.dir, with its position."""
  return GrainStream(latent_dataset(config), state)


def _first_frame(batch: dict) -> dict:
  # video [b, Tv, H, W, C] -> [b, H, W, C]: a causal tokenizer's latent frame 0 encodes frame 0 alone
  return {"video": batch["video"][:, 0]}


def first_frame_stream(config, state: dict | None = None) -> GrainStream:
  """Images for an image model: latent frame 0 of each clip of config.data.dir (normalised as the clips are)."""
  return GrainStream(latent_dataset(config).map(_first_frame), state)


class _ClipToFloat:
  """A data set example -> the float32 entries a tokenizer trains on: video in [-1, 1], audio as is."""

  def __init__(self, keys):
    self.keys = tuple(keys)

  def __call__(self, ex: dict) -> dict:
    out = {}
    if "video" in self.keys:
      out["video"] = images.frames_to_signed(ex["video"])
    if "audio" in self.keys:
      out["audio"] = np.asarray(ex["audio"], np.float32)
    return out


def clip_dataset(config, keys, *, split: str | None = None, process_index: int | None = None,
                 process_count: int | None = None):
  """The grain IterDataset of this process's batches of raw clips from config.data.dataset (tfds)."""
  c = config.data
  source, _ = datasets.data_source(c.dataset, split or c.split, c.tfds_dir or None)
  return _batches(source, _ClipToFloat(keys), config, process_index, process_count)


def clip_stream(config, keys, state: dict | None = None) -> GrainStream:
  """The grain pipeline over a clip data set's split (config.data.dataset / split), with its position."""
  return GrainStream(clip_dataset(config, keys), state)


def write_gaussian_latents(toy, config, directory: str, num_clips: int, *, num_shards: int = 2,
                           seed: int = 0) -> latents.Metadata:
  """Writes `num_clips` draws of the Gaussian toy in the latent format (no media needed)."""
  c = config.data
  audio, video = jax.device_get(toy.sample(jax.random.PRNGKey(seed), num_clips))
  writer = latents.LatentWriter(directory, c.audio_shape, c.video_shape, config.num_segments, num_shards=num_shards,
                                tokenizer={"name": "gaussian_toy", "seed": c.seed})
  for i in range(num_clips):
    writer.write(f"synthetic-{i:06d}", audio[i], video[i])
  return writer.close()
