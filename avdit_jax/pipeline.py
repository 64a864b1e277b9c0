"""The main job, stage by stage: clips -> tokenizers -> latents -> AVDiT -> every task -> report.

  WORKDIR/tfds             the clip data set (built here when it is a synthetic one)
  WORKDIR/video_tokenizer  a training run (train.py), with report.md
  WORKDIR/audio_tokenizer  a training run, with report.md
  WORKDIR/latents/train    the tokenized training split (avdit_jax/data/latents.py format)
  WORKDIR/avdit            the AVDiT training run on those latents
  WORKDIR/samples/<task>/  mp4 (video + audio), frame strip and spectrogram per sample, next to its input
  WORKDIR/report.md        the evaluation (avdit_jax/evals/clip_tasks.py), by the AVDiT's trainer during and
                           after training (config.avdit.evals.clip_tasks), its scores also in metrics.jsonl

Every stage resumes: a finished training run or tokenized split is reused as it is (a finished run is only
evaluated again), so a rerun after an interruption picks up where it stopped. Each stage logs its progress
with an ETA.
"""

from __future__ import annotations

import time

import jax
import ml_collections
from absl import logging

from avdit_jax import paths
from avdit_jax.data import datasets, latents
from avdit_jax.evals import clip_tasks, evaluators
from avdit_jax.inference import codec, tokenize
from avdit_jax.train import trainer

STAGES = ("data", "video_tokenizer", "audio_tokenizer", "tokenize", "avdit and its evaluation")


def _stage(i: int, name: str, started: float) -> None:
  logging.info("=== stage %d/%d: %s (%.0fs into the job)", i + 1, len(STAGES), name, time.time() - started)


def tokenizer_config(config: ml_collections.ConfigDict, name: str, tfds_dir: str) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config[name].to_dict())
  sub.data.dataset, sub.data.tfds_dir = config.pipeline.dataset, tfds_dir
  return sub


def avdit_config(config: ml_collections.ConfigDict, latents_dir: str,
                 meta: latents.Metadata) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config.avdit.to_dict())
  sub.data.update(kind="latents", dir=latents_dir, audio_shape=meta.audio_shape, video_shape=meta.video_shape)
  return sub


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Runs (or resumes) every stage; returns the report's path."""
  started = time.time()
  for name in ("video_tokenizer", "audio_tokenizer", "avdit"):    # every stage's loop, before the first compiles
    trainer.check_loop_config(config[name], f"config.{name}")
  tfds_dir = config.pipeline.tfds_dir or paths.join(workdir, "tfds")
  _stage(0, f"data set {config.pipeline.dataset}", started)
  datasets.prepare(config.pipeline.dataset, tfds_dir)

  tokenizers = {}
  for i, name in enumerate(("video_tokenizer", "audio_tokenizer"), start=1):
    _stage(i, name, started)
    sub, run_dir = tokenizer_config(config, name, tfds_dir), paths.join(workdir, name)
    trainer.train_and_evaluate(sub, run_dir, evaluators.for_config(sub, run_dir))   # writes its report.md
    tokenizers[name] = codec.load(run_dir)
  pair = codec.Codec(tokenizers["video_tokenizer"], tokenizers["audio_tokenizer"])

  _stage(3, "tokenize the training split", started)
  latents_dir = paths.join(workdir, "latents", "train")
  meta = tokenize.tokenize_split(pair, config.pipeline.dataset, "train", tfds_dir, latents_dir,
                                 num_segments=config.avdit.num_segments,
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 wait_timeout_s=config.pipeline.wait_timeout_s)
  if meta is None:                      # other processes: wait for process 0's metadata
    metadata = paths.path(latents_dir) / latents.METADATA
    paths.wait_for(metadata.exists, f"{metadata} (process 0 writes it after tokenizing)",
                   timeout_s=config.pipeline.wait_timeout_s)
    meta = latents.Metadata.read(latents_dir)

  _stage(4, "AVDiT with MoNL on the latents, evaluated on every task", started)
  sub = avdit_config(config, latents_dir, meta)
  run_dir, path = paths.join(workdir, "avdit"), paths.join(workdir, "report.md")
  evals = evaluators.for_config(sub, run_dir, pair=pair, dataset=config.pipeline.dataset, tfds_dir=tfds_dir,
                                report_path=path, media_dir=paths.join(workdir, "samples"))
  trainer.train_and_evaluate(sub, run_dir, evals)
  last = next((ev.last for ev in evals if isinstance(ev, clip_tasks.ClipTasks)), None)
  if last is not None and jax.process_index() == 0:
    report = clip_tasks.markdown(last, elapsed_s=time.time() - started)
    paths.path(path).write_text(report)
    print(report)
  logging.info("the job took %.0fs; report: %s", time.time() - started, path)
  return path
