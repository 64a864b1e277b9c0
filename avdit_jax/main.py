r"""Entry point: train and evaluate from a config file.

  python -m avdit_jax.main --config=configs/quickstart.py --workdir=workdir/quickstart \
      [--config.train.num_steps=100 ...]
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from avdit_jax import evaluation, train

config_flags.DEFINE_config_file("config", None, "Path to a config file, with an optional ':variant'.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, reports (and checkpoints).")
flags.DEFINE_enum("mode", "train", ["train"], "What to run.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, workdir = FLAGS.config, FLAGS.workdir
  logging.info("config:\n%s", config)
  state = train.train_and_evaluate(config, workdir)
  if config.data.kind == "gaussian" and config.eval.tasks:
    model = train.factory.model(config)
    params = state.ema_params if config.eval.use_ema else state.params
    results = evaluation.gaussian_task_errors(config, lambda a, v, t: model.apply({"params": params}, a, v, t))
    report = ("# Gaussian toy: squared error of the sample mean vs the exact conditional mean\n\n"
              + evaluation.markdown_table(results) + "\n")
    with open(os.path.join(workdir, "report.md"), "w") as f:
      f.write(report)
    print(report)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
