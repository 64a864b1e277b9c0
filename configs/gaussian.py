r"""The jointly Gaussian toy: MoNL on Gaussian latents whose every conditional is known; tiny AVDiT, a minute on a CPU.

  python -m avdit_jax.main --config=configs/gaussian.py --workdir=workdir/gaussian

Variants (after a colon): `test` shrinks it to seconds for the test suite. Any field can be
overridden, e.g. --config.train.num_steps=100 --config.model.variant=mini.

The Gaussian latents make every conditional analytic, so the job ends with a report of how close
each task's samples are to the exact conditional mean (report.md in the workdir).
"""

from avdit_jax import factory


def get_config(arg: str = ""):
  c = factory.load_config("common.py", relative_to=__file__)
  c.num_segments = 4                      # N: time segments of the MoNL grid

  c.data = dict(
      kind="gaussian",                    # 'gaussian': drawn on the fly; 'latents': files in data.dir
      dir="",                             # a latent directory (avdit_jax/data/latents.py), for kind='latents'
      normalize=True,                     # per-channel statistics from the directory's metadata
      num_workers=0,                      # grain worker processes (0: in the main process)
      audio_shape=(8, 2),                 # (Ta, Ca)
      video_shape=(4, 4, 4, 2),           # (Tv, H, W, Cv)
      batch_size=64,
      seed=0,
  )
  c.model = dict(
      variant="tiny",                     # tiny | mini | S | B | L | XL
      audio_patch=2,
      video_patch=(1, 2, 2),
      attention="einsum",
      remat="none",
      scan_layers=False,
      dtype="float32",
  )
  # Cosine + v-prediction: with epsilon-prediction the cosine schedule's last steps (alpha_bar ~ 1e-9)
  # amplify any epsilon error several hundred times; pair epsilon (the paper's) with 'linear'.
  # process 'flow' (rectified flow, core/flow.py): prediction 'v' is then the velocity eps - x0, and t is drawn
  # per group by t_sampling: 'uniform', 'logit_normal' (logit_mean, logit_std), 'shifted' (shift, SD3's 3.0) or
  # 'cosine' (the cosine DDPM's SNRs); loss_weighting 'ddpm_v' weighs each error as DDPM's v-loss (core/flow.py).
  # schedule and num_timesteps are DDPM's. On this toy logit_normal with logit_std=1.6 trained flow best (WORKSPACE.md).
  c.diffusion = dict(process="ddpm", schedule="cosine", num_timesteps=1000, prediction="v",
                     t_sampling="uniform", logit_mean=0.0, logit_std=1.0, shift=1.0, loss_weighting="none")
  c.monl = dict(
      # Mixture weights over monl.STRATEGIES (uniform MoNL; the paper does not publish its weights).
      weights=dict(vanilla=1.0, per_modality=1.0, per_segment=1.0, per_segment_modality=1.0, conditional=0.0),
      clean_prob=0.25,                    # chance that a group of cells is clean (t = 0)
      task="",                            # the task of the 'conditional' strategy, e.g. 'a2v'
      modality_weights=(1.0, 1.0),        # (audio, video) loss weights per element
  )
  c.optim.update(lr=2e-3, warmup_steps=50, ema_decay=0.99)
  c.train.update(num_steps=600, log_every=50)
  c.checkpoint.every_steps = 200
  tasks = ("joint", "a2v", "v2a", "av_continue:1", "av_continue:3", "av_inpaint:1:1", "audio_continue:2",
           "video_continue:2")
  # use_ema: whether sampling (and every evaluator) uses the EMA params; tasks: what --mode=sample writes.
  # sampler: ddim | ddpm | dpm++2m (ddpm), euler | heun | dpm++2m (flow; 'ddim' there is Euler); spacing: uniform |
  # shifted (by shift) | karras (ddpm); guidance: one weight, or an (audio, video) pair
  # (--config.sampling.guidance='(3.0, 7.0)'; factory.guidance_field lets the flag give either);
  # joint_guidance: the same for tasks with nothing given (joint), which MoNL's guidance cannot guide: cross-modal,
  # each modality pushed away from its prediction with the other modality at pure noise (core/sampling.py).
  c.sampling = dict(sampler="ddim", num_steps=50, eta=0.0, guidance=factory.guidance_field(0.0),
                    joint_guidance=factory.guidance_field(0.0),
                    loop="auto", spacing="uniform", shift=3.0, use_ema=False, tasks=tasks)
  # Evaluators during and after training (avdit_jax/evals/evaluators.py); every_steps 0: after the last step.
  # gaussian_toy: each task's sample moments against the exact conditional, in WORKDIR/report.md.
  c.evals = dict(gaussian_toy=dict(every_steps=0, tasks=tasks, num_conditions=4, samples_per_condition=64))

  if arg == "test":
    c.data.batch_size = 16
    c.train.num_steps = 4
    c.train.log_every = 1
    c.checkpoint.every_steps = 2
    c.sampling.update(num_steps=4, tasks=("a2v", "av_continue:1"))
    c.evals.gaussian_toy.update(tasks=("a2v", "av_continue:1"), num_conditions=1, samples_per_condition=8)
  elif arg:
    raise ValueError(f"configs/gaussian.py: unknown variant {arg!r}; expected '' or 'test'.")
  return c
