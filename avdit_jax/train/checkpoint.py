"""Checkpoints with orbax: train state + input position + config, atomic, resumable, preemption-safe.

Layout: WORKDIR/checkpoints/<step>/{state, data, config}. Orbax writes each step to a temporary
directory and renames it when complete, so a half-written step is never listed. A listed step that
fails to restore (e.g. truncated files) is skipped for the one before it, with a warning.
"""

from __future__ import annotations

import json
import signal

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint._src.metadata import array_metadata_store   # the store orbax's default handler has
from orbax.checkpoint._src.serialization import type_handler_registry   # add() can replace without a warning

from avdit_jax import paths
from avdit_jax.pretrained import files

# Config sections that must match for a checkpoint to be restored into a model.
COMPATIBLE_SECTIONS = ("model", "num_segments", "diffusion")   # diffusion: a DDPM net is no flow net


# Orbax saves a replicated array "replica-parallel": one slice per replica, each an eager jit(slice) compiled for
# its (shape, device) on the process's first save, ~0.4 s per distinct shape on 8 CPU devices (100 small shapes:
# 42.5 s blocking against 0.04 s without; WORKSPACE.md "Ninth session"). Below 1 MiB per slice one replica
# writes the whole array instead; larger arrays (a pod's big replicated params) stay replica-parallel.
# Replaced quietly: orbax's override warning would be the first stderr line of every command, config errors too.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20
type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(jax.Array, ocp.type_handlers.ArrayHandler(
    min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
    array_metadata_store=array_metadata_store.Store()), override=True, ignore_warnings=True)


def _normalized(value):
  return json.loads(json.dumps(value))   # tuples -> lists, so saved and live configs compare equal


def directory(workdir: str) -> str:
  return paths.absolute(paths.join(workdir, "checkpoints"))


def require_checkpoints(workdir: str) -> None:
  """A clear error when workdir holds no checkpoint step (before anything is built or restored)."""
  where = paths.path(directory(workdir))
  if not where.is_dir() or not any(d.name.isdigit() for d in where.iterdir()):
    raise FileNotFoundError(f"--workdir {workdir}: no checkpoints in {where}; train there first.")


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  c = config.checkpoint
  # No save interval here: the trainer decides when to save (every_steps, the last step, SIGTERM).
  options = ocp.CheckpointManagerOptions(max_to_keep=c.max_to_keep, enable_async_checkpointing=c.async_save,
                                         create=True)
  return ocp.CheckpointManager(directory(workdir), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, data_state: dict, config) -> bool:
  """Saves this step (the trainer decides which steps); returns whether a save started."""
  return manager.save(step, force=True, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=ocp.args.JsonSave(data_state),
      config=ocp.args.JsonSave(_normalized(config.to_dict()))))


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved with the newest checkpoint in workdir (what a run was trained with)."""
  require_checkpoints(workdir)
  manager = ocp.CheckpointManager(directory(workdir))
  try:
    step = manager.latest_step()
    return ml_collections.ConfigDict(manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"])
  finally:
    manager.close()


def check_compatible(saved_config: dict, config: ml_collections.ConfigDict, where: str) -> None:
  """The model fields that both configs have must agree (a field that this code no longer has cannot change
  the model it builds, and one that the checkpoint's code did not have yet holds that code's behaviour)."""
  live = _normalized(config.to_dict())
  for key in COMPATIBLE_SECTIONS:
    saved, wanted = saved_config.get(key), live.get(key)
    if isinstance(saved, dict) and isinstance(wanted, dict):
      saved, wanted = ({k: d[k] for k in saved.keys() & wanted.keys()} for d in (saved, wanted))
    if saved != wanted:
      raise ValueError(f"checkpoint {where} was written with config.{key} = {saved_config.get(key)}, but the "
                       f"config asks for {live.get(key)}; use a fresh --workdir or the checkpoint's config.")


def check_param_shapes(manager: ocp.CheckpointManager, step: int, abstract_params, where: str) -> None:
  """The checkpoint's params must have the shapes the config builds (data shapes and model fields both set
  them): otherwise an error naming the first arrays that differ, rather than setting the step aside as corrupt.
  A step whose metadata does not read is left to the restore (and set aside if that fails too)."""
  try:
    saved = ocp.StandardCheckpointHandler().metadata(manager.directory / str(step) / "state").tree["params"]
    saved = {jax.tree_util.keystr(p): tuple(m.shape) for p, m in jax.tree_util.tree_flatten_with_path(saved)[0]}
  except Exception:  # noqa: BLE001 - unreadable metadata: the restore decides
    return
  built = {jax.tree_util.keystr(p): tuple(a.shape) for p, a in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
  _, wrong, missing = files.shape_differences(saved, built)
  differ = [f"{k} {saved.get(k, 'missing')} saved, {built[k]} built" for k in wrong + missing]
  if differ:
    raise ValueError(f"checkpoint {where} holds params of other shapes than this config builds ({'; '.join(differ[:3])}"
                     f"{'; ...' if len(differ) > 3 else ''}): config.data's shapes or config.model differ from the "
                     "run's; use a fresh --workdir or the checkpoint's config.")


def _set_aside(manager: ocp.CheckpointManager, step: int, why: str) -> None:
  """Moves an unreadable step to '<step>.corrupt' (kept for inspection, no longer listed)."""
  where = manager.directory / str(step)
  logging.warning("skipping checkpoint %s: %s; moved to %s.corrupt", where, why, where)
  if jax.process_index() == 0:
    where.rename(manager.directory / f"{step}.corrupt")
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
    where = paths.join(manager.directory, str(step))
    try:
      saved_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, loudly
      _set_aside(manager, step, f"its config cannot be read ({type(e).__name__}: {e})")
      continue
    check_compatible(saved_config, config, where)
    check_param_shapes(manager, step, abstract_state.params, where)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
      _set_aside(manager, step, f"it does not restore ({type(e).__name__}: {e})")
      continue
    logging.info("restored checkpoint %s", where)
    return restored["state"], restored["data"], step
  return None


class Preemption:
  """Whether to checkpoint and stop at this step because the job is being preempted (SIGTERM).

  Multi-process: JAX's preemption sync point (jax.distributed starts its service, which takes SIGTERM on any
  process): every process asks at every step, a local check until a notice arrives, and all of them get True
  at the same step; no collective per step. One process: a SIGTERM handler's flag. Multi-process with the
  service off (JAX_ENABLE_PREEMPTION_SERVICE=false): no check, and a warning that SIGTERM will not checkpoint."""

  def __init__(self):
    from jax._src import distributed
    multiprocess = distributed.global_state.client is not None
    self._sync = multiprocess and distributed.global_state.preemption_sync_manager is not None
    self._raised = False
    self._previous = None if multiprocess else signal.signal(signal.SIGTERM, self._handler)
    if multiprocess and not self._sync:
      logging.warning("JAX's preemption service is off (jax_enable_preemption_service): SIGTERM will stop this "
                      "run without a checkpoint")

  def _handler(self, signum, frame):
    logging.warning("SIGTERM: saving a checkpoint at the next step, then exiting")
    self._raised = True

  def reached(self, step: int) -> bool:
    if self._sync:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step)
    return self._raised                # stays False in a multi-process run without the service

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
