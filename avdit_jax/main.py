r"""Entry point: train and evaluate from a config file.

  python -m avdit_jax.main --config=configs/quickstart.py --workdir=workdir/quickstart    # the whole job
  python -m avdit_jax.main --config=configs/gaussian.py --workdir=workdir/gaussian \
      [--config.train.num_steps=100 ...]                                                  # one training run
"""

# First, before anything allocates much: restart once with mimalloc preloaded (avdit_jax/perf/malloc.py).
from avdit_jax.perf import malloc

MALLOC = malloc.restart_with_mimalloc() if __name__ == "__main__" else "malloc as it was (main imported, not run)"

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from avdit_jax import factory, pipeline
from avdit_jax.evals import evaluators
from avdit_jax.inference import frontend
from avdit_jax.train import trainer

config_flags.DEFINE_config_file("config", None, "Path to a config file, with an optional ':variant'.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for metrics, reports (and checkpoints).")
flags.DEFINE_enum("mode", "train", ["train", "sample"],
                  "train (resumes from WORKDIR's checkpoints; config.evals run during and after training), or "
                  "sample every config.sampling.tasks task from WORKDIR's newest checkpoint into WORKDIR/samples.")
flags.DEFINE_bool("multiprocess", False, "Call jax.distributed.initialize (TPU pods, SLURM and GKE are "
                  "detected from the environment; elsewhere give the three flags below).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for --multiprocess.")
flags.DEFINE_integer("num_processes", None, "Number of processes, for --multiprocess.")
flags.DEFINE_integer("process_id", None, "This process's index, for --multiprocess.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS

def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.multiprocess:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.info("process %d of %d (pid %d), %d local / %d global devices", jax.process_index(),
                 jax.process_count(), os.getpid(), jax.local_device_count(), jax.device_count())
  logging.info("%s (python tools/benchmark.py --only=malloc)", MALLOC)
  config, workdir = FLAGS.config, FLAGS.workdir
  logging.info("config:\n%s", config)
  if "pipeline" in config or "finetune" in config:   # a whole job: the main one, or fine-tuning one on a folder
    if FLAGS.mode != "train":
      raise app.UsageError(f"--mode={FLAGS.mode}: a pipeline config runs every stage; sample from it with "
                           "tools/sample.py --workdir.")
    (pipeline.run if "pipeline" in config else pipeline.finetune)(config, workdir)
    return
  if FLAGS.mode == "sample":
    frontend.write_task_samples(frontend.Run.load(workdir, config=config), workdir, config.sampling.tasks)
    return
  trainer.train_and_evaluate(config, workdir, evaluators.for_config(config, workdir))

if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  factory.run_app(main)              # a bad --config file or override: one line, not a flag-parsing traceback
