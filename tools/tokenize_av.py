r"""Latents from clips with trained tokenizers, and media from latents.

  # clips -> latent shards (the training system's format), resumable, one set of shards per process
  python tools/tokenize_av.py encode --video_workdir=workdir/video_tokenizer --audio_workdir=workdir/audio_tokenizer \
      --dataset=synthetic_av/small --split=train --data_dir=workdir/tfds --out=workdir/latents/train --num_segments=3

  # latents -> mp4 (H.264 + AAC) + frame strip + spectrogram, for the first clips of a latent directory
  python tools/tokenize_av.py decode --video_workdir=... --audio_workdir=... --latents=workdir/latents/train \
      --out=workdir/decoded --num_clips=4

Multi-process: run the same command with --process_index=p --process_count=P on each worker; process 0
writes metadata.json once every shard is done.
"""

from absl import app, flags

flags.DEFINE_string("video_workdir", None, "Workdir of the trained video tokenizer.")
flags.DEFINE_string("audio_workdir", None, "Workdir of the trained audio tokenizer.")
flags.DEFINE_string("dataset", "synthetic_av/small", "encode: the tfds data set (name/config).")
flags.DEFINE_string("split", "train", "encode: its split.")
flags.DEFINE_string("data_dir", None, "encode: the tfds data directory.")
flags.DEFINE_string("out", None, "encode: the latent directory; decode: the media directory.")
flags.DEFINE_integer("num_segments", None, "encode: N, the MoNL time segments the latents are cut into.")
flags.DEFINE_integer("num_shards", 4, "encode: number of ArrayRecord shards.")
flags.DEFINE_integer("batch_size", 8, "Clips per tokenizer call.")
flags.DEFINE_integer("process_index", 0, "encode: this process (multi-process runs).")
flags.DEFINE_integer("process_count", 1, "encode: number of processes.")
flags.DEFINE_float("wait_timeout_s", 3600.0, "encode: how long process 0 waits for the other processes' shards.")
flags.DEFINE_string("latents", None, "decode: a latent directory.")
flags.DEFINE_integer("num_clips", 4, "decode: how many clips.")
flags.mark_flags_as_required(["video_workdir", "audio_workdir", "out"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2 or argv[1] not in ("encode", "decode"):
    raise app.UsageError("usage: tools/tokenize_av.py encode|decode --flags (see the docstring)")
  import numpy as np

  from avdit_jax import paths
  from avdit_jax.data import clips, latents
  from avdit_jax.inference import codec, tokenize
  pair = codec.Codec(codec.load(FLAGS.video_workdir), codec.load(FLAGS.audio_workdir))
  if argv[1] == "encode":
    if FLAGS.num_segments is None:
      raise app.UsageError("--num_segments is required for encode (the MoNL N of the runs that will train on it).")
    meta = tokenize.tokenize_split(pair, FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.out,
                                   num_segments=FLAGS.num_segments, num_shards=FLAGS.num_shards,
                                   batch_size=FLAGS.batch_size, process_index=FLAGS.process_index,
                                   process_count=FLAGS.process_count, wait_timeout_s=FLAGS.wait_timeout_s)
    if meta is not None:
      print(f"{meta.num_clips} clips -> {FLAGS.out}: audio {meta.audio_shape}, video {meta.video_shape}")
    return
  if not FLAGS.latents:
    raise app.UsageError("--latents is required for decode.")
  meta = latents.Metadata.read(FLAGS.latents)
  records = latents.read_clips(FLAGS.latents, meta, FLAGS.num_clips)
  audio, frames = pair.decode(np.stack([r["audio"] for r in records]), np.stack([r["video"] for r in records]))
  for r, a, f in zip(records, audio, frames):
    stem = paths.join(FLAGS.out, r["clip_id"].replace("/", "_"))
    print(clips.write_clip(stem, f, a, pair.spec))


if __name__ == "__main__":
  app.run(main)
