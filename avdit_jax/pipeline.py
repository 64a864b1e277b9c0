"""The main job, stage by stage: clips -> tokenizers -> latents -> AVDiT -> every task -> report.

  WORKDIR/tfds             the clip data set (built here when it is a synthetic one)
  WORKDIR/video_tokenizer  a training run (train.py), with report.md; or, with video_tokenizer.kind 'sd_vae'
                           (configs/quickstart.py:sd_vae), frame_vae.json naming a converted SD VAE used per frame
  WORKDIR/audio_tokenizer  a training run, with report.md
  WORKDIR/latents/train    the tokenized training split (avdit_jax/data/latents.py format)
  WORKDIR/image_dit        with config.image_dit (configs/av_dit_quickstart.py): an image DiT trained on the
                           latents' first frames, then frozen inside the AV-DiT (model.kind 'av_dit') via init_from
  WORKDIR/avdit            the AVDiT (or AV-DiT) training run on those latents
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

import time

import jax
import ml_collections
from absl import logging

from avdit_jax import factory, paths
from avdit_jax.data import datasets, latents
from avdit_jax.evals import clip_tasks, evaluators
from avdit_jax.inference import codec, frontend, tokenize
from avdit_jax.train import checkpoint, trainable, trainer

STAGES = ("data", "video_tokenizer", "audio_tokenizer", "tokenize", "avdit and its evaluation")
# With config.image_dit (configs/av_dit_quickstart.py): an image DiT pretrained on the clips' first latent frames,
# then frozen as the AV-DiT's backbone (config.avdit.model.kind = 'av_dit').
AV_DIT_STAGES = STAGES[:4] + ("image DiT on first frames", "AV-DiT and its evaluation")


def _stage(i: int, name: str, started: float, total: int = len(STAGES)) -> None:
  logging.info("=== stage %d/%d: %s (%.0fs into the job)", i + 1, total, name, time.time() - started)


def tokenizer_config(config: ml_collections.ConfigDict, name: str, tfds_dir: str) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config[name].to_dict())
  sub.data.dataset, sub.data.tfds_dir = config.pipeline.dataset, tfds_dir
  return sub


def avdit_config(config: ml_collections.ConfigDict, latents_dir: str,
                 meta: latents.Metadata) -> ml_collections.ConfigDict:
  sub = ml_collections.ConfigDict(config.avdit.to_dict())
  sub.data.update(kind="latents", dir=latents_dir, audio_shape=meta.audio_shape, video_shape=meta.video_shape)
  return sub


def image_dit_config(config: ml_collections.ConfigDict, latents_dir: str = "",
                     meta: latents.Metadata | None = None) -> ml_collections.ConfigDict:
  """The image DiT stage's run: the AV-DiT's config (its model section holds the DiT's fields) as trainee
  'image_dit', every param trained, no evaluators, with config.image_dit's sections (train, optim, data,
  checkpoint) laid over it."""
  kind = factory.model_kind(config.avdit.model)
  if kind != "av_dit":
    raise ValueError(f"config.image_dit is set but config.avdit.model.kind is {kind!r}; the image DiT stage "
                     "needs 'av_dit'.")
  sub = avdit_config(config, latents_dir, meta) if meta is not None else ml_collections.ConfigDict(
      config.avdit.to_dict())
  sub.trainee, sub.evals, sub.init_from = "image_dit", {}, ""
  # Only the fields the image DiT is built from (factory.image_dit): its checkpoint stays compatible when the
  # adapters change (e.g. model.temporal_dim), so a changed AV-DiT reuses the trained image stage.
  sub.model = {k: v for k, v in sub.model.items() if k in factory.IMAGE_MODEL_FIELDS}
  sub.train.trainable = "all"
  for section, values in config.image_dit.items():
    if section not in ("train", "optim", "data", "checkpoint"):
      raise ValueError(f"config.image_dit.{section}: unknown section; expected train, optim, data or checkpoint.")
    for field, value in values.items():
      if field not in sub[section]:
        raise ValueError(f"config.image_dit.{section}.{field}: config.avdit.{section} has no such field.")
      sub[section][field] = value
  return sub


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Runs (or resumes) every stage; returns the report's path."""
  started = time.time()
  workdir = paths.absolute(workdir)          # the stages' saved configs name their inputs from any cwd
  trained_video = codec.video_tokenizer_kind(config.video_tokenizer) == "trained"
  image = "image_dit" in config
  stages = AV_DIT_STAGES if image else STAGES
  for name in ("video_tokenizer", "audio_tokenizer", "avdit"):    # every stage's loop, before the first compiles
    if name != "video_tokenizer" or trained_video:
      trainer.check_loop_config(config[name], f"config.{name}")
  if image:
    trainer.check_loop_config(image_dit_config(config), "config.image_dit")
  tfds_dir = paths.absolute(config.pipeline.tfds_dir or paths.join(workdir, "tfds"))
  _stage(0, f"data set {config.pipeline.dataset}", started, len(stages))
  datasets.prepare(config.pipeline.dataset, tfds_dir)

  tokenizers = {}
  for i, name in enumerate(("video_tokenizer", "audio_tokenizer"), start=1):
    _stage(i, name, started, len(stages))
    if name == "video_tokenizer" and not trained_video:   # a public image VAE per frame: nothing to train
      tokenizers[name] = codec.frame_vae(config.video_tokenizer, config.pipeline.dataset, tfds_dir)
      codec.save_frame_vae(tokenizers[name], paths.join(workdir, name))
      continue
    sub, run_dir = tokenizer_config(config, name, tfds_dir), paths.join(workdir, name)
    trainer.train_and_evaluate(sub, run_dir, evaluators.for_config(sub, run_dir))   # writes its report.md
    tokenizers[name] = codec.load(run_dir)
  pair = codec.Codec(tokenizers["video_tokenizer"], tokenizers["audio_tokenizer"])

  _stage(3, "tokenize the training split", started, len(stages))
  latents_dir = paths.join(workdir, "latents", "train")
  meta = _tokenized(pair, config.pipeline.dataset, tfds_dir, latents_dir, config.avdit.num_segments,
                    config.pipeline.wait_timeout_s)

  sub = avdit_config(config, latents_dir, meta)
  if image:
    _stage(4, "image DiT on the clips' first latent frames", started, len(stages))
    image_dir = paths.join(workdir, "image_dit")
    trainer.train_and_evaluate(image_dit_config(config, latents_dir, meta), image_dir)
    sub.init_from = image_dir                      # its params: the AV-DiT's frozen backbone; adapters at init
  _stage(len(stages) - 1, f"{'AV-DiT' if image else 'AVDiT'} with MoNL on the latents, evaluated on every task",
         started, len(stages))
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


def _tokenized(pair, dataset: str, tfds_dir: str, latents_dir: str, num_segments: int, wait_timeout_s: float):
  """The split tokenized into latents_dir (each process its shards; the others wait for process 0's metadata)."""
  meta = tokenize.tokenize_split(pair, dataset, "train", tfds_dir, latents_dir, num_segments=num_segments,
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 wait_timeout_s=wait_timeout_s)
  if meta is None:
    metadata = paths.path(latents_dir) / latents.METADATA
    paths.wait_for(metadata.exists, f"{metadata} (process 0 writes it after tokenizing)", timeout_s=wait_timeout_s)
    meta = latents.Metadata.read(latents_dir)
  return meta


FINETUNE_STAGES = ("data set from the folder", "tokenize with the base tokenizers", "LoRA fine-tuning",
                   "the base model on the same clips")


def finetune(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Fine-tunes config.finetune.base's AVDiT on the clips of config.finetune.folder (each stage resumes); returns
  the report's path."""
  c, started = config.finetune, time.time()
  for field in ("base", "folder"):
    if not c[field]:
      raise ValueError(f"config.finetune.{field} is empty: give --config.finetune.{field}=... (see "
                       "configs/finetune_lora.py).")
  workdir, base, folder = paths.absolute(workdir), paths.absolute(c.base), paths.absolute(c.folder)
  base_avdit = paths.join(base, "avdit")
  if not (paths.path(base) / "video_tokenizer").is_dir() or not paths.path(base_avdit).is_dir():
    raise FileNotFoundError(f"config.finetune.base {c.base}: expected a finished main job (configs/quickstart.py) "
                            "with video_tokenizer/, audio_tokenizer/ and avdit/.")
  tfds_dir = paths.absolute(c.tfds_dir or paths.join(workdir, "tfds"))
  logging.info("=== fine-tuning 1/4: %s (%s)", FINETUNE_STAGES[0], folder)
  datasets.prepare(c.dataset, tfds_dir, manual_dir=folder)
  logging.info("=== fine-tuning 2/4: %s (%.0fs)", FINETUNE_STAGES[1], time.time() - started)
  pair = codec.load_pair(base)
  latents_dir = paths.join(workdir, "latents", "train")
  meta = _tokenized(pair, c.dataset, tfds_dir, latents_dir, config.avdit.num_segments, c.wait_timeout_s)
  logging.info("=== fine-tuning 3/4: %s (%.0fs)", FINETUNE_STAGES[2], time.time() - started)
  sub = avdit_config(config, latents_dir, meta)
  sub.init_from = base_avdit
  run_dir = paths.join(workdir, "avdit")
  where = dict(dataset=c.eval_dataset, tfds_dir=tfds_dir)
  evals = evaluators.for_config(sub, run_dir, pair=pair, **where, media_dir=paths.join(workdir, "samples"))
  state = trainer.train_and_evaluate(sub, run_dir, evals)
  logging.info("=== fine-tuning 4/4: %s (%.0fs)", FINETUNE_STAGES[3], time.time() - started)
  tuned = next(ev for ev in evals if isinstance(ev, clip_tasks.ClipTasks))
  base_run = frontend.Run.load(base_avdit, latents_dir=paths.join(base, "latents", "train"))   # where it is now
  base = clip_tasks.evaluate(checkpoint.saved_config(base_avdit), {"model": base_run}, pair, tuned.tasks,
                             tuned.section, **where, systems=("model",))
  trained, total = trainable.for_config(sub).count(state.params)
  path = paths.join(workdir, "report.md")
  if jax.process_index() == 0:
    report = finetune_markdown(tuned.last, base, trained, total, config, time.time() - started)
    paths.path(path).write_text(report)
    print(report)
  return path


def finetune_markdown(tuned: dict, base: dict, trained: int, total: int, config, elapsed_s: float) -> str:
  c = config.finetune
  lines = [f"# Fine-tuning report: {c.base} fine-tuned on {c.folder} ({config.avdit.train.trainable}, "
           f"{config.avdit.train.num_steps} steps)", "",
           f"Trainable parameters: {trained:,} of {total:,} ({trained / total:.2%}). Every task on "
           f"{tuned['_clips']} held-out clips of {c.eval_dataset}; lower is better except for av_align. 'base': "
           "the model before fine-tuning; 'tokenizer': the real clips through the tokenizers (the floor).", "",
           f"Held-out loss (the training objective on these clips' latents, the same draws for each): base "
           f"{base['_loss']['model']:.4g}, fine-tuned {tuned['_loss']['model']:.4g}, untrained "
           f"{tuned['_loss']['untrained']:.4g}.", "",
           "| task | score | base | fine-tuned | untrained | shuffled | tokenizer |", "|---|---|---|---|---|---|---|"]
  for task, by_system in tuned.items():
    if task.startswith("_"):
      continue
    for s in by_system["model"]:
      row = [base[task]["model"][s], by_system["model"][s]] + [by_system[n][s] for n in clip_tasks.SYSTEMS[1:]]
      lines.append(f"| {task} | {s} | " + " | ".join(f"{v:.3g}" for v in row) + " |")
  lines += ["", f"The job took {elapsed_s / 60:.1f} minutes."]
  return "\n".join(lines) + "\n"
