"""Every task of a trained AVDiT on held-out synthetic clips, scored against their ground truth.

For each task the given portions come from a real clip; the model fills the rest; the latents are
decoded to media and read by the probes (avdit_jax/evals/probes.py). Scores (all lower is better):
  a2v_sync_ms    bounces seen in generated video vs the bounces of the given sound (where audio is given)
  v2a_sync_ms    onsets heard in generated audio vs the bounces of the given video (where video is given)
  av_sync_ms     generated video bounces vs generated audio onsets (portions where both are generated)
  colour_drift   Jaccard distance between the clip's colours and those in the generated frames
  pitch_drift    share of the pitches heard in the generated audio that no ball of the clip has
  pitch_colour   Jaccard distance between pitches heard and colours seen (joint generation)
  av_align       AV-Align of the whole sample (metrics.av_align; the one score where higher is better)
Above the tasks, the held-out loss: the training objective on the clips' latents, the same draws of t and noise
for every model (held_out_loss). It needs no decoding, so it tells a trained model from an untrained one even
where the tokenizers' round trip leaves the probes nothing to see (the test suite's tiny tokenizers).
Each score sits next to baselines run through the same probes: an untrained AVDiT through the same
sampler, and real clips in a shuffled pairing (clip i's given portions with clip i+1's media: real
content with no relation to the condition). 'tokenizer' is the real clip decoded from its latents,
the best any sample can do through this tokenizer pair.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
from absl import logging

from avdit_jax import factory, paths
from avdit_jax.core import monl
from avdit_jax.data import clips, datasets
from avdit_jax.evals import features, metrics, probes
from avdit_jax.inference import codec
from avdit_jax.inference import frontend
from avdit_jax.train import sharding, trainees, trainer

SCORES = ("a2v_sync_ms", "v2a_sync_ms", "av_sync_ms", "colour_drift", "pitch_drift", "pitch_colour", "av_align",
          "fvd", "fad")
SYSTEMS = ("model", "untrained", "shuffled", "tokenizer")


def truth_events(row: dict) -> list[tuple[float, int]]:
  return [(float(t), int(row["colour_ids"][o])) for t, o in zip(row["collision_times"], row["collision_objects"])]


def segment_windows(spec: clips.ClipSpec, segments: monl.FrameSegments) -> list[tuple[float, float]]:
  """The seconds each segment covers (from the video latent frames; the audio's cover the same):
  latent k spans [((k-1)r + 1) / fps, (kr + 1) / fps), latent 0 included (its r - 1 frames before the
  first are the audio lead)."""
  r, fps = spec.temporal_ratio, spec.frame_rate
  out = []
  for s in range(segments.num_segments):
    ks = np.flatnonzero(segments.video == s)
    out.append((((ks.min() - 1) * r + 1) / fps, (ks.max() * r + 1) / fps))
  return out


def _in(events, windows):
  return [e for e in events if any(lo <= e[0] < hi for lo, hi in windows)]


def _heard_as(sounds: dict | None):
  """A palette pitch index -> the colour that sounds at it in the data set (an index no colour has when none does)."""
  return (lambda k: k) if sounds is None else (lambda k: sounds.get(k, -1 - k))


def score_sample(mask: np.ndarray, frames: np.ndarray, audio: np.ndarray, row: dict, spec: clips.ClipSpec,
                 windows: list, radius_px: float, sounds: dict | None = None) -> dict:
  """The scores of one sample (uint8 frames, waveform) of a task given by mask [M, N] on clip `row`.

  sounds: {PITCHES index: colour} of the data set's scene (sound_colours); None: colour i sounds at pitch i."""
  fps = spec.frame_rate
  visible = (0.5 / fps, (spec.num_frames - 1.5) / fps)     # a bounce needs a frame on either side
  clip_v = lambda w: [(max(lo, visible[0]), min(hi, visible[1])) for lo, hi in w]
  given_a, given_v = mask[monl.AUDIO], mask[monl.VIDEO]
  truth = truth_events(row)
  out = {}
  a2v = [windows[s] for s in range(len(windows)) if given_a[s] and not given_v[s]]
  v2a = [windows[s] for s in range(len(windows)) if given_v[s] and not given_a[s]]
  both = [windows[s] for s in range(len(windows)) if not given_a[s] and not given_v[s]]
  bounces = probes.video_bounces(frames, fps, radius_px)
  colour_of = _heard_as(sounds)
  onsets = [(t, colour_of(k)) for t, k in probes.audio_onsets(audio, spec)]
  if a2v:
    w = clip_v(a2v)
    out["a2v_sync_ms"] = probes.event_distance_ms(_in(truth, w), _in(bounces, w))
  if v2a:
    w = clip_v(v2a)                                         # the given video shows bounces only there
    out["v2a_sync_ms"] = probes.event_distance_ms(_in(truth, w), _in(onsets, w))
  if both:
    w = clip_v(both)
    out["av_sync_ms"] = probes.event_distance_ms(_in(bounces, w), _in(onsets, w))
  colours = set(int(c) for c in row["colour_ids"])
  gen_frames = [f for f in range(spec.num_frames) if any(lo <= f / fps < hi for lo, hi in
                                                         [windows[s] for s in np.flatnonzero(~given_v)])]
  gen_samples = np.zeros(len(audio), bool)
  t = np.arange(len(audio)) / spec.sample_rate - spec.audio_lead
  for s in np.flatnonzero(~given_a):
    gen_samples |= (t >= windows[s][0]) & (t < windows[s][1])
  seen = probes.colours_present(frames[gen_frames]) if gen_frames else set()
  heard = {colour_of(k) for k in probes.pitches_present(audio[gen_samples], spec)} if gen_samples.any() else set()
  if mask.any():                                            # something is given: identity must carry over
    if gen_frames:
      out["colour_drift"] = probes.jaccard_distance(colours, seen)
    if gen_samples.any():
      out["pitch_drift"] = len(heard - colours) / max(len(heard), 1)
  else:
    out["pitch_colour"] = probes.jaccard_distance(heard, seen)
  out["av_align"] = metrics.av_align(frames, audio[spec.lead_samples:], fps, spec.sample_rate)
  return out


LOSS_DRAWS = 8      # draws of (strategy, t, noise) over the held-out clips that the held-out loss averages


def held_out_loss(loss, runs: dict, audio: np.ndarray, video: np.ndarray, seed: int) -> dict:
  """{run name: loss (a jitted trainees.Trainee.loss) on latents [B, ...] (data units)}, averaged over LOSS_DRAWS
  draws that are the same for every run, so the runs' losses compare pair by pair."""
  keys = list(jax.random.split(jax.random.PRNGKey(seed), LOSS_DRAWS))
  out = {}
  for name, run in runs.items():
    batch = dict(zip(("audio", "video"), (np.asarray(x, np.float32) for x in run.to_model(audio, video))))
    batch, keys_here = sharding.replicate_like(run.params, (batch, keys))
    out[name] = float(np.mean([float(sharding.to_host(loss(run.params, batch, k)[0])) for k in keys_here]))
  return out


def load_clips(dataset: str, split: str, tfds_dir: str, count: int) -> tuple[list[dict], clips.ClipSpec]:
  source, spec = datasets.data_source(dataset, split, tfds_dir)
  if "collision_times" not in source[0]:
    raise ValueError(f"{dataset}: the evaluation needs ground truth (synthetic_av); {split} has none.")
  return [source[i] for i in range(min(count, len(source)))], spec


def evaluate(config, runs: dict, pair: codec.Codec, tasks, section, *, dataset: str, tfds_dir: str,
             media_dir: str | None = None, systems: tuple = SYSTEMS, loss=None) -> dict:
  """{task: {system: {score: mean over clips}}} plus '_clips' and '_step', for the `systems` asked (a subset of
  SYSTEMS: each system's scores do not depend on which others run, so a caller can reuse the baselines).

  config: the AVDiT run's. runs: the sampled systems asked ('model', 'untrained') as frontend.Runs.
  section: split, num_clips, seed, media_per_task, fvd, fad_weights (config.evals.clip_tasks).
  media_dir: where the model's samples go as media. loss: the jitted training loss of config's trainee (made
  here when None; a caller that evaluates often passes its own, so it compiles once)."""
  unknown = set(systems) - set(SYSTEMS)
  if unknown or not systems:
    raise ValueError(f"evaluate: systems {sorted(unknown) or '()'}; expected a non-empty subset of {SYSTEMS}.")
  missing = [name for name in ("model", "untrained") if name in systems and name not in runs]
  if missing:
    raise ValueError(f"evaluate: systems {missing} are asked but no run samples them.")
  if media_dir and "model" not in systems:
    raise ValueError("evaluate: media_dir writes the model's samples; add 'model' to systems.")
  rows, spec = load_clips(dataset, section["split"], tfds_dir, section["num_clips"])
  if spec != pair.spec:
    raise ValueError(f"{dataset}/{section['split']}: clips {spec} are not the tokenizers' grid {pair.spec}.")
  windows = segment_windows(spec, factory.frame_segments(config))
  radius_px = _radius_px(dataset, tfds_dir, spec)
  sounds = sound_colours(dataset, tfds_dir)
  frames = np.stack([r["video"] for r in rows])
  audio = np.stack([r["audio"] for r in rows])
  real_a, real_v = pair.encode(audio, frames)
  # The round trip through the tokenizers: a system of its own, and the media the shuffled pairing pairs.
  real = _as_media(pair.decode(real_a, real_v)) if {"tokenizer", "shuffled"} & set(systems) else None
  shift = lambda x: np.roll(x, 1, axis=0)                   # clip i gets clip i-1's media
  results = {"_clips": len(rows), "_step": runs["model"].step if "model" in runs else 0,
             "_model": "AV-DiT" if factory.model_kind(config.model) == "av_dit" else "AVDiT",
             "_loss": held_out_loss(loss or jax.jit(trainees.for_config(config).loss),
                                    {n: r for n, r in runs.items() if n in systems}, real_a, real_v, section["seed"])}
  # Set-level Frechet distances to the real clips (features.py). The shuffled pairing is the real set itself,
  # so it has none.
  extractors = {}
  if section.get("fvd", False):
    extractors["fvd"] = (features.I3DFeatures(), 0)
  if section.get("fad_weights", ""):
    extractors["fad"] = (features.VGGishFeatures(section["fad_weights"], spec.sample_rate), 1)
  real_features = {score: fn((frames, audio)[part]) for score, (fn, part) in extractors.items()}
  for i, task in enumerate(tasks):
    mask = factory.task(task, config.num_segments)
    media_of = {} if real is None else {"tokenizer": real, "shuffled": tuple(shift(x) for x in real)}
    for name in ("model", "untrained"):
      if name in systems:
        gen_a, gen_v = runs[name].sample(mask, real_a, real_v, jax.random.PRNGKey(section["seed"] + i))
        media_of[name] = _as_media(pair.decode(gen_a, gen_v))
    results[task] = {}
    for name in systems:
      f, a = media_of[name]
      per_clip = [score_sample(mask, f[k], a[k], rows[k], spec, windows, radius_px, sounds)
                  for k in range(len(rows))]
      results[task][name] = {s: float(np.mean([p[s] for p in per_clip])) for s in SCORES if s in per_clip[0]}
      for score, (fn, part) in extractors.items():
        results[task][name][score] = (float("nan") if name == "shuffled" else
                                      metrics.frechet_distance(real_features[score], fn(media_of[name][part])))
    logging.info("task %s: %s", task, results[task].get("model", results[task]))
    if media_dir and jax.process_index() == 0:
      _write_task_media(paths.join(media_dir, task.replace(":", "_")), media_of["model"], (frames, audio),
                        mask, spec, section["media_per_task"])
  return results


def _as_media(decoded):
  """The codec's (waveforms, frames) as the probes' (frames, waveforms)."""
  waveforms, frames = decoded
  return frames, waveforms


def _radius_px(dataset: str, tfds_dir: str, spec: clips.ClipSpec) -> float:
  config = datasets.builder(dataset, tfds_dir).builder_config
  return float(config.scene.radius * spec.height)


def sound_colours(dataset: str, tfds_dir: str) -> dict[int, int]:
  """{PITCHES index: the colour that sounds at it} of a synthetic_av data set's scene (Scene.sounds)."""
  scene = datasets.builder(dataset, tfds_dir).builder_config.scene
  return dict(zip(scene.sound_ids, scene.colours))


def _write_task_media(directory: str, generated, given, mask: np.ndarray, spec: clips.ClipSpec, count: int) -> None:
  for k in range(min(count, len(generated[0]))):
    clips.write_clip(paths.join(directory, f"{k}_sample"), generated[0][k], generated[1][k], spec)
    if mask.any():
      clips.write_clip(paths.join(directory, f"{k}_input"), given[0][k], given[1][k], spec)
    # The real clip (the given portions' source; for joint, a held-out clip) above the sample: the README's figures.
    clips.write_comparison(paths.join(directory, f"{k}_compare.png"),
                           [(given[0][k], given[1][k]), (generated[0][k], generated[1][k])], spec)


def markdown(results: dict, *, elapsed_s: float | None = None) -> str:
  model = results.get("_model", "AVDiT")
  lines = [f"# Quickstart report: every task on {results['_clips']} held-out synthetic clips "
           f"({model} step {results['_step']})", "",
           "Lower is better except for av_align. sync: ms between matched bounce events (a missing or extra event "
           f"costs {probes.EVENT_CAP_S * 1000:.0f} ms); drift and pitch_colour: set distances in [0, 1].",
           f"'untrained': an untrained {model} through the same sampler; 'shuffled': real clips paired with "
           "another clip's given portions; 'tokenizer': the real clip through the tokenizers (the floor).", ""]
  if results.get("_loss"):
    lines += ["Held-out loss (the training objective on these clips' latents, the same draws for each): " +
              ", ".join(f"{name} {value:.4g}" for name, value in sorted(results["_loss"].items())) + ".", ""]
  for task, by_system in results.items():
    if task.startswith("_"):
      continue
    names = [s for s in SCORES if s in by_system["model"]]
    lines += [f"## {task}", "", "| score | " + " | ".join(SYSTEMS) + " |", "|---" * (len(SYSTEMS) + 1) + "|"]
    for s in names:
      lines.append(f"| {s} | " + " | ".join(f"{by_system[n][s]:.3g}" for n in SYSTEMS) + " |")
    lines.append("")
  if elapsed_s is not None:
    lines.append(f"The whole job took {elapsed_s / 60:.1f} minutes.")
  return "\n".join(lines) + "\n"


class ClipTasks:
  """config.evals.clip_tasks: every task on held-out synthetic clips, decoded and scored by the probes, next
  to the baselines (scored once, at the first evaluation). It needs the run's tokenizer pair, which the main
  job (avdit_jax/pipeline.py) passes as context: pair, dataset, tfds_dir, report_path, media_dir."""

  def __init__(self, config, workdir: str, name: str, *, tasks, pair: codec.Codec | None = None, dataset: str = "",
               tfds_dir: str = "", report_path: str = "", media_dir: str = "", every_steps: int = 0,
               split: str = "validation", num_clips: int = 32, media_per_task: int = 2, seed: int = 0,
               fvd: bool = False, fad_weights: str = ""):
    if pair is None:
      raise ValueError(f"config.evals.{name}: the clip-task evaluation decodes with the tokenizers, so it runs in "
                       "the main job (configs/quickstart.py), which passes them; remove the section elsewhere.")
    for spec in tasks:
      factory.task(spec, config.num_segments)                      # a bad task fails before training
    self.config, self.name, self.every_steps = config, name, every_steps
    self.tasks, self.pair, self.where = tuple(tasks), pair, dict(dataset=dataset, tfds_dir=tfds_dir)
    self.report_path, self.media_dir = report_path, media_dir or None
    self.section = dict(split=split, num_clips=num_clips, media_per_task=media_per_task, seed=seed, fvd=fvd,
                        fad_weights=fad_weights)
    self.trainee = trainees.for_config(config)
    self.loss = jax.jit(self.trainee.loss)                         # the held-out loss's, compiled once
    self.normalizer = frontend.normalizer_for(config)
    self.baselines = self.last = self._shared = None

  def _run(self, params, step):
    """Runs that share compiled samplers (the params are their argument): nothing retraces between calls."""
    if self._shared is None:
      self._shared = frontend.Run.for_params(self.config, self.trainee.module, params, normalizer=self.normalizer)
    return self._shared.with_params(params, step=step)

  def __call__(self, state, step: int) -> dict:
    if self.baselines is None:
      untrained = self._run(nn.unbox(self.trainee.init(self.config.seed + 1)), 0)
      self.baselines = evaluate(self.config, {"untrained": untrained}, self.pair, self.tasks, self.section,
                                **self.where, systems=("untrained", "shuffled", "tokenizer"), loss=self.loss)
    params = trainer.sampling_params(self.config, state, frontend.use_ema(self.config))
    model = evaluate(self.config, {"model": self._run(params, step)}, self.pair, self.tasks, self.section,
                     **self.where, media_dir=self.media_dir, systems=("model",), loss=self.loss)
    self.last = {**model, **{t: {**self.baselines[t], **model[t]} for t in self.tasks},
                 "_loss": {**self.baselines["_loss"], **model["_loss"]}}
    if self.report_path and jax.process_index() == 0:
      paths.path(self.report_path).write_text(markdown(self.last))
    return {"held_out_loss": model["_loss"]["model"],
            **{f"{task}/{score}": v for task in self.tasks for score, v in model[task]["model"].items()}}

