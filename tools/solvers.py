r"""Few-step sampling, measured: KL to the true conditional vs network evaluations, and wall time per sample.

  python tools/solvers.py                          # the KL table and the wall-time table (markdown, stdout)
  python tools/solvers.py --nfe=10,20 --only=kl    # a subset

KL: the exact Bayes denoiser of tests/solvers_test.py's coupled Gaussian (N = 5 segments, D = 30) in place of
the network, run through `sampling.make_sampler` for each process and solver, at about 5, 10, 20 and 50 network
evaluations (Heun: 2 per step but the last, so 5, 9, 19, 49), on every named task and a written mask; each
cell is the KL of the samples' fitted Gaussian from the true conditional, '*' where it is outside the tests'
tolerance (gaussian.sample_fit: finite-sample KL, means within 4.5 standard errors).
Wall: the quickstart's AVDiT (configs/quickstart.py's mini, its latent shapes, untrained weights: the time does
not depend on them) sampling a2v with the quickstart's guidance (one batched call per evaluation), ms per
sample at batch --batch, the fastest of --repeats after a compiling call.
"""

import functools
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
from avdit_jax.perf import malloc  # noqa: E402

malloc.restart_with_mimalloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from avdit_jax.core import diffusion, flow, gaussian, monl, sampling  # noqa: E402
from avdit_jax.models import avdit  # noqa: E402
from avdit_jax.perf import speed  # noqa: E402

flags.DEFINE_list("nfe", ["5", "10", "20", "50"], "Network evaluations per sample (Heun: the odd number below).")
flags.DEFINE_integer("samples", 4096, "Samples per task for the KL (the tests' 4096).")
flags.DEFINE_list("only", ["kl", "wall"], "Which tables: kl, wall.")
flags.DEFINE_integer("batch", 8, "Wall time: samples per call.")
flags.DEFINE_integer("repeats", 3, "Wall time: timed calls per setting (the fastest counts).")
FLAGS = flags.FLAGS

N = 5
TASKS = {"joint": monl.joint(N), "a2v": monl.a2v(N), "v2a": monl.v2a(N), "av_continue:1": monl.av_continue(N, 1),
         "av_continue:3": monl.av_continue(N, 3), "av_inpaint:1:1": monl.av_inpaint(N, 1, 1),
         "audio_continue:2": monl.audio_continue(N, 2), "video_continue:2": monl.video_continue(N, 2),
         "audio:0-1,video:3-4": monl.parse_mask("audio:0-1,video:3-4", N)}
DDPM = diffusion.make_schedule("cosine", 1000)       # configs/gaussian.py's, with v-prediction
FLOW = flow.RectifiedFlow()
SETTINGS = [  # (process, sampler, spacing, shift)
    (DDPM, "ddim", "uniform", 1.0),
    (DDPM, "ddpm", "uniform", 1.0),
    (DDPM, "dpm++2m", "uniform", 1.0),
    (DDPM, "dpm++2m", "karras", 1.0),
    (FLOW, "euler", "uniform", 1.0),
    (FLOW, "euler", "shifted", 3.0),
    (FLOW, "heun", "uniform", 1.0),
    (FLOW, "heun", "shifted", 0.3),
    (FLOW, "dpm++2m", "uniform", 1.0),
    (FLOW, "dpm++2m", "shifted", 3.0),
]


def steps_for(sampler: str, nfe: int) -> int:
  return (nfe + 1) // 2 if sampler == "heun" else nfe


def label(process, sampler, spacing, shift) -> str:
  return f"{process.name} | {sampler} | {spacing}" + (f" {shift:g}" if spacing == "shifted" else "")


def kl_rows(nfes) -> list[str]:
  segs = monl.frame_segments(10, 1, 5, 1, N)
  toy = gaussian.coupled_gaussian((10, 1), (5, 2, 2, 1), segs, seed=0)
  a0, v0 = toy.sample(jax.random.PRNGKey(100), 1)
  n = FLAGS.samples
  audio, video = jnp.repeat(a0, n, 0), jnp.repeat(v0, n, 0)
  lines = ["| process | solver | spacing | evaluations | " + " | ".join(TASKS) + " | all within |",
           "|---|---|---|---|" + "---|" * (len(TASKS) + 1)]
  for process, sampler, spacing, shift in SETTINGS:
    for nfe in nfes:
      config = sampling.SamplerConfig(process, segs, num_steps=steps_for(sampler, nfe), sampler=sampler,
                                      prediction="v", loop="fori", spacing=spacing, shift=shift)
      run = functools.partial(sampling.make_sampler(sampling.without_params(toy.denoiser(process, "v")), config), None)
      cells, ok = [], True
      for mask in TASKS.values():
        x = np.asarray(toy.flatten(*run(sampling.make_condition(config, mask, audio, video), jax.random.PRNGKey(0))),
                       np.float64)
        gen, mean, cov = toy.conditional(mask, a0, v0)
        fit = gaussian.sample_fit(x[:, gen], mean, cov)
        ok &= fit["ok"]
        cells.append(f"{fit['kl']:.3f}" + ("" if fit["ok"] else "*"))
      lines.append(f"| {label(process, sampler, spacing, shift)} | {config.network_evaluations} | "
                   + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")
      print(lines[-1], flush=True)
  return lines


def wall_rows(nfes) -> list[str]:
  segments = 3                                  # configs/quickstart.py's AVDiT on its tokenized clips
  audio_shape, video_shape = (75, 8), (3, 8, 8, 16)
  net = avdit.make_model("mini", num_segments=segments, audio_patch=5, video_patch=(1, 2, 2))
  rng = np.random.default_rng(0)
  audio = jnp.asarray(rng.normal(size=(FLAGS.batch, *audio_shape)), jnp.float32)
  video = jnp.asarray(rng.normal(size=(FLAGS.batch, *video_shape)), jnp.float32)
  params = net.init(jax.random.PRNGKey(0), audio, video, jnp.zeros((FLAGS.batch, 2, segments)))["params"]
  segs = monl.frame_segments(75, 5, 3, 1, segments)
  lines = ["| process | solver | spacing | evaluations | ms per sample |", "|---|---|---|---|---|"]
  seen = set()
  for process, sampler, spacing, shift in SETTINGS:
    if (process.name, sampler) in seen:        # the spacing does not change the time
      continue
    seen.add((process.name, sampler))
    for nfe in nfes:
      net_p = net.clone(time_scale=1000.0 if process.name == "flow" else 1.0)
      config = sampling.SamplerConfig(process, segs, num_steps=steps_for(sampler, nfe), sampler=sampler,
                                      prediction="v", guidance=3.0, spacing=spacing, shift=shift)
      run = functools.partial(sampling.make_sampler(avdit.network(net_p), config), params)
      cond = sampling.make_condition(config, monl.a2v(segments), audio, video)
      seconds = speed.best_time(run, cond, jax.random.PRNGKey(0), repeats=FLAGS.repeats)
      lines.append(f"| {process.name} | {sampler} | {spacing} | {config.network_evaluations} | "
                   f"{seconds / FLAGS.batch * 1e3:.1f} |")
      print(lines[-1], flush=True)
  return lines


def main(argv):
  del argv
  nfes = [int(n) for n in FLAGS.nfe]
  start = time.perf_counter()
  out = []
  if "kl" in FLAGS.only:
    out += ["KL to the true conditional (* outside the tests' tolerance)", ""] + kl_rows(nfes)
  if "wall" in FLAGS.only:
    out += ["", f"Wall time per sample, the quickstart's AVDiT, a2v, guidance 3, batch {FLAGS.batch}, "
            f"{jax.default_backend()}", ""] + wall_rows(nfes)
  out += ["", f"{time.perf_counter() - start:.0f} s in all"]
  print("\n".join(out))


if __name__ == "__main__":
  app.run(main)
