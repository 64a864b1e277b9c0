r"""AV-DiT's real setting (seed 002): a converted DiT-XL/2-256 frozen, on SD-VAE latents of 256x256 frames.

  python tools/aot_compile.py --config=configs/av_dit_paper.py --topology=v5p:2x2x4
  python -m avdit_jax.main --config=configs/av_dit_paper.py --workdir=gs://BUCKET/run \
      --config.data.dir=gs://BUCKET/latents --config.init_from=DiT-XL-2-256.safetensors

The backbone: DiT-XL/2 at 256x256 (28 blocks, width 1152, 16 heads, patch 2 on 32x32x4 latents, class-conditional
with 1000 classes and the no-label row used, learn-sigma head), its weights from tools/convert_weights.py, frozen
(train.trainable 'adapters'). Video: 16 frames of 256x256 through the SD VAE frame by frame (models/sd_vae.FrameVAE:
temporal ratio 1, 8x spatial) -> 16 x 32 x 32 x 4, 256 tokens per frame. Audio: the project's audio tokenizer
grid (16 kHz at 50 latent frames per second, 8 channels) over the clip's 1.6 s at 10 fps -> 80 x 8, patch 1.
N = 4 segments (4 frames, 20 audio frames each). Adapters: audio bottleneck 64, temporal attention in 288
(a quarter of the width). bf16 compute, f32 params; FSDP in groups of 16 chips (mesh (-1, 16, 1), as
configs/paper.py). AV-DiT has no remat or layer scan: its blocks are the DiT's, unrolled.
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  if arg:
    raise ValueError(f"configs/av_dit_paper.py: no variants, got {arg!r}.")
  c = factory.load_config("paper.py:xl", relative_to=__file__)
  c.num_segments = 4
  c.data.update(audio_shape=(80, 8), video_shape=(16, 32, 32, 4), batch_size=64)
  c.model = dict(kind="av_dit", variant="XL/2", audio_patch=1, num_classes=1000, freq_shift=0.0, learn_sigma=True,
                 adapter_dim=64, temporal_dim=288, dtype="bfloat16")
  c.train.trainable = "adapters"
  c.sampling.tasks = ("joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1")
  return c
