"""Training: the train state, a pure train step, and the loop `train_and_evaluate(config, workdir, evaluators)`.

One trainer for everything config.trainee names (avdit_jax/train/trainees.py): the AVDiT and the tokenizers.

The step is a pure function of (state, batch); its RNG is folded from (seed, step), so a run is a
function of its config alone. Metrics are fetched one step late so the host never waits on the step
it has just dispatched. Evaluators (built from config.evals by avdit_jax/evals/evaluators.py) run during
training at their own intervals and after the last step; their scalars join metrics.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import traverse_util

from avdit_jax import paths
from avdit_jax.perf import speed
from avdit_jax.pretrained import files
from avdit_jax.train import checkpoint, sharding, trainable, trainees


def _tensorboardx():
  """tensorboardX, imported without torch: where torch is installed (the `parity` extra) tensorboardX imports it
  only to accept torch tensors (we log floats), which costs every training process ~2.5 CPU s at start."""
  if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
    sys.modules["torch"] = None            # `import torch` raises ImportError while tensorboardX loads
    try:
      import tensorboardX
    finally:
      del sys.modules["torch"]
  import tensorboardX
  return tensorboardX


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any


# ============================================================================= optimizer


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  c = config.optim
  if c.schedule == "cosine":
    decay_steps = max(config.train.num_steps, c.warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(0.0, c.lr, c.warmup_steps, decay_steps,
                                              end_value=c.lr * c.get("final_lr_fraction", 0.0))
  if c.schedule == "constant":
    return optax.join_schedules([optax.linear_schedule(0.0, c.lr, c.warmup_steps), optax.constant_schedule(c.lr)],
                                [c.warmup_steps])
  raise ValueError(f"optim.schedule: unknown {c.schedule!r}; expected 'cosine' or 'constant'.")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  c = config.optim
  return optax.chain(
      optax.clip_by_global_norm(c.grad_clip) if c.grad_clip > 0 else optax.identity(),
      optax.adamw(learning_rate_schedule(config), b1=c.b1, b2=c.b2, weight_decay=c.weight_decay))


# ============================================================================= state and step


def boxed_state(config, trainee: trainees.Trainee, tx: optax.GradientTransformation,
                selection: trainable.Selection = trainable.EVERYTHING) -> TrainState:
  """The initial state with params (and the optimizer's copies of them) boxed with logical axis names. EMA and
  optimizer state cover the trainable params only (train/trainable.py)."""
  params = selection.add(trainee.init(config.seed), jax.random.fold_in(jax.random.PRNGKey(config.seed), 1))
  train, _ = selection.split(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=train, opt_state=tx.init(train))


def init_state(config, trainee: trainees.Trainee, tx: optax.GradientTransformation,
               selection: trainable.Selection = trainable.EVERYTHING) -> TrainState:
  """The initial state, plain arrays; jit it (eager init compiles every initializer separately)."""
  return nn.unbox(boxed_state(config, trainee, tx, selection))


def with_model_params(state: TrainState, model_params, selection: trainable.Selection) -> TrainState:
  """A new run's state started from other weights (config.init_from): the model's params replaced, the EMA
  restarted from them, the optimizer state and any LoRA factors left as initialised."""
  params = model_params if selection.lora is None else {**model_params, trainable.LORA_KEY:
                                                        state.params[trainable.LORA_KEY]}
  return state.replace(params=params, ema_params=selection.split(params)[0])


def train_step(state: TrainState, batch: dict, *, trainee: trainees.Trainee, tx: optax.GradientTransformation,
               ema_decay: float, seed: int,
               selection: trainable.Selection = trainable.EVERYTHING) -> tuple[TrainState, dict]:
  """One optimizer step on the trainee's loss (for the AVDiT: the MoNL loss on a latent batch), over the
  trainable params only: frozen ones are neither differentiated nor written."""
  rng = jax.random.fold_in(jax.random.PRNGKey(seed), state.step)
  train, frozen = selection.split(state.params)
  loss_of = lambda p: trainee.loss(selection.model_params(selection.join(p, frozen)), batch, rng)
  (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(train)
  updates, opt_state = tx.update(grads, state.opt_state, train)
  train = optax.apply_updates(train, updates)
  ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, train)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "aux": aux}
  return TrainState(state.step + 1, selection.join(train, frozen), ema, opt_state), metrics


# ============================================================================= loop


# Wall-clock fields of a metrics row; every other field is a function of the config and the step.
TIMING_KEYS = ("steps_per_sec", "examples_per_sec", "tflops_per_device", "mfu")


def deterministic(row: dict) -> dict:
  """A metrics row without its wall-clock fields: what two runs of one config must agree on exactly."""
  return {k: v for k, v in row.items() if k not in TIMING_KEYS}


class MetricsWriter:
  """Logged steps to workdir/metrics.jsonl (one JSON object per step; floats via repr, so they read back
  exact) and to TensorBoard event files in workdir/tensorboard; workdir may be remote (avdit_jax/paths.py).

  On resume from step k, rows after k (written by the run that was interrupted) are dropped first, and so is
  a torn last line (a kill in the middle of a write).
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self._path = self._tb = None
    if not workdir:
      return
    self._path = paths.path(workdir) / "metrics.jsonl"
    if self._path.exists():
      self._path.write_text("".join(line for line in read_metrics_lines(self._path)
                                    if json.loads(line)["step"] <= resume_step))
    self._tb = _tensorboardx().SummaryWriter(paths.join(workdir, "tensorboard"), purge_step=resume_step + 1)

  def write(self, step: int, values: dict):
    if self._path:
      paths.append_text(self._path, json.dumps({"step": step, **values}) + "\n")
      for name, value in values.items():
        self._tb.add_scalar(name, value, step)

  def close(self):
    if self._path:
      self._tb.close()


def read_metrics_lines(path) -> list[str]:
  """The complete rows of a metrics.jsonl: a last line without its newline (torn by a kill) is dropped with a
  warning; a malformed row anywhere else is an error naming the file and line."""
  text = paths.path(path).read_text()
  lines = text.split("\n")
  if lines[-1]:
    logging.warning("%s: dropping a torn last line (%d characters without a newline)", path, len(lines[-1]))
  rows = [line + "\n" for line in lines[:-1] if line.strip()]
  for i, line in enumerate(rows):
    try:
      json.loads(line)["step"]
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{path}, line {i + 1}: not a metrics row ({e}).") from None
  return rows


def _host_metrics(trainee: trainees.Trainee, metrics: dict, lr: float) -> dict:
  m = sharding.to_host(metrics)
  return {"loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]), "lr": float(lr), **trainee.summarize(m["aux"])}


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything a run derives from its config and mesh, before any state exists."""
  mesh: jax.sharding.Mesh
  axis_rules: tuple
  trainee: trainees.Trainee
  model: nn.Module                # trainee.module
  selection: trainable.Selection  # what trains (config.train.trainable)
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  abstract_state: TrainState      # jax.ShapeDtypeStruct leaves carrying their shardings
  state_sharding: TrainState
  batch_sharding: dict
  init_fn: Any                    # () -> TrainState, jitted onto state_sharding
  step_fn: Any                    # (state, global batch) -> (state, metrics), jitted, state donated
  step_flops: float               # model FLOPs of one train step (trainee.flops_per_example x B)


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None) -> Setup:
  """Trainee, optimizer, shardings and the jitted init and step for config (on config.mesh)."""
  mesh = sharding.make_mesh(config) if mesh is None else mesh
  axis_rules = sharding.rules(config)
  sharding.check_divisible(config.data.batch_size, mesh, axis_rules)
  trainee = trainees.for_config(config)
  selection = trainable.for_config(config)
  tx = make_optimizer(config)
  boxed = jax.eval_shape(lambda: boxed_state(config, trainee, tx, selection))
  state_sharding = sharding.logical_shardings(boxed, mesh, axis_rules)
  sharding.check_param_divisible(nn.unbox(boxed), state_sharding, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.unbox(boxed),
                          state_sharding)
  batch_sharding = {k: sharding.batch_sharding(mesh, axis_rules, 1 + len(shape))
                    for k, shape in trainee.example_shapes.items()}

  def step_under_rules(state, batch):
    with nn.logical_axis_rules(axis_rules):
      return train_step(state, batch, trainee=trainee, tx=tx, ema_decay=config.optim.ema_decay, seed=config.seed,
                        selection=selection)

  return Setup(
      mesh=mesh, axis_rules=axis_rules, trainee=trainee, model=trainee.module, selection=selection, tx=tx,
      lr_fn=learning_rate_schedule(config), abstract_state=abstract, state_sharding=state_sharding,
      batch_sharding=batch_sharding,
      init_fn=jax.jit(lambda: init_state(config, trainee, tx, selection), out_shardings=state_sharding),
      step_fn=jax.jit(step_under_rules, in_shardings=(state_sharding, batch_sharding),
                      out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=0),
      step_flops=trainee.flops_per_example * config.data.batch_size)


def abstract_batch(config, setup: Setup) -> dict:
  """The global batch as jax.ShapeDtypeStruct with its sharding (for ahead-of-time compilation)."""
  b = config.data.batch_size
  return {k: jax.ShapeDtypeStruct((b, *shape), jnp.float32, sharding=setup.batch_sharding[k])
          for k, shape in setup.trainee.example_shapes.items()}


def restore_params(config: ml_collections.ConfigDict, workdir: str, *, use_ema: bool, mesh=None):
  """(params, module, step) of the newest checkpoint in workdir that restores, for sampling or evaluation.

  The params are restored onto `mesh` (default: config.mesh) with the training shardings and stay there
  (sharding.to_host fetches what a caller needs on the host). A clear error when there is no checkpoint."""
  checkpoint.require_checkpoints(workdir)
  setup = build(config, mesh)
  manager = checkpoint.make_manager(workdir, config)
  try:
    restored = checkpoint.restore_latest(manager, setup.abstract_state, config)
  finally:
    manager.close()
  if restored is None:
    raise FileNotFoundError(f"--workdir {workdir}: no checkpoint in {checkpoint.directory(workdir)} restores.")
  state, _, step = restored
  logging.info("loaded the checkpoint of step %d from %s (%s params)", step, workdir, "EMA" if use_ema else "raw")
  return setup.selection.sampling_params(state.params, state.ema_params, use_ema), setup.model, step


def sampling_params(config: ml_collections.ConfigDict, state: TrainState, use_ema: bool):
  """The model params that sampling uses from a live state: EMA or raw, frozen params joined, LoRA merged."""
  return trainable.for_config(config).sampling_params(state.params, state.ema_params, use_ema)


def pretrained_params(config: ml_collections.ConfigDict, state: TrainState):
  """The model params of a new run started from config.init_from: another run's workdir (its sampling params:
  EMA as its config says, LoRA merged) or a converted .safetensors file (avdit_jax/pretrained). Every weight
  there must be one of this model's with its shape (else an error naming both); the model's params that it
  lacks keep their initial values (logged)."""
  source = config.init_from
  if paths.path(source).is_dir():
    saved = checkpoint.saved_config(source)
    params, _, step = restore_params(saved, source, use_ema=bool(saved.get("sampling", {}).get("use_ema", True)))
    weights = traverse_util.flatten_dict(sharding.to_host(params))
    where = f"config.init_from {source} (step {step})"
  else:
    weights, where = files.read_params(source), f"config.init_from {source}"
  model = {k: v for k, v in state.params.items() if k != trainable.LORA_KEY}
  flat = traverse_util.flatten_dict(model)
  files.check_matches(weights, {k: v.shape for k, v in flat.items()}, where, partial=True)
  missing = sorted("/".join(k) for k in flat.keys() - weights.keys())
  if missing:
    logging.warning("%s lacks %d of the model's params; they keep their initial values: %s", where, len(missing),
                    missing)
  return traverse_util.unflatten_dict({k: jax.device_put(np.asarray(weights[k], v.dtype), v.sharding)
                                       if k in weights else v for k, v in flat.items()})


# Loop settings that must be whole numbers >= 1 (a 0 would divide by zero inside the loop).
POSITIVE_FIELDS = ("train.num_steps", "train.log_every", "checkpoint.every_steps", "checkpoint.max_to_keep",
                   "data.batch_size")


def check_loop_config(config: ml_collections.ConfigDict, where: str = "config") -> None:
  """Intervals and sizes of the loop are positive whole numbers: one error naming the field, before compiling
  (`where`: the config's name in the error, e.g. 'config.avdit' for a stage of the main job)."""
  for name in POSITIVE_FIELDS:
    section, field = name.split(".")
    value = config[section][field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{where}.{name} must be a whole number >= 1, got {value!r}.")


class Evaluator(Protocol):
  """What train_and_evaluate runs: `name` prefixes its scalars in metrics.jsonl (eval/<name>/...); it runs every
  `every_steps` steps (0: only at the end) and after the last step, on every process (sampling is a sharded
  computation), and writes its own reports."""
  name: str
  every_steps: int

  def __call__(self, state: TrainState, step: int) -> dict[str, float]: ...


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       evaluators: Sequence[Evaluator] = ()) -> TrainState:
  """Trains for config.train.num_steps on the mesh of config.mesh, running `evaluators` during training and
  after the last step, and returns the final state. A finished run (its newest checkpoint at num_steps) is
  only evaluated."""
  check_loop_config(config)
  if workdir:
    paths.path(workdir).mkdir(parents=True, exist_ok=True)
  setup = build(config)
  # ---------------------------------------------------------------- state: restored, or initialised
  manager = checkpoint.make_manager(workdir, config)
  restored = checkpoint.restore_latest(manager, setup.abstract_state, config)
  if restored:
    state, data_state, _ = restored
  else:
    state, data_state = setup.init_fn(), None
    if config.get("init_from"):        # other weights; this run's own optimizer and data position
      state = jax.jit(lambda s, p: with_model_params(s, p, setup.selection),
                      out_shardings=setup.state_sharding)(state, pretrained_params(config, state))
  # ---------------------------------------------------------------- loop
  num_steps = config.train.num_steps
  first_step = int(sharding.to_host(state.step))
  writer = MetricsWriter(workdir if jax.process_index() == 0 else "", resume_step=first_step)
  batches = setup.trainee.stream(config, data_state)
  preemption = checkpoint.Preemption()
  pending = None                       # (step, metrics) dispatched but not yet read
  start, timed_from = time.time(), None
  peak = config.train.get("peak_flops_per_device", 0)
  if peak < 0:                         # measure this machine's (tools/benchmark.py uses the same figure)
    peak = speed.matmul_peak(config.model.get("dtype", "float32"))
    logging.info("MFU against a measured matmul peak of %.1f GFLOP/s per device", peak / 1e9)

  def evaluate(step, state):
    nonlocal timed_from
    began = time.time()
    for ev in evaluators:
      if step == num_steps or (ev.every_steps and step % ev.every_steps == 0):
        values = ev(state, step)
        if values:
          writer.write(step, {f"eval/{ev.name}/{k}": v for k, v in values.items()})
          logging.info("step %d: %s %s", step, ev.name, values)
    if timed_from is not None:         # evaluation time is not training time
      timed_from = (timed_from[0], timed_from[1] + time.time() - began)

  def report(step, metrics):
    nonlocal timed_from
    values = _host_metrics(setup.trainee, metrics, setup.lr_fn(step - 1))
    if not np.isfinite(values["loss"]) or not np.isfinite(values["grad_norm"]):
      raise FloatingPointError(f"non-finite loss or gradient at step {step}: {values}; the last checkpoint "
                               f"({manager.latest_step()}) holds the last good state.")
    if timed_from is None:             # the first step carries compilation: time from its end
      timed_from = (step, time.time())
    if step % config.train.log_every == 0 or step == num_steps:
      done, t0 = timed_from
      if step > done:                  # throughput since compilation ended
        rate = (step - done) / max(time.time() - t0, 1e-9)
        flops_per_device = rate * setup.step_flops / jax.device_count()
        values.update({"steps_per_sec": rate, "examples_per_sec": rate * config.data.batch_size,
                       "tflops_per_device": flops_per_device / 1e12})
        if peak > 0:
          values["mfu"] = flops_per_device / peak
      writer.write(step, values)
      rate = values.get("steps_per_sec", float("nan"))
      eta = (num_steps - step) / rate if rate == rate and rate > 0 else float("nan")
      logging.info("step %d/%d loss %.5f grad_norm %.3f lr %.2e | %.2f steps/s %.1f ex/s %.3f TFLOP/s/device"
                   "%s | ETA %s", step, num_steps, values["loss"], values["grad_norm"], values["lr"], rate,
                   values.get("examples_per_sec", float("nan")), values.get("tflops_per_device", float("nan")),
                   f" MFU {values['mfu']:.1%}" if "mfu" in values else "",
                   time.strftime("%H:%M:%S", time.gmtime(eta)) if eta == eta else "?")

  try:
    for step in range(first_step + 1, num_steps + 1):
      with jax.set_mesh(setup.mesh):   # the step's mesh only: evaluators place their own arrays
        state, metrics = setup.step_fn(state, sharding.global_batch(next(batches), setup.batch_sharding))
      if pending is not None:
        report(*pending)
      pending = (step, metrics)
      preempted = preemption.reached(step)
      if preempted or step == num_steps or step % config.checkpoint.every_steps == 0:
        report(*pending)               # a checkpoint only ever holds a state whose step was finite
        pending = None
        checkpoint.save(manager, step, state, batches.get_state(), config)
      if preempted:
        logging.warning("preempted: checkpoint saved at step %d, exiting", step)
        break
      evaluate(step, state)
    if pending is not None:
      report(*pending)
    if first_step == num_steps:        # nothing left to train: evaluate the finished run
      evaluate(num_steps, state)
  finally:
    manager.wait_until_finished()
    manager.close()
    preemption.close()
    writer.close()
  logging.info("trained to step %d in %.1fs", int(sharding.to_host(state.step)), time.time() - start)
  return state
