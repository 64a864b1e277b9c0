"""A tokenizer's reconstruction on held-out clips, next to each clip's mean as the trivial baseline.

Video: PSNR (dB, higher is better). Audio: log-spectral distance (dB, lower is better) at ~32 ms windows.
The evaluator of tokenizer runs (config.evals.reconstruction); it writes WORKDIR/report.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from avdit_jax import paths
from avdit_jax.data import datasets
from avdit_jax.inference import codec
from avdit_jax.media import images
from avdit_jax.models.tokenizers import audio as audio_tok
from avdit_jax.models.tokenizers import spectral
from avdit_jax.models.tokenizers import video as video_tok
from avdit_jax.train import trainees, trainer


def reconstruction_report(tok: codec.Tokenizer, split: str, num_clips: int) -> dict:
  """{'trainee', 'step', 'split', 'clips', 'metric', 'model', 'clip_mean_baseline'} on `split`."""
  c = tok.config
  source, spec = datasets.data_source(c.data.dataset, split, c.data.tfds_dir or None)
  count = min(num_clips, len(source))
  key = "video" if c.trainee == "video_tokenizer" else "audio"
  if key == "video":
    load = lambda row: images.frames_to_signed(row["video"])
    score = lambda y, x: video_tok.psnr(jnp.asarray(y), jnp.asarray(x))
  else:
    n_fft = audio_tok.fft_sizes(spec.sample_rate)[1]
    load = lambda row: np.asarray(row["audio"], np.float32)
    score = lambda y, x: spectral.log_spectral_distance(jnp.asarray(y), jnp.asarray(x), n_fft)
  fn = jax.jit(lambda p, x: tok.module.apply({"params": p}, x)[0])
  model_scores, base_scores = [], []
  for start in range(0, count, 8):
    x = np.stack([load(source[i]) for i in range(start, min(start + 8, count))])
    model_scores.append(np.asarray(score(fn(tok.params, jnp.asarray(x)), x)))
    base_scores.append(np.asarray(score(clip_mean_baseline(key, x), x)))
  metric = "psnr_db" if key == "video" else "log_spectral_distance_db"
  return {"trainee": c.trainee, "step": tok.step, "split": split, "clips": count, "metric": metric,
          "model": float(np.mean(np.concatenate(model_scores))),
          "clip_mean_baseline": float(np.mean(np.concatenate(base_scores)))}


def clip_mean_baseline(key: str, x: np.ndarray) -> np.ndarray:
  """The trivial reconstruction a tokenizer must beat: each clip's mean (per pixel over time for video,
  a constant for audio)."""
  if key == "video":
    return np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)
  return np.broadcast_to(x.mean(axis=-1, keepdims=True), x.shape)


def report_markdown(r: dict) -> str:
  better = "higher" if r["metric"] == "psnr_db" else "lower"
  return (f"# {r['trainee']}: reconstruction on {r['clips']} {r['split']} clips (step {r['step']})\n\n"
          f"| {r['metric']} ({better} is better) | value |\n|---|---|\n"
          f"| tokenizer | {r['model']:.2f} |\n| clip-mean baseline | {r['clip_mean_baseline']:.2f} |\n")


class Reconstruction:
  """config.evals.reconstruction: every_steps, split, num_clips; the EMA params, as the codec loads them."""

  def __init__(self, config, workdir: str, name: str, *, every_steps: int = 0, split: str = "validation",
               num_clips: int = 32):
    self.config, self.workdir, self.name = config, workdir, name
    self.every_steps, self.split, self.num_clips = every_steps, split, num_clips
    video = config.trainee == "video_tokenizer"
    self.module = (trainees.video_tokenizer_model if video else trainees.audio_tokenizer_model)(config)

  def __call__(self, state, step: int) -> dict:
    tok = codec.Tokenizer(self.config, self.module, trainer.sampling_params(self.config, state, True), step)
    r = reconstruction_report(tok, self.split, self.num_clips)
    if self.workdir and jax.process_index() == 0:
      (paths.path(self.workdir) / "report.md").write_text(report_markdown(r))
    return {r["metric"]: r["model"], f"clip_mean_baseline_{r['metric']}": r["clip_mean_baseline"]}
