r"""AV-DiT's CPU recipe (seed 002): the quickstart's clips, tokenizers and report, with an image DiT pretrained first.

  python -m avdit_jax.main --config=configs/av_dit_quickstart.py --workdir=workdir/av_dit_quickstart

configs/quickstart.py's job (avdit_jax/pipeline.py: each stage resumes or is skipped when its output exists), with
two stages at the end instead of its AVDiT:
  image_dit   a small image DiT (models/dit.py, the AV-DiT's own backbone fields) trained alone on the clips' first
              latent frames (the causal video tokenizer's latent frame 0 encodes frame 0 alone), WORKDIR/image_dit
  avdit       AV-DiT (models/av_dit.py) with that DiT frozen (config.init_from; train.trainable 'adapters'),
              trained with MoNL on the clips' latents and scored by the same report and probes (WORKDIR/report.md)
Sections: pipeline, video_tokenizer, audio_tokenizer, avdit as configs/quickstart.py's; image_dit holds the fields of
avdit's train / optim / data / checkpoint sections that the image stage changes.
Variant `test` shrinks every stage to seconds for the test suite.
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  if arg not in ("", "test"):
    raise ValueError(f"configs/av_dit_quickstart.py: unknown variant {arg!r}; expected '' or 'test'.")
  c = factory.load_config("quickstart.py" + (f":{arg}" if arg else ""), relative_to=__file__)
  a = c.avdit
  # The image DiT at the AVDiT 'mini' size (depth 4, width 128, 4 heads), patch 2 on the 8x8 latent frames;
  # adapter_dim / temporal_dim: the audio adapters' bottleneck and the width temporal attention runs in.
  # temporal_dim 0 (temporal attention at the full width 128) and lr 2e-3 (the AVDiT's is 1e-3): with
  # temporal_dim 32 and lr 1e-3, a2v sync was 447 ms, no better than the shuffled pairing's 443; with these,
  # 419 ms (WORKSPACE.md, "Issue 20").
  a.model = dict(kind="av_dit", variant="S/2", depth=4, width=128, num_heads=4, audio_patch=5, num_classes=0,
                 freq_shift=0.0, learn_sigma=False, adapter_dim=32, temporal_dim=0, dtype="float32")
  a.optim.lr = 2e-3
  a.train.trainable = "adapters"
  a.init_from = ""                        # the pipeline sets it to WORKDIR/image_dit
  c.image_dit = dict(train=dict(num_steps=1500, log_every=100), optim=dict(lr=1e-3, warmup_steps=100),
                     checkpoint=dict(every_steps=500))
  if arg == "test":
    a.model.update(depth=2, width=32, num_heads=2, adapter_dim=8, temporal_dim=8)
    c.image_dit.train.update(num_steps=4, log_every=2)
    c.image_dit.checkpoint.every_steps = 4
    # The two cross-modal tasks only (the report's sync rows): the tests sample every other kind of task from
    # the workdir through the CLI's path (tests/av_dit_quickstart_test.py).
    a.evals.clip_tasks.tasks = ("a2v", "v2a")
  return c
