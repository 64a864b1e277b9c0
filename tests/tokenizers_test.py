"""Tokenizers trained through the training system (the quickstart test run's), tokenizing a split, media round trip.

The trained pair is shared by the tests of this file (one xdist group, so one worker trains it once); the
tokenizer modules' own tests, which need no training, are in tokenizer_modules_test.py (any worker).
"""

import json
import os

import jax
import numpy as np
import pytest
from train_test import load_config

from avdit_jax.data import clips, datasets, latents, streams
from avdit_jax.evals import reconstruction
from avdit_jax.inference import codec, tokenize
from avdit_jax.media import mediafile

pytestmark = pytest.mark.xdist_group("tokenizers")


@pytest.fixture(scope="module")
def trained(quickstart_run):
  """The tokenizers of the quickstart test run: each trained through the training system on the tiny
  synthetic split (configs/tokenizer_*.py:test)."""
  root, _, _ = quickstart_run
  for name in ("video_tokenizer", "audio_tokenizer"):
    rows = [json.loads(line) for line in open(os.path.join(root, name, "metrics.jsonl"))]
    steps = [r for r in rows if "loss" in r]  # the rest are the evaluators' rows (eval/<name>/...)
    assert steps and all(np.isfinite(r["loss"]) for r in steps)
    assert all(k.startswith("eval/") for r in rows if "loss" not in r for k in r if k != "step")
  return root, {"tokenizer_video": str(root / "video_tokenizer"), "tokenizer_audio": str(root / "audio_tokenizer")}


def test_tokenizers_learn_below_the_clip_mean_baseline(trained):
  """After their short test runs (raw params: the EMA still lags) both reconstruct the clips they trained
  on better than each clip's mean does (8 tiny clips: fitting, not generalisation; WORKSPACE.md has
  held-out numbers). Video: under half the clip mean's MSE. Audio: a lower log-spectral distance and real
  energy (not the near-silence an earlier loss learned)."""
  _, runs = trained
  video = reconstruction.reconstruction_report(codec.load(runs["tokenizer_video"], use_ema=False), "train", 32)
  assert video["model"] > video["clip_mean_baseline"] + 3.0, video          # PSNR, dB: MSE halved
  tok = codec.load(runs["tokenizer_audio"], use_ema=False)
  audio = reconstruction.reconstruction_report(tok, "train", 32)
  assert audio["model"] < audio["clip_mean_baseline"] - 1.0, audio          # log-spectral distance, dB
  source, _ = datasets.data_source(tok.config.data.dataset, "train", tok.config.data.tfds_dir)
  x = np.stack([source[i]["audio"] for i in range(8)])
  y = np.asarray(jax.jit(lambda p, x: tok.module.apply({"params": p}, x)[0])(tok.params, x))
  assert np.sqrt(np.mean(y**2)) > 0.2 * np.sqrt(np.mean(x**2))


def test_tokenized_split_reads_back_through_the_training_pipeline(trained):
  root, runs = trained
  pair = codec.Codec(codec.load(runs["tokenizer_video"]), codec.load(runs["tokenizer_audio"]))
  out = str(root / "test_latents")
  meta = tokenize.tokenize_split(pair, "synthetic_av/tiny", "train", str(root / "tfds"), out, num_segments=3,
                                 num_shards=3, batch_size=4)
  assert meta.num_clips == 8 and meta.video_shape == (3, 8, 8, 16) and meta.audio_shape == (75, 8)
  # A rerun skips the finished shards and leaves them untouched.
  stamp = os.path.getmtime(os.path.join(out, meta.shards[0]))
  tokenize.tokenize_split(pair, "synthetic_av/tiny", "train", str(root / "tfds"), out, num_segments=3, num_shards=3)
  assert os.path.getmtime(os.path.join(out, meta.shards[0])) == stamp
  # The training pipeline reads them: normalised to zero mean, unit std per channel over the split.
  config = load_config("gaussian", "test")
  config.num_segments = 3
  config.data.update(kind="latents", dir=out, audio_shape=meta.audio_shape, video_shape=meta.video_shape,
                     batch_size=8)
  batch = next(iter(streams.latent_dataset(config)))
  assert batch["video"].shape == (8, 3, 8, 8, 16) and batch["audio"].shape == (8, 75, 8)
  np.testing.assert_allclose(batch["video"].mean(axis=(0, 1, 2, 3)), 0.0, atol=1e-4)
  np.testing.assert_allclose(batch["video"].std(axis=(0, 1, 2, 3)), 1.0, atol=1e-3)
  # ... and the latents are the encoder's output for those clips.
  source, _ = datasets.data_source("synthetic_av/tiny", "train", str(root / "tfds"))
  first = latents.read_clips(out, meta, 1)[0]
  clip = next(source[i] for i in range(8) if source[i]["clip_id"].decode() == first["clip_id"])
  audio, video = pair.encode(clip["audio"][None], clip["video"][None])
  np.testing.assert_allclose(first["video"], video[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(first["audio"], audio[0], rtol=1e-5, atol=1e-5)


def test_media_to_latents_to_media_writes_a_playable_mp4_of_the_clip_durations(trained):
  root, runs = trained
  pair = codec.Codec(codec.load(runs["tokenizer_video"]), codec.load(runs["tokenizer_audio"]))
  source, spec = datasets.data_source("synthetic_av/tiny", "validation", str(root / "tfds"))
  given = str(root / "given.mp4")                            # a media file: one clip, audio from its first frame
  mediafile.write_mp4(given, source[0]["video"], spec.frame_rate, source[0]["audio"][spec.lead_samples:],
                      spec.sample_rate)
  (_, frames, audio), = clips.cut_clips(mediafile.decode(given, spec.sample_rate), spec)
  audio, frames = pair.decode(*pair.encode(audio[None], frames[None]))
  paths = clips.write_clip(str(root / "roundtrip"), frames[0], audio[0], spec)
  got = mediafile.stream_durations(paths["mp4"])
  assert got["frames"] == spec.num_frames and got["video"] == pytest.approx(spec.video_seconds)
  assert got["audio"] == pytest.approx(spec.video_seconds, abs=0.15)        # AAC pads to its frame size
  for key in ("frames", "spectrogram"):
    assert os.path.getsize(paths[key]) > 0
