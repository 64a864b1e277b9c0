"""The on-disk format of pre-tokenized latents, `avdit_latents/v1`, and its normalisation.

One directory:
  metadata.json                     shapes, dtype, clip count, shard names, per-channel normalisation
                                    statistics, frame/sample rates, segment count, the tokenizer that made
                                    them. Written last: a directory without it is incomplete.
  latents-XXXXX-of-YYYYY.array_record
                                    one record per clip, msgpack of {'clip_id': str, 'audio': [Ta, Ca],
                                    'video': [Tv, H, W, Cv], 'labels': {str: number}}.

The directory may be remote (avdit_jax/paths.py): ArrayRecord opens local files only, so a writer writes its
shards in a local temporary directory and uploads them when it closes them, and readers read local copies
(`shard_files`). The grain pipelines that read it are in streams.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

import numpy as np
from array_record.python import array_record_module
from flax import serialization

from avdit_jax import paths

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
    (paths.path(directory) / METADATA).write_text(json.dumps(dataclasses.asdict(self), indent=1))

  @classmethod
  def read(cls, directory: str) -> "Metadata":
    if not directory or not paths.path(directory).is_dir():
      raise FileNotFoundError(f"data.dir: {directory!r} is not a directory of latents.")
    path = paths.path(directory) / METADATA
    if not path.exists():
      raise FileNotFoundError(f"{path} is missing: {directory} is not a complete latent directory "
                              "(the writer adds metadata.json last).")
    raw = json.loads(path.read_text())
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
      if not (paths.path(directory) / shard).exists():
        raise FileNotFoundError(f"{path} lists shard {shard}, which is missing from {directory}.")
    return meta


def shard_files(directory: str, meta: Metadata) -> list[str]:
  """Local files of the directory's shards, for ArrayRecord readers: the shards themselves, or copies of remote
  ones in this machine's temp directory."""
  return [paths.local_copy(paths.join(directory, s)) for s in meta.shards]


def shard_name(index: int, count: int) -> str:
  return f"latents-{index:05d}-of-{count:05d}.array_record"


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
    paths.path(directory).mkdir(parents=True, exist_ok=True)
    self.directory = directory
    # ArrayRecord writes local files: a remote directory's shards are written here and uploaded on close.
    self._local = tempfile.mkdtemp(prefix="latents_") if paths.is_remote(directory) else directory
    self.audio_shape, self.video_shape = tuple(audio_shape), tuple(video_shape)
    self.num_segments = num_segments
    total = total_shards or num_shards
    self.shards = [shard_name(i, total) for i in range(shard_offset, shard_offset + num_shards)]
    self._writers = [array_record_module.ArrayRecordWriter(os.path.join(self._local, s), "group_size:1")
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
    if self._local != self.directory:
      paths.upload(self._local, self.directory)
      shutil.rmtree(self._local)
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




class Normalizer:
  """The directory's per-channel statistics: latents in the units the AVDiT trains on, and back."""

  def __init__(self, meta: Metadata):
    n = meta.normalization
    self.audio_mean, self.audio_std, self.video_mean, self.video_std = (
        np.asarray(n[k], np.float32) for k in ("audio_mean", "audio_std", "video_mean", "video_std"))

  def to_model(self, audio, video):
    audio, video = np.asarray(audio), np.asarray(video)
    return (audio - self.audio_mean) / self.audio_std, (video - self.video_mean) / self.video_std

  def from_model(self, audio, video):
    audio, video = np.asarray(audio), np.asarray(video)
    return audio * self.audio_std + self.audio_mean, video * self.video_std + self.video_mean


def read_clips(directory: str, meta: Metadata, count: int) -> list[dict]:
  """The first `count` clips of a latent directory, un-normalised: [{'clip_id', 'audio', 'video'}]."""
  from array_record.python import array_record_data_source
  source = array_record_data_source.ArrayRecordDataSource(shard_files(directory, meta))
  return [decode(source[i]) for i in range(min(count, len(source)))]
