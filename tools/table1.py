r"""Table 1 of the paper at small scale: which training strategy makes one model good at every task?

  python tools/table1.py --workdir=workdir/table1                      # the Gaussian toy, all rows
  python tools/table1.py --workdir=W --config.train.num_steps=100      # overrides apply to every run

Trains the AVDiT of configs/gaussian.py once per Table 1 setting: task-specific conditional models (one per
task), vanilla, per modality, per time segment, per time segment per modality, Pt/Pm/Ptm and MoNL. On the
jointly Gaussian toy every task's true conditional is known, so each cell is a moment error: the squared
error of the samples' mean plus that of their per-element standard deviation, against the exact conditional
(evaluation.gaussian_task_errors; lower is better; the 'exact denoiser' row is the floor that the sampler's
steps and the sample count leave). Prints a markdown table per task plus the average, with the wall time.
Runs are resumable: each lives in WORKDIR/<setting> and a finished one is restored, not retrained.
"""

import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

flags.DEFINE_string("workdir", None, "Where the runs and table.md go.")
config_flags.DEFINE_config_file("config", os.path.join(os.path.dirname(__file__), "..", "configs", "gaussian.py"),
                                "The base config of every run.", lock_config=True)
flags.DEFINE_list("tasks", ["joint", "a2v", "v2a", "av_inpaint:1:1", "av_continue:1"],
                  "Table 1's tasks (factory.task specs).")
flags.DEFINE_list("settings", [], "A subset of SETTINGS by name (default: all).")
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


def _run(config, weights, task, workdir):
  """Trains (or restores) one model and returns its moment errors on the tasks it is scored on."""
  from avdit_jax import evaluation, factory, train
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.monl.weights = {k: float(weights.get(k, 0.0)) for k in c.monl.weights}
    c.monl.task = task or ""
  state = train.train_and_evaluate(c, workdir)
  model = factory.model(c)
  params = train.to_host(state.ema_params if c.eval.use_ema else state.params)
  tasks = [task] if task else list(FLAGS.tasks)
  return evaluation.gaussian_task_errors(c, lambda a, v, t: model.apply({"params": params}, a, v, t), tasks)


def moment_error(r: dict, who: str = "model") -> float:
  return r[who] + r[who + "_std"]


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
  unknown = set(FLAGS.settings) - set(SETTINGS)
  if unknown:
    raise app.UsageError(f"--settings: unknown {sorted(unknown)}; expected names from {list(SETTINGS)}.")
  start = time.time()
  rows, floor = {}, {}
  for name, weights in SETTINGS.items():
    if FLAGS.settings and name not in FLAGS.settings:
      continue
    slug = name.lower().replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "").replace("-", "_")
    rows[name] = {}
    runs = ([(t, {"conditional": 1.0}, os.path.join(FLAGS.workdir, slug, t.replace(":", "_"))) for t in FLAGS.tasks]
            if weights == "conditional" else [(None, weights, os.path.join(FLAGS.workdir, slug))])
    for task, w, workdir in runs:
      logging.info("Table 1: %s%s in %s", name, f" ({task})" if task else "", workdir)
      for t, r in _run(FLAGS.config, w, task, workdir).items():
        rows[name][t] = moment_error(r)
        floor.setdefault(t, moment_error(r, "exact_denoiser"))
  rows["exact denoiser (floor)"] = floor
  minutes = (time.time() - start) / 60
  text = ("# Table 1 on the jointly Gaussian toy: moment error per task (lower is better)\n\n"
          f"{table(rows, list(FLAGS.tasks))}\n\nEach cell: squared error of the sample mean + squared error of the "
          "per-element sample standard deviation, against the exact conditional, per element, averaged over "
          f"{FLAGS.config.eval.num_conditions} conditioning draws of {FLAGS.config.eval.samples_per_condition} "
          f"samples. {FLAGS.config.train.num_steps} training steps per model. Wall time {minutes:.1f} min.\n")
  os.makedirs(FLAGS.workdir, exist_ok=True)
  with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
