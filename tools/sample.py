r"""Sample any task from a finished run of configs/quickstart.py: mp4 (video + audio), frame strip, spectrogram.

  python tools/sample.py --workdir=workdir/quickstart --task=joint --num_samples=4 --out=workdir/samples_joint
  python tools/sample.py --workdir=workdir/quickstart --task=a2v --input=my_clip.mp4 --out=out/a2v
  python tools/sample.py --workdir=workdir/quickstart --task='audio:all,video:0' --input=my_clip.mp4 --out=out/m
  python tools/sample.py --workdir=workdir/quickstart --task=av_continue:1 --input=my_clip.mp4 --seconds=4 \
      --out=out/long

--task: joint | a2v | v2a | av_continue[:k] | av_inpaint[:before:after] | audio_continue[:k] |
video_continue[:k], or a written mask ('audio:all,video:0-1': which modality is given over which
segments). Tasks that condition need --input: any media file with video (and audio when audio is
given); it is resampled, resized and cut to the run's clip grid. --seconds longer than one clip continues
the result by sliding a window one segment at a time (long-form generation). Each sample is written as
<out>/<k>_sample.mp4 (+ _frames.png, _spectrogram.png); with an input, also <k>_input.* and
<k>_side_by_side.* (input | sample, with the sample's audio). The work is avdit_jax/inference/generate.py's.
"""

from absl import app, flags

from avdit_jax.core import sampling
from avdit_jax.inference import generate
from avdit_jax.media import mediafile

flags.DEFINE_string("workdir", None, "The run's workdir (configs/quickstart.py's --workdir).")
flags.DEFINE_string("task", "joint", "A named task or a written mask (see the module docstring).")
flags.DEFINE_string("input", None, "Media file to condition on (video, and audio where audio is given).")
flags.DEFINE_float("seconds", 0.0, "Total length; more than one clip continues it segment by segment.")
flags.DEFINE_list("guidance", None, "MoNL guidance weight, or 'audio,video' weights (default: the run's "
                  "sampling.guidance).")
flags.DEFINE_integer("steps", None, "Sampling steps (default: the run's sampling.num_steps).")
flags.DEFINE_enum("sampler", None, list(sampling.SAMPLERS), "Sampler, one of the run's process's (default: the "
                  "run's).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("num_samples", 1, "Samples to draw.")
flags.DEFINE_string("out", None, "Output directory.")
flags.mark_flags_as_required(["workdir", "out"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    guidance = FLAGS.guidance and tuple(float(w) for w in FLAGS.guidance)
  except ValueError:
    raise app.UsageError(f"--guidance={','.join(FLAGS.guidance)}: expected a number or 'audio,video'.") from None
  guidance = guidance[0] if guidance and len(guidance) == 1 else guidance
  try:
    written = generate.sample_to_files(FLAGS.workdir, FLAGS.task, FLAGS.out, input_path=FLAGS.input,
                                       seconds=FLAGS.seconds, num_samples=FLAGS.num_samples, seed=FLAGS.seed,
                                       num_steps=FLAGS.steps, guidance=guidance, sampler=FLAGS.sampler)
  except (ValueError, FileNotFoundError, mediafile.MediaError) as e:
    raise app.UsageError(f"--task={FLAGS.task} --input={FLAGS.input} --workdir={FLAGS.workdir}: {e}") from None
  for paths in written:
    print(paths["sample"]["mp4"])


if __name__ == "__main__":
  app.run(main)
