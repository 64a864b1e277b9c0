"""Evaluators by name, from config.evals: what train_and_evaluate runs during training and after it.

  config.evals = dict(gaussian_toy=dict(every_steps=0, tasks=(...), ...))

Each entry's key names an evaluator (or its `type` field does, so one kind can run twice with other
settings); its other fields are that evaluator's arguments, and `every_steps` (0: only after the last step)
says how often it runs. Context that a config cannot hold (e.g. the main job's tokenizer pair) comes from
the caller.
"""

from __future__ import annotations

import inspect

import ml_collections

from avdit_jax.evals import clip_tasks, gaussian_toy, reconstruction

EVALUATORS = {
    "gaussian_toy": gaussian_toy.GaussianToy,          # AVDiT on the Gaussian toy: moments vs exact conditionals
    "clip_tasks": clip_tasks.ClipTasks,                # AVDiT on synthetic clips: probes on decoded media
    "reconstruction": reconstruction.Reconstruction,   # tokenizers: reconstruction vs the clip-mean baseline
}


def for_config(config: ml_collections.ConfigDict, workdir: str, **context) -> list:
  """The evaluators of config.evals, built (and their settings checked) before anything compiles."""
  out = []
  for name, section in (config.get("evals") or {}).items():
    fields = dict(section)
    kind = fields.pop("type", name)
    if kind not in EVALUATORS:
      raise ValueError(f"config.evals.{name}: unknown evaluator {kind!r}; expected one of {sorted(EVALUATORS)} "
                       "(as the key or its `type` field).")
    cls = EVALUATORS[kind]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "config", "workdir", "name"}
    unknown = sorted(set(fields) - accepted)
    if unknown:
      raise ValueError(f"config.evals.{name}: unknown fields {unknown}; {kind} takes "
                       f"{sorted(accepted - set(context))}.")
    every = fields.get("every_steps", 0)
    if not isinstance(every, int) or every < 0:
      raise ValueError(f"config.evals.{name}.every_steps must be a whole number >= 0 (0: after the last step only), "
                       f"got {every!r}.")
    out.append(cls(config, workdir, name, **fields, **{k: v for k, v in context.items() if k in accepted}))
  return out
