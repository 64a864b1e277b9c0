r"""Which pitches an audio tokenizer codes: a clip of three bounce tones at each palette pitch, through it and back.

  python tools/tokenizer_pitches.py --workdir=workdir/quickstart/audio_tokenizer

Prints, per pitch, the share of the tone's in-band energy (+-30 Hz) and of its RMS that the round trip keeps.
A tokenizer trained on a handful of pure tones (the quickstart's: six pitches) may keep only those; a data set
sounding at other pitches then cannot be scored on its audio through it (WORKSPACE.md, "Seventh session").
"""

from absl import app, flags

flags.DEFINE_string("workdir", None, "An audio tokenizer's run directory (e.g. a main job's audio_tokenizer/).")
flags.DEFINE_list("pitches", [], "Pitches in Hz (default: every palette pitch, synthetic_av.PITCHES).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax
  import numpy as np

  from avdit_jax.data import synthetic_av
  from avdit_jax.inference import codec
  from avdit_jax.train import trainees
  tok = codec.load(FLAGS.workdir)
  rate, hop = trainees.clip_spec(tok.config).sample_rate, tok.module.hop
  n = (rate + hop - 1) // hop * hop                               # about a second, a whole number of hops
  t, decay = np.arange(n) / rate, synthetic_av.Scene().tone_decay
  round_trip = jax.jit(lambda p, x: tok.module.apply({"params": p}, x)[0])
  pitches = [float(p) for p in FLAGS.pitches] or sorted(float(p) for p in synthetic_av.PITCHES)
  print(f"{'pitch Hz':>9} | in-band energy kept | RMS kept")
  for hz in pitches:
    x = np.zeros((1, n), np.float32)
    for onset in (0.1, 0.45, 0.8):                                # three bounces, the scenes' decay
      on = t >= onset
      x[0, on] += 0.5 * np.exp(-(t[on] - onset) / decay) * np.sin(2 * np.pi * hz * (t[on] - onset))
    y = np.asarray(round_trip(tok.params, x))
    band = np.abs(np.fft.rfftfreq(n, 1 / rate) - hz) < 30
    kept = np.sum(np.abs(np.fft.rfft(y[0]))[band] ** 2) / np.sum(np.abs(np.fft.rfft(x[0]))[band] ** 2)
    print(f"{hz:9.1f} | {kept:19.3f} | {np.sqrt(np.mean(y ** 2) / np.mean(x ** 2)):8.3f}")


if __name__ == "__main__":
  app.run(main)
