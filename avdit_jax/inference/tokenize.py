"""A clip data set's split -> latent shards in the training format (avdit_jax/data/latents.py), by a codec.

Resumable by shard: a finished shard has a '.done' marker (its clip count and running sums) and is skipped
on rerun. Process p of P writes shards p, p + P, ...; process 0 waits for all of them, then writes
metadata.json with statistics over every latent.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import numpy as np
from absl import logging

from avdit_jax import paths
from avdit_jax.data import datasets, latents
from avdit_jax.inference import codec as codec_lib


def tokenize_split(codec: codec_lib.Codec, dataset: str, split: str, data_dir: str | None, out_dir: str, *,
                   num_segments: int, num_shards: int = 4, batch_size: int = 8,
                   process_index: int = 0, process_count: int = 1,
                   wait_timeout_s: float = paths.DEFAULT_WAIT_S) -> latents.Metadata | None:
  """Encodes every clip of a split into latent shards (shard k holds clips k, k + num_shards, ...); returns the
  metadata on process 0, None on the others. out_dir may be remote. Process 0 waits at most wait_timeout_s for
  the other processes' shards."""
  source, spec = datasets.data_source(dataset, split, data_dir)
  if spec != codec.spec:
    raise ValueError(f"{dataset}: its clips ({spec}) are not the grid the tokenizers were trained on ({codec.spec}).")
  paths.path(out_dir).mkdir(parents=True, exist_ok=True)
  total = len(source)
  mine = list(range(process_index, num_shards, process_count))
  started, done_clips = time.time(), 0
  todo = sum(len(range(k, total, num_shards)) for k in mine if not _done(out_dir, k, num_shards).exists())
  for k in mine:
    if _done(out_dir, k, num_shards).exists():
      logging.info("shard %d of %d is done; skipping it", k, num_shards)
      continue
    writer = latents.LatentWriter(out_dir, codec.audio_latent_shape, codec.video_latent_shape, num_segments,
                                  shard_offset=k, total_shards=num_shards)
    indices = list(range(k, total, num_shards))
    for b in range(0, len(indices), batch_size):
      rows = [source[i] for i in indices[b:b + batch_size]]
      audio, video = codec.encode(np.stack([r["audio"] for r in rows]), np.stack([r["video"] for r in rows]))
      for r, a, v in zip(rows, audio, video):
        writer.write(r["clip_id"].decode() if isinstance(r["clip_id"], bytes) else str(r["clip_id"]), a, v)
      done_clips += len(rows)
      _progress(done_clips, todo, started)
    _done(out_dir, k, num_shards).write_text(json.dumps(writer.close_shards()))   # after the shard: it marks it done
  sys.stderr.write("\n")
  if process_index != 0:
    return None
  missing = lambda: [k for k in range(num_shards) if not _done(out_dir, k, num_shards).exists()]
  paths.wait_for(lambda: not missing(), lambda: f"the .done markers of shards {missing()} in {out_dir} (other "
                 "processes write them)", timeout_s=wait_timeout_s)
  return _write_metadata(codec, out_dir, num_shards, num_segments, dataset, split)


def _done(out_dir: str, shard: int, num_shards: int):
  return paths.path(out_dir) / latents.shard_name(shard, num_shards).replace(".array_record", ".done")


def _progress(done: int, total: int, started: float) -> None:
  rate = done / max(time.time() - started, 1e-9)
  eta = (total - done) / rate if rate > 0 else float("nan")
  sys.stderr.write(f"\rtokenize: {done}/{total} clips  {rate:.1f} clips/s  ETA {eta:.0f}s   ")
  sys.stderr.flush()


def _write_metadata(codec: codec_lib.Codec, out_dir: str, num_shards: int, num_segments: int, dataset: str,
                    split: str) -> latents.Metadata:
  partials = []
  for k in range(num_shards):
    partials.append(json.loads(_done(out_dir, k, num_shards).read_text()))
  count, stats = sum(p["count"] for p in partials), latents.statistics(partials)
  shards = [latents.shard_name(k, num_shards) for k in range(num_shards)]
  meta = latents.Metadata(codec.audio_latent_shape, codec.video_latent_shape, count, shards, num_segments, stats,
                          frame_rate=codec.spec.frame_rate, sample_rate=codec.spec.sample_rate,
                          tokenizer={"video": {"step": codec.video.step, "model": codec.video.config.model.to_dict()},
                                     "audio": {"step": codec.audio.step, "model": codec.audio.config.model.to_dict()},
                                     "clip": dataclasses.asdict(codec.spec), "dataset": dataset, "split": split})
  meta.write(out_dir)
  return meta
