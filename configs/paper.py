r"""The paper's setting at AVDiT-B / -L / -XL, with mesh, remat and scan choices for TPU slices.

  python -m avdit_jax.main --config=configs/paper.py:xl --workdir=gs://BUCKET/run --config.data.dir=gs://BUCKET/latents
  python tools/aot_compile.py --config=configs/paper.py:xl --topology=v5p:4x4x4 --topology=v6e:16x16

Variant '<size>[,landscape][,<chip>]': size b | l | xl; 'landscape' for 256x256 video (else 128x128); chip
v5e | v5p | v6e picks the remat and batch below (default v5p).

The grid (the AVDiT paper's setting): 17 frames at 8 fps through a causal 4x temporal, 8x spatial video tokenizer ->
5 x 16 x 16 latents (5 x 32 x 32 for Landscape), 8 channels; 16 kHz audio, 2.5 s with the lead
(avdit_jax/data/clips.py) at 50 latent frames per second -> 125 x 8; N = 5 segments, one per latent video frame.
Tokens: video patch (1, 2, 2) -> 320 (1280 for Landscape), audio patch 1 -> 125.

Choices (WORKSPACE.md, "Scaling report", has the compiled numbers):
- bf16 compute, f32 master params, layers under nn.scan (compile time independent of depth).
- FSDP in groups of 16 chips, data parallel across the groups (mesh (-1, 16, 1)): params, EMA and Adam
  moments are split 16 ways (XL: ~0.7 GB of state per chip), gathers stay within a group, and 16 is a
  product of torus axes on v5e/v6e 4x4 and 16x16 and v5p 4x4x4 (each mesh axis must be) and divides
  every width (B 768, L 1024, XL 1152). v5p:8x8x8 needs FSDP 8 or 64 (--config.mesh.shape='(-1,64,1)').
- remat 'dots' (keep matmul outputs, recompute the rest) where HBM allows, 'full' on the 16 GiB v5e.
"""

from avdit_jax import factory

SIZES = {"b": "B", "l": "L", "xl": "XL"}
CHIPS = {
    "v5e": dict(remat="full", batch=256),
    "v5p": dict(remat="dots", batch=256),
    "v6e": dict(remat="dots", batch=512),
}


def get_config(arg: str = "xl"):
  parts = [p for p in arg.split(",") if p]
  size = next((p for p in parts if p in SIZES), None)
  chip = next((p for p in parts if p in CHIPS), "v5p")
  unknown = [p for p in parts if p not in SIZES and p not in CHIPS and p != "landscape"]
  if size is None or unknown:
    raise ValueError(f"configs/paper.py: variant {arg!r}; expected '<b|l|xl>[,landscape][,<v5e|v5p|v6e>]'.")
  side = 32 if "landscape" in parts else 16

  c = factory.load_config("common.py", relative_to=__file__)
  c.num_segments = 5
  c.data = dict(kind="latents", dir="", normalize=True, num_workers=4, audio_shape=(125, 8),
                video_shape=(5, side, side, 8), batch_size=CHIPS[chip]["batch"], seed=0)
  c.model = dict(variant=SIZES[size], audio_patch=1, video_patch=(1, 2, 2), attention="einsum",
                 remat=CHIPS[chip]["remat"], scan_layers=True, dtype="bfloat16")
  c.diffusion = dict(process="ddpm", schedule="linear", num_timesteps=1000, prediction="epsilon",
                     t_sampling="uniform", logit_mean=0.0, logit_std=1.0, shift=1.0,   # configs/gaussian.py says how
                     loss_weighting="none")
  c.monl = dict(weights=dict(vanilla=1.0, per_modality=1.0, per_segment=1.0, per_segment_modality=1.0,
                             conditional=0.0),
                clean_prob=0.25, task="", modality_weights=(1.0, 1.0))
  c.optim.update(lr=1e-4, schedule="constant", warmup_steps=5000, final_lr_fraction=1.0, ema_decay=0.9999)
  c.train.num_steps = 400_000
  c.checkpoint.every_steps = 2000
  c.mesh.shape = (-1, 16, 1)
  c.sampling = dict(sampler="ddim", num_steps=100, eta=0.0, guidance=factory.guidance_field(2.0),
                    joint_guidance=factory.guidance_field(0.0), loop="auto", spacing="uniform", shift=3.0, use_ema=True,
                    tasks=("joint", "a2v", "v2a", "av_continue:1", "av_continue:3", "av_inpaint:1:1"))
  c.evals = {}
  return c
