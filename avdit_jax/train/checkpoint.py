"""Checkpoints with orbax: train state + input position + config, atomic, resumable, preemption-safe.

Layout: WORKDIR/checkpoints/<step>/{state, data, config}. Orbax writes each step to a temporary
directory and renames it when complete, so a half-written step is never listed. A listed step that
fails to restore (e.g. truncated files) is skipped for the one before it, with a warning.
"""

from __future__ import annotations

import json
import os
import signal

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

# Config sections that must match for a checkpoint to be restored into a model.
COMPATIBLE_SECTIONS = ("model", "num_segments")


def _normalized(value):
  return json.loads(json.dumps(value))   # tuples -> lists, so saved and live configs compare equal


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  c = config.checkpoint
  options = ocp.CheckpointManagerOptions(
      max_to_keep=c.max_to_keep, save_interval_steps=c.every_steps,
      enable_async_checkpointing=c.async_save, create=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_state: dict, config, *, force: bool = False) -> bool:
  """Saves when the interval says so (or `force`); returns whether a save started."""
  return manager.save(step, force=force, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(data_state),
      config=ocp.args.JsonSave(_normalized(config.to_dict()))))


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved with the newest checkpoint in workdir (what a run was trained with)."""
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory) or not any(d.isdigit() for d in os.listdir(directory)):
    raise FileNotFoundError(f"{workdir}: no checkpoints in {directory}; train there first.")
  manager = ocp.CheckpointManager(directory)
  try:
    step = manager.latest_step()
    return ml_collections.ConfigDict(manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"])
  finally:
    manager.close()


def check_compatible(saved_config: dict, config: ml_collections.ConfigDict, where: str) -> None:
  live = _normalized(config.to_dict())
  for key in COMPATIBLE_SECTIONS:
    if saved_config.get(key) != live.get(key):
      raise ValueError(f"checkpoint {where} was written with config.{key} = {saved_config.get(key)}, but the "
                       f"config asks for {live.get(key)}; use a fresh --workdir or the checkpoint's config.")


def _set_aside(manager: ocp.CheckpointManager, step: int, why: str) -> None:
  """Moves an unreadable step to '<step>.corrupt' (kept for inspection, no longer listed)."""
  where = os.path.join(str(manager.directory), str(step))
  logging.warning("skipping checkpoint %s: %s; moved to %s.corrupt", where, why, where)
  if jax.process_index() == 0:
    os.replace(where, f"{where}.corrupt")
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  manager.reload()


def restore_latest(manager: ocp.CheckpointManager, abstract_state, config):
  """(state, data_state, step) from the newest checkpoint that restores, or None when there is none.

  `abstract_state` carries the target shardings (jax.ShapeDtypeStruct leaves), so a checkpoint written
  on one mesh restores onto another. Steps that fail to restore are set aside with a warning.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    where = os.path.join(str(manager.directory), str(step))
    try:
      saved_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, loudly
      _set_aside(manager, step, f"its config cannot be read ({type(e).__name__}: {e})")
      continue
    check_compatible(saved_config, config, where)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
      _set_aside(manager, step, f"it does not restore ({type(e).__name__}: {e})")
      continue
    logging.info("restored checkpoint %s", where)
    return restored["state"], restored["data"], step
  return None


class PreemptionFlag:
  """Set by SIGTERM; every process agrees on it at the same step (a collective when multi-process)."""

  def __init__(self):
    self._raised = False
    self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    logging.warning("SIGTERM: saving a checkpoint at the next step, then exiting")
    self._raised = True

  def reached(self) -> bool:
    if jax.process_count() == 1:
      return self._raised
    from jax.experimental import multihost_utils
    return bool(np.asarray(multihost_utils.process_allgather(np.asarray(self._raised))).any())

  def close(self):
    signal.signal(signal.SIGTERM, self._previous)
