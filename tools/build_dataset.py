r"""Builds a clip data set (avdit_jax/data/datasets.py) into a tfds data directory.

  python tools/build_dataset.py --dataset=synthetic_av/small --data_dir=workdir/tfds
  python tools/build_dataset.py --dataset=av_folder --manual_dir=~/my_videos --data_dir=workdir/tfds
  python tools/build_dataset.py --dataset=landscape --manual_dir=~/landscape --data_dir=workdir/tfds

Files that cannot be decoded or have no audio are skipped; the build lists them at the end.
"""

from absl import app, flags

flags.DEFINE_string("dataset", "synthetic_av/small", "name[/config] of the data set.")
flags.DEFINE_string("data_dir", None, "The tfds data directory to build into.")
flags.DEFINE_string("manual_dir", None, "Where the downloaded media are (all but synthetic_av).")
flags.mark_flags_as_required(["data_dir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from avdit_jax.data import datasets
  b = datasets.prepare(FLAGS.dataset, FLAGS.data_dir, FLAGS.manual_dir)
  print(f"{FLAGS.dataset} in {FLAGS.data_dir}: " + ", ".join(f"{k} {v.num_examples}" for k, v in b.info.splits.items()))
  for path, reason in getattr(b, "skipped", []):
    print(f"skipped {path}: {reason}")


if __name__ == "__main__":
  app.run(main)
