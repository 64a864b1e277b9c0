r"""The sections every training config shares, with their defaults: seed, optim, train, checkpoint, mesh.

Each config file starts from these and changes what differs:

  c = factory.load_config("common.py", relative_to=__file__)
  c.optim.update(lr=2e-3, warmup_steps=50)
"""

import ml_collections

from avdit_jax.train import sharding


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"configs/common.py: no variants, got {arg!r}.")
  c = ml_collections.ConfigDict()
  c.seed = 0
  # AdamW with global-norm clipping; lr warms up linearly, then 'cosine' decays to lr * final_lr_fraction
  # over train.num_steps or 'constant' holds it. EMA of the params for sampling and evaluation.
  c.optim = dict(lr=1e-4, schedule="cosine", warmup_steps=100, final_lr_fraction=0.0, b1=0.9, b2=0.999,
                 weight_decay=0.0, grad_clip=1.0, ema_decay=0.999)
  # peak_flops_per_device: the accelerator's peak FLOP/s for the MFU column, e.g. 197e12 for a v5e chip in
  # bf16; 0: no MFU; -1: measure a 2048^2 matmul in model.dtype on this machine at start (avdit_jax/perf/speed.py).
  # trainable: what the optimizer updates (avdit_jax/train/trainable.py): 'all', named groups ('blocks,heads'), a
  # regex over param paths, or 'lora' (factors of rank `lora.rank` on `lora.targets`, merged for sampling).
  c.train = dict(num_steps=1000, log_every=100, peak_flops_per_device=0.0, trainable="all",
                 lora=dict(rank=8, alpha=8.0, targets=("q", "k", "v", "out", "mlp")))
  # init_from: start a new run from other weights (another run's workdir, or a converted .safetensors file from
  # tools/convert_weights.py), with this run's own optimizer and data position; '' starts from scratch.
  c.init_from = ""
  # A checkpoint every `every_steps`, at the end and at SIGTERM; the newest `max_to_keep` are kept.
  c.checkpoint = dict(every_steps=500, max_to_keep=3, async_save=True)
  # Mesh over all devices: data parallel by default; (1, -1, 1) is FSDP, (1, -1, 2) FSDP + tensor.
  c.mesh = dict(axes=sharding.DEFAULT_AXES, shape=(-1, 1, 1), rules=sharding.DEFAULT_RULES)
  return c
