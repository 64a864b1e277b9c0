"""Input pipelines over pre-tokenized latents, and the on-disk format they read.

Format `avdit_latents/v1`, one directory:
  metadata.json                     shapes, dtype, clip count, shard names, per-channel normalisation
                                    statistics, frame/sample rates, segment count, the tokenizer that made
                                    them. Written last: a directory without it is incomplete.
  latents-XXXXX-of-YYYYY.array_record
                                    one record per clip, msgpack of {'clip_id': str, 'audio': [Ta, Ca],
                                    'video': [Tv, H, W, Cv], 'labels': {str: number}}.

The grain pipeline: seeded global shuffle, repeat, this process's rows of every global batch,
decode + validate (shape, dtype, finite values; errors name the shard and the clip), normalise, batch,
optional multi-worker prefetch. Its position is a small JSON dict that checkpoints save.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator

import grain
import jax
import numpy as np
from array_record.python import array_record_module
from flax import serialization

from avdit_jax import datasets, factory, media

FORMAT = "avdit_latents/v1"
METADATA = "metadata.json"


# ============================================================================= format


@dataclasses.dataclass
class Metadata:
  audio_shape: tuple
  video_shape: tuple
  num_clips: int
  shards: list
  num_segments: int
  normalization: dict             # audio_mean/audio_std [Ca], video_mean/video_std [Cv]
  frame_rate: float = 0.0         # of the source video (0: not from media)
  sample_rate: int = 0            # of the source audio
  tokenizer: dict = dataclasses.field(default_factory=dict)
  dtype: str = "float32"
  format: str = FORMAT

  def write(self, directory: str) -> None:
    with open(os.path.join(directory, METADATA), "w") as f:
      json.dump(dataclasses.asdict(self), f, indent=1)

  @classmethod
  def read(cls, directory: str) -> "Metadata":
    if not directory or not os.path.isdir(directory):
      raise FileNotFoundError(f"data.dir: {directory!r} is not a directory of latents.")
    path = os.path.join(directory, METADATA)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} is missing: {directory} is not a complete latent directory "
                              "(the writer adds metadata.json last).")
    with open(path) as f:
      raw = json.load(f)
    if raw.get("format") != FORMAT:
      raise ValueError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}.")
    fields = {f.name for f in dataclasses.fields(cls)}
    missing = sorted(n for n in fields if n not in raw and n not in ("frame_rate", "sample_rate", "tokenizer"))
    if missing:
      raise ValueError(f"{path}: missing fields {missing}.")
    meta = cls(**{k: v for k, v in raw.items() if k in fields})
    meta.audio_shape, meta.video_shape = tuple(meta.audio_shape), tuple(meta.video_shape)
    if meta.num_clips < 1 or not meta.shards:
      raise ValueError(f"{path}: the data set is empty (num_clips {meta.num_clips}, {len(meta.shards)} shards).")
    for shard in meta.shards:
      if not os.path.exists(os.path.join(directory, shard)):
        raise FileNotFoundError(f"{path} lists shard {shard}, which is missing from {directory}.")
    return meta


def encode(clip_id: str, audio: np.ndarray, video: np.ndarray, labels: dict | None = None) -> bytes:
  return serialization.msgpack_serialize({"clip_id": str(clip_id), "audio": np.asarray(audio),
                                          "video": np.asarray(video), "labels": dict(labels or {})})


def decode(record: bytes) -> dict:
  return serialization.msgpack_restore(record)


class LatentWriter:
  """Writes clips round-robin into `num_shards` ArrayRecord shards and accumulates per-channel statistics.

  `close()` writes metadata.json (with the statistics unless given), which marks the directory complete.
  """

  def __init__(self, directory: str, audio_shape, video_shape, num_segments: int, *, num_shards: int = 1,
               shard_offset: int = 0, total_shards: int | None = None, **metadata):
    os.makedirs(directory, exist_ok=True)
    self.directory = directory
    self.audio_shape, self.video_shape = tuple(audio_shape), tuple(video_shape)
    self.num_segments = num_segments
    total = total_shards or num_shards
    self.shards = [f"latents-{i:05d}-of-{total:05d}.array_record"
                   for i in range(shard_offset, shard_offset + num_shards)]
    self._writers = [array_record_module.ArrayRecordWriter(os.path.join(directory, s), "group_size:1")
                     for s in self.shards]
    self._count = 0
    self._sums = {k: 0.0 for k in ("audio", "audio_sq", "video", "video_sq")}
    self._n = {"audio": 0, "video": 0}
    self._metadata = metadata

  def write(self, clip_id: str, audio, video, labels: dict | None = None) -> None:
    audio, video = np.asarray(audio, np.float32), np.asarray(video, np.float32)
    if audio.shape != self.audio_shape or video.shape != self.video_shape:
      raise ValueError(f"clip {clip_id}: audio {audio.shape} / video {video.shape}, expected "
                       f"{self.audio_shape} / {self.video_shape}.")
    if not (np.isfinite(audio).all() and np.isfinite(video).all()):
      raise ValueError(f"clip {clip_id}: non-finite latent values.")
    self._writers[self._count % len(self._writers)].write(encode(clip_id, audio, video, labels))
    self._count += 1
    for name, x in (("audio", audio), ("video", video)):
      flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
      self._sums[name] = self._sums[name] + flat.sum(0)
      self._sums[name + "_sq"] = self._sums[name + "_sq"] + (flat**2).sum(0)
      self._n[name] += flat.shape[0]

  def partial(self) -> dict:
    """This writer's clip count and running sums (JSON-able), to merge with other writers' later."""
    return {"count": self._count, "n": dict(self._n),
            "sums": {k: np.asarray(v, np.float64).tolist() for k, v in self._sums.items()}}

  def close_shards(self) -> dict:
    """Closes the shard files without writing metadata (one of several writers); returns `partial()`."""
    for w in self._writers:
      w.close()
    return self.partial()

  def close(self, normalization: dict | None = None) -> Metadata:
    self.close_shards()
    meta = Metadata(self.audio_shape, self.video_shape, self._count, self.shards, self.num_segments,
                    normalization or statistics([self.partial()]), **self._metadata)
    meta.write(self.directory)
    return meta


def statistics(partials: list[dict]) -> dict:
  """Per-channel mean and std of audio and video latents from writers' `partial()` sums."""
  out = {}
  for name in ("audio", "video"):
    n = sum(p["n"][name] for p in partials)
    total = sum(np.asarray(p["sums"][name], np.float64) for p in partials)
    total_sq = sum(np.asarray(p["sums"][name + "_sq"], np.float64) for p in partials)
    mean = total / max(n, 1)
    out[f"{name}_mean"] = np.asarray(mean).tolist()
    out[f"{name}_std"] = np.sqrt(np.maximum(total_sq / max(n, 1) - mean**2, 1e-12)).tolist()
  return out


# ============================================================================= pipeline


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

  def __init__(self, meta: Metadata, normalize: bool, where: str):
    self.meta, self.where = meta, where
    n = meta.normalization
    self.stats = None
    if normalize:
      self.stats = tuple(np.asarray(n[k], np.float32) for k in ("audio_mean", "audio_std", "video_mean", "video_std"))

  def __call__(self, record: bytes) -> dict:
    ex = decode(record)
    clip = ex.get("clip_id", "?")
    for name, shape in (("audio", self.meta.audio_shape), ("video", self.meta.video_shape)):
      x = ex.get(name)
      if not isinstance(x, np.ndarray) or x.shape != shape or x.dtype != np.dtype(self.meta.dtype):
        got = (x.shape, x.dtype) if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{self.where}: clip {clip!r} has {name} {got}, metadata says {shape} {self.meta.dtype}.")
      if not np.isfinite(x).all():
        raise ValueError(f"{self.where}: clip {clip!r} has non-finite {name} latents.")
    audio, video = ex["audio"], ex["video"]
    if self.stats is not None:
      am, asd, vm, vsd = self.stats
      audio, video = (audio - am) / asd, (video - vm) / vsd
    return {"audio": audio.astype(np.float32), "video": video.astype(np.float32)}


def check_against_config(meta: Metadata, config, directory: str) -> None:
  c = config.data
  for name, want in (("audio_shape", tuple(c.audio_shape)), ("video_shape", tuple(c.video_shape))):
    if getattr(meta, name) != want:
      raise ValueError(f"{directory}/{METADATA}: {name} {getattr(meta, name)} but config.data.{name} is {want}.")
  if meta.num_segments != config.num_segments:
    raise ValueError(f"{directory}/{METADATA}: num_segments {meta.num_segments} but config.num_segments is "
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
  meta = Metadata.read(c.dir)
  check_against_config(meta, config, c.dir)
  source = grain.sources.ArrayRecordDataSource([os.path.join(c.dir, s) for s in meta.shards])
  return _batches(source, _DecodeAndCheck(meta, c.get("normalize", True), c.dir), config, process_index,
                  process_count)


# ============================================================================= streams for training


class SyntheticStream:
  """Latents from the jointly Gaussian toy, drawn on the fly: batch k is a function of (data.seed, k).

  Every process draws the same global batch and keeps its own rows, so a run is the same whatever
  the number of processes. State: {'next_batch': k}.
  """

  def __init__(self, config, segments, state: dict | None = None):
    c = config.data
    toy = factory.gaussian_toy(config, segments)
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


def input_stream(config, segments, state: dict | None = None):
  """The training input named by data.kind: 'gaussian' (synthetic, no files) or 'latents' (data.dir)."""
  if config.data.kind == "gaussian":
    return SyntheticStream(config, segments, state)
  if config.data.kind == "latents":
    return GrainStream(latent_dataset(config), state)
  raise ValueError(f"data.kind: unknown {config.data.kind!r}; expected 'gaussian' or 'latents'.")


class _ClipToFloat:
  """A data set example -> the float32 entries a tokenizer trains on: video in [-1, 1], audio as is."""

  def __init__(self, keys):
    self.keys = tuple(keys)

  def __call__(self, ex: dict) -> dict:
    out = {}
    if "video" in self.keys:
      out["video"] = media.frames_to_signed(ex["video"])
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


def write_synthetic_latents(config, directory: str, num_clips: int, *, num_shards: int = 2, seed: int = 0) -> Metadata:
  """Writes `num_clips` Gaussian-toy clips of config.data's shapes in the latent format (no media needed)."""
  c = config.data
  toy = factory.gaussian_toy(config)
  audio, video = jax.device_get(toy.sample(jax.random.PRNGKey(seed), num_clips))
  writer = LatentWriter(directory, c.audio_shape, c.video_shape, config.num_segments, num_shards=num_shards,
                        tokenizer={"name": "gaussian_toy", "seed": c.seed})
  for i in range(num_clips):
    writer.write(f"synthetic-{i:06d}", audio[i], video[i])
  return writer.close()
