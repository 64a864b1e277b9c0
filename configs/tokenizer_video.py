r"""Video tokenizer (MAGVIT-v2 style causal 3D CNN) on a clip data set, with the training system.

  python -m avdit_jax.main --config=configs/tokenizer_video.py --workdir=workdir/video_tokenizer \
      --config.data.tfds_dir=workdir/tfds

Variants: '' trains on synthetic_av/small (32x32, 9 frames at 8 fps) for a 2-core CPU in a few minutes; 'paper'
is the paper's grid (synthetic_av/default: 128x128, 17 frames -> 5 x 16 x 16 latents); 'test' is seconds.
The synthetic data set is built into data.tfds_dir on first use. The run ends with a reconstruction
report (PSNR against the clip-mean baseline) in WORKDIR/report.md.
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  c = factory.load_config("common.py", relative_to=__file__)
  c.trainee = "video_tokenizer"
  c.data = dict(dataset="synthetic_av/small", tfds_dir="", split="train", batch_size=8, seed=0, num_workers=0)
  # CPU size: 4x4x4 causal tubelets (frame 0 alone) as channels, then 3D convs at 8x8: 9 x 32 x 32 x 3 ->
  # 3 x 8 x 8 x 16. The paper variant downsamples with strided causal convs instead (patch_size 1).
  c.model = dict(latent_channels=16, channels=64, channel_mult=(1,), temporal_down=(), spatial_down=None,
                 patch_size=(4, 4, 4), num_res_blocks=0, regularizer="kl")
  c.loss = dict(kl_weight=1e-4)
  c.optim.update(lr=2e-3, warmup_steps=20, final_lr_fraction=0.05, b2=0.99, ema_decay=0.99)
  c.train.num_steps = 1500
  c.checkpoint.update(every_steps=500, max_to_keep=2)
  # After training: reconstruction on held-out clips against the clip-mean baseline, in WORKDIR/report.md.
  c.evals = dict(reconstruction=dict(every_steps=0, split="validation", num_clips=32))

  if arg == "paper":
    c.data.dataset = "synthetic_av/default"
    c.model.update(latent_channels=4, channels=64, channel_mult=(1, 2, 2, 4), temporal_down=(False, True, True),
                   patch_size=(1, 1, 1), num_res_blocks=2)
    c.data.batch_size = 32
    c.train.num_steps = 100_000
    c.checkpoint.every_steps = 2000
  elif arg == "test":
    c.data.dataset = "synthetic_av/tiny"
    c.data.batch_size = 8
    c.train.num_steps = 400               # enough to fit the 8 tiny clips (tests/tokenizers_test.py)
    c.optim.lr = 3e-3
    c.train.log_every = 50
    c.checkpoint.every_steps = 400
    c.evals.reconstruction.num_clips = 4
  elif arg:
    raise ValueError(f"configs/tokenizer_video.py: unknown variant {arg!r}; expected '', 'paper' or 'test'.")
  return c
