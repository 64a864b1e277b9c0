r"""A folder of mp4 files (video + audio) from a synthetic_av config: "a user's clips" for the fine-tuning recipe.

  python tools/write_synthetic_folder.py --dataset=synthetic_av/small_unseen --out=workdir/my_clips

Each file is `--clips_per_file` clips of the config's grid long, drawn from its scene (colours, pitches) with the
train split's seed, so the folder never holds the clips of its validation split. Build it as an `av_folder` set
(configs/finetune_lora.py does) to train on it.
"""

import os

from absl import app, flags

flags.DEFINE_string("dataset", "synthetic_av/small_unseen", "A synthetic_av config, name/config.")
flags.DEFINE_string("out", None, "The folder to write <index>.mp4 files into.")
flags.DEFINE_integer("num_files", 96, "How many files.")
flags.DEFINE_integer("clips_per_file", 4, "Length of each file in clips of the config's grid.")
flags.mark_flags_as_required(["out"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import dataclasses

  from avdit_jax.data import datasets, synthetic_av
  from avdit_jax.media import mediafile
  if not FLAGS.dataset.startswith("synthetic_av"):
    raise app.UsageError(f"--dataset {FLAGS.dataset}: expected a synthetic_av config.")
  config = datasets.builder(FLAGS.dataset, data_dir=None).builder_config
  grid = config.scene.clip
  frames = FLAGS.clips_per_file * grid.num_frames
  frames += -(frames - 1) % grid.temporal_ratio                     # 1 + a multiple of the temporal ratio
  scene = dataclasses.replace(config.scene, clip=dataclasses.replace(grid, num_frames=frames))
  os.makedirs(FLAGS.out, exist_ok=True)
  for i in range(FLAGS.num_files):
    clip = synthetic_av.make_clip(scene, config.seed * 2, i)       # the train split's stream
    mediafile.write_mp4(os.path.join(FLAGS.out, f"{i:05d}.mp4"), clip["video"], grid.frame_rate,
                        clip["audio"][scene.clip.lead_samples:], grid.sample_rate)
  print(f"{FLAGS.num_files} files of {frames} frames ({frames / grid.frame_rate:.2f} s) in {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
