r"""Fine-tune the quickstart's AVDiT on your own clips with LoRA, and sample every task from the result.

  python tools/write_synthetic_folder.py --out=workdir/my_clips     # or any folder of your mp4s with audio
  python -m avdit_jax.main --config=configs/finetune_lora.py --workdir=workdir/finetune \
      --config.finetune.base=workdir/quickstart --config.finetune.folder=workdir/my_clips

The job (avdit_jax/pipeline.py, `finetune`): the folder -> an `av_folder` data set on the quickstart's clip grid ->
latents with the base job's own tokenizers -> the base AVDiT (config.init_from) with rank-8 LoRA factors on
attention q/k/v/out and the MLP of every block, the rest frozen -> every task on held-out clips of
`finetune.eval_dataset` (which needs ground truth: a synthetic_av config; by default small_unseen, whose colours
the quickstart never saw, each sounding at one of its pitches), next to the base model, in WORKDIR/report.md;
samples in WORKDIR/samples.
Any field can be overridden, e.g. --config.avdit.train.lora.rank=16 or --config.avdit.train.trainable=all.
Variant `test` fine-tunes the quickstart's test variant for the test suite.
"""

import ml_collections

from avdit_jax import factory


def get_config(arg: str = ""):
  if arg not in ("", "test"):
    raise ValueError(f"configs/finetune_lora.py: unknown variant {arg!r}; expected '' or 'test'.")
  q = factory.load_config("quickstart.py" + (f":{arg}" if arg else ""), relative_to=__file__)
  c = ml_collections.ConfigDict()
  # base: a finished main job's workdir (its tokenizers and AVDiT); folder: the user's media files.
  c.finetune = dict(base="", folder="", dataset="av_folder/small", tfds_dir="",
                    eval_dataset="synthetic_av/small_unseen", wait_timeout_s=q.pipeline.wait_timeout_s)
  a = q.avdit                               # the base's model config: the converted params must fit it
  a.train.update(trainable="lora", num_steps=600, log_every=50)
  a.train.lora = dict(rank=8, alpha=8.0, targets=("q", "k", "v", "out", "mlp"))
  a.optim.update(lr=1e-3, warmup_steps=50)
  a.checkpoint.every_steps = 200
  a.evals.clip_tasks.update(split="validation", num_clips=32)
  c.avdit = a
  if arg == "test":                         # the quickstart's test variant, a few steps, a handful of clips
    c.finetune.eval_dataset = "synthetic_av/tiny_unseen"
    a.train.update(num_steps=4, log_every=2)
    a.checkpoint.every_steps = 4
    a.evals.clip_tasks.num_clips = 4
  return c
