r"""The probes against training steps: the evaluations a run made during training, as a markdown table.

  python tools/curve.py --workdir=W                 # W: a main job's workdir (reads W/avdit/metrics.jsonl)
  python tools/curve.py --workdir=W/avdit --scores=a2v/a2v_sync_ms,joint/pitch_colour

Each row is one evaluation (config.avdit.evals.clip_tasks.every_steps), with the training loss logged nearest
before it; each column one task's score, or the held-out loss (lower is better but av_align). The shape of the
curve is what says whether a recipe keeps improving with compute.
"""

import json

from absl import app, flags

from avdit_jax import paths
from avdit_jax.train import trainer

flags.DEFINE_string("workdir", None, "A main job's workdir, or a training run's (with metrics.jsonl).", required=True)
flags.DEFINE_string("evaluator", "clip_tasks", "Whose scalars: the evaluator's name in config.evals.")
flags.DEFINE_list("scores", ["held_out_loss", "joint/pitch_colour", "a2v/a2v_sync_ms", "v2a/v2a_sync_ms",
                             "av_continue:1/colour_drift", "av_inpaint:1:1/colour_drift", "a2v/colour_drift"],
                  "task/score columns; 'all' for every one the run logged.")
FLAGS = flags.FLAGS


def metrics_path(workdir: str):
  for candidate in (paths.path(workdir) / "metrics.jsonl", paths.path(workdir) / "avdit" / "metrics.jsonl"):
    if candidate.exists():
      return candidate
  raise FileNotFoundError(f"--workdir {workdir}: no metrics.jsonl in it or in its avdit/ (expected a main job's "
                          "workdir or a training run's).")


def curve(rows: list[dict], evaluator: str, scores: list[str], *,
          only_logged: bool = False) -> tuple[list[str], list[tuple]]:
  """(columns, [(step, loss, value per column)]) of the evaluation rows of `evaluator`; only_logged drops the
  scores the run did not log instead of refusing them (the default columns on a run older than one of them)."""
  prefix = f"eval/{evaluator}/"
  evals = [r for r in rows if any(k.startswith(prefix) for k in r)]
  if not evals:
    raise ValueError(f"no eval/{evaluator}/ rows: the run made no such evaluation (set "
                     f"config.evals.{evaluator}.every_steps > 0 for one during training).")
  logged = sorted({k[len(prefix):] for r in evals for k in r if k.startswith(prefix)})
  columns = logged if scores == ["all"] else [c for c in scores if c in logged or not only_logged]
  unknown = [c for c in columns if c not in logged]
  if unknown:
    raise ValueError(f"--scores {','.join(unknown)}: not logged; the run has {', '.join(logged)}.")
  losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
  out = []
  for r in evals:
    before = [s for s in losses if s <= r["step"]]
    loss = losses[max(before)] if before else float("nan")
    out.append((r["step"], loss, *(r.get(prefix + c, float("nan")) for c in columns)))
  return columns, out


def markdown(columns: list[str], table: list[tuple]) -> str:
  lines = ["| step | loss | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
  lines += ["| " + " | ".join([str(row[0])] + [f"{v:.3g}" for v in row[1:]]) + " |" for row in table]
  return "\n".join(lines)


def main(_):
  try:
    rows = [json.loads(line) for line in trainer.read_metrics_lines(metrics_path(FLAGS.workdir))]
    # The default columns: those the run logged (runs before the held-out loss have none of it).
    table = curve(rows, FLAGS.evaluator, FLAGS.scores, only_logged=not FLAGS["scores"].present)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from None
  print(markdown(*table))


if __name__ == "__main__":
  app.run(main)
