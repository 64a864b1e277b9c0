r"""Audio tokenizer (SoundStream style strided 1D CNN) on a clip data set, with the training system.

  python -m avdit_jax.main --config=configs/tokenizer_audio.py --workdir=workdir/audio_tokenizer \
      --config.data.tfds_dir=workdir/tfds

Variants: '' trains on synthetic_av/small (8 kHz: patch 16 x strides 2*5 = 160 -> 50 latent frames per second);
'paper' on synthetic_av/default (16 kHz: strides 2*4*5*8 = 320 -> 50 per second); 'test' is seconds. The
run ends with a reconstruction report (log-spectral distance against the clip-mean baseline).
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  c = factory.load_config("common.py", relative_to=__file__)
  c.trainee = "audio_tokenizer"
  c.data = dict(dataset="synthetic_av/small", tfds_dir="", split="train", batch_size=8, seed=0, num_workers=0)
  # CPU size: 16 samples per step as channels, then strides 2 and 5: 8 kHz -> 50 latent frames per second.
  c.model = dict(latent_channels=8, channels=32, strides=(2, 5), patch_size=16, regularizer="kl")
  c.loss = dict(kl_weight=1e-4, stft_weight=1.0, l1_weight=0.0)   # waveform L1 pulls unpredictable phases to 0
  c.optim.update(lr=2e-3, warmup_steps=20, final_lr_fraction=0.05, b2=0.99, ema_decay=0.99)
  c.train.num_steps = 900
  c.checkpoint.update(every_steps=300, max_to_keep=2)
  # After training: reconstruction on held-out clips against the clip-mean baseline, in WORKDIR/report.md.
  c.evals = dict(reconstruction=dict(every_steps=0, split="validation", num_clips=32))

  if arg == "paper":
    c.data.dataset = "synthetic_av/default"
    c.model.update(channels=32, strides=(2, 4, 5, 8), patch_size=1)
    c.data.batch_size = 32
    c.train.num_steps = 100_000
    c.checkpoint.every_steps = 2000
  elif arg == "test":
    c.data.dataset = "synthetic_av/tiny"
    c.data.batch_size = 8
    c.train.num_steps = 300               # enough to fit the 8 tiny clips (tests/tokenizers_test.py)
    c.train.log_every = 50
    c.checkpoint.every_steps = 300
    c.evals.reconstruction.num_clips = 4
  elif arg:
    raise ValueError(f"configs/tokenizer_audio.py: unknown variant {arg!r}; expected '', 'paper' or 'test'.")
  return c
