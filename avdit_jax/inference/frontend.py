"""Sampling from a run's checkpoint: every task of config.eval.tasks on clips from the run's input stream.

Writes WORKDIR/samples/<task>.npz with the generated latents, the clean latents they were conditioned on
and the task mask. (Decoding to mp4 with audio belongs to the tokenizer and media modules.)
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from avdit_jax import factory
from avdit_jax.core import sampling
from avdit_jax.train import checkpoint, trainees, trainer


def load_params(config: ml_collections.ConfigDict, workdir: str, *, use_ema: bool, mesh=None):
  """(params on the host, model, step) of the newest checkpoint in workdir that restores; a clear error when
  there is none. `mesh` is where the state is restored before it is fetched (default: config.mesh)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not any(d.isdigit() for d in os.listdir(directory)):
    raise FileNotFoundError(f"--workdir {workdir}: no checkpoint in {directory}; train first (--mode=train).")
  setup = trainer.build(config, mesh)
  manager = checkpoint.make_manager(workdir, config)
  try:
    restored = checkpoint.restore_latest(manager, setup.abstract_state, config)
  finally:
    manager.close()
  if restored is None:
    raise FileNotFoundError(f"--workdir {workdir}: no checkpoint in {directory} restores.")
  state, _, step = restored
  logging.info("loaded the checkpoint of step %d from %s (%s params)", step, workdir, "EMA" if use_ema else "raw")
  return trainer.to_host(state.ema_params if use_ema else state.params), setup.model, step


def sample_tasks(config: ml_collections.ConfigDict, workdir: str, *, num_samples: int = 4, seed: int = 0) -> dict:
  """Samples each task of config.eval.tasks; returns {task: path of its npz}."""
  params, model, _ = load_params(config, workdir, use_ema=config.eval.use_ema)
  sampler = factory.sampler(config)
  run = sampling.make_sampler(lambda a, v, t: model.apply({"params": params}, a, v, t), sampler)
  clips = next(trainees.input_stream(config, sampler.segments))          # conditioning clips from the data
  audio, video = (jnp.asarray(clips[k][:num_samples]) for k in ("audio", "video"))
  out_dir = os.path.join(workdir, "samples")
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for i, spec in enumerate(config.eval.tasks):
    mask = factory.task(spec, config.num_segments)
    cond = sampling.make_condition(sampler, mask, audio, video)
    gen_audio, gen_video = run(cond, jax.random.PRNGKey(seed + i))
    paths[spec] = os.path.join(out_dir, spec.replace(":", "_") + ".npz")
    np.savez(paths[spec], audio=np.asarray(gen_audio), video=np.asarray(gen_video), given_audio=np.asarray(audio),
             given_video=np.asarray(video), mask=mask)
    logging.info("task %s: %d samples -> %s", spec, len(gen_audio), paths[spec])
  return paths
