"""The main job, stage by stage: clips -> tokenizers -> latents -> AVDiT -> every task -> report.

  WORKDIR/tfds             the clip data set (built here when it is a synthetic one)
  WORKDIR/video_tokenizer  a training run (train.py), with report.md
  WORKDIR/audio_tokenizer  a training run, with report.md
  WORKDIR/latents/train    the tokenized training split (avdit_jax/data/latents.py format)
  WORKDIR/avdit            the AVDiT training run on those latents
  WORKDIR/samples/<task>/  mp4 (video + audio), frame strip and spectrogram per sample, next to its input
  WORKDIR/report.md        the evaluation (avdit_jax/evals/clip_tasks.py), by the AVDiT's trainer during and
                           after training (config.avdit.evals.clip_tasks), its scores also in metrics.jsonl

`finetune` (configs/finetune_lora.py) is the other job: a folder of the user's clips -> an av_folder data set ->
latents with a finished main job's tokenizers -> that job's AVDiT fine-tuned with LoRA (config.init_from) ->
every task on held-out clips with ground truth, next to the base model, in WORKDIR/report.md.

Every stage resumes: a finished training run or tokenized split is reused as it is (a finished run is only
evaluated again), so a rerun after an interruption picks up where it stopped. Each stage logs its progress
with an ETA.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
from absl import logging

from avdit_jax.data import datasets, latents
from avdit_jax.evals import clip_tasks, evaluators
from avdit_jax.inference import codec, frontend, tokenize
from avdit_jax.train import checkpoint, trainable, trainer

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
  tfds_dir = config.pipeline.tfds_dir or os.path.join(workdir, "tfds")
  _stage(0, f"data set {config.pipeline.dataset}", started)
  datasets.prepare(config.pipeline.dataset, tfds_dir)

  tokenizers = {}
  for i, name in enumerate(("video_tokenizer", "audio_tokenizer"), start=1):
    _stage(i, name, started)
    sub, run_dir = tokenizer_config(config, name, tfds_dir), os.path.join(workdir, name)
    trainer.train_and_evaluate(sub, run_dir, evaluators.for_config(sub, run_dir))   # writes its report.md
    tokenizers[name] = codec.load(run_dir)
  pair = codec.Codec(tokenizers["video_tokenizer"], tokenizers["audio_tokenizer"])

  _stage(3, "tokenize the training split", started)
  latents_dir = os.path.join(workdir, "latents", "train")
  meta = tokenize.tokenize_split(pair, config.pipeline.dataset, "train", tfds_dir, latents_dir,
                                 num_segments=config.avdit.num_segments,
                                 process_index=jax.process_index(), process_count=jax.process_count())
  if meta is None:                      # other processes: wait for process 0's metadata
    while not os.path.exists(os.path.join(latents_dir, latents.METADATA)):
      time.sleep(1.0)
    meta = latents.Metadata.read(latents_dir)

  _stage(4, "AVDiT with MoNL on the latents, evaluated on every task", started)
  sub = avdit_config(config, latents_dir, meta)
  run_dir, path = os.path.join(workdir, "avdit"), os.path.join(workdir, "report.md")
  evals = evaluators.for_config(sub, run_dir, pair=pair, dataset=config.pipeline.dataset, tfds_dir=tfds_dir,
                                report_path=path, media_dir=os.path.join(workdir, "samples"))
  trainer.train_and_evaluate(sub, run_dir, evals)
  last = next((ev.last for ev in evals if isinstance(ev, clip_tasks.ClipTasks)), None)
  if last is not None and jax.process_index() == 0:
    report = clip_tasks.markdown(last, elapsed_s=time.time() - started)
    with open(path, "w") as f:
      f.write(report)
    print(report)
  logging.info("the job took %.0fs; report: %s", time.time() - started, path)
  return path


FINETUNE_STAGES = ("data set from the folder", "tokenize with the base tokenizers", "LoRA fine-tuning",
                   "the base model on the same clips")


def _tokenized(pair, dataset, tfds_dir, latents_dir, num_segments):
  meta = tokenize.tokenize_split(pair, dataset, "train", tfds_dir, latents_dir, num_segments=num_segments,
                                 process_index=jax.process_index(), process_count=jax.process_count())
  while meta is None:                   # other processes: wait for process 0's metadata
    if os.path.exists(os.path.join(latents_dir, latents.METADATA)):
      meta = latents.Metadata.read(latents_dir)
    time.sleep(1.0)
  return meta


def finetune(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Fine-tunes config.finetune.base's AVDiT on the clips of config.finetune.folder (each stage resumes); returns
  the report's path."""
  c, started = config.finetune, time.time()
  for field in ("base", "folder"):
    if not c[field]:
      raise ValueError(f"config.finetune.{field} is empty: give --config.finetune.{field}=... (see "
                       "configs/finetune_lora.py).")
  base_avdit = os.path.join(c.base, "avdit")
  if not os.path.isdir(os.path.join(c.base, "video_tokenizer")) or not os.path.isdir(base_avdit):
    raise FileNotFoundError(f"config.finetune.base {c.base}: expected a finished main job (configs/quickstart.py) "
                            "with video_tokenizer/, audio_tokenizer/ and avdit/.")
  tfds_dir = c.tfds_dir or os.path.join(workdir, "tfds")
  logging.info("=== fine-tuning 1/4: %s (%s)", FINETUNE_STAGES[0], c.folder)
  datasets.prepare(c.dataset, tfds_dir, manual_dir=c.folder)
  logging.info("=== fine-tuning 2/4: %s (%.0fs)", FINETUNE_STAGES[1], time.time() - started)
  pair = codec.load_pair(c.base)
  latents_dir = os.path.join(workdir, "latents", "train")
  meta = _tokenized(pair, c.dataset, tfds_dir, latents_dir, config.avdit.num_segments)
  logging.info("=== fine-tuning 3/4: %s (%.0fs)", FINETUNE_STAGES[2], time.time() - started)
  sub = avdit_config(config, latents_dir, meta)
  sub.init_from = base_avdit
  run_dir = os.path.join(workdir, "avdit")
  where = dict(dataset=c.eval_dataset, tfds_dir=tfds_dir)
  evals = evaluators.for_config(sub, run_dir, pair=pair, **where, media_dir=os.path.join(workdir, "samples"))
  state = trainer.train_and_evaluate(sub, run_dir, evals)
  logging.info("=== fine-tuning 4/4: %s (%.0fs)", FINETUNE_STAGES[3], time.time() - started)
  tuned = next(ev for ev in evals if isinstance(ev, clip_tasks.ClipTasks))
  base = clip_tasks.evaluate(checkpoint.saved_config(base_avdit), {"model": frontend.Run.load(base_avdit)}, pair,
                             tuned.tasks, tuned.section, **where, systems=("model",))
  trained, total = trainable.for_config(sub).count(state.params)
  path = os.path.join(workdir, "report.md")
  if jax.process_index() == 0:
    report = finetune_markdown(tuned.last, base, trained, total, config, time.time() - started)
    with open(path, "w") as f:
      f.write(report)
    print(report)
  return path


def finetune_markdown(tuned: dict, base: dict, trained: int, total: int, config, elapsed_s: float) -> str:
  c = config.finetune
  lines = [f"# Fine-tuning report: {c.base} fine-tuned on {c.folder} ({config.avdit.train.trainable}, "
           f"{config.avdit.train.num_steps} steps)", "",
           f"Trainable parameters: {trained:,} of {total:,} ({trained / total:.2%}). Every task on "
           f"{tuned['_clips']} held-out clips of {c.eval_dataset}; lower is better except for av_align. 'base': "
           "the model before fine-tuning; 'tokenizer': the real clips through the tokenizers (the floor).", "",
           "| task | score | base | fine-tuned | untrained | shuffled | tokenizer |", "|---|---|---|---|---|---|---|"]
  for task, by_system in tuned.items():
    if task.startswith("_"):
      continue
    for s in by_system["model"]:
      row = [base[task]["model"][s], by_system["model"][s]] + [by_system[n][s] for n in clip_tasks.SYSTEMS[1:]]
      lines.append(f"| {task} | {s} | " + " | ".join(f"{v:.3g}" for v in row) + " |")
  lines += ["", f"The job took {elapsed_s / 60:.1f} minutes."]
  return "\n".join(lines) + "\n"
