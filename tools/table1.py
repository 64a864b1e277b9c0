r"""Table 1 of the paper at small scale: which training strategy makes one model good at every task?

  python tools/table1.py --workdir=workdir/table1                      # the Gaussian toy, all rows
  python tools/table1.py --workdir=W --config.train.num_steps=100      # overrides apply to every run
  python tools/table1.py --workdir=W --toy_clips=256                  # the toy with a finite training set
  python tools/table1.py --workdir=W --quickstart_workdir=workdir/quickstart    # the synthetic clips

Trains one AVDiT per Table 1 setting: task-specific conditional models (one per task), vanilla, per
modality, per time segment, per time segment per modality, Pt/Pm/Ptm and MoNL.
- Gaussian toy (default; configs/gaussian.py): every task's true conditional is known, so each cell is a
  moment error: the squared error of the samples' mean plus that of their per-element standard deviation,
  against the exact conditional (gaussian_toy.task_errors; the 'exact denoiser' row is the floor
  that the sampler's steps and the sample count leave). By default every batch is a fresh draw (unlimited
  data); --toy_clips=N trains every model on the same N fixed clips instead, a finite data set like the
  paper's, on which training for several tasks at once can help as much as it costs.
- Synthetic clips (--quickstart_workdir: a finished main-job run): each model trains with that run's AVDiT
  config on its latents, and each cell is the task's ground-truth probe (av_evaluation: bounce sync for
  a2v / v2a, colour drift for continuation and inpainting, pitch-colour agreement for joint) over an
  untrained AVDiT's score: 0 is perfect, 1 no better than untrained.
Lower is better. Prints a markdown table per task plus the average, with the wall time, to WORKDIR/table.md.
Runs are resumable: each lives in WORKDIR/<setting>; a finished one's scores are kept there (cells.json),
so a rerun (e.g. with more --settings) trains and scores only what is new.
"""

import functools
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
from avdit_jax.perf import malloc  # noqa: E402

malloc.restart_with_mimalloc()         # as python -m avdit_jax.main does, first thing

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

flags.DEFINE_string("workdir", None, "Where the runs and table.md go.")
DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "gaussian.py")
if __name__ == "__main__":            # before the flag below loads the config and its overrides
  from avdit_jax import factory  # noqa: E402
  factory.exit_on_bad_command_line(DEFAULT_CONFIG)
config_flags.DEFINE_config_file("config", DEFAULT_CONFIG,
                                "The base config of every run.", lock_config=True)
flags.DEFINE_list("tasks", ["joint", "a2v", "v2a", "av_inpaint:1:1", "av_continue:1"],
                  "Table 1's tasks (factory.task specs).")
flags.DEFINE_list("settings", [], "A subset of SETTINGS by name (default: all).")
flags.DEFINE_string("quickstart_workdir", "", "A finished main-job run: train on its latents and score with the "
                    "ground-truth probes instead of the Gaussian toy.")
flags.DEFINE_integer("toy_clips", 0, "Gaussian toy: train on N fixed clips (written once to WORKDIR/toy_clips_N) "
                     "instead of a fresh draw per batch (0).")
flags.DEFINE_integer("num_steps", 0, "Training steps per model in the synthetic-clip mode (0: the run's).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

_ALL = ("vanilla", "per_modality", "per_segment", "per_segment_modality")
# Table 1's rows: mixture weights over monl.STRATEGIES ('conditional' trains one model per task).
SETTINGS = {
    "Conditional (task-specific)": "conditional",
    "Per modality": {"per_modality": 1.0},
    "Vanilla": {"vanilla": 1.0},
    "MoNL": {k: 1.0 for k in _ALL},
    "Per time-segment": {"per_segment": 1.0},
    "Per time-segment per modality": {"per_segment_modality": 1.0},
    "Pt/Pm/Ptm": {k: 1.0 for k in _ALL[1:]},
}


# The probe that scores each task on the synthetic clips (clip_tasks.SCORES).
PROBES = {"joint": "pitch_colour", "a2v": "a2v_sync_ms", "v2a": "v2a_sync_ms", "av_inpaint:1:1": "colour_drift",
          "av_continue:1": "colour_drift"}


def _configure(config, weights, task):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.monl.weights = {k: float(weights.get(k, 0.0)) for k in c.monl.weights}
    c.monl.task = task or ""
  return c


def _finite_toy(config, num_clips: int, workdir: str):
  """config training on num_clips fixed toy clips in the latent format (drawn from seed 1; evaluation's
  conditioning draws come from seeds 10000+, training's fresh draws from data.seed's stream)."""
  from avdit_jax import factory
  from avdit_jax.data import latents, streams
  directory = os.path.join(workdir, f"toy_clips_{num_clips}")
  if not os.path.exists(os.path.join(directory, latents.METADATA)):
    streams.write_gaussian_latents(factory.gaussian_toy(config), config, directory, num_clips, seed=1)
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.data.update(kind="latents", dir=directory, normalize=False)   # the toy's own scale: its conditionals are exact
  return c


def _trained(config, state):
  """A finished model as the inference front end samples it (the params sampling.use_ema picks)."""
  from avdit_jax import factory
  from avdit_jax.inference import frontend
  from avdit_jax.train import trainer
  params = trainer.sampling_params(config, state, frontend.use_ema(config))
  return frontend.Run.for_params(config, factory.model(config), params, normalizer=frontend.normalizer_for(config))


def _gaussian_cells(config, weights, task, workdir, tasks) -> tuple[dict, dict]:
  """Trains (or restores) one model on the toy: ({task: moment error}, {task: the exact denoiser's})."""
  from avdit_jax.evals import gaussian_toy
  from avdit_jax.train import trainer
  c = _configure(config, weights, task)
  draws = {k: c.evals.gaussian_toy[k] for k in ("num_conditions", "samples_per_condition")}
  model = gaussian_toy.task_errors(c, _trained(c, trainer.train_and_evaluate(c, workdir)), tasks, **draws)
  floor = gaussian_toy.task_errors(c, gaussian_toy.exact_run(c), tasks, **draws)
  return {t: moment_error(r) for t, r in model.items()}, {t: moment_error(r) for t, r in floor.items()}


@functools.cache
def _tokenizers(quickstart: str):
  """The main-job run's tokenizer pair, loaded (and its encoders compiled) once for every model it scores."""
  from avdit_jax.inference import codec
  return codec.load_pair(quickstart)


# (main-job run, tasks) -> av_evaluation's results of the untrained AVDiT: scored once per call of the tool.
_UNTRAINED = {}


def _synthetic_cells(quickstart: str, weights, task, workdir, tasks) -> tuple[dict, dict]:
  """Trains (or restores) one model on a main-job run's latents: ({task: probe / untrained's}, {})."""
  import flax.linen as nn

  from avdit_jax.data import latents
  from avdit_jax.evals import clip_tasks
  from avdit_jax.inference import frontend
  from avdit_jax.train import checkpoint, trainees, trainer
  base = checkpoint.saved_config(os.path.join(quickstart, "avdit"))
  c = _configure(base, weights, task)
  with c.unlocked():
    c.train.num_steps = FLAGS.num_steps or c.train.num_steps
    c.evals = {}                     # scored below, against one untrained baseline for every model
  trained = _trained(c, trainer.train_and_evaluate(c, workdir))
  pair = _tokenizers(quickstart)
  meta = latents.Metadata.read(c.data.dir)
  section = dict(split="validation", num_clips=32, media_per_task=0, seed=0)
  kwargs = dict(dataset=meta.tokenizer["dataset"], tfds_dir=os.path.join(quickstart, "tfds"))
  key = (quickstart, tuple(tasks))   # the untrained AVDiT's scores depend on the run and the task list only
  if key not in _UNTRAINED:
    trainee = trainees.for_config(c)
    untrained = frontend.Run.for_params(c, trainee.module, nn.unbox(trainee.init(c.seed + 1)),
                                        normalizer=frontend.normalizer_for(c))
    _UNTRAINED[key] = clip_tasks.evaluate(c, {"untrained": untrained}, pair, tasks, section, **kwargs,
                                          systems=("untrained",))
  untrained = _UNTRAINED[key]
  results = clip_tasks.evaluate(c, {"model": trained}, pair, tasks, section, **kwargs, systems=("model",))
  return {t: results[t]["model"][PROBES[t]] / max(untrained[t]["untrained"][PROBES[t]], 1e-9) for t in tasks}, {}


def moment_error(r: dict) -> float:
  """gaussian_toy.task_errors' two errors of one task, summed."""
  return r["mean"] + r["std"]


def table(rows: dict, tasks) -> str:
  head = "| setting | " + " | ".join(tasks) + " | average |"
  lines = [head, "|" + "---|" * (len(tasks) + 2)]
  for name, errors in rows.items():
    cells = [errors[t] for t in tasks]
    lines.append(f"| {name} | " + " | ".join(f"{e:.4f}" for e in cells) + f" | {np.mean(cells):.4f} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.quickstart_workdir:
    missing = [t for t in FLAGS.tasks if t not in PROBES]
    if missing:
      raise app.UsageError(f"--tasks {missing}: the synthetic-clip mode scores only {list(PROBES)}.")
  unknown = set(FLAGS.settings) - set(SETTINGS)
  if unknown:
    raise app.UsageError(f"--settings: unknown {sorted(unknown)}; expected names from {list(SETTINGS)}.")
  start, model_seconds = time.time(), 0.0
  rows, floor = {}, {}
  config = _finite_toy(FLAGS.config, FLAGS.toy_clips, FLAGS.workdir) if FLAGS.toy_clips else FLAGS.config
  for name, weights in SETTINGS.items():
    if FLAGS.settings and name not in FLAGS.settings:
      continue
    slug = name.lower().replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "").replace("-", "_")
    rows[name] = {}
    runs = ([(t, {"conditional": 1.0}, os.path.join(FLAGS.workdir, slug, t.replace(":", "_"))) for t in FLAGS.tasks]
            if weights == "conditional" else [(None, weights, os.path.join(FLAGS.workdir, slug))])
    for task, w, workdir in runs:
      logging.info("Table 1: %s%s in %s", name, f" ({task})" if task else "", workdir)
      tasks = [task] if task else list(FLAGS.tasks)
      done = os.path.join(workdir, "cells.json")      # a finished model's scores: a rerun skips it
      if os.path.exists(done):
        with open(done) as f:
          cells, floors, seconds = json.load(f)
      else:
        began = time.time()
        if FLAGS.quickstart_workdir:
          cells, floors = _synthetic_cells(FLAGS.quickstart_workdir, w, task, workdir, tasks)
        else:
          cells, floors = _gaussian_cells(config, w, task, workdir, tasks)
        seconds = time.time() - began
        with open(done, "w") as f:
          json.dump([cells, floors, seconds], f)
      model_seconds += seconds
      rows[name].update(cells)
      for t, f in floors.items():
        floor.setdefault(t, f)
  if floor:
    rows["exact denoiser (floor)"] = floor
  # Training + scoring of every model, also of those a rerun found finished (cells.json).
  took = (f"Wall time {model_seconds / 60:.1f} min ({(time.time() - start) / 60:.1f} min in this call) "
          "on this machine's cores")
  if FLAGS.quickstart_workdir:
    text = (f"# Table 1 on the synthetic clips of {FLAGS.quickstart_workdir}: probe score over an untrained "
            f"AVDiT's (lower is better)\n\n{table(rows, list(FLAGS.tasks))}\n\nProbes: "
            + ", ".join(f"{t} {PROBES[t]}" for t in FLAGS.tasks) + f"; 32 held-out clips. "
            f"Training steps per model: {FLAGS.num_steps or 'as in the run'}. {took}.\n")
  else:
    text = ("# Table 1 on the jointly Gaussian toy: moment error per task (lower is better)\n\n"
            f"{table(rows, list(FLAGS.tasks))}\n\nEach cell: squared error of the sample mean + squared error of "
            "the per-element sample standard deviation, against the exact conditional, per element, averaged over "
            f"{FLAGS.config.evals.gaussian_toy.num_conditions} conditioning draws of "
            f"{FLAGS.config.evals.gaussian_toy.samples_per_condition} "
            f"samples. {FLAGS.config.train.num_steps} training steps per model on "
            f"{f'{FLAGS.toy_clips} fixed clips' if FLAGS.toy_clips else 'fresh draws'}. {took}.\n")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
