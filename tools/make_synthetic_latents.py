r"""Writes Gaussian-toy clips in the latent format, so training can run from files with no media at all.

  python tools/make_synthetic_latents.py --config=configs/gaussian.py --out=workdir/latents --num_clips=512
  python -m avdit_jax.main --config=configs/gaussian.py --workdir=workdir/from_files \
      --config.data.kind=latents --config.data.dir=workdir/latents
"""

from absl import flags
from ml_collections import config_flags

from avdit_jax import factory
from avdit_jax.data import streams

config_flags.DEFINE_config_file("config", None, "Config whose data shapes and segments to use.")
flags.DEFINE_string("out", None, "Output directory.")
flags.DEFINE_integer("num_clips", 512, "Clips to write.")
flags.DEFINE_integer("num_shards", 4, "ArrayRecord shards.")
flags.DEFINE_integer("seed", 0, "Seed of the clips drawn.")
flags.mark_flags_as_required(["config", "out"])
FLAGS = flags.FLAGS


def main(_):
  meta = streams.write_gaussian_latents(factory.gaussian_toy(FLAGS.config), FLAGS.config, FLAGS.out, FLAGS.num_clips,
                                        num_shards=FLAGS.num_shards, seed=FLAGS.seed)
  print(f"wrote {meta.num_clips} clips in {len(meta.shards)} shards to {FLAGS.out}")


if __name__ == "__main__":
  factory.run_app(main)
